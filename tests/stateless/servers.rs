//! Upstreams for the stateless test binaries: a stdio fixture that misbehaves on purpose,
//! tests/clients/modern_server.mjs (a 2026-07-28-only remote server), and the results every full
//! run of the official v2 client must have.
#![allow(dead_code)]

use serde_json::{json, Value};

use super::wire::MODERN;
use crate::common::{toml_str, TempDir};

// ---- a stdio fixture that misbehaves on purpose -----------------------------------------------

/// A small stdio MCP server: `ask-sampling` sends `sampling/createMessage` whatever the client
/// declared (which a conforming server does not do, so the bridge's -32021 path can be seen),
/// and `log-levels` sends `notifications/message` at four levels (and progress, if asked)
/// before it answers.
pub(crate) const FIXTURE: &str = r#"
import json, sys
def send(m):
    sys.stdout.write(json.dumps(m) + "\n")
    sys.stdout.flush()
waiting = {}
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    m = json.loads(line)
    method, mid = m.get("method"), m.get("id")
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {"protocolVersion": m["params"]["protocolVersion"],
              "capabilities": {"tools": {"listChanged": True}, "logging": {}},
              "serverInfo": {"name": "stateless-fixture", "version": "0"}}})
    elif method == "tools/list":
        schema = {"type": "object", "properties": {}}
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [
              {"name": "ask-sampling", "inputSchema": schema}, {"name": "log-levels", "inputSchema": schema}]}})
    elif method == "tools/call" and m["params"]["name"] == "ask-sampling":
        ask = "ask-%s" % mid
        waiting[ask] = mid
        send({"jsonrpc": "2.0", "id": ask, "method": "sampling/createMessage", "params": {
              "messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 5}})
    elif method == "tools/call" and m["params"]["name"] == "log-levels":
        for level in ["debug", "info", "warning", "error"]:
            send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": level, "logger": "fixture", "data": level + " message"}})
        token = m["params"].get("_meta", {}).get("progressToken")
        if token is not None:
            send({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1, "total": 1}})
        send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "logged"}]}})
    elif method is None and mid in waiting:
        orig = waiting.pop(mid)
        send({"jsonrpc": "2.0", "id": orig, "result": {"content": [{"type": "text", "text": "sampled: " + json.dumps(m.get("result"))}]}})
    elif mid is not None and method is not None:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "Method not found"}})
"#;

/// `[servers.{name}]` running [`FIXTURE`] with python3; the script lives in `dir`.
pub(crate) fn fixture_server(name: &str, dir: &TempDir) -> String {
    let path = dir.path().join("stateless_fixture.py");
    std::fs::write(&path, FIXTURE).expect("write the fixture");
    format!("[servers.{name}]\ncommand = \"python3\"\nargs = [{}]\n", toml_str(&path.display().to_string()))
}

// ---- the official v2 client and the modern test server ----------------------------------------

pub(crate) fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// The results every full run of the client must have, whichever upstream serves it.
pub(crate) fn assert_full_run(what: &str, v: &Value) {
    assert_eq!(v["era"], "modern", "{what}: {v}");
    assert_eq!(v["protocolVersion"], MODERN, "{what}: {v}");
    assert!(v["sessionId"].is_null(), "{what}: no Mcp-Session-Id in 2026-07-28: {v}");
    assert!(strings(&v["discover"]["supportedVersions"]).contains(&MODERN), "{what}: discover lists {MODERN}: {v}");
    assert_eq!(v["echo"], "Echo: hello", "{what}: {v}");
    assert_eq!(v["progress"], 4, "{what}: four progress notifications: {v}");
    assert_eq!(v["progressValues"], json!([1, 2, 3, 4]), "{what}: {v}");
    assert_eq!(v["cancelled"], true, "{what}: {v}");
    assert_eq!(v["samplingRequests"], 1, "{what}: {v}");
    assert_eq!(v["sampling"], "sampled: Resource trigger-sampling-request context: hello", "{what}: {v}");
    assert_eq!(v["elicitationRequests"], 1, "{what}: {v}");
    assert!(
        v["elicitation"].as_str().is_some_and(|t| t.contains("Bridge Tester")),
        "{what}: the elicitation answer came back: {v}"
    );
    assert_eq!(v["listen"]["closed"], "local", "{what}: {v}");
}

#[allow(unused_imports)] // not every stateless test binary starts one
pub(crate) use crate::common::ModernServer;
