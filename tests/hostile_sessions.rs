//! Hostile-probe findings about sessions and shared children (issue 18), each reproduced on the
//! real binary: answers to another session's server request, a shared child's `initialize`
//! replayed to everyone, duplicate request ids in flight, idle expiry under a pending request,
//! and the cap on pending requests. (Split from `hostile.rs`, which is past 600 lines.)

mod common;

use std::time::Duration;

use common::{python_fixture, responses, Bridge, McpSession, SseReader, ACCEPT_BOTH, PROTOCOL};
use serde_json::{json, Value};

const ALICE: &str = "alice-token-5e1f0b7d";
const BOB: &str = "bob-token-0c93a4e2";

/// `[auth]` with two clients, each allowed every server.
fn two_principals() -> String {
    format!(
        "[auth]\n[[auth.clients]]\nname = \"alice\"\ntoken = \"{ALICE}\"\nservers = [\"*\"]\n\
         [[auth.clients]]\nname = \"bob\"\ntoken = \"{BOB}\"\nservers = [\"*\"]\n"
    )
}

/// A client that sends `token` as a bearer token on every request.
fn client(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().expect("header value"));
    reqwest::Client::builder().pool_max_idle_per_host(0).default_headers(h).build().expect("reqwest client")
}

/// Opens a Streamable HTTP session with `initialize` params of our choosing; returns the
/// session and the initialize answer.
async fn open_with_params(http: reqwest::Client, url: &str, params: Value) -> (McpSession, Value) {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params});
    let resp = http
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(init.to_string())
        .send()
        .await
        .expect("POST initialize");
    assert_eq!(resp.status(), 200, "initialize status");
    let id = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).expect("Mcp-Session-Id").to_string();
    let answer = responses(resp).await.into_iter().find(|m| m["id"] == 1).expect("an answer to initialize");
    let s = McpSession { http, url: url.to_string(), id };
    let r = s.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    assert_eq!(r.status(), 202, "notifications/initialized is accepted");
    (s, answer)
}

fn params(version: &str, capabilities: Value) -> Value {
    json!({"protocolVersion": version, "capabilities": capabilities, "clientInfo": {"name": "hostile", "version": "0"}})
}

/// The process id of the child serving `s` (the fixture's `pid` tool).
async fn pid(s: &McpSession) -> String {
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "pid"}});
    tool_text(&responses(s.post(&call).await).await.into_iter().find(|m| m["id"] == 3).expect("an answer to pid"))
}

/// The text of a tool call's answer.
fn tool_text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("a tool result: {answer}")).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_childs_server_request_is_answered_only_by_its_own_session() {
    let config = format!("{}sharing = \"shared\"\n{}", python_fixture("ask", "elicit_server.py"), two_principals());
    let bridge = Bridge::start(&config, &[]).await;
    let url = bridge.url("/mcp/ask");
    let (alice, _) = open_with_params(client(ALICE), &url, params(PROTOCOL, json!({"elicitation": {}}))).await;
    let (bob, _) = open_with_params(client(BOB), &url, params(PROTOCOL, json!({}))).await;

    // Alice's tool asks her a question; she sees its id on her POST stream.
    let resp = alice.post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "ask"}})).await;
    assert_eq!(resp.status(), 200);
    let mut stream = SseReader::new(resp);
    let question = loop {
        let ev = stream.next_event(Duration::from_secs(20)).await.expect("the elicitation request");
        let msg = ev.json().expect("JSON event");
        if msg["method"] == "elicitation/create" {
            break msg;
        }
    };
    let asked = question["id"].clone();

    // Bob answers it, by its very id and by every id a counter would have given.
    let mut guesses = vec![asked.clone()];
    guesses.extend((1..40).map(|n| json!(format!("mcp-bridge-srv-{n}"))));
    for id in &guesses {
        let injected = json!({"jsonrpc": "2.0", "id": id, "result": {"action": "accept", "content": {"injected_by": "bob"}}});
        let status = bob.post(&injected).await.status();
        assert!(status == 202 || status.is_client_error(), "bob's answer for {id}: {status}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Alice answers for herself; her tool gets her answer, never bob's.
    let own = json!({"jsonrpc": "2.0", "id": asked, "result": {"action": "accept", "content": {"answered_by": "alice"}}});
    assert_eq!(alice.post(&own).await.status(), 202, "alice's own answer is accepted");
    let result = loop {
        let ev = stream.next_event(Duration::from_secs(20)).await.expect("the tool's answer");
        let msg = ev.json().expect("JSON event");
        if msg["id"] == 2 {
            break msg;
        }
    };
    let text = tool_text(&result);
    assert!(text.contains("alice") && !text.contains("injected_by"), "alice's tool got {text}; log:\n{}", bridge.log());
    if let Some(id) = asked.as_str() {
        assert!(!id.ends_with("-1") && id.len() > "mcp-bridge-srv-".len() + 16, "the id given to the session is guessable: {id}");
    }

    // With [auth], each principal has a shared child of its own; a principal's sessions share it.
    let (alice2, _) = open_with_params(client(ALICE), &url, params(PROTOCOL, json!({}))).await;
    let (a1, a2, b) = (pid(&alice).await, pid(&alice2).await, pid(&bob).await);
    assert_eq!(a1, a2, "alice's two sessions share one child");
    assert_ne!(a1, b, "alice and bob do not share a child");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_version_from_the_first_client_does_not_reach_later_clients_of_a_shared_child() {
    let config = format!(
        "{}sharing = \"shared\"\n{}sharing = \"shared\"\nenv = {{ FAIL_FIRST_INIT = \"1\" }}\n",
        python_fixture("shared", "elicit_server.py"),
        python_fixture("flaky", "elicit_server.py")
    );
    let bridge = Bridge::start(&config, &[]).await;
    let url = bridge.url("/mcp/shared");

    // The first client makes a version up; it is answered with one the bridge speaks.
    let (_a, answer) = open_with_params(common::http(), &url, params("1900-01-01", json!({}))).await;
    let version = answer["result"]["protocolVersion"].as_str().unwrap_or_default().to_string();
    assert!(SUPPORTED.contains(&version.as_str()), "the made-up version was answered with {answer}");
    // A client asking for a version the bridge supports gets that version.
    let (_b, answer) = open_with_params(common::http(), &url, params("2025-03-26", json!({}))).await;
    assert_eq!(answer["result"]["protocolVersion"], "2025-03-26", "{answer}");

    // The official Python SDK works on the same shared child.
    let run = common::run_client(common::Sdk::Py, "streamable", &url, &["--scenario", "basic"]).await;
    let out = run.ok();
    assert!(SUPPORTED.contains(&out["protocolVersion"].as_str().unwrap_or_default()), "{out}");

    // A refused initialize reaches its client as the error it is, and is not kept: the next
    // client's initialize is tried again.
    let flaky = bridge.url("/mcp/flaky");
    let (_c, refused) = open_with_params(common::http(), &flaky, params(PROTOCOL, json!({}))).await;
    assert_eq!(refused["error"]["message"], "not ready yet", "{refused}");
    let (_d, answer) = open_with_params(common::http(), &flaky, params(PROTOCOL, json!({}))).await;
    assert_eq!(answer["result"]["protocolVersion"], PROTOCOL, "{answer}");
}

/// The protocol versions the bridge speaks with `initialize`.
const SUPPORTED: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// A POST answer read to its end, which must come within `limit`.
async fn answers_within(resp: reqwest::Response, limit: Duration) -> Vec<Value> {
    tokio::time::timeout(limit, responses(resp)).await.unwrap_or_else(|_| panic!("the POST stream did not end within {limit:?}"))
}

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"message": "again"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_request_id_in_flight_is_answered_at_once_and_the_first_is_unaffected() {
    let bridge = Bridge::start(&python_fixture("ask", "elicit_server.py"), &[]).await;
    let url = bridge.url("/mcp/ask");

    // Twice in one batch (batches exist up to 2025-03-26).
    let (s, _) = open_with_params(common::http(), &url, params("2025-03-26", json!({}))).await;
    let batch = json!([call(5, "echo"), call(5, "echo")]);
    let answers = answers_within(s.post(&batch).await, Duration::from_secs(10)).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers.iter().any(|m| m["id"] == 5 && m["error"]["code"] == -32600), "the duplicate is refused: {answers:?}");
    assert!(answers.iter().any(|m| m["id"] == 5 && m["result"]["content"][0]["text"] == "Echo: again"), "{answers:?}");

    // A second POST reusing an id still pending.
    let (s, _) = open_with_params(common::http(), &url, params(PROTOCOL, json!({"elicitation": {}}))).await;
    let first = s.post(&call(7, "ask")).await;
    let mut first = SseReader::new(first);
    let question = first.next_event(Duration::from_secs(20)).await.and_then(|e| e.json()).expect("the elicitation request");
    assert_eq!(question["method"], "elicitation/create");
    let again = answers_within(s.post(&call(7, "echo")).await, Duration::from_secs(10)).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["error"]["code"], -32600, "{again:?}");
    assert!(again[0]["error"]["message"].as_str().unwrap_or_default().contains("already in use"), "{again:?}");
    let reply = json!({"jsonrpc": "2.0", "id": question["id"], "result": {"action": "accept", "content": {"name": "first"}}});
    assert_eq!(s.post(&reply).await.status(), 202);
    let answer = first.next_event(Duration::from_secs(20)).await.and_then(|e| e.json()).expect("the first call's answer");
    assert_eq!(answer["id"], 7);
    assert!(tool_text(&answer).contains("first"), "the first request is unaffected: {answer}");

    // The same on the legacy message endpoint.
    let mut legacy = common::Legacy::open(&bridge.base(), "ask").await;
    assert_eq!(legacy.post(&call(7, "ask")).await, 202);
    let question = legacy.next_message(Duration::from_secs(20)).await.expect("the elicitation request");
    assert_eq!(question["method"], "elicitation/create");
    assert_eq!(legacy.post(&call(7, "echo")).await, 202);
    let refused = legacy.next_message(Duration::from_secs(10)).await.expect("an answer to the duplicate");
    assert_eq!((refused["id"].clone(), refused["error"]["code"].clone()), (json!(7), json!(-32600)), "{refused}");
    let reply = json!({"jsonrpc": "2.0", "id": question["id"], "result": {"action": "accept", "content": {"name": "legacy"}}});
    assert_eq!(legacy.post(&reply).await, 202);
    let answer = legacy.next_message(Duration::from_secs(20)).await.expect("the first call's answer");
    assert!(answer["id"] == 7 && tool_text(&answer).contains("legacy"), "the first request is unaffected: {answer}");
    // The same request again (a client retrying after a 503 whose request had got through) is
    // not delivered again: its one answer is on the stream already.
    assert_eq!(legacy.post(&call(7, "ask")).await, 202);
    let more = legacy.next(Duration::from_secs(2)).await;
    assert_eq!(more, Err(()), "one answer for id 7 on the legacy stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_request_keeps_its_session_past_the_idle_timeout() {
    // The POST stream is closed after 1 s (2025-11-25 polling); the client polls back late.
    let config = format!(
        "[sessions]\nidle_timeout = \"2s\"\nmax_stream_lifetime = \"1s\"\n{}",
        python_fixture("slow", "elicit_server.py")
    );
    let bridge = Bridge::start(&config, &[]).await;
    let url = bridge.url("/mcp/slow");
    let (s, _) = open_with_params(common::http(), &url, params("2025-11-25", json!({}))).await;
    let started = std::time::Instant::now();
    let slow = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "sleep", "arguments": {"ms": 4000}}});
    let resp = s.post(&slow).await;
    assert_eq!(resp.status(), 200);
    let mut stream = SseReader::new(resp);
    let mut last_id = None;
    while let Some(b) = stream.next(Duration::from_secs(10)).await {
        last_id = b.id.or(last_id);
    }
    let last_id = last_id.expect("the priming event's id");

    // Past the idle timeout (2 s after the stream closed), after the tool answered.
    tokio::time::sleep(Duration::from_millis(4500).saturating_sub(started.elapsed())).await;
    let resp = s
        .http
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &s.id)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", &last_id)
        .send()
        .await
        .expect("GET to resume");
    assert_eq!(resp.status(), 200, "the session is still there after {:?}; log:\n{}", started.elapsed(), bridge.log());
    let mut stream = SseReader::new(resp);
    let answer = stream.next_event(Duration::from_secs(10)).await.and_then(|e| e.json()).expect("the slow call's answer");
    assert_eq!((answer["id"].clone(), tool_text(&answer)), (json!(9), "slept".to_string()), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_max_pending_per_session_get_429_until_one_is_answered() {
    let config = format!("[limits]\nmax_pending_per_session = 2\n{}", python_fixture("ask", "elicit_server.py"));
    let bridge = Bridge::start(&config, &[]).await;
    let url = bridge.url("/mcp/ask");
    let (s, _) = open_with_params(common::http(), &url, params(PROTOCOL, json!({"elicitation": {}}))).await;

    // Two calls wait for the client's answers: the session's cap is reached.
    let mut waiting = Vec::new();
    for id in [1, 2] {
        let mut stream = SseReader::new(s.post(&call(id, "ask")).await);
        let q = stream.next_event(Duration::from_secs(20)).await.and_then(|e| e.json()).expect("the elicitation request");
        waiting.push((stream, q["id"].clone()));
    }
    let over = s.post(&call(3, "echo")).await;
    let status = over.status();
    let body = over.text().await.unwrap_or_default();
    assert_eq!(status, 429, "past the cap: {body}");
    let err: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("a JSON-RPC error body: {body}"));
    assert!(err["error"]["message"].as_str().unwrap_or_default().contains("limits.max_pending_per_session"), "{err}");

    // The legacy endpoint refuses the same way.
    let mut legacy = common::Legacy::open(&bridge.base(), "ask").await;
    for id in [1, 2] {
        assert_eq!(legacy.post(&call(id, "ask")).await, 202);
        let q = legacy.next_message(Duration::from_secs(20)).await.expect("the elicitation request");
        assert_eq!(q["method"], "elicitation/create");
    }
    let (status, body) = legacy.post_raw(&call(3, "echo").to_string()).await;
    assert_eq!(status, 429, "past the cap on /sse/ask/message: {body}");

    // One answer makes room again.
    let (mut stream, q) = waiting.remove(0);
    let reply = json!({"jsonrpc": "2.0", "id": q, "result": {"action": "decline"}});
    assert_eq!(s.post(&reply).await.status(), 202);
    let done = stream.next_event(Duration::from_secs(20)).await.and_then(|e| e.json()).expect("the first call's answer");
    assert_eq!(done["id"], 1, "{done}");
    let answers = answers_within(s.post(&call(3, "echo")).await, Duration::from_secs(10)).await;
    assert_eq!(answers[0]["result"]["content"][0]["text"], "Echo: again", "{answers:?}");
}
