//! A raw Streamable HTTP session (initialize, `notifications/initialized`, echo, the standalone
//! GET stream), and reading the JSON-RPC messages of a POST answer.

use std::time::Duration;

use serde_json::{json, Value};

use super::{http, SseBlock, SseReader};

pub(crate) const ACCEPT_BOTH: &str = "application/json, text/event-stream";
pub(crate) const PROTOCOL: &str = "2025-06-18";

pub(crate) fn initialize_request(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL,
        "capabilities": {},
        "clientInfo": {"name": "mcp-bridge-tests", "version": "0"}
    }})
}

pub(crate) fn echo_call(id: u64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": message}}})
}

/// A Streamable HTTP session opened with raw requests.
pub(crate) struct McpSession {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) id: String,
}

/// POSTs a Streamable HTTP `initialize` (id 1) as a client opening a session would.
pub(crate) async fn post_initialize(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(initialize_request(1).to_string())
        .send()
        .await
        .expect("POST initialize")
}

impl McpSession {
    /// POSTs initialize and `notifications/initialized`; panics unless both succeed.
    pub(crate) async fn open(url: &str) -> McpSession {
        McpSession::open_with(http(), url).await
    }

    /// [`McpSession::open`] with `http`'s credentials.
    pub(crate) async fn open_with(http: reqwest::Client, url: &str) -> McpSession {
        let resp = post_initialize(&http, url).await;
        assert_eq!(resp.status(), 200, "initialize status");
        let id = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).expect("Mcp-Session-Id header").to_string();
        let answers = responses(resp).await;
        assert!(
            answers.iter().any(|m| m["id"] == 1 && m["result"]["protocolVersion"].is_string()),
            "initialize answered: {answers:?}"
        );
        let s = McpSession { http, url: url.to_string(), id };
        let r = s.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        assert_eq!(r.status(), 202, "notifications/initialized is accepted");
        s
    }

    /// POSTs one message with the session headers.
    pub(crate) async fn post(&self, msg: &Value) -> reqwest::Response {
        self.http
            .post(&self.url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", PROTOCOL)
            .body(msg.to_string())
            .send()
            .await
            .expect("POST")
    }

    /// GETs the session's standalone stream, resuming after `last_event_id` if given.
    pub(crate) async fn get(&self, last_event_id: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(&self.url).header("accept", "text/event-stream").header("mcp-session-id", &self.id);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.send().await.expect("GET")
    }

    /// Calls `echo` and returns the text it answered.
    pub(crate) async fn echo(&self, id: u64, message: &str) -> String {
        let resp = self.post(&echo_call(id, message)).await;
        assert_eq!(resp.status(), 200, "echo status");
        let answers = responses(resp).await;
        let answer = answers.iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("no answer to echo {id}: {answers:?}"));
        answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("echo result: {answer}")).to_string()
    }
}

/// The JSON-RPC messages of a POST answer, JSON or SSE; an SSE answer is read to its end.
pub(crate) async fn responses(resp: reqwest::Response) -> Vec<Value> {
    let sse =
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
    if !sse {
        let body = resp.bytes().await.expect("read body");
        let v: Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("JSON body ({e}): {}", String::from_utf8_lossy(&body)));
        return match v {
            Value::Array(a) => a,
            v => vec![v],
        };
    }
    let mut r = SseReader::new(resp);
    r.rest(Duration::from_secs(60)).await.iter().filter_map(SseBlock::json).collect()
}

/// The JSON-RPC error code in a body, if it is a JSON-RPC error.
pub(crate) fn rpc_error_code(body: &str) -> Option<i64> {
    serde_json::from_str::<Value>(body).ok().and_then(|v| v["error"]["code"].as_i64())
}
