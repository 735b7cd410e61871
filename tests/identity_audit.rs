//! Issue 17, audit: one JSON line per tool call, resource read and prompt get, in a file of its
//! own, written for a log shipper: time, principal, server, transport, method, name, outcome,
//! duration, bytes in and out; arguments only for the servers `[audit] arguments` names. On
//! `/mcp`, the legacy `/sse` (answer read off the stream) and `/rest`; a rate-limited call is
//! written as refused with its status.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{echo_server, Bridge, Legacy, McpSession, TempDir};
use serde_json::{json, Value};

const ALICE: &str = "alice-audit-token";

fn client() -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {ALICE}").parse().expect("header value"));
    reqwest::Client::builder().default_headers(h).build().expect("reqwest client")
}

/// The audit file's lines once it holds `n` (at most 10 s).
async fn lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn call(id: u64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_read_and_get_is_one_json_line() {
    let dir = TempDir::new("audit");
    let file = dir.path().join("audit.jsonl");
    let config = format!(
        "[auth]\n[[auth.clients]]\nname = \"alice\"\ntoken = \"{ALICE}\"\n[auth.rate_limits]\nper_tool = {{ rate = 1, burst = 3 }}\n\
         [auth.audit]\nfile = {}\narguments = [\"echo\"]\n{}{}",
        common::toml_str(&file.display().to_string()),
        echo_server("echo"),
        echo_server("other"),
    );
    let bridge = Bridge::start(&config, &[]).await;
    let http = client();

    // Streamable HTTP: an echo (arguments written), an unknown tool (error), a resource read and
    // a prompt get (errors: the echo server has neither), a ping (not audited).
    let s = McpSession::open_with(http.clone(), &bridge.url("/mcp/echo")).await;
    assert_eq!(s.echo(2, "secret-ish").await, "secret-ish");
    let _ = common::responses(s.post(&call(3, "nope", json!({}))).await).await;
    let _ = common::responses(
        s.post(&json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": "file:///x"}})).await,
    )
    .await;
    let _ =
        common::responses(s.post(&json!({"jsonrpc": "2.0", "id": 5, "method": "prompts/get", "params": {"name": "p"}})).await)
            .await;
    let _ = common::responses(s.post(&json!({"jsonrpc": "2.0", "id": 6, "method": "ping"})).await).await;
    // Server `other`: no arguments; a fourth `add` at once is over the per-tool bucket (3).
    let o = McpSession::open_with(http.clone(), &bridge.url("/mcp/other")).await;
    for id in 2..5 {
        let _ = common::responses(o.post(&call(id, "add", json!({"a": 1, "b": 2}))).await).await;
    }
    assert_eq!(o.post(&call(5, "add", json!({"a": 1, "b": 2}))).await.status(), 429);
    // Legacy SSE: the answer comes on the stream.
    let mut l = Legacy::connect_with(http.clone(), &bridge.base(), "echo").await;
    l.handshake(&common::initialize_request(1)).await;
    assert_eq!(l.echo(2, "by sse").await, "by sse");
    // REST.
    let r = http
        .post(bridge.url("/rest/other/tools/echo"))
        .header("content-type", "application/json")
        .body(json!({"message": "by rest"}).to_string())
        .send()
        .await
        .expect("REST call");
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;

    let got = lines(&file, 10).await;
    eprintln!("audit lines:\n{}", got.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"));
    assert_eq!(got.len(), 10, "one line per call, read and get (and none for ping): {got:#?}");
    let find = |transport: &str, server: &str, method: &str, id: Value| {
        got.iter()
            .find(|l| l["transport"] == transport && l["server"] == server && l["method"] == method && l["id"] == id)
            .unwrap_or_else(|| panic!("no line {transport} {server} {method} {id}: {got:#?}"))
            .clone()
    };
    let echo = find("streamable", "echo", "tools/call", json!(2));
    assert_eq!(
        (echo["principal"].as_str(), echo["name"].as_str(), echo["outcome"].as_str()),
        (Some("alice"), Some("echo"), Some("ok"))
    );
    assert_eq!(echo["arguments"], json!({"message": "secret-ish"}), "arguments on for echo");
    assert!(echo["bytes_in"].as_u64().unwrap() > 50 && echo["bytes_out"].as_u64().unwrap() > 30, "{echo}");
    assert!(echo["duration_ms"].as_f64().is_some_and(|d| (0.0..30_000.0).contains(&d)), "{echo}");
    assert!(echo["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "{echo}");
    let unknown = find("streamable", "echo", "tools/call", json!(3));
    assert_eq!((unknown["outcome"].as_str(), unknown["error_code"].as_i64()), (Some("error"), Some(-32602)));
    let read = find("streamable", "echo", "resources/read", json!(4));
    assert_eq!((read["name"].as_str(), read["outcome"].as_str()), (Some("file:///x"), Some("error")));
    assert!(read.get("arguments").is_none(), "a resource read has no arguments: {read}");
    assert_eq!(find("streamable", "echo", "prompts/get", json!(5))["name"], "p");
    let add = find("streamable", "other", "tools/call", json!(2));
    assert_eq!(add["outcome"], "ok");
    assert!(add.get("arguments").is_none(), "arguments off for other: {add}");
    let limited = find("streamable", "other", "tools/call", json!(5));
    assert_eq!((limited["outcome"].as_str(), limited["status"].as_u64()), (Some("refused"), Some(429)));
    let sse = find("sse", "echo", "tools/call", json!(2));
    assert_eq!((sse["outcome"].as_str(), sse["arguments"]["message"].as_str()), (Some("ok"), Some("by sse")));
    let rest = got.iter().find(|l| l["transport"] == "rest").expect("a REST line");
    assert_eq!(
        (rest["server"].as_str(), rest["name"].as_str(), rest["outcome"].as_str()),
        (Some("other"), Some("echo"), Some("ok"))
    );
    assert!(!bridge.log().contains("audit {"), "the lines go to their file, not the log");
}
