//! A real Redis Cluster for the tests: three primaries with one replica each, six
//! `redis-server --cluster-enabled yes` on free loopback ports (with their bus ports, port +
//! 10000, free too), joined by `redis-cli --cluster create --cluster-replicas 1`. A test can kill
//! the primary serving a key's slot (its replica takes over), move slots with `redis-cli --cluster
//! reshard`, and read keys with `redis-cli -c`. Every node is killed on Drop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use super::scenarios::{Deployment, Store};
use super::{require, wait_listening, Balancer};
use crate::common::{stop, Bridge, Launch, TempDir};

/// How long the cluster may take to form, fail over or settle after a reshard.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `redis-cli --cluster` command may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Node ports are picked from here; with their bus ports (+10000) they stay below the kernel's
/// ephemeral range (32768..), so no `free_port()` of another test can land on them.
const PORTS: std::ops::Range<u16> = 12000..22700;
const BUS_OFFSET: u16 = 10000;

/// One node as `CLUSTER NODES` describes it.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub(crate) id: String,
    pub(crate) port: u16,
    pub(crate) primary: bool,
    /// `fail` or `fail?` is among its flags.
    pub(crate) failing: bool,
    /// The id of its primary, for a replica.
    pub(crate) primary_id: Option<String>,
    /// The slot ranges it serves (inclusive), for a primary.
    pub(crate) slots: Vec<(u16, u16)>,
}

impl NodeInfo {
    fn parse(line: &str) -> Option<NodeInfo> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let addr = f.get(1)?.split(['@', ',']).next()?;
        let port = addr.rsplit(':').next()?.parse().ok()?;
        let flags: Vec<&str> = f.get(2)?.split(',').collect();
        let slots = f
            .iter()
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|a| (a, a)),
            })
            .collect();
        Some(NodeInfo {
            id: f[0].to_string(),
            port,
            primary: flags.contains(&"master"),
            failing: flags.iter().any(|&x| x == "fail" || x == "fail?"),
            primary_id: Some(f.get(3)?.to_string()).filter(|m| m != "-"),
            slots,
        })
    }

    pub(crate) fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }

    /// Its slots, one by one, in ascending order (the order `reshard` takes them in).
    pub(crate) fn slot_list(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.slots.iter().flat_map(|&(a, b)| a..=b).collect();
        v.sort_unstable();
        v
    }
}

/// Bridge instances `b1`, `b2`, ... in cluster mode on a [`RedisCluster`] (`--redis-cluster`
/// with every node as a seed), behind nginx round-robin.
pub(crate) struct OnRedisCluster {
    // Dropped in this order: the balancer, the instances, then the Redis Cluster.
    pub(crate) nginx: Balancer,
    pub(crate) instances: Vec<Bridge>,
    pub(crate) redis: RedisCluster,
}

impl OnRedisCluster {
    pub(crate) async fn start(config: &str, n: usize) -> OnRedisCluster {
        let redis = RedisCluster::start().await;
        let urls = redis.urls();
        let mut instances = Vec::with_capacity(n);
        for i in 1..=n {
            let id = format!("b{i}");
            let args = ["--instance-id", &id, "--redis-cluster", &urls];
            instances.push(Bridge::launch(config, Launch { name: &id, args: &args, ..Launch::default() }).await);
        }
        let nginx = Balancer::start(&instances.iter().map(|i| i.port).collect::<Vec<_>>());
        OnRedisCluster { nginx, instances, redis }
    }
}

impl Deployment for OnRedisCluster {
    fn instances(&self) -> &[Bridge] {
        &self.instances
    }
    fn instances_mut(&mut self) -> &mut [Bridge] {
        &mut self.instances
    }
    fn balancer(&self) -> &Balancer {
        &self.nginx
    }
    fn store(&self) -> &dyn Store {
        &self.redis
    }
}

impl Store for RedisCluster {
    fn owner(&self, sid: &str) -> Option<String> {
        RedisCluster::owner(self, sid)
    }
    fn stream_log(&self, sid: &str, stream: u32) -> Vec<Value> {
        RedisCluster::stream_log(self, sid, stream)
    }
}

/// One redis-server process of the cluster.
struct Node {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

/// What [`RedisCluster::move_slot_of`] did.
#[derive(Debug, Clone)]
pub(crate) struct SlotMove {
    pub(crate) slot: u16,
    pub(crate) from: u16,
    pub(crate) to: u16,
    /// How many slots `reshard` moved to get this one across (it takes a node's lowest slots).
    pub(crate) slots_moved: usize,
    pub(crate) took: Duration,
}

/// Three primaries with one replica each.
pub(crate) struct RedisCluster {
    nodes: Vec<Node>,
    dir: TempDir,
}

impl RedisCluster {
    /// Starts six nodes and joins them; returns once every node says `cluster_state:ok` and
    /// every replica is in sync with its primary.
    pub(crate) async fn start() -> RedisCluster {
        require("redis-server", "redis-server");
        require("redis-cli", "redis-tools");
        let dir = TempDir::new("redis-cluster");
        let mut c = RedisCluster { nodes: Vec::new(), dir };
        let mut rng = seed();
        for i in 0..6 {
            let node = (0..5)
                .find_map(|_| {
                    let port = pick_port(&mut rng, &c.nodes.iter().map(|n| n.port).collect::<Vec<_>>())?;
                    spawn_node(c.dir.path().join(format!("n{i}")), port)
                })
                .unwrap_or_else(|| panic!("could not start redis-server node {i} on a free port pair in {PORTS:?}"));
            c.nodes.push(node);
        }
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(c.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let out = run_cli(&args).await;
        assert!(out.0, "redis-cli --cluster create failed:\n{}\n{}", out.1, c.logs());
        c.settle("to form").await;
        // A replica may still be listed as a primary (with no slots) by another node for a
        // moment after `create`: wait until every node's view has three of each.
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while !c.live_ports().iter().all(|&p| c.topology_at(p).iter().filter(|n| n.primary).count() == 3) {
            assert!(Instant::now() < deadline, "the roles did not settle within {SETTLE_TIMEOUT:?}: {:?}", c.topology());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c
    }

    /// The seed URLs, comma-joined, for `--redis-cluster`.
    pub(crate) fn urls(&self) -> String {
        self.nodes.iter().map(|n| format!("redis://127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    /// The ports of the nodes still running.
    pub(crate) fn live_ports(&self) -> Vec<u16> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.port).collect()
    }

    /// The cluster as a live node sees it.
    pub(crate) fn topology(&self) -> Vec<NodeInfo> {
        self.topology_at(self.live_ports()[0])
    }

    fn topology_at(&self, port: u16) -> Vec<NodeInfo> {
        cli_at(port, &["CLUSTER", "NODES"]).lines().filter_map(NodeInfo::parse).collect()
    }

    /// The slot of a key (`CLUSTER KEYSLOT`), or the slot itself if `key_or_slot` is a number.
    pub(crate) fn slot_of(&self, key_or_slot: &str) -> u16 {
        if let Ok(slot) = key_or_slot.parse::<u16>() {
            return slot;
        }
        let out = self.cli(&["CLUSTER", "KEYSLOT", key_or_slot]);
        out.trim().parse().unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key_or_slot}: {out}"))
    }

    /// The live primary serving `slot`, as a live node sees it.
    pub(crate) fn primary_of(&self, slot: u16) -> NodeInfo {
        self.topology()
            .into_iter()
            .find(|n| n.primary && !n.failing && n.serves(slot))
            .unwrap_or_else(|| panic!("no live primary serves slot {slot}: {:?}", self.topology()))
    }

    /// `redis-cli -c -p PORT --raw ARGS...` against a live primary (following redirections);
    /// its output without the trailing newline.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let topo = self.topology();
        let live = self.live_ports();
        let port = topo.iter().find(|n| n.primary && !n.failing && live.contains(&n.port)).map_or(live[0], |n| n.port);
        cli_at(port, args)
    }

    /// The record hash of a session (`mcpb:{<sid>}:rec`).
    pub(crate) fn record(&self, sid: &str) -> BTreeMap<String, String> {
        let out = self.cli(&["HGETALL", &format!("mcpb:{{{sid}}}:rec")]);
        let lines: Vec<&str> = out.lines().collect();
        lines.chunks(2).filter(|kv| kv.len() == 2).map(|kv| (kv[0].to_string(), kv[1].to_string())).collect()
    }

    /// The instance that owns a session, per its record.
    pub(crate) fn owner(&self, sid: &str) -> Option<String> {
        self.record(sid).remove("owner").filter(|o| !o.is_empty())
    }

    /// The messages of a session's stream log, in order (the data of each entry).
    pub(crate) fn stream_log(&self, sid: &str, stream: u32) -> Vec<Value> {
        self.cli(&["ZRANGE", &format!("mcpb:{{{sid}}}:log:{stream}"), "0", "-1"])
            .lines()
            .filter_map(|m| m.split_once(' ').and_then(|(_, data)| serde_json::from_str(data).ok()))
            .collect()
    }

    /// SIGKILLs the primary serving the slot of `key_or_slot`, then waits until its replica
    /// serves that slot and every live node says `cluster_state:ok`. Returns the time from the
    /// kill to then, and the port of the new primary.
    pub(crate) async fn kill_primary_of(&mut self, key_or_slot: &str) -> (Duration, u16) {
        let slot = self.slot_of(key_or_slot);
        let victim = self.primary_of(slot);
        let node = self.nodes.iter_mut().find(|n| n.port == victim.port).expect("the primary is one of ours");
        let mut child = node.child.take().expect("the primary runs");
        stop(&mut child, Signal::SIGKILL, Duration::from_secs(5));
        let killed = Instant::now();
        let deadline = killed + SETTLE_TIMEOUT;
        loop {
            let live = self.live_ports();
            let views: Vec<Option<u16>> = live
                .iter()
                .map(|&p| {
                    let topo = self.topology_at(p);
                    topo.iter().find(|n| n.primary && !n.failing && n.serves(slot) && n.port != victim.port).map(|n| n.port)
                })
                .collect();
            let agreed = views[0].filter(|p| views.iter().all(|v| *v == Some(*p)));
            if let Some(new) = agreed.filter(|_| self.all_ok()) {
                return (killed.elapsed(), new);
            }
            assert!(
                Instant::now() < deadline,
                "no replica took over slot {slot} from {} within {SETTLE_TIMEOUT:?}: views {views:?}\n{}",
                victim.port,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `redis-cli --cluster reshard` of `slot_count` slots from node `from` to node `to` (ids),
    /// then waits until the cluster agrees and is `ok`. Returns how long it took.
    pub(crate) async fn reshard(&self, slot_count: usize, from: &str, to: &str) -> Duration {
        let start = Instant::now();
        let at = format!("127.0.0.1:{}", self.live_ports()[0]);
        let n = slot_count.to_string();
        let args =
            ["--cluster", "reshard", &at, "--cluster-from", from, "--cluster-to", to, "--cluster-slots", &n, "--cluster-yes"];
        let (ok, out) = run_cli(&args.map(String::from)).await;
        if !ok || out.contains("[ERR]") || out.contains("Value check failed") {
            panic!("redis-cli --cluster reshard failed:\n{}\n{}", reshard_failure(&out), self.logs());
        }
        self.settle("after the reshard").await;
        start.elapsed()
    }

    /// How many slots [`RedisCluster::move_slot_of`] would move to get this key's slot across.
    pub(crate) fn reshard_cost(&self, key_or_slot: &str) -> usize {
        let slot = self.slot_of(key_or_slot);
        self.primary_of(slot).slot_list().iter().position(|&s| s == slot).expect("the primary serves the slot") + 1
    }

    /// Moves the slot of `key_or_slot` to another primary with `reshard`, which takes a
    /// node's lowest slots first: so it moves every slot of that primary up to this one.
    pub(crate) async fn move_slot_of(&self, key_or_slot: &str) -> SlotMove {
        let slot = self.slot_of(key_or_slot);
        let from = self.primary_of(slot);
        let to = self
            .topology()
            .into_iter()
            .find(|n| n.primary && !n.failing && n.id != from.id && !n.slots.is_empty())
            .expect("another primary");
        let slots_moved = self.reshard_cost(key_or_slot);
        let took = self.reshard(slots_moved, &from.id, &to.id).await;
        let now = self.primary_of(slot);
        assert_eq!(now.id, to.id, "slot {slot} moved from {} to {}: {:?}", from.port, to.port, self.topology());
        SlotMove { slot, from: from.port, to: to.port, slots_moved, took }
    }

    /// Waits until every live node says `cluster_state:ok`, agrees on who serves every slot,
    /// and every replica is in sync.
    async fn settle(&self, what: &str) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            if self.all_ok() && self.views_agree() && self.replicas_synced() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not settle {what} within {SETTLE_TIMEOUT:?}: {:?}\n{}",
                self.topology(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn all_ok(&self) -> bool {
        self.live_ports().iter().all(|&p| cli_at(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    }

    /// Every live node maps the slots to the same primaries.
    fn views_agree(&self) -> bool {
        let map = |p: u16| -> Vec<(u16, u16, u16)> {
            let mut v: Vec<_> = self
                .topology_at(p)
                .iter()
                .filter(|n| n.primary && !n.failing)
                .flat_map(|n| n.slots.iter().map(move |&(a, b)| (a, b, n.port)))
                .collect();
            v.sort_unstable();
            v
        };
        let live = self.live_ports();
        let first = map(live[0]);
        let covered: usize = first.iter().map(|&(a, b, _)| usize::from(b - a) + 1).sum();
        covered == 16384 && live.iter().all(|&p| map(p) == first)
    }

    /// Every live replica's link to its primary is up.
    fn replicas_synced(&self) -> bool {
        self.live_ports().iter().all(|&p| {
            let info = cli_at(p, &["INFO", "replication"]);
            !info.contains("role:slave") || info.contains("master_link_status:up")
        })
    }

    /// The tail of every node's log, for a failure message.
    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let log = n.log();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            out.push_str(&format!("---- redis node {} ({}) ----\n", n.port, n.dir.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                stop(&mut c, Signal::SIGKILL, Duration::from_secs(5));
            }
        }
    }
}

/// What went wrong in a failed `reshard`: its output without the per-slot lines (but the
/// last), and, for the slot it stopped at, the keys both nodes hold with their values on each.
fn reshard_failure(out: &str) -> String {
    let plain = crate::common::strip_ansi(out);
    let moving = |l: &&str| l.trim_start().starts_with("Moving slot");
    let last = plain.lines().rev().find(moving).unwrap_or("").to_string();
    let mut text: Vec<String> = plain.lines().filter(|l| !moving(l) && !l.trim().is_empty()).map(String::from).collect();
    text.push(format!("stopped at: {last}"));
    // "Moving slot N from 127.0.0.1:A to 127.0.0.1:B: ..."
    let f: Vec<&str> = last.split_whitespace().collect();
    let port = |i: usize| f.get(i).and_then(|a| a.trim_end_matches(':').rsplit(':').next()).and_then(|p| p.parse::<u16>().ok());
    if let (Some(slot), Some(from), Some(to)) = (f.get(2), port(4), port(6)) {
        let keys = |p: u16| -> BTreeMap<String, ()> {
            cli_at(p, &["CLUSTER", "GETKEYSINSLOT", slot, "100000"]).lines().map(|k| (k.to_string(), ())).collect()
        };
        let (a, b) = (keys(from), keys(to));
        let both: Vec<&String> = a.keys().filter(|k| b.contains_key(*k)).collect();
        text.push(format!("slot {slot}: {} keys left on {from}, {} on {to}, {} on both: {both:?}", a.len(), b.len(), both.len()));
        for k in both.into_iter().take(5) {
            for p in [from, to] {
                let kind = asking_at(p, &[&["TYPE", k]]);
                let read: &[&str] = match kind.trim_matches('"') {
                    "hash" => &["HGETALL", k],
                    "zset" => &["ZRANGE", k, "0", "-1", "WITHSCORES"],
                    "set" => &["SMEMBERS", k],
                    _ => &["GET", k],
                };
                text.push(format!("  {k} on {p}: {kind}, PTTL {}: {}", asking_at(p, &[&["PTTL", k]]), asking_at(p, &[read])));
            }
        }
    }
    text.join("\n")
}

/// Runs commands on one node, each after `ASKING` (so an importing node answers too); their
/// raw replies, joined by ` | `.
fn asking_at(port: u16, commands: &[&[&str]]) -> String {
    use std::io::Write;
    let mut input = String::new();
    for c in commands {
        input.push_str("ASKING\n");
        input.push_str(&c.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(" "));
        input.push('\n');
    }
    let child = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--no-raw"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return "redis-cli did not start".into() };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    out.lines().filter(|l| *l != "OK").collect::<Vec<_>>().join(" | ")
}

/// Starts one node in `dir` on `port`; `None` if it exits (its port or bus port was taken).
fn spawn_node(dir: PathBuf, port: u16) -> Option<Node> {
    std::fs::create_dir_all(&dir).expect("create node dir");
    let log = dir.join("redis.log");
    let _ = std::fs::remove_file(&log);
    let p = port.to_string();
    let mut child = Command::new(require("redis-server", "redis-server"))
        .args(["--bind", "127.0.0.1", "--port", &p, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
        .args(["--cluster-node-timeout", "1000", "--appendonly", "no", "--save", ""])
        // A replica may always stand in for its primary, however long it was cut off.
        .args(["--cluster-replica-validity-factor", "0"])
        // Replicas sync at once instead of waiting 5 s for more replicas to join.
        .args(["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    // Give a node that cannot bind a moment to exit, then wait for both of its ports.
    std::thread::sleep(Duration::from_millis(50));
    if let Ok(Some(_)) = child.try_wait() {
        return None;
    }
    wait_listening(port, &mut child, "redis-server (cluster node)", || std::fs::read_to_string(&log).unwrap_or_default());
    wait_listening(port + BUS_OFFSET, &mut child, "redis-server cluster bus", || {
        std::fs::read_to_string(&log).unwrap_or_default()
    });
    if let Ok(Some(_)) = child.try_wait() {
        return None;
    }
    Some(Node { port, dir, child: Some(child) })
}

pub(crate) fn seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32) | 1
}

/// A port in [`PORTS`] whose bus port is free too, not in `taken`: both bound for a moment.
pub(crate) fn pick_port(rng: &mut u64, taken: &[u16]) -> Option<u16> {
    for _ in 0..200 {
        // xorshift64
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let span = u64::from(PORTS.end - PORTS.start);
        let port = PORTS.start + u16::try_from(*rng % span).expect("span fits u16");
        if taken.contains(&port) {
            continue;
        }
        let a = std::net::TcpListener::bind(("127.0.0.1", port));
        let b = std::net::TcpListener::bind(("127.0.0.1", port + BUS_OFFSET));
        if a.is_ok() && b.is_ok() {
            return Some(port);
        }
    }
    None
}

/// `redis-cli -c -p PORT --raw ARGS...`, output without the trailing newline.
fn cli_at(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-c", "-p", &port.to_string(), "--raw"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run redis-cli: {e} (apt-get install redis-tools)"));
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// Runs `redis-cli ARGS...` (a `--cluster` command) without blocking the runtime, bounded;
/// returns whether it succeeded and its output.
async fn run_cli(args: &[String]) -> (bool, String) {
    let child = tokio::process::Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run redis-cli: {e} (apt-get install redis-tools)"));
    let out = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("redis-cli {} did not finish within {CLI_TIMEOUT:?}", args.join(" ")))
        .expect("redis-cli runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
