//! Cluster mode on a Redis primary/replica pair watched by three Sentinels (`--redis-sentinel`),
//! all started by the tests: the primary is killed with `kill -9`, Sentinel promotes the replica,
//! and the sessions go on. Two Python SDK sessions (legacy SSE and Streamable HTTP, through
//! round-robin nginx) pause mid-way (`py_client.py --hold`) across the failover and then finish
//! the full scenario; a raw legacy session gets POSTs through every instance while Redis fails
//! over (each is answered once, or refused with a 503 and never delivered) and after it, and only
//! its owner runs its upstream. The harness itself (tests/cluster_support/sentinel.rs) is
//! checked first, without the bridge. Run with `--nocapture` to see the failover times.

mod cluster_support;
mod common;
mod support_nginx;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster_support::sentinel::{Sentinel, MASTER};
use cluster_support::{poll, Balancer};
use common::{echo_server, everything_stdio, run_client, Bridge, ClientRun, Launch, Legacy, Sdk, TempDir, LEGACY_PROTOCOL};
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);
/// Bound on one echo's answer: milliseconds normally, a takeover at worst.
const ANSWER: Duration = Duration::from_secs(15);

/// How far the replica is behind the primary, in bytes of the replication stream.
fn replication_lag(s: &Sentinel) -> Option<i64> {
    let offset = |info: &str, field: &str| -> Option<i64> {
        info.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().parse().ok())
    };
    let primary = offset(&s.cli(&["INFO", "replication"]), "master_repl_offset:")?;
    let replica = std::process::Command::new("redis-cli")
        .args(["-p", &s.replica_port().to_string(), "INFO", "replication"])
        .output()
        .ok()?;
    Some(primary - offset(&String::from_utf8_lossy(&replica.stdout), "slave_repl_offset:")?)
}

/// Waits (bounded) until the replica has every write the primary had when this was called,
/// so that a `kill -9` of the primary loses nothing the test relies on (Redis replication is
/// asynchronous: what the replica had not received is lost in a real failover too).
async fn replica_caught_up(s: &Sentinel) {
    let caught = poll(Duration::from_secs(10), || replication_lag(s).filter(|&lag| lag <= 0)).await;
    assert!(caught.is_some(), "the replica caught up with the primary (lag {:?})", replication_lag(s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_fails_over_to_the_replica() {
    let mut s = Sentinel::start();
    let (first, replica) = (s.primary_port(), s.replica_port());
    assert_eq!(s.master_ports(), vec![Some(first); 3], "every Sentinel names the first primary");
    assert_eq!(s.cli(&["SET", "before", "1"]), "OK");
    replica_caught_up(&s).await;
    let took = s.kill_primary().await;
    eprintln!("SENTINEL FAILOVER: replica {replica} promoted {} ms after kill -9 of primary {first}", took.as_millis());
    assert_eq!(s.primary_port(), replica);
    assert!(s.cli(&["INFO", "replication"]).contains("role:master"), "the replica is the primary now");
    assert_eq!(s.cli(&["GET", "before"]), "1", "what was written before the failover is there");
    assert_eq!(s.cli(&["SET", "after", "2"]), "OK", "the new primary takes writes");
}

// ---- the bridge on Sentinel -----------------------------------------------------------------

/// Three instances `b1`..`b3` in Sentinel mode, behind round-robin nginx.
struct SentinelCluster {
    // Dropped in this order: the balancer, the instances, then Redis.
    nginx: Balancer,
    instances: Vec<Bridge>,
    redis: Sentinel,
}

impl SentinelCluster {
    async fn start(config: &str, n: usize) -> SentinelCluster {
        let redis = Sentinel::start();
        let urls = redis.sentinel_urls();
        let mut instances = Vec::with_capacity(n);
        for i in 1..=n {
            let id = format!("b{i}");
            let args = ["--instance-id", &id, "--redis-sentinel", &urls, "--redis-sentinel-master", MASTER];
            instances.push(Bridge::launch(config, Launch { name: &id, args: &args, ..Launch::default() }).await);
        }
        let nginx = Balancer::start(&instances.iter().map(|i| i.port).collect::<Vec<_>>());
        SentinelCluster { nginx, instances, redis }
    }

    /// The ids of the sessions that have a record on the current primary.
    fn records(&self) -> BTreeSet<String> {
        let keys = self.redis.cli(&["KEYS", "mcpb:{*}:rec"]);
        keys.lines().filter_map(|k| k.strip_prefix("mcpb:{")?.strip_suffix("}:rec").map(String::from)).collect()
    }

    fn id_at(&self, addr: &str) -> Option<&str> {
        let port: u16 = addr.rsplit(':').next()?.parse().ok()?;
        self.instances.iter().find(|i| i.port == port).map(|i| i.name.as_str())
    }

    /// The owner instance named in a session's record on the current primary.
    fn owner(&self, sid: &str) -> String {
        self.redis.cli(&["HGET", &format!("mcpb:{{{sid}}}:rec"), "owner"])
    }
}

fn ready(r: &Value) -> bool {
    r["status"] == "ready" && r["redis"] == "ok"
}

/// Waits until the client paused at its hold file (or panics with its result if it ended first).
async fn held(path: &Path, run: &tokio::task::JoinHandle<ClientRun>) {
    let deadline = Instant::now() + MINUTE;
    while !path.exists() {
        assert!(!run.is_finished(), "the client ended before it paused at {}", path.display());
        assert!(Instant::now() < deadline, "the client paused at {} within {MINUTE:?}", path.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A POST sent while Redis failed over.
#[derive(Debug)]
struct Probe {
    id: u64,
    via: String,
    status: u16,
    body: String,
    took: Duration,
}

/// Sends an echo for `s` every 250 ms for `span`, through each instance in turn, without
/// waiting for one to finish before the next; returns what each POST got.
async fn probe_during(s: &Legacy, instances: &[(String, String)], span: Duration) -> Vec<Probe> {
    let start = Instant::now();
    let mut sent = Vec::new();
    for n in 0..(span.as_millis() / 250) as u64 {
        tokio::time::sleep_until((start + Duration::from_millis(250 * n)).into()).await;
        let (via, base) = instances[n as usize % instances.len()].clone();
        let id = 100 + n;
        let post = s.post_via(&base, &common::echo_call(id, &format!("during-{id}")));
        sent.push((
            id,
            via,
            tokio::spawn(async move {
                let t = Instant::now();
                (post.await, t.elapsed())
            }),
        ));
    }
    let mut probes = Vec::new();
    for (id, via, task) in sent {
        let (result, took) = task.await.expect("the probe task");
        let (status, body) = result.unwrap_or_else(|e| (0, e.to_string()));
        probes.push(Probe { id, via, status, body, took });
    }
    probes
}

/// Every probe was either accepted and answered once on the stream, or refused with a 503
/// and a JSON-RPC error and never delivered: a client can tell which, and retry safely. The
/// owner (b1) accepts its own while its lease is surely valid, and refuses once it cannot
/// confirm that with Redis; an answer it accepted and held meanwhile reaches the client once it
/// has claimed the session back (the other instances wait for that rather than take it over).
async fn check_probes(s: &mut Legacy, probes: &[Probe], base: &str, resumes: &mut usize) {
    for p in probes {
        eprintln!("probe {} via {}: {} after {} ms {}", p.id, p.via, p.status, p.took.as_millis(), p.body);
    }
    for p in probes {
        match p.status {
            202 => {
                let m = s.answer_resuming(p.id, base, ANSWER, resumes).await;
                assert_eq!(common::echo_text(&m), format!("during-{}", p.id), "{p:?}");
            }
            503 => {
                let err: Value = serde_json::from_str(&p.body).unwrap_or_else(|e| panic!("a JSON body ({e}): {p:?}"));
                assert!(err["error"]["code"].is_i64(), "a JSON-RPC error: {p:?}");
            }
            _ => panic!("a POST during the failover is accepted (202) or refused (503): {p:?}"),
        }
    }
    while s.is_connected() {
        let Ok(Some(m)) = s.next(Duration::from_millis(500)).await else { break };
        assert!(m.get("method").is_some(), "session {}: no answer after the last one: {m}", s.sid);
    }
    for p in probes {
        let want = usize::from(p.status == 202);
        assert_eq!(s.responses_to(p.id), want, "a probe is answered once if accepted, never if refused: {p:?}");
    }
    let refused: Vec<String> = probes
        .iter()
        .filter(|p| p.status != 202)
        .map(|p| format!("{} via {} after {} ms", p.id, p.via, p.took.as_millis()))
        .collect();
    let slowest = probes.iter().filter(|p| p.status == 202).map(|p| p.took.as_millis()).max().unwrap_or(0);
    eprintln!(
        "POSTs during the failover: {} accepted and answered once (slowest {slowest} ms), refused with 503: {refused:?}",
        probes.len() - refused.len()
    );
}

/// Only the owner runs the session's upstream: of the children every instance started for
/// it, one at most is alive (after a bounded wait for a fenced instance to end its own),
/// and it belongs to the instance the record names.
async fn one_live_upstream(c: &SentinelCluster, sid: &str) {
    let started: Vec<(String, i32)> = c
        .instances
        .iter()
        .flat_map(|i| {
            i.lines_with(&["upstream started", &format!("session={sid}")])
                .iter()
                .filter_map(|l| l.split(" pid=").nth(1)?.split(' ').next()?.parse().ok())
                .map(|pid| (i.name.clone(), pid))
                .collect::<Vec<_>>()
        })
        .collect();
    let live = || started.iter().filter(|(_, pid)| common::alive(*pid)).cloned().collect::<Vec<_>>();
    let one = poll(Duration::from_secs(5), || (live().len() <= 1).then_some(())).await;
    assert!(
        one.is_some(),
        "session {sid}: one instance at most runs its upstream; live (instance, pid): {:?} of {started:?}",
        live()
    );
    let owner = c.owner(sid);
    assert!(live().iter().all(|(i, _)| *i == owner), "session {sid}: its live upstream is its owner's ({owner}): {:?}", live());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_sentinel_failover_through_nginx() {
    common::require_node();
    common::require_python();
    let config = format!("{}\n{}", echo_server("echo"), everything_stdio("everything"));
    let mut c = SentinelCluster::start(&config, 3).await;
    for i in &c.instances {
        let (_, r) = i.readyz().await;
        assert!(ready(&r) && r["mode"] == "cluster", "instance {} is ready on Sentinel: {r}", i.name);
    }

    // Two Python SDK sessions (both transports) through nginx, paused mid-session.
    let holds = TempDir::new("sentinel-holds");
    let repeat = 4;
    let mut runs = Vec::new();
    for transport in ["sse", "streamable"] {
        let url = c.nginx.url(if transport == "sse" { "/sse/everything" } else { "/mcp/everything" });
        let hold: PathBuf = holds.path().join(transport);
        let args: Vec<String> = vec![
            "--id-tag".into(),
            format!("py-{transport}"),
            "--repeat".into(),
            repeat.to_string(),
            "--hold".into(),
            hold.display().to_string(),
        ];
        let run = tokio::spawn(async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_client(Sdk::Py, transport, &url, &args).await
        });
        runs.push((hold, run));
    }
    for (hold, run) in &runs {
        held(hold, run).await;
    }
    // And a raw legacy session owned by b1, whose POSTs go to each instance in turn.
    let mut raw = Legacy::open_as(&c.instances[0].base(), "echo", None, LEGACY_PROTOCOL).await;
    let bases: Vec<String> = c.instances.iter().map(Bridge::base).collect();
    for (k, base) in bases.iter().enumerate() {
        let id = 10 + k as u64;
        assert_eq!(raw.echo_via(base, id, &format!("before-{k}")).await, format!("before-{k}"));
    }
    assert_eq!(c.owner(&raw.sid), "b1", "the instance that opened the raw session owns it");

    let records = c.records();
    assert!(records.len() >= 3, "the three sessions have records: {records:?}");
    replica_caught_up(&c.redis).await;
    // server-everything asks each client for its roots 350 ms after it is initialized: let
    // that exchange end, so that the SDK sessions are idle while Redis fails over (the POSTs
    // made during the failover are the raw session's probes below).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let named: Vec<(String, String)> = c.instances.iter().map(|i| (i.name.clone(), i.base())).collect();
    let (took, probes) = tokio::join!(c.redis.kill_primary(), probe_during(&raw, &named, Duration::from_secs(4)));
    let failed_over = Instant::now();
    let mut recovered = Vec::new();
    for i in &c.instances {
        let deadline = Instant::now() + MINUTE;
        loop {
            let (_, r) = i.readyz().await;
            if ready(&r) {
                break;
            }
            assert!(Instant::now() < deadline, "instance {}: /readyz is ready again within {MINUTE:?}; last: {r}", i.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        recovered.push(failed_over.elapsed().as_millis());
    }
    let kept = c.records();
    assert!(records.is_subset(&kept), "every session record survived the failover: {records:?} then {kept:?}");
    eprintln!(
        "SENTINEL FAILOVER: replica promoted {} ms after kill -9 of the primary; /readyz ready again on b1..b3 \
         within {recovered:?} ms after that",
        took.as_millis()
    );

    // The raw session goes on: through its owner and the two others (forwarded). Its stream
    // may have ended if the session moved while every lease had lapsed (a request reached
    // another instance before b1 renewed): a legacy client resumes with Last-Event-ID then.
    let mut resumes = 0;
    let resume_at = c.nginx.base();
    for (k, base) in bases.iter().enumerate() {
        let id = 20 + k as u64;
        let (status, body) = raw.post_via(base, &common::echo_call(id, &format!("after-{k}"))).await.expect("POST");
        assert_eq!(status, 202, "echo {id} via {base} after the failover: {body}");
        let m = raw.answer_resuming(id, &resume_at, ANSWER, &mut resumes).await;
        assert_eq!(common::echo_text(&m), format!("after-{k}"));
    }
    check_probes(&mut raw, &probes, &resume_at, &mut resumes).await;
    for id in [1, 10, 11, 12, 20, 21, 22] {
        assert_eq!(raw.responses_to(id), 1, "raw session: answer {id} exactly once: {:?}", raw.received);
    }
    one_live_upstream(&c, &raw.sid).await;
    eprintln!("raw session: owner {} after the failover; its stream was resumed {resumes} times", c.owner(&raw.sid));
    // A new session can be registered on the new primary.
    let mut fresh = Legacy::open_as(&c.nginx.base(), "echo", None, LEGACY_PROTOCOL).await;
    assert_eq!(fresh.echo_via(&c.nginx.base(), 2, "fresh").await, "fresh");
    assert!(!c.owner(&fresh.sid).is_empty(), "the new session's record is on the new primary");

    // The SDK sessions go on where they paused: more echoes, then the rest of the full scenario.
    let mark = c.nginx.requests().len();
    for (hold, _) in &runs {
        std::fs::remove_file(hold).expect("release the client");
    }
    let mut done = Vec::new();
    for (_, run) in runs {
        done.push(run.await.expect("the client task"));
    }
    let requests = c.nginx.requests();
    for run in &done {
        let v = run.ok();
        let l = &run.label;
        assert_eq!(v["echoCount"], 2 * repeat, "{l}: every echo came back, before and after the failover: {v}");
        assert_eq!(v["sum"].as_f64(), Some(5.0), "{l}");
        assert!(v["progress"].as_u64().unwrap_or(0) >= 3, "{l}: progress after the failover: {v}");
        assert_eq!(v["samplingRequests"], 1, "{l}: a sampling round trip after the failover: {v}");
        let sid = v["sessionId"].as_str().expect("the client reports its session id");
        assert!(records.contains(sid), "{l}: its session {sid} was one of those whose records survived: {records:?}");
        // After the failover the session's requests still spread over the instances: the ones
        // that did not own it forwarded them, and they were answered.
        let after: Vec<_> = requests[mark..].iter().filter(|r| r.session == sid).collect();
        let on: BTreeSet<&str> = after.iter().filter_map(|r| c.id_at(&r.upstream)).collect();
        assert!(after.len() >= 5, "{l}: the session's requests after the failover ({sid}): {after:?}");
        // The Python sse_client may abort its last POST at exit (499), as tests/cluster.rs explains.
        let (last, earlier) = after.split_last().expect("at least one request");
        assert!(earlier.iter().all(|r| r.status < 400), "{l}: no request failed after the failover: {after:?}");
        assert!(last.status < 400 || last.status == 499, "{l}: the last request did not fail: {after:?}");
        assert!(on.len() >= 2, "{l}: requests after the failover reached several instances (forwarded): {on:?}");
        eprintln!("{l}: {} requests after the failover over {on:?}", after.len());
    }
    for i in &mut c.instances {
        assert!(i.is_running(), "instance {} still runs", i.name);
        let log = i.log();
        assert!(!log.contains("panicked"), "instance {} panicked:\n{log}", i.name);
    }
}
