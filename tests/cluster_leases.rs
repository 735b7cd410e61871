//! Cluster instances addressed directly, without nginx, against a real redis-server: a Redis
//! restart during a session (requests are refused until the instances can confirm their
//! leases again, `/readyz` reports it, and then everything works), Redis losing
//! its data, and lease renewal, forwarding and takeover between two instances.

mod cluster_support;
mod common;
mod support_nginx;

use std::time::{Duration, Instant};

use cluster_support::{poll, Cluster};
use common::{echo_call, echo_server, echo_text, http, Bridge, Legacy, LEGACY_PROTOCOL};
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

// ---- Redis restart -------------------------------------------------------------------------------

/// Polls `/readyz` of `inst` until `want` holds; panics with the last answer after `timeout`.
async fn readyz_until(inst: &Bridge, timeout: Duration, what: &str, want: impl Fn(&Value) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let (_, r) = inst.readyz().await;
        if want(&r) {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "instance {}: /readyz {what} within {timeout:?}; last: {r}", inst.name);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn degraded(r: &Value) -> bool {
    r["status"] == "degraded"
        && r["redis"] == "unavailable"
        && r["degraded"].as_array().is_some_and(|d| d.contains(&json!("redis")))
}

fn ready(r: &Value) -> bool {
    r["status"] == "ready" && r["redis"] == "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_refuses_requests_until_leases_are_confirmed_and_readyz_reports_it() {
    let mut c = Cluster::start(&echo_server("echo"), 3, false).await;
    let (a, b) = (&c.instances[0], &c.instances[1]);
    // A session whose stream and POSTs go to one instance, and a second one on b.
    let mut s = Legacy::open_as(&a.base(), "echo", None, LEGACY_PROTOCOL).await;
    assert_eq!(s.echo_via(&a.base(), 2, "before").await, "before");
    let mut t = Legacy::open_as(&b.base(), "echo", None, LEGACY_PROTOCOL).await;
    // Cross-instance works while Redis is up: a POST for a's session sent to b is forwarded.
    assert_eq!(s.echo_via(&b.base(), 3, "forwarded").await, "forwarded");
    for i in &c.instances {
        assert!(ready(&i.readyz().await.1), "instance {} is ready with Redis up", i.name);
    }

    c.redis.stop();
    let (a, b, idle) = (&c.instances[0], &c.instances[1], &c.instances[2]);
    for i in [a, b, idle] {
        let after = readyz_until(i, MINUTE, "says redis is unavailable", degraded).await;
        eprintln!("instance {}: /readyz degraded {} ms after Redis stopped", i.name, after.as_millis());
    }
    // Past its lease, an instance cannot confirm it still owns its sessions (another instance
    // could take them over once it reaches Redis): even its own sessions' requests are refused
    // with 503 and a JSON-RPC error, and never delivered.
    for i in 0..5 {
        let id = 10 + i;
        for (x, inst) in [(&s, a), (&t, b)] {
            let (status, body) = x.post_via(&inst.base(), &echo_call(id, &format!("down-{i}"))).await.expect("POST message");
            assert_eq!(status, 503, "a request for a session held here while Redis is down: {body}");
            assert!(body.contains("cannot reach Redis to confirm"), "the error says why: {body}");
        }
    }
    // A request for a session owned elsewhere cannot be forwarded: 503 with a JSON-RPC error.
    let (status, body) = s.post_via(&b.base(), &echo_call(20, "cross")).await.expect("POST message");
    assert_eq!(status, 503, "a cross-instance POST while Redis is down: {body}");
    let err: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("a JSON body ({e}): {body}"));
    assert_eq!(err["jsonrpc"], "2.0", "{err}");
    assert!(err["error"]["code"].is_i64() && err["error"]["message"].is_string(), "a JSON-RPC error: {err}");
    // So is a new session: it cannot be registered.
    let r = http().get(a.url("/sse/echo")).header("accept", "text/event-stream").send().await.expect("GET /sse");
    assert_eq!(r.status(), 503, "a new session while Redis is down");
    assert!(common::rpc_error_code(&r.text().await.unwrap_or_default()).is_some(), "with a JSON-RPC error body");

    c.redis.start_again();
    let (a, b, idle) = (&c.instances[0], &c.instances[1], &c.instances[2]);
    for i in [a, b, idle] {
        let after = readyz_until(i, Duration::from_secs(90), "is ready again", ready).await;
        eprintln!("instance {}: /readyz ready {} ms after Redis came back", i.name, after.as_millis());
    }
    // Everything works again: local, forwarded both ways, and new sessions.
    assert_eq!(s.echo_via(&a.base(), 30, "local").await, "local");
    assert_eq!(s.echo_via(&b.base(), 31, "forwarded-again").await, "forwarded-again");
    assert_eq!(t.echo_via(&a.base(), 31, "forwarded-again").await, "forwarded-again");
    let mut n = Legacy::open_as(&idle.base(), "echo", None, LEGACY_PROTOCOL).await;
    assert_eq!(n.echo_via(&a.base(), 2, "new").await, "new");
    for (x, ids) in [(&s, vec![1, 2, 3, 30, 31]), (&t, vec![1, 31])] {
        for id in ids {
            assert_eq!(x.responses_to(id), 1, "session {}: answer {id} exactly once: {:?}", x.sid, x.received);
        }
    }
    for id in [10, 11, 12, 13, 14, 20] {
        assert_eq!(s.responses_to(id), 0, "the refused request {id} was not delivered");
        assert_eq!(t.responses_to(id), 0, "the refused request {id} was not delivered");
    }
}

// ---- lease, forwarding and takeover between two instances ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_lease_renewal_and_takeover_between_two_instances() {
    let mut c = Cluster::start(&echo_server("echo"), 2, false).await;
    let (a, b) = (&c.instances[0], &c.instances[1]);

    // A legacy session opened on a; every POST goes to b and is forwarded to the owner.
    let mut s = Legacy::connect(&a.base(), "echo").await;
    assert_eq!(c.redis.lease_owner(&s.sid).as_deref(), Some("b1"), "the instance that opened it owns it");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    assert_eq!(s.post_via(&b.base(), &init).await.expect("POST message").0, 202);
    assert!(s.answer(1, MINUTE).await["result"]["serverInfo"].is_object(), "initialize answered on a's stream");
    assert_eq!(
        s.post_via(&b.base(), &json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await.expect("POST message").0,
        202
    );
    assert_eq!(s.echo_via(&b.base(), 2, "via b").await, "via b");
    // One short lease per instance; the session's record does not expire while its owner lives.
    let pttl: i64 = c.redis.cli_raw(&["PTTL", "mcpb:{i:b1}:lease"]).parse().unwrap_or(-9);
    assert!((1..=2000).contains(&pttl), "the instance lease is a short one: PTTL {pttl} ms");
    let record_ttl = c.redis.cli_raw(&["PTTL", &format!("mcpb:{{{}}}:rec", s.sid)]);
    assert_eq!(record_ttl, "-1", "an owned session's record has no expiry");

    // The owner renews its lease: after longer than a lease, it still owns the session.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(c.redis.lease_owner(&s.sid).as_deref(), Some("b1"), "a renews its lease");
    assert_eq!(s.echo_via(&b.base(), 3, "still via b").await, "still via b");

    // A Streamable HTTP session on a, used through b: the answer comes on b's POST stream.
    let h = common::McpSession::open(&a.url("/mcp/echo")).await;
    let via_b = common::McpSession { http: http(), url: b.url("/mcp/echo"), id: h.id.clone() };
    let answers = common::responses(via_b.post(&echo_call(5, "streamable via b")).await).await;
    assert_eq!(answers.iter().filter(|m| m["id"] == 5).map(echo_text).collect::<Vec<_>>(), ["streamable via b"]);

    // The legacy client reconnects to b: b holds the stream for a, and a's answers reach it.
    s.disconnect();
    s.resume(&b.base()).await.expect("resume on the other instance");
    assert_eq!(s.echo_via(&a.base(), 4, "held on b").await, "held on b");
    assert_eq!(c.redis.lease_owner(&s.sid).as_deref(), Some("b1"), "resuming elsewhere does not move the session");

    // kill -9 a. The stream b holds for it ends (nothing can reach it any more); the client
    // comes back to b, which takes the session over once a's lease has lapsed.
    c.instances[0].kill9();
    let killed_at = Instant::now();
    let b = &c.instances[1];
    let mut ended = None;
    while ended.is_none() && killed_at.elapsed() < MINUTE {
        match s.next(Duration::from_secs(1)).await {
            Ok(None) => ended = Some(killed_at.elapsed()),
            Ok(Some(m)) => panic!("nothing to deliver on the held stream: {m}"),
            Err(()) => {}
        }
    }
    let ended = ended.expect("the stream b held for the dead owner ends, so that the client reconnects");
    assert_eq!(
        s.post_via(&b.base(), &echo_call(6, "after the kill")).await.expect("POST message").0,
        202,
        "b accepts a request for the dead owner's session"
    );
    let took_over = killed_at.elapsed();
    assert_eq!(c.redis.lease_owner(&s.sid).as_deref(), Some("b2"), "b took the session over");
    assert!(b.count("session taken over") >= 1, "b logged the takeover");
    let takeovers = b.metrics().await.value_or_zero("mcp_bridge_cluster_takeovers_total", &[]);
    assert!(takeovers >= 1.0, "b counts the takeover in its metrics: {takeovers}");
    s.resume(&b.base()).await.expect("resume on b");
    assert_eq!(echo_text(&s.answer(6, MINUTE).await), "after the kill", "the answer given while away is replayed");
    assert_eq!(s.echo_via(&b.base(), 7, "on b").await, "on b");
    for id in [1, 2, 3, 4, 6, 7] {
        assert_eq!(s.responses_to(id), 1, "answer {id} exactly once: {:?}", s.received);
    }
    // The Streamable HTTP session moves to b too.
    let answers = common::responses(via_b.post(&echo_call(8, "streamable on b")).await).await;
    assert_eq!(answers.iter().filter(|m| m["id"] == 8).map(echo_text).collect::<Vec<_>>(), ["streamable on b"]);
    assert_eq!(c.redis.lease_owner(&h.id).as_deref(), Some("b2"));
    eprintln!(
        "lease takeover: the held stream ended {} ms after kill -9; b owned the session {} ms after it",
        ended.as_millis(),
        took_over.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_its_data_sessions_are_still_reachable_from_other_instances() {
    let mut c = Cluster::start(&echo_server("echo"), 2, false).await;
    let (a, b) = (&c.instances[0], &c.instances[1]);
    let mut s = Legacy::open_as(&a.base(), "echo", None, LEGACY_PROTOCOL).await;
    assert_eq!(s.echo_via(&b.base(), 2, "forwarded").await, "forwarded");

    // A crash without persistence: Redis comes back empty.
    c.redis.crash();
    c.redis.start_again();
    let (a, b) = (&c.instances[0], &c.instances[1]);
    for i in [a, b] {
        readyz_until(i, Duration::from_secs(90), "is ready again", ready).await;
    }
    assert_eq!(s.echo_via(&a.base(), 3, "local").await, "local");
    // The owner re-asserts its session: a request through the other instance reaches it.
    let reached = poll(Duration::from_secs(30), || Some(c.redis.lease_owner(&s.sid)?).filter(|o| o == "b1")).await;
    assert!(reached.is_some(), "the owner took its lease back");
    let (status, body) = s.post_via(&b.base(), &echo_call(4, "forwarded again")).await.expect("POST message");
    assert_eq!(status, 202, "a request via the other instance after Redis lost its data: {body}");
    assert_eq!(echo_text(&s.answer(4, MINUTE).await), "forwarded again");
}
