//! A Redis primary/replica pair watched by three Sentinels, for the `--redis-sentinel` tests:
//! a primary, one replica (`--replicaof`), and three `redis-server --sentinel` processes with
//! config files written here (quorum 2, down after 1 s, failover timeout 5 s), each on a free
//! loopback port in one temp dir. [`Sentinel::kill_primary`] is the failure the tests survive:
//! `kill -9` of the primary, then a bounded wait until the Sentinels have promoted the replica.
//! Everything is killed on Drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::common::{free_port, stop, TempDir};

use super::{require, wait_listening};

/// The master name the Sentinels monitor (the bridge's `--redis-sentinel-master` default).
pub(crate) const MASTER: &str = "mymaster";
/// How long the Sentinels may take to see the replica and each other after starting.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failover may take (down after 1 s, then vote, elect and promote; a split vote
/// is retried after twice the failover timeout, 10 s).
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(40);

/// One redis-server process (a data node or a Sentinel) and its log file.
struct Node {
    child: Option<Child>,
    port: u16,
    log: std::path::PathBuf,
}

impl Node {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A primary, its replica and three Sentinels.
pub(crate) struct Sentinel {
    /// [0] the first primary, [1] its replica (the primary after a failover).
    data: Vec<Node>,
    sentinels: Vec<Node>,
    /// The port of the node that is the primary now.
    primary: u16,
    dir: TempDir,
}

impl Sentinel {
    /// Starts the five processes; returns once the replica is in sync and every Sentinel knows
    /// the replica and the two other Sentinels (so that a failover can be voted).
    pub(crate) fn start() -> Sentinel {
        require("redis-cli", "redis-tools");
        let bin = require("redis-server", "redis-server");
        let dir = TempDir::new("sentinel");
        let mut s = Sentinel { data: Vec::new(), sentinels: Vec::new(), primary: 0, dir };
        let primary = s.spawn_data(&bin, "primary", None);
        s.primary = primary;
        s.spawn_data(&bin, "replica", Some(primary));
        for i in 1..=3 {
            s.spawn_sentinel(&bin, i, primary);
        }
        s.settle();
        s
    }

    fn spawn_data(&mut self, bin: &std::path::Path, name: &str, replica_of: Option<u16>) -> u16 {
        let port = free_port();
        let log = self.dir.path().join(format!("{name}.log"));
        let data = self.dir.path().join(name);
        std::fs::create_dir_all(&data).expect("create redis data dir");
        let mut cmd = Command::new(bin);
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&data)
            .arg("--logfile")
            .arg(&log);
        if let Some(p) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn redis-server");
        wait_listening(port, &mut child, &format!("redis-server ({name})"), || std::fs::read_to_string(&log).unwrap_or_default());
        self.data.push(Node { child: Some(child), port, log });
        port
    }

    fn spawn_sentinel(&mut self, bin: &std::path::Path, i: usize, primary: u16) {
        let port = free_port();
        let log = self.dir.path().join(format!("sentinel-{i}.log"));
        // Sentinel rewrites its config file (ids, epochs, known peers): one writable file each.
        let conf = self.dir.path().join(format!("sentinel-{i}.conf"));
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {log}\n\
             sentinel resolve-hostnames no\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {MASTER} 1000\n\
             sentinel failover-timeout {MASTER} 5000\n\
             sentinel parallel-syncs {MASTER} 1\n",
            dir = self.dir.path().display(),
            log = log.display(),
        );
        std::fs::write(&conf, text).expect("write sentinel config");
        let mut child = Command::new(bin)
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        wait_listening(port, &mut child, &format!("sentinel {i}"), || std::fs::read_to_string(&log).unwrap_or_default());
        self.sentinels.push(Node { child: Some(child), port, log });
    }

    /// Waits (bounded) until the replica is in sync and each Sentinel sees it and two peers.
    fn settle(&self) {
        let replica = self.data[1].port;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let synced = cli_at(replica, &["INFO", "replication"]).contains("master_link_status:up");
            let seen = self.sentinels.iter().all(|s| {
                let master = fields(&cli_at(s.port, &["SENTINEL", "MASTER", MASTER]));
                let replicas = cli_at(s.port, &["SENTINEL", "REPLICAS", MASTER]);
                master.get("num-other-sentinels").map(String::as_str) == Some("2")
                    && master.get("num-slaves").map(String::as_str) == Some("1")
                    && replicas.lines().any(|l| l == replica.to_string())
            });
            if synced && seen {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the Sentinels did not see the replica and each other within {SETTLE_TIMEOUT:?} (replica synced: {synced})\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis://127.0.0.1:P1,redis://127.0.0.1:P2,...`: the Sentinels, for `--redis-sentinel`.
    pub(crate) fn sentinel_urls(&self) -> String {
        self.sentinels.iter().map(|s| format!("redis://127.0.0.1:{}", s.port)).collect::<Vec<_>>().join(",")
    }

    /// The port of the node that is the primary now.
    pub(crate) fn primary_port(&self) -> u16 {
        self.primary
    }

    /// The port of the first primary's replica (the primary after [`Sentinel::kill_primary`]).
    pub(crate) fn replica_port(&self) -> u16 {
        self.data[1].port
    }

    /// What each Sentinel answers to `SENTINEL get-master-addr-by-name mymaster`: the port of
    /// the primary it names (`None` for a Sentinel that does not answer).
    pub(crate) fn master_ports(&self) -> Vec<Option<u16>> {
        self.sentinels
            .iter()
            .map(|s| {
                let out = cli_at(s.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]);
                out.lines().nth(1).and_then(|p| p.trim().parse().ok())
            })
            .collect()
    }

    /// `kill -9` of the primary, then waits (bounded) until every Sentinel names the replica as
    /// the primary and the replica reports `role:master`. Returns the time from the kill.
    pub(crate) async fn kill_primary(&mut self) -> Duration {
        let replica = self.data[1].port;
        assert_ne!(self.primary, replica, "the primary was already killed once");
        let mut child = self.data[0].child.take().expect("the primary runs");
        let killed = Instant::now();
        stop(&mut child, Signal::SIGKILL, Duration::from_secs(5));
        loop {
            let named = self.master_ports().iter().all(|p| *p == Some(replica));
            if named && cli_at(replica, &["INFO", "replication"]).contains("role:master") {
                self.primary = replica;
                return killed.elapsed();
            }
            if killed.elapsed() >= FAILOVER_TIMEOUT {
                panic!(
                    "no failover to the replica (port {replica}) within {FAILOVER_TIMEOUT:?}; the Sentinels name {:?}\n{}",
                    self.master_ports(),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `redis-cli -p PRIMARY --raw ARGS...` on the current primary; its output, trimmed at the end.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        cli_at(self.primary, args)
    }

    /// Every log (data nodes and Sentinels), for failure messages.
    pub(crate) fn logs(&self) -> String {
        let data = self.data.iter().zip(["primary", "replica"]).map(|(n, name)| (format!("{name} ({})", n.port), n));
        let sentinels = self.sentinels.iter().enumerate().map(|(i, n)| (format!("sentinel {} ({})", i + 1, n.port), n));
        data.chain(sentinels)
            .map(|(name, n)| {
                let log = n.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                format!("---- {name} log tail ----\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for n in self.sentinels.iter_mut().chain(self.data.iter_mut()) {
            if let Some(mut c) = n.child.take() {
                stop(&mut c, Signal::SIGKILL, Duration::from_secs(5));
            }
        }
    }
}

/// `redis-cli -p PORT --raw ARGS...`, its stdout trimmed at the end (empty if it cannot run).
fn cli_at(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-p", &port.to_string(), "--raw"]).args(args).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string()).unwrap_or_default()
}

/// The field/value lines of a `--raw` reply such as `SENTINEL MASTER`, as a map.
fn fields(raw: &str) -> std::collections::HashMap<String, String> {
    let lines: Vec<&str> = raw.lines().collect();
    lines.chunks(2).filter_map(|kv| Some((kv.first()?.to_string(), kv.get(1)?.to_string()))).collect()
}
