//! A cluster for the cluster tests: a real redis-server, bridge instances in Redis mode with
//! their own instance ids (common::Bridge::instance), and a real nginx balancing over them round-robin (rendered from
//! deploy/nginx/nginx.conf, with an access log that names the upstream of every request).
//! Each part runs on a free loopback port and is killed on Drop.
#![allow(dead_code)]

mod balancer;
pub(crate) mod failover;
mod redis_cluster;
pub(crate) mod scenarios;
pub(crate) mod sentinel;
pub(crate) mod traffic;

pub(crate) use balancer::Balancer;
#[allow(unused_imports)] // tests/redis_cluster.rs only
pub(crate) use redis_cluster::{pick_port, seed, OnRedisCluster, RedisCluster};

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::common::{free_port, stop, Bridge, TempDir};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A tool on PATH (or in /usr/sbin); fails with how to install it.
pub(super) fn require(tool: &str, package: &str) -> PathBuf {
    for c in [PathBuf::from(tool), PathBuf::from("/usr/sbin").join(tool), PathBuf::from("/usr/bin").join(tool)] {
        let ok = Command::new(&c).arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if ok.is_ok_and(|s| s.success()) {
            return c;
        }
    }
    panic!("missing {tool}: run scripts/test-deps (apt-get install {package})");
}

fn wait_listening(port: u16, child: &mut Child, what: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}) before listening on {port}; log:\n{}", log());
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("{what} did not listen on {port} within {START_TIMEOUT:?}; log:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- redis ------------------------------------------------------------------------------

/// A redis-server on a free loopback port, in the foreground, with its own dir. It saves an
/// RDB snapshot when stopped with SIGTERM, so [`Redis::restart`] keeps the data (like a
/// production restart); [`Redis::crash_restart`] loses it.
pub(crate) struct Redis {
    child: Option<Child>,
    pub(crate) port: u16,
    dir: TempDir,
}

impl Redis {
    pub(crate) fn start() -> Redis {
        require("redis-cli", "redis-server");
        let dir = TempDir::new("redis");
        let mut r = Redis { child: None, port: free_port(), dir };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let bin = require("redis-server", "redis-server");
        let log = self.dir.path().join("redis.log");
        let child = Command::new(bin)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "3600 1", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let mut child = child;
        wait_listening(self.port, &mut child, "redis-server", || std::fs::read_to_string(&log).unwrap_or_default());
        self.child = Some(child);
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it with SIGTERM (it saves its data), without starting it again.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, Signal::SIGTERM, Duration::from_secs(10));
        }
    }

    /// Kills it with SIGKILL and removes its snapshot: what it held is gone.
    pub(crate) fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, Signal::SIGKILL, Duration::from_secs(5));
        }
        let _ = std::fs::remove_file(self.dir.path().join("dump.rdb"));
    }

    /// Sends it a signal: SIGSTOP stalls it (its clients' commands wait, its keys' TTLs run
    /// on), SIGCONT lets it go on.
    pub(crate) fn signal(&self, sig: Signal) {
        if let Some(c) = &self.child {
            crate::common::signal(c.id(), sig);
        }
    }

    /// Starts it again on the same port (after `stop` or `crash`).
    pub(crate) fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is still running");
        self.spawn();
    }

    /// Runs `redis-cli -p PORT ARGS...` and returns its output, trimmed.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--no-raw"])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Like `cli`, raw output (no quoting), one value per line.
    pub(crate) fn cli_raw(&self, args: &[&str]) -> String {
        let out =
            Command::new("redis-cli").args(["-p", &self.port.to_string(), "--raw"]).args(args).output().expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// The instance a session's record names as its owner, if any.
    pub(crate) fn lease_owner(&self, sid: &str) -> Option<String> {
        Some(self.cli_raw(&["HGET", &format!("mcpb:{{{sid}}}:rec"), "owner"])).filter(|s| !s.is_empty())
    }

    /// The messages of a session's stream log in Redis, in order (the data of each entry).
    pub(crate) fn stream_log(&self, sid: &str, stream: u32) -> Vec<Value> {
        self.cli_raw(&["ZRANGE", &format!("mcpb:{{{sid}}}:log:{stream}"), "0", "-1"])
            .lines()
            .filter_map(|m| m.split_once(' ').and_then(|(_, data)| serde_json::from_str(data).ok()))
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c, Signal::SIGKILL, Duration::from_secs(5));
        }
    }
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `timeout`.
pub(crate) async fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- a whole cluster --------------------------------------------------------------------

/// Redis, `n` instances named `b1`, `b2`, ..., and optionally nginx in front of them.
pub(crate) struct Cluster {
    // Dropped in this order: the balancer, the instances, then Redis.
    pub(crate) nginx: Option<Balancer>,
    pub(crate) instances: Vec<Bridge>,
    pub(crate) redis: Redis,
}

impl Cluster {
    pub(crate) async fn start(config: &str, n: usize, with_nginx: bool) -> Cluster {
        let redis = Redis::start();
        let mut instances = Vec::with_capacity(n);
        for i in 1..=n {
            instances.push(Bridge::instance(config, &redis.url(), &format!("b{i}")).await);
        }
        let nginx = with_nginx.then(|| Balancer::start(&instances.iter().map(|i| i.port).collect::<Vec<_>>()));
        Cluster { nginx, instances, redis }
    }

    pub(crate) fn nginx(&self) -> &Balancer {
        self.nginx.as_ref().expect("this cluster runs nginx")
    }

    pub(crate) fn index_of(&self, id: &str) -> usize {
        self.instances.iter().position(|i| i.name == id).unwrap_or_else(|| panic!("no instance {id}"))
    }

    /// The instance listening on `addr` (`127.0.0.1:PORT`, as nginx logs it).
    pub(crate) fn id_at(&self, addr: &str) -> Option<&str> {
        let port: u16 = addr.rsplit(':').next()?.parse().ok()?;
        self.instances.iter().find(|i| i.port == port).map(|i| i.name.as_str())
    }
}
