//! `kill -9` of a session's owner mid-session, on any Redis deployment (one Redis in
//! tests/cluster.rs, a Redis Cluster in tests/redis_cluster.rs): legacy SSE and Streamable HTTP
//! clients resume through nginx on another instance with nothing lost and nothing twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::poll;
use super::scenarios::{Deployment, Store};
use crate::common::{echo_call, echo_text, http, responses, Legacy, McpSession, SseBlock, SseReader, LEGACY_PROTOCOL};

pub(crate) const MINUTE: Duration = Duration::from_secs(60);

/// server-everything's slow tool with a progress token: one progress notification a second.
pub(crate) fn slow_call(id: u64, seconds: u64, token: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "trigger-long-running-operation", "arguments": {"duration": seconds, "steps": seconds},
        "_meta": {"progressToken": token}}})
}

pub(crate) fn is_progress(m: &Value, token: &str) -> bool {
    m["method"] == "notifications/progress" && m["params"]["progressToken"] == token
}

/// The error a request in flight on a dead owner must get.
pub(crate) fn assert_lost_request_error(m: &Value, id: u64) {
    assert_eq!(m["id"], id, "{m}");
    assert!(m["result"].is_null(), "request {id} was in flight on the dead instance; it cannot have a result: {m}");
    assert_eq!(m["error"]["code"], -32603, "request {id} gets an internal error: {m}");
    assert!(m["error"]["message"].as_str().is_some_and(|s| s.contains("died")), "the error says why: {m}");
}

// ---- kill -9 of the owner, legacy SSE ----------------------------------------------------------

/// A legacy session that was disconnected with requests answered while it was away.
pub(crate) struct Away {
    s: Legacy,
    owner: String,
    /// Response ids it received before disconnecting.
    seen: Vec<u64>,
    /// Ids answered while it was away (waiting in the event log).
    missed: Vec<u64>,
}

/// Waits until the answers to `ids` are in the session's event log in Redis.
async fn persisted(redis: &dyn Store, sid: &str, ids: &[u64]) {
    let found = poll(MINUTE, || {
        let log = redis.stream_log(sid, 0);
        ids.iter().all(|id| log.iter().any(|m| m["id"] == *id && m.get("method").is_none())).then_some(())
    })
    .await;
    assert!(found.is_some(), "answers {ids:?} of session {sid} reached Redis: {:?}", redis.stream_log(sid, 0));
}

/// `kill -9` of a legacy session's owner mid-session (a slow call in flight, answers waiting in
/// the event log while the client is away), with more sessions spread over the instances: every
/// client resumes through nginx, gets what it missed once, an error for the lost call, and goes
/// on with a live owner. Server `everything` and `echo`.
pub(crate) async fn kill_9_of_the_owner_legacy_sse(c: &mut impl Deployment) {
    let base = c.balancer().base();

    // The main session (server-everything): answers seen, a slow call in flight, answers
    // that arrive while the client is away.
    let mut main = Legacy::open_as(&base, "everything", None, LEGACY_PROTOCOL).await;
    for i in 10..13 {
        assert_eq!(main.echo_via(&base, i, &format!("before-{i}")).await, format!("Echo: before-{i}"));
    }
    let (status, body) = main.post_via(&base, &slow_call(20, 60, "slow")).await.expect("POST message");
    assert_eq!(status, 202, "the slow call is accepted: {body}");
    let deadline = Instant::now() + MINUTE;
    while !main.received.iter().any(|m| is_progress(m, "slow")) {
        assert!(Instant::now() < deadline, "a progress notification of the slow call arrives");
        main.next(MINUTE).await.expect("an event").expect("the stream stays open");
    }
    let owner = c.store().owner(&main.sid).expect("the session has an owner");
    main.disconnect();
    for i in 13..16 {
        assert_eq!(
            main.post_via(&base, &echo_call(i, &format!("away-{i}"))).await.expect("POST message").0,
            202,
            "echo {i} while away is accepted"
        );
    }
    persisted(c.store(), &main.sid, &[13, 14, 15]).await;
    // Let the slow call report progress while the client is away, too.
    let progressed = poll(MINUTE, || {
        (c.store().stream_log(&main.sid, 0).iter().filter(|m| is_progress(m, "slow")).count() >= 3).then_some(())
    })
    .await;
    assert!(progressed.is_some(), "the slow call's progress is logged in Redis while the client is away");
    let mut sessions = vec![Away { s: main, owner: owner.clone(), seen: vec![1, 10, 11, 12], missed: vec![13, 14, 15] }];

    // More sessions (the echo server), spread over the instances by round-robin.
    for k in 0..5 {
        let mut s = Legacy::open_as(&base, "echo", None, LEGACY_PROTOCOL).await;
        assert_eq!(s.echo_via(&base, 2, &format!("s{k}-seen")).await, format!("s{k}-seen"));
        let owner = c.store().owner(&s.sid).expect("the session has an owner");
        s.disconnect();
        assert_eq!(s.post_via(&base, &echo_call(3, &format!("s{k}-away"))).await.expect("POST message").0, 202);
        persisted(c.store(), &s.sid, &[3]).await;
        sessions.push(Away { s, owner, seen: vec![1, 2], missed: vec![3] });
    }
    let owners: BTreeMap<&str, usize> = sessions.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a.owner.as_str()).or_default() += 1;
        m
    });
    eprintln!("owners before the kill: {owners:?}");

    let victim = c.index_of(&owner);
    let children = c.instances_mut()[victim].kill9();
    let killed_at = Instant::now();
    eprintln!("killed -9 {owner} (pid {}), which had {} stdio children", c.instances_mut()[victim].pid(), children.len());

    let mut resume_times = Vec::new();
    let mut replayed_total = 0;
    let mut kept = 0;
    for (k, a) in sessions.iter_mut().enumerate() {
        let orphaned = a.owner == owner;
        let t = Instant::now();
        let (status, body) = a.s.resume(&base).await.err().unwrap_or((200, String::new()));
        assert_eq!(status, 200, "session {} (owner {}) resumes through nginx: {body}", a.s.sid, a.owner);
        let before = a.s.received.len();
        // The missed answers come first, each once; the in-flight call gets an error.
        for id in a.missed.clone() {
            let m = a.s.answer(id, MINUTE).await;
            assert!(m["result"].is_object(), "answer {id} replayed: {m}");
        }
        if orphaned {
            resume_times.push(t.elapsed());
        }
        if k == 0 {
            let m = a.s.answer(20, MINUTE).await;
            assert_lost_request_error(&m, 20);
        }
        replayed_total += a.s.received.len() - before;
        if k == 0 {
            let replayed: Vec<f64> = a.s.received[before..]
                .iter()
                .filter(|m| is_progress(m, "slow"))
                .filter_map(|m| m["params"]["progress"].as_f64())
                .collect();
            assert!(replayed.len() >= 2, "progress sent while the client was away is replayed: {:?}", &a.s.received[before..]);
            let all: Vec<f64> =
                a.s.received.iter().filter(|m| is_progress(m, "slow")).filter_map(|m| m["params"]["progress"].as_f64()).collect();
            assert!(all.windows(2).all(|w| w[0] < w[1]), "each progress notification once, in order: {all:?}");
        }
        // And the session goes on, on whichever instance owns it now.
        let text = a.s.echo_via(&base, 99, "after").await;
        assert!(text.ends_with("after"), "{text}");
        let new_owner = c.store().owner(&a.s.sid).expect("an owner after the failover");
        assert_ne!(new_owner, owner, "session {} is owned by a live instance", a.s.sid);
        kept += 1;
    }
    let resumed_at = killed_at.elapsed();

    // Nothing more arrives, and every answer arrived exactly once over both connections.
    for a in &mut sessions {
        while let Ok(Some(m)) = a.s.next(Duration::from_millis(300)).await {
            assert!(m.get("method").is_some(), "session {}: no answer after the last one: {m}", a.s.sid);
        }
        let mut ids = a.seen.clone();
        ids.extend(&a.missed);
        ids.push(99);
        for id in ids {
            assert_eq!(a.s.responses_to(id), 1, "session {}: answer {id} exactly once: {:?}", a.s.sid, a.s.received);
        }
    }
    assert_eq!(sessions[0].s.responses_to(20), 1, "the lost call was answered once (with an error)");
    let taken_over: usize = c.instances().iter().map(|i| i.count("session taken over")).sum();
    let on_victim = sessions.iter().filter(|a| a.owner == owner).count();
    assert!(taken_over >= on_victim, "each session of {owner} was taken over ({taken_over} takeovers, {on_victim} sessions)");
    let orphans = c.instances_mut()[victim].orphans_alive();
    eprintln!(
        "FAILOVER legacy SSE: sessions kept {kept}/{} ({on_victim} were on the killed instance); events replayed {replayed_total}; \
         time to resume after kill -9: {} (per session of the dead owner, ms: {:?}); all sessions resumed after {} ms; \
         stdio children of the killed instance still running: {}/{}",
        sessions.len(),
        resume_times.iter().map(|d| d.as_millis()).max().unwrap_or(0),
        resume_times.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
        resumed_at.as_millis(),
        orphans.len(),
        children.len(),
    );
    assert_eq!(kept, sessions.len());
}

// ---- kill -9 of the owner, Streamable HTTP -------------------------------------------------------

/// Reads an SSE stream to its end (bounded), returning its events with data.
pub(crate) async fn drain(r: &mut SseReader, timeout: Duration, what: &str) -> Vec<SseBlock> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match r.try_next(left).await {
            Ok(Some(b)) if b.data.as_deref().is_some_and(|d| !d.is_empty()) => out.push(b),
            Ok(Some(_)) => {}
            Ok(None) => return out,
            Err(()) => panic!("{what}: the stream did not end within {timeout:?}; got {out:?}"),
        }
    }
}

/// `kill -9` of a Streamable HTTP session's owner with two slow calls in flight (one whose
/// client went away, one whose stream is held on another instance): both resume through nginx
/// with `Last-Event-ID`, get the progress they missed once and an error, and the session goes
/// on with a live owner. Server `everything`.
pub(crate) async fn kill_9_of_the_owner_streamable_http(c: &mut impl Deployment) {
    let url = c.balancer().url("/mcp/everything");
    let opened = McpSession::open(&url).await;
    let s = McpSession { http: http(), url: url.clone(), id: opened.id.clone() };
    let owner = c.store().owner(&s.id).expect("the session has an owner");
    for i in 10..13 {
        assert_eq!(opened.echo(i, &format!("m{i}")).await, format!("Echo: m{i}"));
    }
    // The standalone GET stream, wherever nginx puts it.
    let get = s.get(None).await;
    assert_eq!(get.status(), 200, "the standalone GET stream opens");
    let mut standalone = SseReader::new(get);
    // Two slow calls in flight: one through nginx, whose client then goes away (its progress
    // piles up unseen), one sent straight to an instance that does not own the session, so
    // that its stream is held there for the owner.
    let other = c.instances().iter().find(|i| i.name != owner).expect("a second instance");
    let (other_id, other_url) = (other.name.clone(), other.url("/mcp/everything"));
    let held = McpSession { http: http(), url: other_url, id: s.id.clone() };
    let mut away = SlowCall::start(&s, 20, "away").await;
    let mut held_call = SlowCall::start(&held, 21, "held").await;
    away.reader = None;
    let stream = away.last.split('-').nth(1).and_then(|n| n.parse::<u32>().ok()).expect("stream number in the event id");
    let piled = poll(MINUTE, || {
        (c.store().stream_log(&s.id, stream).iter().filter(|m| is_progress(m, "away")).count() >= 3).then_some(())
    })
    .await;
    assert!(piled.is_some(), "progress of the call whose client went away is logged in Redis");

    let victim = c.index_of(&owner);
    c.instances_mut()[victim].kill9();
    let killed_at = Instant::now();

    // The held call's stream ends (nothing can reach it from a dead owner); both clients
    // resume through nginx with Last-Event-ID and get what they missed, then the error.
    held_call.drain_until_end("the stream held for the dead owner").await;
    let held_ended = killed_at.elapsed();
    let mut replayed = 0;
    for call in [&mut away, &mut held_call] {
        let resp = s.get(Some(&call.last)).await;
        assert_eq!(resp.status(), 200, "call {} resumes through nginx: {:?}", call.id, resp.text().await);
        call.reader = Some(SseReader::new(resp));
        replayed += call.drain_until_end("a resumed call stream").await;
        let answers: Vec<&Value> = call.seen.iter().filter(|m| m["id"] == call.id && m.get("method").is_none()).collect();
        assert_eq!(answers.len(), 1, "call {} is answered exactly once: {:?}", call.id, call.seen);
        assert_lost_request_error(answers[0], call.id);
        let progress: Vec<f64> =
            call.seen.iter().filter(|m| is_progress(m, &call.token)).filter_map(|m| m["params"]["progress"].as_f64()).collect();
        assert!(progress.windows(2).all(|w| w[0] < w[1]), "call {}: each progress notification once: {progress:?}", call.id);
    }
    let resumed_after = killed_at.elapsed();
    let away_progress = away.seen.iter().filter(|m| is_progress(m, "away")).count();
    assert!(away_progress >= 3, "the progress sent while the client was away was replayed: {:?}", away.seen);

    // The standalone stream ends too; reopened through nginx, it works.
    drain(&mut standalone, MINUTE, "the standalone GET stream after its owner died").await;
    let get = s.get(None).await;
    assert_eq!(get.status(), 200, "the standalone GET stream reopens");
    drop(get);

    // The session goes on, through nginx, on a live owner.
    for i in 30..33 {
        let resp = s.post(&echo_call(i, &format!("after-{i}"))).await;
        assert_eq!(resp.status(), 200, "echo {i} after the failover");
        let answers = responses(resp).await;
        let mine: Vec<&Value> = answers.iter().filter(|m| m["id"] == i).collect();
        assert_eq!(mine.len(), 1, "echo {i} answered once: {answers:?}");
        assert_eq!(echo_text(mine[0]), format!("Echo: after-{i}"));
    }
    let new_owner = c.store().owner(&s.id).expect("an owner after the failover");
    assert_ne!(new_owner, owner);
    eprintln!(
        "FAILOVER Streamable HTTP: sessions kept 1/1 ({owner} -> {new_owner}); events replayed {replayed} on the two resumed \
         call streams; the stream held on {} ended {} ms after kill -9; both calls resumed and answered {} ms after it",
        other_id,
        held_ended.as_millis(),
        resumed_after.as_millis()
    );
}

/// A slow call over Streamable HTTP: its SSE answer, read event by event.
pub(crate) struct SlowCall {
    id: u64,
    token: String,
    reader: Option<SseReader>,
    last: String,
    seen: Vec<Value>,
}

impl SlowCall {
    /// POSTs the call and reads up to its first progress notification.
    async fn start(s: &McpSession, id: u64, token: &str) -> SlowCall {
        let resp = s.post(&slow_call(id, 60, token)).await;
        assert_eq!(resp.status(), 200, "the slow call {id} gets an SSE answer");
        let mut reader = SseReader::new(resp);
        let (mut last, mut seen) = (None, Vec::new());
        while !seen.iter().any(|m: &Value| is_progress(m, token)) {
            let b = reader.next_event(MINUTE).await.expect("a progress notification before the stream ends");
            last = b.id.clone().or(last);
            seen.extend(b.json());
        }
        let last = last.expect("the call's events carry ids");
        SlowCall { id, token: token.to_string(), reader: Some(reader), last, seen }
    }

    /// Reads the stream to its end (bounded); returns how many messages came.
    async fn drain_until_end(&mut self, what: &str) -> usize {
        let reader = self.reader.as_mut().expect("a connected stream");
        let blocks = drain(reader, MINUTE, what).await;
        self.reader = None;
        if let Some(id) = blocks.iter().rev().find_map(|b| b.id.clone()) {
            self.last = id;
        }
        let messages: Vec<Value> = blocks.iter().filter_map(SseBlock::json).collect();
        let n = messages.len();
        self.seen.extend(messages);
        n
    }
}
