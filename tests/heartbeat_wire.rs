//! The SSE stream on the wire, read by a plain HTTP client: headers, the first bytes at once
//! (`retry:` and the endpoint event with an id), idle heartbeats in both formats, and the
//! "SSE connection opened/closed" lifecycle lines in the bridge's log.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{echo_server, http, Bridge, McpSession, SseReader};
use serde_json::Value;

/// Generous bound for "at once" on a loaded machine; the point is seconds, not 15 s or 30 s.
const FIRST_BYTES: Duration = Duration::from_secs(5);

fn assert_stream_headers(resp: &reqwest::Response) {
    let h = resp.headers();
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(get("content-type").starts_with("text/event-stream"), "content-type: {h:?}");
    assert!(get("cache-control").contains("no-cache"), "cache-control: {h:?}");
    assert_eq!(get("x-accel-buffering"), "no", "x-accel-buffering: {h:?}");
    assert!(h.get("content-encoding").is_none(), "an event stream must not be compressed: {h:?}");
}

/// Opens `GET /sse/echo` and reads up to the endpoint event; returns the reader and session id.
async fn open_legacy(bridge: &Bridge) -> (SseReader, String) {
    let started = Instant::now();
    let resp =
        tokio::time::timeout(FIRST_BYTES, http().get(bridge.url("/sse/echo")).header("accept", "text/event-stream").send())
            .await
            .expect("response headers at once")
            .expect("GET /sse/echo");
    assert_eq!(resp.status(), 200);
    assert_stream_headers(&resp);
    let mut r = SseReader::new(resp);
    let first = r.next(FIRST_BYTES).await.expect("a first block");
    assert_eq!(first.retry, Some(1000), "the stream starts with the retry hint: {first:?}");
    let endpoint = r.next(FIRST_BYTES.saturating_sub(started.elapsed())).await.expect("the endpoint event");
    assert_eq!(endpoint.event.as_deref(), Some("endpoint"), "{endpoint:?}");
    let data = endpoint.data.clone().unwrap_or_default();
    let session = data.split("sessionId=").nth(1).expect("endpoint names the session").to_string();
    assert!(data.starts_with("/sse/echo/message?sessionId="), "endpoint: {data}");
    let id = endpoint.id.clone().expect("the endpoint event carries an id");
    assert!(id.starts_with(&format!("{session}-0-")), "event id {id} is session-stream-seq");
    assert!(started.elapsed() < FIRST_BYTES, "first bytes within {FIRST_BYTES:?}");
    (r, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_stream_sends_first_bytes_at_once_then_comment_heartbeats_and_logs_its_life() {
    let bridge = Bridge::start(&echo_server("echo"), &["--heartbeat-interval", "1s"]).await;
    let (mut r, session) = open_legacy(&bridge).await;

    let opened = bridge
        .wait_for_log_line("SSE connection opened", Duration::from_secs(10), |l| {
            l.contains("SSE connection opened") && l.contains(&session)
        })
        .await;
    assert!(opened.contains("transport=\"sse\"") || opened.contains("transport=sse"), "{opened}");

    // Nothing else is sent on an idle stream, so every block now is a heartbeat.
    let window = Instant::now() + Duration::from_millis(4500);
    let mut beats = 0;
    while let Some(left) = window.checked_duration_since(Instant::now()) {
        match r.try_next(left).await {
            Ok(Some(b)) => {
                assert!(b.is_heartbeat_comment(), "only `: heartbeat` comments on an idle stream, got {b:?}");
                beats += 1;
            }
            Ok(None) => panic!("the stream ended after {beats} heartbeats"),
            Err(()) => break,
        }
    }
    assert!(beats >= 3, "at least 3 heartbeats in 4.5 s at a 1 s interval, got {beats}");

    drop(r);
    let closed = bridge
        .wait_for_log_line("SSE connection closed", Duration::from_secs(15), |l| {
            l.contains("SSE connection closed") && l.contains(&session)
        })
        .await;
    assert!(closed.contains("reason=client_closed"), "{closed}");
    assert!(closed.contains("heartbeats="), "{closed}");
    assert!(!bridge.raw_log().contains('\u{1b}'), "stdout redirected to a file carries no colour codes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_format_heartbeats_are_json_data_events() {
    let bridge = Bridge::start(&echo_server("echo"), &["--heartbeat-interval", "1s", "--heartbeat-format", "event"]).await;
    let (mut r, _session) = open_legacy(&bridge).await;
    for _ in 0..2 {
        let b = r.next(Duration::from_secs(10)).await.expect("a heartbeat event");
        assert_eq!(b.event.as_deref(), Some("heartbeat"), "{b:?}");
        let data: Value = b.json().unwrap_or_else(|| panic!("heartbeat data is JSON: {b:?}"));
        assert_eq!(data["type"], "heartbeat", "{data}");
        let ts = data["timestamp"].as_u64().unwrap_or_else(|| panic!("timestamp in ms: {data}"));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(ts.abs_diff(now) < 10 * 60 * 1000, "timestamp {ts} is wall-clock milliseconds (now {now})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_get_stream_has_the_same_headers_and_heartbeats() {
    let bridge = Bridge::start(&echo_server("echo"), &["--heartbeat-interval", "1s"]).await;
    let session = McpSession::open(&bridge.url("/mcp/echo")).await;
    let resp = tokio::time::timeout(
        FIRST_BYTES,
        session.http.get(&session.url).header("accept", "text/event-stream").header("mcp-session-id", &session.id).send(),
    )
    .await
    .expect("GET headers at once")
    .expect("GET /mcp/echo");
    assert_eq!(resp.status(), 200);
    assert_stream_headers(&resp);
    let mut r = SseReader::new(resp);
    let first = r.next(FIRST_BYTES).await.expect("first block");
    assert_eq!(first.retry, Some(1000), "{first:?}");
    let mut beats = 0;
    while beats < 2 {
        let b = r.next(Duration::from_secs(10)).await.expect("heartbeats keep the GET stream alive");
        assert!(b.is_heartbeat_comment(), "{b:?}");
        beats += 1;
    }
    // The session still answers while its GET stream is held.
    assert_eq!(session.echo(2, "still here").await, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_interval_comes_from_the_config_per_server() {
    let config = format!(
        "[heartbeat]\ninterval = \"1s\"\n{}{}heartbeat = {{ interval = \"off\" }}\n",
        echo_server("fast"),
        echo_server("quiet")
    );
    let bridge = Bridge::start(&config, &[]).await;
    let open = |name: &str| http().get(bridge.url(&format!("/sse/{name}"))).send();
    let mut fast = SseReader::new(open("fast").await.expect("GET /sse/fast"));
    let mut quiet = SseReader::new(open("quiet").await.expect("GET /sse/quiet"));
    for r in [&mut fast, &mut quiet] {
        r.next(FIRST_BYTES).await.expect("retry hint");
        assert_eq!(r.next(FIRST_BYTES).await.expect("endpoint").event.as_deref(), Some("endpoint"));
    }
    let b = fast.next(Duration::from_secs(10)).await.expect("a heartbeat from the 1 s server");
    assert!(b.is_heartbeat_comment(), "{b:?}");
    assert!(quiet.try_next(Duration::from_secs(3)).await.is_err(), "no heartbeat when the server's interval is off");
}

/// While another POST's answer is open (an SSE-answered call to a child that stopped reading),
/// a POST whose answer completes its stream within the prefetch wait goes out as one body
/// with a `Content-Length`, not chunked: the retry hint, then the answer as an event with an
/// id. The path depends on timing (the session may close the stream just after the answer is
/// taken, and then the answer streams), so several POSTs are sent and at least one must be
/// whole; every one, whole or streamed, must carry its own answer. With the runtime's default
/// threads and with one: the open answer, not a running handler, is what counts as another
/// request served (a held stream has no handler running).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_answer_while_another_waits_is_one_body_with_a_length() {
    for args in [&[][..], &["--worker-threads", "1"][..]] {
        quick_answers_go_out_whole(args).await;
    }
}

async fn quick_answers_go_out_whole(args: &[&str]) {
    let hung = format!("{}args = [\"--stop-reading-after\", \"2\"]\n", echo_server("hung"));
    let config = format!("[limits]\nupstream_stall = \"off\"\nrequest_timeout = \"60s\"\n{}{hung}", echo_server("echo"));
    let bridge = Bridge::start(&config, args).await;
    let waiting = McpSession::open(&bridge.url("/mcp/hung")).await;
    // Held open: an SSE answer stream whose child never answers.
    let held = tokio::spawn(async move { waiting.post(&common::echo_call(9, "never")).await.text().await });
    let session = McpSession::open(&bridge.url("/mcp/echo")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "the held request is still in flight");
    let headers = [
        ("accept", common::ACCEPT_BOTH),
        ("content-type", "application/json"),
        ("mcp-session-id", session.id.as_str()),
        ("mcp-protocol-version", common::PROTOCOL),
    ];
    let mut whole = 0;
    for n in 0..20u64 {
        let body = common::echo_call(100 + n, &format!("quick {n}")).to_string();
        let r = common::raw(bridge.port, "POST", "/mcp/echo", &headers, &body).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.header("content-type").is_some_and(|v| v.starts_with("text/event-stream")), "{r:?}");
        let events: Vec<Value> = r
            .body
            .split("\n\n")
            .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect();
        let answer = events.iter().find(|m| m["id"] == 100 + n).unwrap_or_else(|| panic!("POST {n}: its answer: {r:?}"));
        assert_eq!(answer["result"]["content"][0]["text"], format!("quick {n}"), "{r:?}");
        if r.header("transfer-encoding").is_none() {
            let length: usize = r.header("content-length").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{r:?}"));
            assert_eq!(length, r.body.len(), "the length is the body's: {r:?}");
            assert!(r.body.starts_with("retry: ") && r.body.contains("\nid: "), "retry hint, then an event with an id: {r:?}");
            whole += 1;
        }
    }
    eprintln!("{args:?}: {whole} of 20 quick answers went out whole");
    assert!(whole > 0, "{args:?}: no quick answer went out as one body while another POST's answer was open");
    held.abort();
}
