//! The adapter: 2025 clients (the v1 TypeScript SDK and the Python SDK over Streamable HTTP and
//! SSE, and a 2025-11-25 session by hand) on a remote upstream that speaks only 2026-07-28.

mod common;
#[path = "stateless/servers.rs"]
mod servers;
#[path = "stateless/wire.rs"]
mod wire;

use std::time::{Duration, Instant};

use common::{http, require_node, run_client, toml_str, Bridge, Legacy, Sdk, SseReader, ACCEPT_BOTH};
use serde_json::{json, Value};
use servers::*;
use wire::*;

// ---- 8. legacy clients on a modern-only remote upstream (the adapter) ---------------------------

/// `[servers.adapted]`: tests/clients/modern_server.mjs (`MODERN_ONLY=1`) as a remote upstream.
fn adapted_config(modern: &ModernServer) -> String {
    format!("[servers.adapted]\nurl = {}\n", toml_str(&format!("http://127.0.0.1:{}/mcp", modern.port)))
}

/// One `--scenario full` run of a 2025 SDK client through the adapter: concrete results, and the
/// bridge log says it adapted that very session to the 2026-07-28 upstream.
async fn adapted_full_run(bridge: &Bridge, modern: &ModernServer, sdk: Sdk, transport: &str) {
    let path = if transport == "sse" { "/sse/adapted" } else { "/mcp/adapted" };
    let run = run_client(sdk, transport, &bridge.url(path), &["--scenario", "full"]).await;
    let v = run.ok();
    let what = &run.label;
    assert_eq!(v["server"], "mcp-bridge-modern-test-server", "{what}: initialize answered from server/discover: {v}");
    if sdk == Sdk::Py || transport == "streamable" {
        assert_eq!(v["protocolVersion"], "2025-11-25", "{what}: a 2025 session: {v}");
    }
    for t in ["echo", "get-sum", "trigger-long-running-operation", "trigger-sampling-request", "notify-list-changed"] {
        assert!(strings(&v["tools"]).contains(&t), "{what}: tools/list has {t}: {v}");
    }
    assert_eq!(v["echo"], "Echo: hello-0", "{what}: {v}");
    assert_eq!(v["sum"], 5, "{what}: {v}");
    assert_eq!(v["progress"], 4, "{what}: four progress notifications: {v}");
    let values: Vec<f64> =
        v["progressValues"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
    assert_eq!(values, [1.0, 2.0, 3.0, 4.0], "{what}: {v}");
    assert_eq!(v["samplingRequests"], 1, "{what}: the InputRequiredResult became one sampling/createMessage: {v}");
    assert_eq!(v["sampling"], "sampled: Resource trigger-sampling-request context: ping", "{what}: {v}");
    let sid = v["sessionId"].as_str().unwrap_or_else(|| panic!("{what}: a session id: {v}"));
    let adapted = bridge
        .wait_for_log_line("the adapter's line for this session", MINUTE, |l| {
            l.contains("the bridge adapts this session") && l.contains(&format!("session={sid}"))
        })
        .await;
    assert!(adapted.contains(MODERN) && adapted.contains(&format!("127.0.0.1:{}", modern.port)), "{adapted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_typescript_client_on_a_modern_only_upstream_is_adapted() {
    require_node();
    let modern = ModernServer::start().await;
    let bridge = Bridge::start(&adapted_config(&modern), &[]).await;
    adapted_full_run(&bridge, &modern, Sdk::Ts, "streamable").await;
    adapted_full_run(&bridge, &modern, Sdk::Ts, "sse").await;
    let log = bridge.log();
    assert_eq!(lines_with(&log, &["the bridge adapts this session"]).len(), 2, "one adapted session per client:\n{log}");
    assert!(lines_with(&log, &["server=adapted", "transport=\"stateless\""]).is_empty(), "no backing sessions:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_python_client_on_a_modern_only_upstream_is_adapted() {
    require_node();
    let modern = ModernServer::start().await;
    let bridge = Bridge::start(&adapted_config(&modern), &[]).await;
    adapted_full_run(&bridge, &modern, Sdk::Py, "streamable").await;
    adapted_full_run(&bridge, &modern, Sdk::Py, "sse").await;
    let log = bridge.log();
    assert_eq!(lines_with(&log, &["the bridge adapts this session"]).len(), 2, "one adapted session per client:\n{log}");
}

/// A 2025-11-25 Streamable HTTP session by hand: every message of every stream it reads (the
/// POST answers and the standalone GET stream) lands in one channel, tagged with its stream.
struct RawLegacy {
    url: String,
    sid: String,
    tx: tokio::sync::mpsc::UnboundedSender<(&'static str, Value)>,
    rx: tokio::sync::mpsc::UnboundedReceiver<(&'static str, Value)>,
    seen: Vec<(&'static str, Value)>,
}

impl RawLegacy {
    const VERSION: &'static str = "2025-11-25";

    async fn open(url: &str, caps: Value) -> (RawLegacy, Value) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": Self::VERSION, "capabilities": caps,
            "clientInfo": {"name": "mcp-bridge-raw-legacy", "version": "0"}}});
        let resp = http()
            .post(url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .timeout(MINUTE)
            .body(init.to_string())
            .send()
            .await
            .expect("POST initialize");
        assert_eq!(resp.status(), 200, "initialize");
        let sid = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).expect("Mcp-Session-Id").to_string();
        let mut s = RawLegacy { url: url.to_string(), sid, tx, rx, seen: Vec::new() };
        s.pump("initialize", resp);
        let init = s.answer(&json!(1)).await;
        let r = s.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        assert_eq!(r, 202, "notifications/initialized");
        let get = http()
            .get(url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &s.sid)
            .header("mcp-protocol-version", Self::VERSION)
            .send()
            .await
            .expect("GET stream");
        assert_eq!(get.status(), 200, "the standalone GET stream");
        s.pump("get", get);
        (s, init)
    }

    /// Reads `resp` (JSON or SSE) in the background into the channel.
    fn pump(&self, tag: &'static str, resp: reqwest::Response) {
        let tx = self.tx.clone();
        let sse =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
        tokio::spawn(async move {
            if !sse {
                let body = resp.bytes().await.unwrap_or_default();
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    let _ = tx.send((tag, v));
                }
                return;
            }
            let mut r = SseReader::new(resp);
            while let Ok(Some(b)) = r.try_next(Duration::from_secs(300)).await {
                if let Some(v) = b.json() {
                    let _ = tx.send((tag, v));
                }
            }
        });
    }

    /// POSTs one message on the session; its answer (if any) goes to the channel.
    async fn send(&self, msg: &Value) -> u16 {
        let resp = http()
            .post(&self.url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .header("mcp-session-id", &self.sid)
            .header("mcp-protocol-version", Self::VERSION)
            .body(msg.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {msg}: {e}"));
        let status = resp.status().as_u16();
        if status == 200 {
            self.pump("post", resp);
        }
        status
    }

    /// The first message (seen before or arriving within 30 s) that `pred` accepts.
    async fn wait(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> (&'static str, Value) {
        if let Some(i) = self.seen.iter().position(|(_, m)| pred(m)) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some((tag, m))) if pred(&m) => return (tag, m),
                Ok(Some(other)) => self.seen.push(other),
                _ => panic!("{what}: nothing within 30 s; seen: {:?}", self.seen),
            }
        }
    }

    /// The result of request `id` (panics on an error answer).
    async fn answer(&mut self, id: &Value) -> Value {
        let (_, m) = self.wait(&format!("the answer to {id}"), |m| &m["id"] == id && m.get("method").is_none()).await;
        assert!(m["error"].is_null(), "request {id} failed: {m}");
        m["result"].clone()
    }

    async fn call(&mut self, id: u64, name: &str, arguments: Value) -> Value {
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}});
        assert_eq!(self.send(&msg).await, 200, "tools/call {name}");
        self.answer(&json!(id)).await
    }

    /// Waits for the server-to-client request `method` and answers it with `result`.
    async fn answer_request(&mut self, method: &str, result: Value) -> Value {
        let (_, req) = self.wait(method, |m| m["method"] == method && m.get("id").is_some()).await;
        let reply = json!({"jsonrpc": "2.0", "id": req["id"], "result": result});
        assert_eq!(self.send(&reply).await, 202, "the answer to {method}");
        req
    }
}

/// The adapter by hand, with what the SDK scripts do not cover: initialize answered from
/// `server/discover`; elicitation and sampling (`InputRequiredResult`) asked on the session and
/// retried with the answers; `notifications/*/list_changed` from the upstream's
/// `subscriptions/listen` stream on the client's standalone GET stream; `logging/setLevel` and
/// `resources/subscribe` answered by the bridge; and `notifications/cancelled` turned into
/// closing the upstream response (modern_server.mjs logs the abort).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_legacy_session_on_a_modern_only_upstream_mrtr_list_changed_and_cancel() {
    require_node();
    let modern = ModernServer::start().await;
    let bridge = Bridge::start(&adapted_config(&modern), &[]).await;
    let url = bridge.url("/mcp/adapted");
    let caps = json!({"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}});
    let (mut s, init) = RawLegacy::open(&url, caps).await;
    assert_eq!(init["protocolVersion"], RawLegacy::VERSION, "{init}");
    assert_eq!(init["serverInfo"]["name"], "mcp-bridge-modern-test-server", "{init}");
    assert_eq!(init["capabilities"]["tools"]["listChanged"], true, "the upstream's discover capabilities: {init}");
    bridge
        .wait_for_log_line("the adapter's line", MINUTE, |l| {
            l.contains("the bridge adapts this session") && l.contains(&format!("session={}", s.sid))
        })
        .await;

    assert_eq!(s.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})).await, 200);
    let tools = s.answer(&json!(2)).await;
    let names: Vec<&str> = tools["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"notify-list-changed") && names.contains(&"trigger-elicitation-request"), "{names:?}");

    // Elicitation: the upstream's InputRequiredResult becomes elicitation/create on the session.
    let msg = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "trigger-elicitation-request", "arguments": {}}});
    assert_eq!(s.send(&msg).await, 200);
    let asked = s.answer_request("elicitation/create", json!({"action": "accept", "content": {"name": "Raw Legacy"}})).await;
    assert!(asked["params"]["requestedSchema"]["properties"]["name"].is_object(), "the upstream's own schema: {asked}");
    let r = s.answer(&json!(3)).await;
    assert!(text_of(&r).contains("Raw Legacy"), "the retry carried our answer: {r}");

    // Sampling, the same way.
    let msg = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "trigger-sampling-request", "arguments": {"prompt": "raw"}}});
    assert_eq!(s.send(&msg).await, 200);
    let sample = json!({"role": "assistant", "model": "raw", "content": {"type": "text", "text": "raw sample"}});
    let asked = s.answer_request("sampling/createMessage", sample).await;
    assert!(asked["params"]["messages"].to_string().contains("context: raw"), "{asked}");
    let r = s.answer(&json!(4)).await;
    assert!(text_of(&r).contains("raw sample"), "{r}");

    // Methods the revision dropped are the bridge's to answer.
    for (id, method, params) in [
        (5, "logging/setLevel", json!({"level": "debug"})),
        (6, "resources/subscribe", json!({"uri": "demo://resource/static/text/1"})),
        (7, "ping", json!({})),
    ] {
        assert_eq!(s.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await, 200, "{method}");
        assert_eq!(s.answer(&json!(id)).await, json!({}), "{method}");
    }

    // List changes: the upstream publishes to its listen streams; the client hears them on GET.
    // resources/subscribe just reopened the listen stream: the bridge holds the next request
    // until the upstream acknowledged it, so no change is lost in between.
    let r = s.call(8, "notify-list-changed", json!({})).await;
    assert_eq!(text_of(&r), "published", "{r}");
    for m in ["notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"] {
        let (tag, n) = s.wait(m, |v| v["method"] == m).await;
        assert_eq!(tag, "get", "{m} arrives on the standalone GET stream: {n}");
        assert!(n.get("id").is_none(), "{n}");
    }

    // Cancellation: notifications/cancelled closes the upstream response, which aborts the tool.
    let msg = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "trigger-long-running-operation", "arguments": {"duration": 30, "steps": 30},
        "_meta": {"progressToken": "raw-cancel"}}});
    assert_eq!(s.send(&msg).await, 200);
    s.wait("the first progress", |v| v["method"] == "notifications/progress" && v["params"]["progressToken"] == "raw-cancel")
        .await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9, "reason": "raw test"}});
    assert_eq!(s.send(&cancel).await, 202, "notifications/cancelled");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !modern.log().contains("cancelled at step") {
        assert!(Instant::now() < deadline, "the upstream saw no cancellation within 10 s:\n{}", modern.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The session goes on.
    assert_eq!(text_of(&s.call(10, "echo", json!({"message": "after cancel"})).await), "Echo: after cancel");

    // A legacy HTTP+SSE session hears list changes on its one stream.
    let mut l = Legacy::open(&bridge.base(), "adapted").await;
    let call =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "notify-list-changed", "arguments": {}}});
    assert_eq!(l.post(&call).await, 202);
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &Value| m["method"] == "notifications/tools/list_changed") || !seen.iter().any(|m| m["id"] == 2) {
        let m = l.next_message(Duration::from_secs(30)).await.unwrap_or_else(|| panic!("the SSE stream ended; seen {seen:?}"));
        seen.push(m);
    }
}

/// An initialize the adapter cannot read (a number for `protocolVersion`) ends the session with
/// an answer, at once: the client is not left waiting on a session whose upstream is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_initialize_on_a_modern_only_upstream_is_answered_not_left_waiting() {
    require_node();
    let modern = ModernServer::start().await;
    let bridge = Bridge::start(&adapted_config(&modern), &[]).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": 20251125, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let started = Instant::now();
    let resp = http()
        .post(bridge.url("/mcp/adapted"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(30))
        .body(init.to_string())
        .send()
        .await
        .expect("POST initialize");
    let status = resp.status();
    let body = resp.text().await.expect("the answer, whole");
    assert!(started.elapsed() < Duration::from_secs(10), "answered in {:?}: {status} {body}", started.elapsed());
    assert!(body.contains("\"error\"") && body.contains("\"id\":1"), "a JSON-RPC error for the initialize: {status} {body}");
    bridge.wait_log(&["session ended", "reason=upstream_failed_to_start"], MINUTE).await;
}
