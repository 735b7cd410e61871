//! `rediss://` in the two modes with more than one Redis node, on real redis-servers that speak
//! only TLS (`--port 0 --tls-port P`, certificates from a CA the test makes with `openssl`):
//!
//! - Sentinel: a primary, its replica and three Sentinels, with replication and every
//!   Sentinel link over TLS. The bridge asks the Sentinels over TLS, follows the failover
//!   after `kill -9` of the primary, and a session goes on, forwarded and local.
//! - Redis Cluster: three primaries with the cluster bus over TLS. The bridge follows the
//!   cluster's redirections and uses sharded pub/sub over TLS; `kill -9` of a session's owner
//!   and the other instance takes it over, and the client resumes there.
//!
//! (`tests/tls.rs` covers a single `rediss://` server, with and without `redis_ca_file`.)

mod cluster_support;
mod common;
mod support_nginx;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_support::{pick_port, poll, require, seed};
use common::{echo_call, stop, Bridge, Launch, Legacy, Pki, TempDir, LEGACY_PROTOCOL};
use nix::sys::signal::Signal;

const MASTER: &str = "mymaster";
/// Bound on the setup steps (a replica syncing, Sentinels meeting, a cluster forming).
const SETTLE: Duration = Duration::from_secs(40);
/// Bound on one answer: milliseconds normally, a failover or a takeover at worst.
const ANSWER: Duration = Duration::from_secs(15);

/// TLS-only redis-server processes (data nodes or Sentinels) in one temp dir; killed on Drop.
struct TlsNodes {
    pki: Pki,
    dir: TempDir,
    /// (child, TLS port, log file); a killed node's child is `None`.
    nodes: Vec<(Option<Child>, u16, PathBuf)>,
}

impl TlsNodes {
    fn new() -> TlsNodes {
        require("redis-cli", "redis-tools");
        require("redis-server", "redis-server");
        TlsNodes { pki: Pki::new(), dir: TempDir::new("redis-tls-modes"), nodes: Vec::new() }
    }

    /// The TLS settings every node gets: its certificate, the CA, TLS for replication (and
    /// for a Sentinel's links to the data nodes); no client certificates asked of clients. The
    /// cluster bus always asks for one, and a certificate for `serverAuth` only is refused
    /// there ("unsupported certificate"): nodes connect to each other with the client one.
    fn tls_lines(&self) -> String {
        let p = |f: &str| self.pki.path(f).display().to_string();
        format!(
            "port 0\ntls-cert-file {}\ntls-key-file {}\ntls-client-cert-file {}\ntls-client-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
            p("server.pem"),
            p("server.key"),
            p("client.pem"),
            p("client.key"),
            p("ca.pem")
        )
    }

    /// Starts `redis-server CONF [--sentinel]` on TLS port `port` with `extra` config lines;
    /// returns once it accepts connections.
    fn spawn(&mut self, name: &str, port: u16, extra: &str, sentinel: bool) -> u16 {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("create a node dir");
        let log = dir.join("redis.log");
        let conf = dir.join("redis.conf");
        let text = format!(
            "bind 127.0.0.1\ntls-port {port}\ndir {}\nlogfile {}\nsave \"\"\nappendonly no\n{}{extra}",
            dir.display(),
            log.display(),
            self.tls_lines()
        );
        std::fs::write(&conf, text).expect("write a node config");
        let mut cmd = Command::new("redis-server");
        cmd.arg(&conf);
        if sentinel {
            cmd.arg("--sentinel");
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn redis-server");
        let deadline = Instant::now() + SETTLE;
        while self.cli(port, &["PING"]) != "PONG" {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server {name} exited ({status}); does this build support TLS?\n{}", read(&log));
            }
            assert!(Instant::now() < deadline, "redis-server {name} did not answer on TLS port {port}:\n{}", read(&log));
            std::thread::sleep(Duration::from_millis(50));
        }
        self.nodes.push((Some(child), port, log));
        port
    }

    /// `redis-cli --tls` (trusting the test CA) on `port` with `args`, for at most 30 s;
    /// stdout, trimmed.
    fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("timeout")
            .args(["30", "redis-cli", "--tls"])
            .arg("--cacert")
            .arg(self.pki.path("ca.pem"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
            .args(args)
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string()).unwrap_or_default()
    }

    /// `kill -9` of the node on `port`.
    fn kill(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.1 == port).expect("a node on that port");
        if let Some(mut c) = node.0.take() {
            stop(&mut c, Signal::SIGKILL, Duration::from_secs(5));
        }
    }

    /// A bridge instance with `redis_ca_file` and `args` (its Redis flags).
    async fn bridge(&self, id: &str, args: &[&str]) -> Bridge {
        let config = format!("redis_ca_file = {}\n{}", self.pki.toml("ca.pem"), common::echo_server("echo"));
        let mut all = vec!["--instance-id", id];
        all.extend_from_slice(args);
        Bridge::launch(&config, Launch { name: id, args: &all, ..Launch::default() }).await
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|(_, port, log)| format!("---- node {port} ----\n{}", tail(&read(log), 30)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for TlsNodes {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for (child, _, _) in &mut self.nodes {
            if let Some(mut c) = child.take() {
                stop(&mut c, Signal::SIGKILL, Duration::from_secs(5));
            }
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits (bounded) for `f` to hold, polling every 100 ms; panics with `what` and the logs.
async fn settle(nodes: &TlsNodes, what: &str, mut f: impl FnMut() -> bool) {
    let held = poll(SETTLE, || f().then_some(())).await;
    assert!(held.is_some(), "{what} within {SETTLE:?}\n{}", nodes.logs());
}

/// Waits until both instances say they are ready with Redis reachable.
async fn ready(instances: &[&Bridge]) {
    for i in instances {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, r) = i.readyz().await;
            if r["status"] == "ready" && r["redis"] == "ok" {
                break;
            }
            assert!(Instant::now() < deadline, "instance {} is ready within 60 s: {r}", i.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Echoes `message` as request `id` through `via`, and reads its answer; when the stream ends
/// (the session moved), resumes it with `Last-Event-ID` through `resume_at`.
async fn echo_resuming(s: &mut Legacy, via: &str, resume_at: &str, id: u64, message: &str) -> String {
    let (status, body) = s.post_via(via, &echo_call(id, message)).await.expect("POST");
    assert_eq!(status, 202, "echo {id} via {via}: {body}");
    common::echo_text(&s.answer_resuming(id, resume_at, ANSWER, &mut 0).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_over_tls_fails_over_and_the_session_goes_on() {
    let mut n = TlsNodes::new();
    let (primary, replica) = (n.spawn("primary", common::free_port(), "", false), common::free_port());
    n.spawn("replica", replica, &format!("replicaof 127.0.0.1 {primary}\n"), false);
    let mut sentinels = Vec::new();
    for i in 1..=3 {
        let monitor = format!(
            "sentinel resolve-hostnames no\nsentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {MASTER} 1000\nsentinel failover-timeout {MASTER} 5000\n"
        );
        sentinels.push(n.spawn(&format!("sentinel-{i}"), common::free_port(), &monitor, true));
    }
    settle(&n, "the replica syncs over TLS and the Sentinels see it and each other", || {
        n.cli(replica, &["INFO", "replication"]).contains("master_link_status:up")
            && sentinels.iter().all(|&s| {
                let master = n.cli(s, &["SENTINEL", "MASTER", MASTER]);
                let f: Vec<&str> = master.lines().collect();
                let field = |k: &str| f.iter().position(|l| *l == k).and_then(|i| f.get(i + 1)).copied();
                field("num-other-sentinels") == Some("2") && field("num-slaves") == Some("1")
            })
    })
    .await;

    let urls = sentinels.iter().map(|p| format!("rediss://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let flags = ["--redis-sentinel", &urls, "--redis-sentinel-master", MASTER];
    let (b1, b2) = (n.bridge("b1", &flags).await, n.bridge("b2", &flags).await);
    ready(&[&b1, &b2]).await;
    let mut s = Legacy::open_as(&b1.base(), "echo", None, LEGACY_PROTOCOL).await;
    assert_eq!(s.echo_via(&b1.base(), 2, "local").await, "local");
    assert_eq!(s.echo_via(&b2.base(), 3, "forwarded").await, "forwarded", "b2 forwards to b1 over the TLS Redis");
    let rec = format!("mcpb:{{{}}}:rec", s.sid);
    assert_eq!(n.cli(primary, &["HGET", &rec, "owner"]), "b1", "the record is on the TLS primary");
    settle(&n, "the replica has the session's record", || n.cli(replica, &["EXISTS", &rec]) == "1").await;

    n.kill(primary);
    let killed = Instant::now();
    settle(&n, "every Sentinel names the replica as the primary", || {
        sentinels.iter().all(|&p| n.cli(p, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]).ends_with(&replica.to_string()))
    })
    .await;
    let promoted = killed.elapsed();
    ready(&[&b1, &b2]).await;
    for (id, via) in [(4, &b1), (5, &b2)] {
        let m = format!("after-{id}");
        assert_eq!(
            echo_resuming(&mut s, &via.base(), &b1.base(), id, &m).await,
            m,
            "echo {id} via {} after the failover",
            via.name
        );
    }
    assert!(!n.cli(replica, &["HGET", &rec, "owner"]).is_empty(), "the record is on the promoted replica");
    let mut fresh = Legacy::open_as(&b2.base(), "echo", None, LEGACY_PROTOCOL).await;
    assert_eq!(fresh.echo_via(&b2.base(), 2, "fresh").await, "fresh", "a new session on the new primary");
    for id in [1, 2, 3, 4, 5] {
        assert_eq!(s.responses_to(id), 1, "answer {id} exactly once: {:?}", s.received);
    }
    eprintln!("SENTINEL OVER TLS: replica promoted {} ms after kill -9 of the primary", promoted.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_over_tls_forwards_and_takes_over() {
    let mut n = TlsNodes::new();
    let mut rng = seed();
    let mut ports = Vec::new();
    for i in 1..=3 {
        let port = pick_port(&mut rng, &ports).expect("a free port pair (the port and its bus port)");
        let cluster = "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 1000\ntls-cluster yes\n";
        ports.push(n.spawn(&format!("node-{i}"), port, cluster, false));
    }
    let mut create: Vec<String> = ["--cluster", "create"].map(String::from).to_vec();
    create.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
    let args: Vec<&str> = create.iter().map(String::as_str).collect();
    let out = n.cli(ports[0], &args);
    assert!(out.contains("All 16384 slots covered"), "redis-cli --tls --cluster create:\n{out}\n{}", n.logs());
    settle(&n, "every node says cluster_state:ok", || {
        ports.iter().all(|&p| n.cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    })
    .await;

    let urls = ports.iter().map(|p| format!("rediss://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let flags = ["--redis-cluster", &urls];
    let (mut b1, b2) = (n.bridge("b1", &flags).await, n.bridge("b2", &flags).await);
    ready(&[&b1, &b2]).await;
    let mut s = Legacy::open_as(&b1.base(), "echo", None, LEGACY_PROTOCOL).await;
    assert_eq!(s.echo_via(&b1.base(), 2, "local").await, "local");
    assert_eq!(s.echo_via(&b2.base(), 3, "forwarded").await, "forwarded", "b2 forwards to b1 over sharded pub/sub on TLS");
    let rec = format!("mcpb:{{{}}}:rec", s.sid);
    let owner = |n: &TlsNodes| -> String {
        // -c follows the slot's redirection to the node that holds the record.
        n.cli(ports[0], &["-c", "HGET", &rec, "owner"])
    };
    assert_eq!(owner(&n), "b1", "the record is in the TLS cluster");

    b1.kill9();
    let killed = Instant::now();
    let taken = echo_resuming(&mut s, &b2.base(), &b2.base(), 4, "taken over").await;
    assert_eq!(taken, "taken over");
    let took = killed.elapsed();
    assert_eq!(owner(&n), "b2", "b2 took the session over");
    assert_eq!(echo_resuming(&mut s, &b2.base(), &b2.base(), 5, "on b2").await, "on b2");
    for id in [1, 2, 3, 4, 5] {
        assert_eq!(s.responses_to(id), 1, "answer {id} exactly once: {:?}", s.received);
    }
    let log = b2.log();
    assert!(!log.contains("panicked"), "b2 panicked:\n{log}");
    eprintln!("REDIS CLUSTER OVER TLS: kill -9 of the owner to the answer from b2: {} ms", took.as_millis());
}
