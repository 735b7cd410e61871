//! 2026-07-28 ("stateless") requests by hand, shared by the stateless test binaries: the
//! per-request `_meta`, the mirrored headers, a POST read to its whole answer, and checks on
//! error answers and log lines.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{http, ACCEPT_BOTH};

pub(crate) const MODERN: &str = "2026-07-28";
pub(crate) const MINUTE: Duration = Duration::from_secs(60);

// ---- modern requests by hand ----------------------------------------------------------------

/// The per-request `_meta` of a 2026-07-28 request.
pub(crate) fn meta(caps: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": caps,
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-bridge-stateless-tests", "version": "0"},
    })
}

/// A request with `params._meta` set to [`meta`] (`params` must be an object).
pub(crate) fn request(id: Value, method: &str, mut params: Value, caps: Value) -> Value {
    params["_meta"] = meta(caps);
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The headers a modern client sends with `method` (and `Mcp-Name` for tools/call etc.).
pub(crate) fn headers(method: &str, name: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![("mcp-protocol-version".to_string(), MODERN.to_string()), ("mcp-method".to_string(), method.to_string())];
    if let Some(n) = name {
        h.push(("mcp-name".to_string(), n.to_string()));
    }
    h
}

/// A whole answer: status, headers, and every JSON-RPC message in it (JSON or SSE).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) sse: bool,
    pub(crate) body: String,
    pub(crate) messages: Vec<Value>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The one message that answers a request (has an id and a result or an error).
    pub(crate) fn answer(&self) -> &Value {
        let answers: Vec<&Value> = self
            .messages
            .iter()
            .filter(|m| m.get("id").is_some() && (m.get("result").is_some() || m.get("error").is_some()))
            .collect();
        assert_eq!(answers.len(), 1, "exactly one answer in {self:?}");
        answers[0]
    }

    pub(crate) fn notifications(&self, method: &str) -> Vec<&Value> {
        self.messages.iter().filter(|m| m["method"] == method).collect()
    }
}

/// POSTs `body` with `hs` (plus Accept and Content-Type) and reads the whole answer.
pub(crate) async fn post(url: &str, hs: &[(String, String)], body: &str) -> Reply {
    let mut r = http().post(url).header("accept", ACCEPT_BOTH).header("content-type", "application/json").timeout(MINUTE * 2);
    for (k, v) in hs {
        r = r.header(k.as_str(), v.as_str());
    }
    let resp = r.body(body.to_string()).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let sse = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
    let body = resp.text().await.unwrap_or_else(|e| panic!("read the answer of POST {url}: {e}"));
    let messages = if sse {
        body.split("\n\n")
            .filter_map(|block| {
                let data: Vec<&str> =
                    block.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
                (!data.is_empty())
                    .then(|| serde_json::from_str(&data.join("\n")).unwrap_or_else(|e| panic!("SSE data ({e}): {block}")))
            })
            .collect()
    } else {
        match serde_json::from_str::<Value>(&body) {
            Ok(Value::Array(a)) => a,
            Ok(v) => vec![v],
            Err(_) => Vec::new(),
        }
    };
    Reply { status, headers, sse, body, messages }
}

/// POSTs a modern request with the headers that match it.
pub(crate) async fn call(url: &str, msg: &Value) -> Reply {
    let method = msg["method"].as_str().expect("method");
    let name = msg["params"]["name"].as_str().or(msg["params"]["uri"].as_str());
    post(url, &headers(method, name), &msg.to_string()).await
}

/// Asserts an error answer: HTTP status, JSON-RPC code, and the request's id.
pub(crate) fn assert_error(what: &str, r: &Reply, status: u16, code: i64, id: &Value) -> Value {
    assert_eq!(r.status, status, "{what}: HTTP status; body: {}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: a JSON body ({e}): {}", r.body));
    assert_eq!(v["error"]["code"].as_i64(), Some(code), "{what}: JSON-RPC error code: {v}");
    assert_eq!(&v["id"], id, "{what}: the error carries the request's id: {v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: an error message: {v}");
    v
}

pub(crate) fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// The backing session a log line names (`session=...`).
pub(crate) fn session_of(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("session="))
        .unwrap_or_else(|| panic!("a session in {line}"))
        .trim_matches('"')
        .to_string()
}

/// The lines of `log` that contain every needle.
pub(crate) fn lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines().filter(|l| needles.iter().all(|n| l.contains(n))).collect()
}
