//! The bridge behind a real nginx running deploy/nginx/nginx.conf: heartbeats keep a stream up
//! through a short proxy_read_timeout (and without them nginx cuts it), the bridge's
//! `X-Accel-Buffering: no` holds streaming even with buffering on, the `/mcp-bridge/` prefix
//! reaches the endpoint URI, and a client that reconnects with Last-Event-ID misses nothing.

mod common;
mod support_nginx;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{echo_server, everything_stdio, http, modern_client, Bridge, SseReader, TempDir};
use serde_json::{json, Value};
use support_nginx::{deploy_conf_path, nginx_bin, Nginx, NginxOpts};

const SHORT_READ_TIMEOUT: NginxOpts = NginxOpts { read_timeout: "5s", buffering: false, http_gzip: false, drop_gzip_off: false };

async fn echo_bridge(heartbeat: &str) -> Bridge {
    Bridge::start(&echo_server("echo"), &["--heartbeat-interval", heartbeat]).await
}

async fn open_stream(url: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut req = http().get(url).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status(), 200, "GET {url}");
    resp
}

#[test]
fn deploy_config_passes_nginx_t() {
    let dir = TempDir::new("nginx-t");
    for sub in ["logs", "temp"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let out = Command::new(nginx_bin())
        .arg("-t")
        .arg("-p")
        .arg(dir.path())
        .args(["-e", "logs/error.log", "-c"])
        .arg(deploy_conf_path())
        .output()
        .expect("run nginx -t");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("test is successful"), "nginx -t failed:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_an_idle_stream_up_through_a_5s_read_timeout() {
    let bridge = echo_bridge("2s").await;
    let nginx = Nginx::start(bridge.port, &SHORT_READ_TIMEOUT);
    let mut sse = SseReader::new(open_stream(&nginx.url("/sse/echo"), None).await);
    let endpoint = sse.next_event(Duration::from_secs(10)).await.expect("the endpoint event");
    assert_eq!(endpoint.event.as_deref(), Some("endpoint"));
    let (start, mut beats) = (Instant::now(), 0);
    while start.elapsed() < Duration::from_secs(30) {
        match sse.try_next(Duration::from_secs(10)).await {
            Ok(Some(b)) if b.is_heartbeat_comment() => beats += 1,
            Ok(Some(b)) => panic!("unexpected block on an idle stream: {b:?}"),
            Ok(None) => {
                panic!("nginx cut the stream after {:?} despite heartbeats; error.log:\n{}", start.elapsed(), nginx.error_log())
            }
            Err(()) => panic!("nothing for 10 s at {:?}", start.elapsed()),
        }
    }
    assert!(beats >= 10, "about 15 heartbeats in 30 s, got {beats}");
    drop(sse);
    let log = nginx.error_log();
    assert!(!log.contains("upstream timed out"), "nginx timed the upstream out:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_heartbeats_nginx_cuts_the_idle_stream_at_its_read_timeout() {
    let bridge = echo_bridge("off").await;
    let nginx = Nginx::start(bridge.port, &SHORT_READ_TIMEOUT);
    let start = Instant::now();
    let mut sse = SseReader::new(open_stream(&nginx.url("/sse/echo"), None).await);
    sse.next_event(Duration::from_secs(10)).await.expect("the endpoint event");
    let rest = sse.rest(Duration::from_secs(40)).await;
    let lasted = start.elapsed();
    assert!(rest.is_empty(), "nothing after the endpoint with heartbeats off: {rest:?}");
    assert!(lasted >= Duration::from_secs(3) && lasted <= Duration::from_secs(15), "cut after {lasted:?}, expected about 5 s");
    // nginx logs the timeout just after closing; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !nginx.error_log().contains("upstream timed out") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = nginx.error_log();
    assert!(log.contains("upstream timed out") && log.contains("while reading upstream"), "error.log:\n{log}");
    bridge.wait_for_log_line("the bridge's close line", Duration::from_secs(10), |l| l.contains("SSE connection closed")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_uncompressed_with_gzip_and_buffering_on() {
    // Heartbeats off: the endpoint event is the only byte, so nothing else could push it out
    // of a buffer. Only the bridge's `X-Accel-Buffering: no` makes nginx stream it.
    let bridge = echo_bridge("off").await;
    let opts = NginxOpts { read_timeout: "60s", buffering: true, http_gzip: true, drop_gzip_off: false };
    let nginx = Nginx::start(bridge.port, &opts);
    let resp = http()
        .get(nginx.url("/sse/echo"))
        .header("accept", "text/event-stream")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("GET through nginx");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("content-encoding"), None, "the deployed `gzip off` keeps SSE uncompressed");
    let mut sse = SseReader::new(resp);
    let ev = sse.next_event(Duration::from_secs(5)).await.expect("the endpoint event, at once");
    assert_eq!(ev.event.as_deref(), Some("endpoint"));
    drop(sse);

    // What the deployed `gzip off` guards against: without it, http-level gzip compresses SSE.
    let opts = NginxOpts { drop_gzip_off: true, ..opts };
    let bare = Nginx::start(bridge.port, &opts);
    let resp = http()
        .get(bare.url("/sse/echo"))
        .header("accept", "text/event-stream")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("GET through nginx");
    assert_eq!(resp.headers().get("content-encoding").and_then(|v| v.to_str().ok()), Some("gzip"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_bridge_prefix_reaches_the_endpoint_uri_and_posts_work() {
    let bridge = echo_bridge("15s").await;
    let nginx = Nginx::start(bridge.port, &NginxOpts::default());
    let mut sse = SseReader::new(open_stream(&nginx.url("/mcp-bridge/sse/echo"), None).await);
    let ev = sse.next_event(Duration::from_secs(10)).await.expect("the endpoint event");
    let endpoint = ev.data.expect("endpoint data");
    assert!(endpoint.starts_with("/mcp-bridge/sse/echo/message?sessionId="), "{endpoint}");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "nginx-test", "version": "0"}}});
    let resp = http()
        .post(nginx.url(&endpoint))
        .header("content-type", "application/json")
        .body(init.to_string())
        .send()
        .await
        .expect("POST through nginx");
    assert_eq!(resp.status(), 202, "POST {endpoint}");
    let answer = sse.next_event(Duration::from_secs(20)).await.expect("the initialize answer on the stream");
    assert_eq!(answer.json().expect("JSON")["id"], 1);

    // At the root the bridge announces no prefix.
    let mut root = SseReader::new(open_stream(&nginx.url("/sse/echo"), None).await);
    let ev = root.next_event(Duration::from_secs(10)).await.expect("the endpoint event");
    assert!(ev.data.as_deref().is_some_and(|d| d.starts_with("/sse/echo/message?sessionId=")), "{ev:?}");
}

/// Progress values and final answers seen on one connection.
fn collect(blocks: &[common::SseBlock], progress: &mut Vec<u64>, finals: &mut usize, call_id: u64) {
    for b in blocks {
        let Some(msg) = b.json() else { continue };
        if msg["method"] == "notifications/progress" {
            progress.push(msg["params"]["progress"].as_u64().expect("numeric progress"));
        } else if msg["id"] == call_id {
            assert!(msg.get("result").is_some(), "the tool call failed: {msg}");
            *finals += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_with_last_event_id_through_nginx_misses_nothing() {
    common::require_node();
    let bridge = Bridge::start(&everything_stdio("everything"), &["--heartbeat-interval", "2s"]).await;
    let nginx = Nginx::start(bridge.port, &NginxOpts::default());
    let url = nginx.url("/sse/everything");
    let mut sse = SseReader::new(open_stream(&url, None).await);
    let endpoint = sse.next_event(Duration::from_secs(30)).await.and_then(|e| e.data).expect("endpoint");
    let post = |msg: Value| {
        let url = nginx.url(&endpoint);
        async move {
            let r =
                http().post(&url).header("content-type", "application/json").body(msg.to_string()).send().await.expect("POST");
            assert_eq!(r.status(), 202, "POST {msg}");
        }
    };
    post(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "resume-test", "version": "0"}}}))
    .await;
    let init = sse.next_event(Duration::from_secs(60)).await.expect("initialize answer");
    assert_eq!(init.json().unwrap()["id"], 1, "{init:?}");
    post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "trigger-long-running-operation", "arguments": {"duration": 4, "steps": 8},
        "_meta": {"progressToken": "resume-1"}}}))
    .await;

    // Read two progress notifications, then drop the connection mid-operation.
    let (mut progress, mut finals, mut first) = (Vec::new(), 0, Vec::new());
    while progress.len() < 2 {
        let b = sse.next_event(Duration::from_secs(30)).await.expect("progress before the drop");
        first.push(b);
        progress.clear();
        collect(&first, &mut progress, &mut finals, 2);
    }
    let last_id = first.last().and_then(|b| b.id.clone()).expect("events carry ids");
    drop(sse);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut sse = SseReader::new(open_stream(&url, Some(&last_id)).await);
    let mut second = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while finals == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        let b = sse.next(left).await.expect("the resumed stream stays open until the answer");
        second.push(b);
        progress.clear();
        finals = 0;
        collect(&first, &mut progress, &mut finals, 2);
        collect(&second, &mut progress, &mut finals, 2);
    }
    // Anything still in flight would show up now: no duplicate answer may follow.
    while let Ok(Some(b)) = sse.try_next(Duration::from_secs(2)).await {
        second.push(b);
    }
    progress.clear();
    finals = 0;
    collect(&first, &mut progress, &mut finals, 2);
    collect(&second, &mut progress, &mut finals, 2);
    let mut counts = BTreeMap::new();
    for p in &progress {
        *counts.entry(*p).or_insert(0) += 1;
    }
    assert_eq!(counts, (1..=8).map(|p| (p, 1)).collect::<BTreeMap<_, _>>(), "every progress value exactly once: {progress:?}");
    assert_eq!(finals, 1, "the final answer exactly once");
    assert!(second.iter().all(|b| b.event.as_deref() != Some("endpoint")), "a resume announces no new endpoint");
    // The progress sent while the client was away came back from the event log.
    let reopened = bridge
        .wait_for_log_line("a resumed stream", Duration::from_secs(5), |l| {
            l.contains("SSE connection opened") && l.contains("replayed=") && !l.contains("replayed=0")
        })
        .await;
    assert!(reopened.contains("transport=\"sse\"") || reopened.contains("transport=sse"), "{reopened}");
}

/// The official v2 client, pinned to 2026-07-28, through the shipped nginx configuration under
/// its `/mcp-bridge/` prefix: stateless requests, JSON and SSE answers, MRTR rounds,
/// cancellation by closing a response, and a listen stream, all through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_07_28_client_through_the_shipped_nginx_config() {
    let bridge = Bridge::start(&everything_stdio("everything"), &["--heartbeat-interval", "2s"]).await;
    let nginx = Nginx::start(bridge.port, &NginxOpts::default());
    let (v, _) = modern_client(&nginx.url("/mcp-bridge/mcp/everything"), &[]).await;
    assert_eq!((v["era"].as_str(), v["protocolVersion"].as_str()), (Some("modern"), Some("2026-07-28")), "{v}");
    assert_eq!(v["echo"], "Echo: hello", "{v}");
    assert_eq!(v["progressValues"], json!([1, 2, 3, 4]), "progress streamed through nginx: {v}");
    assert_eq!(v["cancelled"], true, "{v}");
    assert!(v["sampling"].as_str().is_some_and(|s| s.starts_with("sampled: ")), "{v}");
    assert!(v["elicitation"].as_str().is_some_and(|s| s.contains("Bridge Tester")), "{v}");
    assert_eq!(v["listen"]["closed"], "local", "{v}");
    let log = bridge.log();
    assert!(log.contains("reason=cancelled"), "closing the response through nginx reached the bridge as a cancellation:\n{log}");
}
