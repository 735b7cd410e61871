//! The MCP messages the load generator sends, and the check of every answer: a response must
//! carry the id just sent and echo this session's own tagged payload, or it counts as a
//! wrong-session delivery.

use serde_json::{json, Value};

/// The protocol revision the generator asks for (every peer and the bridge speak it).
pub const PROTOCOL: &str = "2025-06-18";

/// The stateless revision the `stateless` workload speaks (no initialize, `_meta` per request).
pub const MODERN_PROTOCOL: &str = "2026-07-28";

pub fn initialize(id: u64) -> Vec<u8> {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "mcp-bench", "version": "0.1.0"}}
    })
    .to_string()
    .into_bytes()
}

pub fn initialized() -> Vec<u8> {
    br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec()
}

pub fn call(id: u64, tool: &str, message: &str) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"message": message}}})
        .to_string()
        .into_bytes()
}

/// A 2026-07-28 `tools/call`: the protocol version, client capabilities and identity ride in
/// `params._meta` of every request (and the headers mirror the version, method and tool).
/// `client_version` goes into `clientInfo.version` ("0" normally; the worker's tag with
/// `--client-per-session`, which gives every worker a backing-session pool key of its own).
pub fn modern_call(id: u64, tool: &str, message: &str, client_version: &str) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": tool, "arguments": {"message": message},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN_PROTOCOL,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "mcp-bench", "version": client_version}
        }
    }})
    .to_string()
    .into_bytes()
}

/// The echo message of request `seq` in session `tag`, padded to `size` bytes. Every session
/// numbers its requests the same way, so only the tag tells two sessions' replies apart.
pub fn payload(tag: &str, seq: u64, size: usize) -> String {
    let mut s = format!("{tag}:{seq}:");
    while s.len() < size {
        s.push('x');
    }
    s
}

/// What one message read from a session's stream was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The answer to the request in flight, with this session's payload.
    Ok,
    /// A response for another request or another session.
    Wrong,
    /// A JSON-RPC error answering the request in flight.
    Error(String),
    /// A notification or a server request: not an answer.
    Other,
}

/// Checks one message against the request in flight (`id`, echo of `want`; `want` empty
/// accepts any result, as for initialize).
pub fn check(msg: &[u8], id: u64, want: &str) -> Verdict {
    check_result(msg, id, want, false)
}

/// [`check`] for a 2026-07-28 answer, whose result must also say `resultType: "complete"`.
pub fn check_modern(msg: &[u8], id: u64, want: &str) -> Verdict {
    check_result(msg, id, want, true)
}

fn check_result(msg: &[u8], id: u64, want: &str, modern: bool) -> Verdict {
    let Ok(v) = serde_json::from_slice::<Value>(msg) else {
        return Verdict::Wrong;
    };
    if v.get("method").is_some() {
        return Verdict::Other;
    }
    if v.get("id").and_then(Value::as_u64) != Some(id) {
        return Verdict::Wrong;
    }
    if let Some(e) = v.get("error") {
        return Verdict::Error(e.to_string());
    }
    if want.is_empty() {
        return if v.get("result").is_some() { Verdict::Ok } else { Verdict::Wrong };
    }
    let text = v.pointer("/result/content/0/text").and_then(Value::as_str);
    if modern && text == Some(want) && v.pointer("/result/resultType").and_then(Value::as_str) != Some("complete") {
        return Verdict::Error(format!("result without resultType \"complete\": {}", v["result"]));
    }
    if text == Some(want) {
        Verdict::Ok
    } else if v.pointer("/result/isError") == Some(&Value::Bool(true)) {
        Verdict::Error(text.unwrap_or("isError").to_string())
    } else {
        Verdict::Wrong
    }
}

/// The `protocolVersion` an initialize result names.
pub fn negotiated(msg: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(msg).ok()?;
    v.pointer("/result/protocolVersion").and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_sized_and_tagged() {
        let p = payload("s7", 42, 100);
        assert_eq!(p.len(), 100);
        assert!(p.starts_with("s7:42:x"));
    }

    #[test]
    fn verdicts() {
        let ok = br#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"s1:5:x"}]}}"#;
        assert_eq!(check(ok, 5, "s1:5:x"), Verdict::Ok);
        assert_eq!(check(ok, 5, "s2:5:x"), Verdict::Wrong, "another session's payload under our id");
        assert_eq!(check(ok, 6, "s1:6:x"), Verdict::Wrong, "an id not in flight");
        assert_eq!(check(br#"{"jsonrpc":"2.0","method":"notifications/message"}"#, 5, "x"), Verdict::Other);
        assert!(matches!(check(br#"{"jsonrpc":"2.0","id":5,"error":{"code":-1}}"#, 5, "x"), Verdict::Error(_)));
        assert_eq!(check(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#, 1, ""), Verdict::Ok);
        let done = br#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"s1:5:x"}],"resultType":"complete"}}"#;
        assert_eq!(check_modern(done, 5, "s1:5:x"), Verdict::Ok);
        assert!(matches!(check_modern(ok, 5, "s1:5:x"), Verdict::Error(_)), "a modern answer needs resultType");
        assert_eq!(check_modern(done, 5, "s2:5:x"), Verdict::Wrong);
        let modern: Value = serde_json::from_slice(&modern_call(3, "echo", "s0:3:x", "0")).unwrap();
        assert_eq!(modern["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"], MODERN_PROTOCOL);
        assert_eq!(modern["params"]["arguments"]["message"], "s0:3:x");
        assert_eq!(negotiated(br#"{"id":1,"result":{"protocolVersion":"2025-06-18"}}"#).as_deref(), Some("2025-06-18"));
    }
}
