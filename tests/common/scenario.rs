//! Checks on what the official SDK clients' scenarios saw, shared by the test binaries that run them.

use serde_json::Value;

use super::ClientRun;

/// What the full scenario of `tests/clients/*` must have seen through the bridge, checked here as
/// well as in the client itself.
pub(crate) fn assert_full(run: &ClientRun) {
    let v = run.ok();
    let l = &run.label;
    assert_eq!(v["scenario"], "full", "{l}");
    let tools: Vec<&str> = v["tools"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    for t in ["echo", "get-sum", "trigger-long-running-operation", "trigger-sampling-request"] {
        assert!(tools.contains(&t), "{l}: tools/list has {t}: {tools:?}");
    }
    assert_eq!(v["echo"], "Echo: hello-0", "{l}");
    assert_eq!(v["sum"].as_f64(), Some(5.0), "{l}");
    let progress = v["progress"].as_u64().unwrap_or(0);
    assert!(progress >= 3, "{l}: at least 3 of 4 progress notifications arrived, got {progress}");
    assert_eq!(v["samplingRequests"], 1, "{l}: exactly one sampling request reached the client");
    assert!(v["sampling"].as_str().is_some_and(|s| s.contains("ping")), "{l}: sampling round trip carried the prompt: {v}");
    // The session id the client saw is the bridge's (32 hex digits), so the bridge was in the path.
    let sid = v["sessionId"].as_str().unwrap_or("");
    assert!(sid.len() == 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()), "{l}: a bridge session id, got {sid:?}");
    if v["transport"] == "streamable" {
        assert!(v["protocolVersion"].is_string(), "{l}: a negotiated protocol version: {v}");
    }
}
