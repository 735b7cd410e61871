//! A cluster for the cluster tests: a real redis-server, bridge instances in Redis mode with
//! their own instance ids, and a real nginx balancing over them round-robin (rendered from
//! deploy/nginx/nginx.conf, with an access log that names the upstream of every request).
//! Each part runs on a free loopback port and is killed on Drop.
#![allow(dead_code, unused_imports)]

mod balancer;

pub(crate) use balancer::{AccessLine, Balancer};

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{free_port, root, strip_ansi, TempDir};

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

fn signal(pid: u32, sig: Signal) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(p), sig);
    }
}

/// Waits for a child to exit; SIGKILL after `grace`. Always reaps it.
fn stop(child: &mut Child, sig: Signal, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), sig);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The pids whose parent is `parent` (from /proc).
fn children_of(parent: u32) -> Vec<i32> {
    let parent = parent.to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the parenthesised name: state, ppid, ...
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1).map(|p| p == parent)).unwrap_or(false)
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie (state Z) has exited.
    !stat.is_empty() && stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z")
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

    /// The instance holding the lease of a session, if any.
    pub(crate) fn lease_owner(&self, sid: &str) -> Option<String> {
        Some(self.cli_raw(&["GET", &format!("mcpb:lease:{sid}")])).filter(|s| !s.is_empty())
    }

    /// The messages of a session's stream log in Redis, in order (the data of each entry).
    pub(crate) fn stream_log(&self, sid: &str, stream: u32) -> Vec<Value> {
        self.cli_raw(&["ZRANGE", &format!("mcpb:log:{sid}:{stream}"), "0", "-1"])
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

// ---- bridge instances -------------------------------------------------------------------

/// One `mcp-bridge serve --redis ... --instance-id ...`.
pub(crate) struct Instance {
    child: Child,
    pub(crate) id: String,
    pub(crate) port: u16,
    pub(crate) log_path: PathBuf,
    /// Stdio children orphaned by [`Instance::kill9`], killed on Drop.
    orphans: Vec<i32>,
    _dir: TempDir,
}

impl Instance {
    /// Starts an instance of the cluster at `redis` with `config` (TOML); returns once it
    /// answers `/healthz`.
    pub(crate) fn start(config: &str, redis: &str, id: &str) -> Instance {
        for attempt in 0..3 {
            let dir = TempDir::new(&format!("instance-{id}"));
            let config_path = dir.path().join("mcp-bridge.toml");
            std::fs::write(&config_path, config).expect("write config");
            let log_path = dir.path().join("bridge.log");
            let port = free_port();
            let log = std::fs::File::create(&log_path).expect("create log file");
            let err = log.try_clone().expect("clone log file");
            let child = Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
                .arg("serve")
                .arg("--config")
                .arg(&config_path)
                .args(["--listen", &format!("127.0.0.1:{port}"), "--instance-id", id, "--redis", redis])
                .env("MCP_BRIDGE_LOG", "info")
                .current_dir(root())
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .expect("spawn mcp-bridge");
            let mut inst = Instance { child, id: id.to_string(), port, log_path, orphans: Vec::new(), _dir: dir };
            let deadline = Instant::now() + START_TIMEOUT;
            let exited = loop {
                if let Ok(Some(_)) = inst.child.try_wait() {
                    break true;
                }
                if healthz(port) {
                    return inst;
                }
                if Instant::now() >= deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if exited && attempt < 2 && inst.log().contains("cannot listen") {
                continue;
            }
            panic!("instance {id} did not become healthy on port {port}; log:\n{}", inst.log());
        }
        unreachable!("the loop returns or panics")
    }

    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far, without colour codes.
    pub(crate) fn log(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()))
    }

    /// How many log lines contain `needle`.
    pub(crate) fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// `kill -9`: no shutdown, no lease handed back. Returns the stdio children it had, which
    /// it can no longer kill; they are killed when this value drops.
    pub(crate) fn kill9(&mut self) -> Vec<i32> {
        let children = children_of(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.orphans.extend(&children);
        children
    }

    /// Which of the children orphaned by `kill9` are still running.
    pub(crate) fn orphans_alive(&self) -> Vec<i32> {
        self.orphans.iter().copied().filter(|p| alive(*p)).collect()
    }

    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// GET /readyz as JSON.
    pub(crate) async fn readyz(&self) -> Value {
        let r = reqwest::Client::new().get(self.url("/readyz")).timeout(Duration::from_secs(10)).send().await;
        match r {
            Ok(r) => serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or(Value::Null),
            Err(e) => panic!("GET /readyz on {}: {e}", self.id),
        }
    }
}

fn healthz(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

impl Drop for Instance {
    fn drop(&mut self) {
        stop(&mut self.child, Signal::SIGTERM, Duration::from_secs(5));
        // The stdio children of a killed instance run in their own process groups.
        for pid in self.orphans.drain(..) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().filter(|l| !l.contains("heartbeat")).rev().take(80).collect();
            eprintln!("---- instance {} log tail ({}) ----", self.id, self.log_path.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
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
    pub(crate) instances: Vec<Instance>,
    pub(crate) redis: Redis,
}

impl Cluster {
    pub(crate) fn start(config: &str, n: usize, with_nginx: bool) -> Cluster {
        let redis = Redis::start();
        let instances: Vec<Instance> = (1..=n).map(|i| Instance::start(config, &redis.url(), &format!("b{i}"))).collect();
        let nginx = with_nginx.then(|| Balancer::start(&instances.iter().map(|i| i.port).collect::<Vec<_>>()));
        Cluster { nginx, instances, redis }
    }

    pub(crate) fn nginx(&self) -> &Balancer {
        self.nginx.as_ref().expect("this cluster runs nginx")
    }

    pub(crate) fn index_of(&self, id: &str) -> usize {
        self.instances.iter().position(|i| i.id == id).unwrap_or_else(|| panic!("no instance {id}"))
    }

    /// The instance listening on `addr` (`127.0.0.1:PORT`, as nginx logs it).
    pub(crate) fn id_at(&self, addr: &str) -> Option<&str> {
        let port: u16 = addr.rsplit(':').next()?.parse().ok()?;
        self.instances.iter().find(|i| i.port == port).map(|i| i.id.as_str())
    }
}
