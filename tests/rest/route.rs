//! The design note's route: `POST /mcp/router/route/{service}` (and `…/timeout/{seconds}`) with
//! the note's envelope, answered with `{id, jsonrpc, method, result | error, targetService,
//! timestamp}`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::support::*;
use crate::common::{echo_server, everything_stdio, require_node, Bridge};

async fn routed(bridge: &Bridge, path: &str, method: &str, params: Value) -> (u16, Value) {
    let body = json!({ "id": "req-7", "jsonrpc": "2.0", "method": method, "params": params }).to_string();
    let (status, headers, v) = post(bridge, path, &body, None).await;
    assert_eq!(header(&headers, "content-type"), "application/json", "{v}");
    (status, v)
}

/// The envelope's own members, whatever the answer.
fn assert_envelope(v: &Value, method: &str, service: &str) {
    assert_eq!((&v["id"], &v["jsonrpc"], &v["method"]), (&json!("req-7"), &json!("2.0"), &json!(method)), "{v}");
    assert_eq!(v["targetService"], service, "{v}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let ts = v["timestamp"].as_u64().expect("a timestamp in ms");
    assert!(now.abs_diff(ts) < 60_000, "{ts} vs {now}");
    assert!(v.get("result").is_some() != v.get("error").is_some(), "result or error: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notes_route_serves_every_method_with_its_envelope() {
    require_node();
    let config = format!("{}{}", echo_server("echo"), everything_stdio("everything"));
    let bridge = Bridge::start(&config, &[]).await;
    let echo = "/mcp/router/route/echo";
    let (status, v) = routed(&bridge, echo, "tools/list", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_envelope(&v, "tools/list", "echo");
    assert_eq!(v["result"]["tools"][1]["name"], "add", "{v}");
    let (status, v) = routed(&bridge, echo, "tools/call", json!({"name": "add", "arguments": {"a": 1, "b": 2}})).await;
    assert_eq!((status, &v["result"]["content"][0]["text"]), (200, &json!("3")), "{v}");
    assert_envelope(&v, "tools/call", "echo");
    let (status, v) = routed(&bridge, echo, "ping", json!({})).await;
    assert_eq!((status, &v["result"]), (200, &json!({})), "{v}");

    // The upstream's own error travels in `error` (echo has no resources: -32601).
    let (status, v) = routed(&bridge, echo, "resources/list", json!({})).await;
    assert_eq!((status, &v["error"]["code"]), (404, &json!(-32601)), "{v}");
    assert_envelope(&v, "resources/list", "echo");
    // A method the route does not take, and an unknown service.
    let (status, v) = routed(&bridge, echo, "initialize", json!({})).await;
    assert_eq!((status, &v["error"]["code"]), (404, &json!(-32601)), "{v}");
    let (status, v) = routed(&bridge, "/mcp/router/route/nowhere", "ping", json!({})).await;
    assert_eq!(status, 404, "{v}");
    assert_envelope(&v, "ping", "nowhere");

    let every = "/mcp/router/route/everything";
    for (method, params, member) in [
        ("resources/list", json!({}), "resources"),
        ("prompts/list", json!({}), "prompts"),
        ("prompts/get", json!({"name": "simple-prompt"}), "messages"),
    ] {
        let (status, v) = routed(&bridge, every, method, params).await;
        assert_eq!(status, 200, "{v}");
        assert_envelope(&v, method, "everything");
        assert!(v["result"][member].as_array().is_some_and(|a| !a.is_empty()), "{v}");
    }
    let (_, list) = routed(&bridge, every, "resources/list", json!({})).await;
    let uri = list["result"]["resources"][0]["uri"].clone();
    let (status, v) = routed(&bridge, every, "resources/read", json!({ "uri": uri })).await;
    assert_eq!((status, &v["result"]["contents"][0]["uri"]), (200, &uri), "{v}");

    // The route's own timeout: 504, the call cancelled upstream.
    let started = Instant::now();
    let params = json!({"name": "trigger-long-running-operation", "arguments": {"duration": 10, "steps": 10}});
    let (status, v) = routed(&bridge, "/mcp/router/route/everything/timeout/1", "tools/call", params).await;
    assert_eq!((status, &v["error"]["code"]), (504, &json!(-32001)), "{v}");
    assert_envelope(&v, "tools/call", "everything");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    bridge.wait_for_log_line("the cancellation", Duration::from_secs(60), |l| l.contains("REST call cancelled")).await;
    let (status, _) = routed(&bridge, "/mcp/router/route/everything/timeout/0", "ping", json!({})).await;
    assert_eq!(status, 400);
}
