//! What the REST tests share: requests with an optional bearer token, problem+json checks, the
//! backing sessions the admin API lists, and reading an SSE answer's events.
#![allow(dead_code)]

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::common::{self, Bridge};

pub(crate) const ALICE: &str = "alice-token-0123456789";
pub(crate) const BOB: &str = "bob-token-0123456789";

fn with_token(req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

async fn read(resp: reqwest::Response) -> (u16, HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, v)
}

/// `GET path` with an optional bearer token: status, headers and the JSON body.
pub(crate) async fn get(bridge: &Bridge, path: &str, token: Option<&str>) -> (u16, HeaderMap, Value) {
    let req = with_token(common::http().get(bridge.url(path)), token);
    read(tokio::time::timeout(std::time::Duration::from_secs(60), req.send()).await.expect("answered in time").expect("GET"))
        .await
}

/// `POST path` with `body` as JSON and an optional bearer token.
pub(crate) async fn post(bridge: &Bridge, path: &str, body: &str, token: Option<&str>) -> (u16, HeaderMap, Value) {
    let req = common::http().post(bridge.url(path)).header("content-type", "application/json").body(body.to_string());
    let req = with_token(req, token);
    read(tokio::time::timeout(std::time::Duration::from_secs(60), req.send()).await.expect("answered in time").expect("POST"))
        .await
}

pub(crate) fn header(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// A problem+json answer with this status, its `error` member a JSON-RPC error object.
pub(crate) fn assert_problem(want: u16, status: u16, headers: &HeaderMap, v: &Value) {
    assert_eq!(status, want, "{v}");
    assert_eq!(header(headers, "content-type"), "application/problem+json", "{v}");
    assert_eq!(v["status"], want, "{v}");
    assert!(v["title"].is_string() && v["detail"].is_string(), "{v}");
    assert!(v["error"]["code"].is_i64() && v["error"]["message"].is_string(), "the JSON-RPC error: {v}");
    if want == 503 {
        assert!(!header(headers, "retry-after").is_empty(), "503 has Retry-After: {v}");
    }
}

/// The live backing sessions of `server` (REST calls run on them), from the admin API.
pub(crate) async fn rest_sessions(bridge: &Bridge, server: &str) -> Vec<Value> {
    let (status, _, v) = get(bridge, "/admin/api/sessions", None).await;
    assert_eq!(status, 200, "{v}");
    v["sessions"].as_array().unwrap().iter().filter(|s| s["server"] == server && s["transport"] == "stateless").cloned().collect()
}

/// Percent-encodes a query value.
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One SSE event: its name and its data parsed as JSON.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) name: String,
    pub(crate) data: Value,
}

/// Reads SSE events from a response body as they come.
pub(crate) struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    pub(crate) fn new(resp: reqwest::Response) -> Events {
        Events { resp, buf: String::new() }
    }

    /// The next event (comments skipped), `None` at the end of the body; at most `wait`.
    pub(crate) async fn next(&mut self, wait: std::time::Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_string();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some(Event { name, data: serde_json::from_str(&data).expect("JSON data") });
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await.expect("an event in time").expect("body");
            self.buf.push_str(&String::from_utf8_lossy(&chunk?));
        }
    }
}
