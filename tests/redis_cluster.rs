//! Cluster mode on a real Redis Cluster (three primaries with one replica each) with three
//! instances behind nginx round-robin, all started by the tests: the SDK clients' full scenario
//! and `kill -9` of an owner (the same scenarios as on one Redis, tests/cluster.rs), a Redis
//! primary killed during traffic (its replica takes over), and the slot of a live session moved
//! with `redis-cli --cluster reshard` during traffic. Also the Redis Cluster harness itself.
//! Run with `--nocapture` to see the failover and reshard figures.

mod cluster_support;
mod common;
mod support_nginx;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster_support::scenarios::Deployment;
use cluster_support::traffic::{self, Stop, Tally};
use cluster_support::{failover, poll, scenarios, OnRedisCluster, RedisCluster};
use common::{echo_server, everything_stdio, require_node, Legacy, McpSession, LEGACY_PROTOCOL};
use tokio::task::JoinHandle;

/// Both servers, as in tests/cluster.rs: the bundled echo server and server-everything.
fn config() -> String {
    format!("{}\n{}", echo_server("echo"), everything_stdio("everything"))
}

// ---- the scenarios of tests/cluster.rs, on a Redis Cluster ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_run_the_full_scenario_through_nginx_on_a_redis_cluster() {
    require_node();
    let d = OnRedisCluster::start(&config(), 3).await;
    scenarios::round_robin_sdk_clients(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_owner_legacy_sse_clients_resume_on_a_redis_cluster() {
    require_node();
    let mut d = OnRedisCluster::start(&config(), 3).await;
    failover::kill_9_of_the_owner_legacy_sse(&mut d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_owner_streamable_http_client_resumes_on_a_redis_cluster() {
    require_node();
    let mut d = OnRedisCluster::start(&config(), 3).await;
    failover::kill_9_of_the_owner_streamable_http(&mut d).await;
}

// ---- Redis failing over and slots moving under traffic --------------------------------------------

/// Sessions with echo traffic running through nginx.
struct Traffic {
    stop: Stop,
    legacy: Vec<JoinHandle<(Legacy, Tally)>>,
    streamable: Vec<JoinHandle<Tally>>,
    /// A legacy session whose slot is served by another primary than its owner's instance
    /// keys (lease and inbox, `{i:<owner>}`), so that the two can be broken one at a time.
    sid: String,
    owner: String,
    /// Every legacy session and its owner.
    sessions: Vec<(String, String)>,
    since: Instant,
}

/// The key of a session's record, and of an instance's lease (whose slot is its inbox's too).
fn record_key(sid: &str) -> String {
    format!("mcpb:{{{sid}}}:rec")
}
fn lease_key(instance: &str) -> String {
    format!("mcpb:{{i:{instance}}}:lease")
}
fn epoch_key(instance: &str) -> String {
    format!("mcpb:{{i:{instance}}}:epoch")
}

/// Opens legacy sessions through nginx until there are three and one of them is a [`Traffic::sid`],
/// two Streamable HTTP sessions, and starts echo traffic on all of them.
async fn start_traffic(d: &OnRedisCluster) -> Traffic {
    let base = d.nginx.base();
    let (mut sessions, mut owners, mut chosen) = (Vec::new(), Vec::new(), None);
    for _ in 0..15 {
        let s = Legacy::open_as(&base, "echo", None, LEGACY_PROTOCOL).await;
        let owner = poll(Duration::from_secs(10), || d.redis.owner(&s.sid)).await.expect("the session's record names its owner");
        let apart = d.redis.primary_of(d.redis.slot_of(&record_key(&s.sid))).id
            != d.redis.primary_of(d.redis.slot_of(&lease_key(&owner))).id;
        if chosen.is_none() && apart {
            chosen = Some((s.sid.clone(), owner.clone()));
        }
        owners.push((s.sid.clone(), owner));
        sessions.push(s);
        if sessions.len() >= 4 && chosen.is_some() {
            break;
        }
    }
    let (sid, owner) = chosen.expect("a session whose slot is apart from its owner's lease within 15 tries");
    let (stop, since) = (Stop::default(), Instant::now());
    let legacy = sessions.into_iter().map(|s| tokio::spawn(traffic::legacy(s, base.clone(), 100, stop.clone(), since))).collect();
    let mut streamable = Vec::new();
    for _ in 0..2 {
        let s = McpSession::open(&d.nginx.url("/mcp/echo")).await;
        streamable.push(tokio::spawn(traffic::streamable(s, 100, stop.clone(), since)));
    }
    Traffic { stop, legacy, streamable, sid, owner, sessions: owners, since }
}

impl Traffic {
    fn at(&self) -> u128 {
        self.since.elapsed().as_millis()
    }

    /// Stops the traffic and checks it: every request answered once, the session of
    /// [`Traffic::sid`] logged in Redis whole (what a successor would replay), every instance
    /// up and ready.
    async fn finish(self, d: &OnRedisCluster) {
        self.stop.stop();
        let mut tallies = Vec::new();
        let mut chosen = None;
        for h in self.legacy {
            let (s, t) = h.await.expect("the traffic task did not panic");
            if s.sid == self.sid {
                chosen = Some(t.first..t.first + t.sent);
            }
            tallies.push(t);
        }
        for h in self.streamable {
            tallies.push(h.await.expect("the traffic task did not panic"));
        }
        for t in &tallies {
            eprintln!("TRAFFIC {}", t.summary());
        }
        for t in tallies.iter().filter(|t| !t.failures.is_empty()) {
            let requests = d.nginx.requests();
            let mine: Vec<String> = requests
                .iter()
                .filter(|r| r.session == t.sid)
                .map(|r| format!("{} {} {}", d.id_at(&r.upstream).unwrap_or(&r.upstream), r.method, r.status))
                .collect();
            eprintln!("{}: its last requests through nginx: {:?}", t.label, &mine[mine.len().saturating_sub(12)..]);
            eprintln!("{}: its record in Redis now: {:?}", t.label, d.redis.record(&t.sid));
            for i in &d.instances {
                for l in i.lines_with(&[&t.sid]).iter().filter(|l| !l.contains("replayed=0") && !l.contains("reason=completed")) {
                    eprintln!("{}: {} log: {l}", t.label, i.name);
                }
            }
        }
        if tallies.iter().any(|t| !t.failures.is_empty()) {
            for i in &d.instances {
                let (lease, epoch) = (d.redis.cli(&["GET", &lease_key(&i.name)]), d.redis.cli(&["GET", &epoch_key(&i.name)]));
                eprintln!(
                    "instance {}: lease {lease:?}, epoch counter {epoch:?}; fencing: {:?}",
                    i.name,
                    i.lines_with(&["fenced"])
                );
            }
        }
        for t in &tallies {
            t.assert_clean();
        }
        let ids = chosen.expect("the chosen session ran traffic");
        let missing = || {
            let log = d.redis.stream_log(&self.sid, 0);
            let answered: BTreeSet<u64> =
                log.iter().filter(|m| m.get("method").is_none()).filter_map(|m| m["id"].as_u64()).collect();
            ids.clone().filter(|id| !answered.contains(id)).collect::<Vec<u64>>()
        };
        let logged = poll(Duration::from_secs(10), || missing().is_empty().then_some(())).await;
        assert!(logged.is_some(), "session {}: every answer is in its event log in Redis: missing {:?}", self.sid, missing());
        // What Redis failing over or moving slots cost the instances: leases lost, sessions moved.
        for i in &d.instances {
            let (fenced, taken) = (i.count("instance fenced"), i.count("session taken over"));
            eprintln!("instance {}: fenced {fenced} times, took {taken} sessions over", i.name);
        }
        eprintln!("owner of {}: {} before, {:?} after", self.sid, self.owner, d.redis.owner(&self.sid));
        for i in &d.instances {
            let log = i.log();
            assert!(!log.contains("panicked"), "instance {} panicked:\n{log}", i.name);
            let (_, ready) = i.readyz().await;
            assert_eq!(ready["status"], "ready", "instance {} is ready again: {ready}", i.name);
        }
    }
}

// While a primary fails over, leases on it lapse (instances rejoin with new epochs or take
// sessions over), writes and publishes wait for the replica, and inboxes on it lose their
// subscription for a moment. Each request is still answered once: answers leave an owner only
// after their journal writes (`session/hold.rs`), held streams ask their owners for what they
// missed (`cluster/resync.rs`), and a request sent again on its stream is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_primary_killed_during_traffic_loses_no_request() {
    let mut d = OnRedisCluster::start(&echo_server("echo"), 3).await;
    let t = start_traffic(&d).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The primary of a live session's slot (its record, pending requests and event logs), then
    // the primary of its owner's lease and inbox (sharded pub/sub).
    for (key, what) in [
        (record_key(&t.sid), format!("session {}'s slot", t.sid)),
        (lease_key(&t.owner), format!("{}'s lease and inbox", t.owner)),
    ] {
        let victim = d.redis.primary_of(d.redis.slot_of(&key)).id;
        let on_it: Vec<&str> = d
            .instances
            .iter()
            .map(|i| i.name.as_str())
            .filter(|i| d.redis.primary_of(d.redis.slot_of(&lease_key(i))).id == victim)
            .collect();
        let (took, new) = d.redis.kill_primary_of(&key).await;
        eprintln!(
            "FAILOVER at {} ms: the primary of {what} (and of the leases and inboxes of {on_it:?}) killed; replica {new} took over in {} ms",
            t.at(),
            took.as_millis()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    t.finish(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_the_slot_of_a_live_session_during_traffic_loses_no_request() {
    let d = OnRedisCluster::start(&echo_server("echo"), 3).await;
    let mut t = start_traffic(&d).await;
    // `reshard` moves a primary's lowest slots first: of the live sessions and of the
    // instances, the ones whose slots it reaches soonest.
    let cheapest =
        |keys: Vec<(String, String)>| keys.into_iter().min_by_key(|(key, _)| d.redis.reshard_cost(key)).expect("a live session");
    let (key, sid) = cheapest(t.sessions.iter().map(|(sid, _)| (record_key(sid), sid.clone())).collect());
    // Every instance's inbox is in use: owners get forwarded requests on it, and instances
    // holding a Streamable HTTP answer stream for another owner get its frames.
    let (inbox, instance) = cheapest(d.instances.iter().map(|i| (lease_key(&i.name), i.name.clone())).collect());
    t.owner = t.sessions.iter().find(|(s, _)| *s == sid).map(|(_, o)| o.clone()).expect("its owner");
    t.sid = sid;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The slot of a live session (its record, pending requests and event logs), then the slot
    // of an instance's lease and inbox (sharded pub/sub: its subscription moves too).
    for (key, what) in [(key, "a live session"), (inbox, &*format!("{instance}'s lease and inbox"))] {
        let m = d.redis.move_slot_of(&key).await;
        eprintln!(
            "RESHARD at {} ms: slot {} of {what} ({key}) moved {} -> {} with {} slots in {} ms",
            t.at(),
            m.slot,
            m.from,
            m.to,
            m.slots_moved,
            m.took.as_millis()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    t.finish(&d).await;
}

// ---- the harness ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_cluster_harness_fails_over_and_reshards() {
    let mut rc = RedisCluster::start().await;
    let topo = rc.topology();
    assert_eq!(topo.len(), 6, "six nodes: {topo:?}");
    let primaries: Vec<_> = topo.iter().filter(|n| n.primary).collect();
    assert_eq!(primaries.len(), 3, "three primaries: {topo:?}");
    for p in &primaries {
        assert!(topo.iter().any(|r| r.primary_id.as_deref() == Some(&p.id)), "{} has a replica: {topo:?}", p.port);
    }

    // Keys of ten sessions (one hash tag each) land on every primary; `-c` follows redirects.
    let keys: Vec<String> = (0..10).map(|i| format!("mcpb:{{s{i}}}:rec")).collect();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(rc.cli(&["HSET", k, "owner", &format!("b{i}")]), "1", "HSET {k}");
    }
    let served_by: BTreeSet<u16> = keys.iter().map(|k| rc.primary_of(rc.slot_of(k)).port).collect();
    assert_eq!(served_by.len(), 3, "the keys are spread over the three primaries: {served_by:?}");
    assert_eq!(rc.slot_of("mcpb:{s3}:rec"), rc.slot_of("mcpb:{s3}:log:0"), "one session's keys share a slot");

    // Move the slot of one key with reshard: the key moves with it.
    let moved = rc.move_slot_of(&keys[1]).await;
    eprintln!(
        "RESHARD: slot {} moved {} -> {} ({} slots) in {} ms",
        moved.slot,
        moved.from,
        moved.to,
        moved.slots_moved,
        moved.took.as_millis()
    );
    assert_eq!(rc.primary_of(moved.slot).port, moved.to);
    assert_eq!(rc.cli(&["HGET", &keys[1], "owner"]), "b1", "the key moved with its slot");

    // Kill the primary of another key: its replica takes over with the data.
    let victim = rc.primary_of(rc.slot_of(&keys[2])).port;
    let (took, new) = rc.kill_primary_of(&keys[2]).await;
    eprintln!("FAILOVER: primary {victim} killed, replica {new} serves its slots after {} ms", took.as_millis());
    assert_ne!(new, victim);
    assert!(!rc.live_ports().contains(&victim));
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(rc.cli(&["HGET", k, "owner"]), format!("b{i}"), "{k} survived the failover");
    }

    // A reshard still works with the dead node in the cluster's table.
    let moved = rc.move_slot_of(&keys[4]).await;
    eprintln!(
        "RESHARD after failover: slot {} moved {} -> {} ({} slots) in {} ms",
        moved.slot,
        moved.from,
        moved.to,
        moved.slots_moved,
        moved.took.as_millis()
    );
    assert_eq!(rc.cli(&["HGET", &keys[4], "owner"]), "b4");
}
