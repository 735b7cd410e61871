//! An aggregate session in cluster mode: `kill -9` of its owner, and the next request on
//! another instance takes it over, replaying the client's `initialize` (with its `?tools=`
//! narrowing) to fresh member sessions.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cluster_support::{poll, Cluster};
use crate::common::{echo_server, responses, McpSession};

fn call(id: u64, name: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}})
}

/// The answer to request `id` among a POST's messages.
async fn answer(s: &McpSession, msg: &Value) -> Value {
    let id = msg["id"].clone();
    let resp = s.post(msg).await;
    assert_eq!(resp.status(), 200, "POST {msg}");
    let all = responses(resp).await;
    all.into_iter().find(|m| m["id"] == id && m.get("method").is_none()).unwrap_or_else(|| panic!("no answer to {msg}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_session_is_taken_over_with_its_narrowing() {
    let config = format!("{}{}[aggregates.all]\nservers = [\"a\", \"b\"]\n", echo_server("a"), echo_server("b"));
    let mut c = Cluster::start(&config, 2, false).await;
    let first = c.instances[0].url("/mcp/all?tools=a__*,b__echo");
    let opened = McpSession::open(&first).await;
    let s = McpSession { http: reqwest::Client::new(), url: first.clone(), id: opened.id.clone() };
    let before = answer(&s, &call(10, "b__echo", json!({"message": "before"}))).await;
    assert_eq!(before["result"]["content"][0]["text"], "before", "{before}");
    let owner = poll(Duration::from_secs(10), || c.redis.lease_owner(&s.id)).await.expect("the session has an owner");
    assert_eq!(owner, "b1");

    c.instances[0].kill9();
    let other = McpSession { http: reqwest::Client::new(), url: c.instances[1].url("/mcp/all"), id: s.id.clone() };
    let after = answer(&other, &call(11, "b__echo", json!({"message": "after"}))).await;
    assert_eq!(after["result"]["content"][0]["text"], "after", "the taken-over aggregate routes: {after}");
    let sum = answer(&other, &call(12, "a__add", json!({"a": 1, "b": 2}))).await;
    assert_eq!(sum["result"]["content"][0]["text"], "3", "{sum}");
    let narrowed = answer(&other, &call(13, "b__add", json!({"a": 1, "b": 2}))).await;
    assert_eq!(narrowed["error"]["code"], -32602, "the narrowing survived the takeover: {narrowed}");
    let new_owner = poll(Duration::from_secs(10), || c.redis.lease_owner(&s.id)).await;
    assert_eq!(new_owner.as_deref(), Some("b2"));
}
