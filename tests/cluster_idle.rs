//! What idle sessions cost a real redis-server in cluster mode: nothing per second (liveness is
//! one lease per instance, not one per session), and what becomes of a dead instance's
//! sessions that no client comes back for (their records get an expiry; a takeover clears it).

mod cluster_support;
mod common;
mod support_nginx;

use std::time::{Duration, Instant};

use cluster_support::{poll, Cluster, Redis};
use common::{echo_server, Legacy};

/// Sessions opened for the idle measurement (each runs a small echo child).
const SESSIONS: usize = 40;
/// How long Redis's command count is watched.
const WINDOW: Duration = Duration::from_secs(4);

fn commands_processed(redis: &Redis) -> u64 {
    let info = redis.cli_raw(&["INFO", "stats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO stats has total_commands_processed: {info}"))
}

/// Redis commands per second over [`WINDOW`].
async fn rate(redis: &Redis) -> f64 {
    let (start, before) = (Instant::now(), commands_processed(redis));
    tokio::time::sleep(WINDOW).await;
    let after = commands_processed(redis);
    // The two INFO calls are commands too.
    (after - before).saturating_sub(2) as f64 / start.elapsed().as_secs_f64()
}

fn record_pttl(redis: &Redis, sid: &str) -> i64 {
    redis.cli_raw(&["PTTL", &format!("mcpb:{{{sid}}}:rec")]).trim().parse().unwrap_or(-9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_cost_redis_nothing_per_second_and_a_dead_epochs_records_get_an_expiry() {
    let mut c = Cluster::start(&echo_server("echo"), 2, false).await;
    let a = &c.instances[0];
    tokio::time::sleep(Duration::from_secs(1)).await;
    let empty = rate(&c.redis).await;

    let mut sessions = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        sessions.push(Legacy::open(&a.base(), "echo").await);
    }
    // Let the writes of the handshakes settle before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rate(&c.redis).await;
    eprintln!("redis commands/s, 2 instances: {empty:.1} with no session, {idle:.1} with {SESSIONS} idle sessions");
    assert!(
        idle < empty + 8.0,
        "{SESSIONS} idle sessions add no per-second Redis load: {empty:.1}/s without, {idle:.1}/s with them"
    );
    assert!(idle < 40.0, "two idle instances stay far under 100 commands/s each: {idle:.1}/s in all");
    for s in &sessions {
        assert_eq!(record_pttl(&c.redis, &s.sid), -1, "an owned session's record does not expire");
    }

    // The owner dies and no client comes back for most of its sessions: the other instance
    // sweeps the dead epoch and their records get an expiry.
    c.instances[0].kill9();
    let b = &c.instances[1];
    let swept = poll(Duration::from_secs(20), || sessions.iter().all(|s| record_pttl(&c.redis, &s.sid) > 0).then_some(())).await;
    assert!(swept.is_some(), "the dead epoch's records got an expiry; b's log:\n{}", b.log());
    assert!(b.count("swept the sessions of a lapsed instance epoch") >= 1, "b logged the sweep");

    // One client comes back: its session is taken over and its record no longer expires.
    let s = &mut sessions[0];
    s.disconnect();
    s.resume(&b.base()).await.expect("resume on the live instance");
    assert_eq!(s.echo_via(&b.base(), 50, "back").await, "back");
    assert_eq!(c.redis.lease_owner(&s.sid).as_deref(), Some("b2"));
    assert_eq!(record_pttl(&c.redis, &s.sid), -1, "a session taken over does not expire");
    assert!(record_pttl(&c.redis, &sessions[1].sid) > 0, "the others still do");
}
