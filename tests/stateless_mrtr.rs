//! MRTR (`InputRequiredResult`, `requestState`) of the 2026-07-28 revision by hand: wrong key,
//! right key, tampered state, a missing capability, a spent `requestState`, a timed-out request
//! that must not leak into the next one, and a retry on another cluster instance.

mod cluster_support;
mod common;
#[path = "stateless/servers.rs"]
mod servers;
mod support_nginx;
#[path = "stateless/wire.rs"]
mod wire;

use cluster_support::Cluster;
use common::{everything_stdio, require_node, Bridge, TempDir};
use serde_json::{json, Value};
use servers::*;
use wire::*;

// ---- 4. MRTR by hand --------------------------------------------------------------------------

fn elicit(id: Value, extra: Value) -> Value {
    let mut params = json!({"name": "trigger-elicitation-request", "arguments": {}});
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    request(id, "tools/call", params, json!({"elicitation": {}}))
}

/// An `InputRequiredResult` for `id` asking `elicitation/create`: its key and requestState.
fn assert_input_required(r: &Reply, id: &Value) -> (String, String) {
    assert_eq!(r.status, 200, "{r:?}");
    let a = r.answer();
    assert_eq!(&a["id"], id, "{a}");
    assert_eq!(a["result"]["resultType"], "input_required", "{a}");
    let asks = a["result"]["inputRequests"].as_object().unwrap_or_else(|| panic!("inputRequests: {a}"));
    assert_eq!(asks.len(), 1, "{a}");
    let (key, ask) = asks.iter().next().expect("one input request");
    assert_eq!(ask["method"], "elicitation/create", "{a}");
    assert!(ask["params"]["requestedSchema"]["properties"]["name"].is_object(), "{a}");
    let state = a["result"]["requestState"].as_str().unwrap_or_else(|| panic!("requestState: {a}")).to_string();
    assert!(state.starts_with("mcpb1."), "{state}");
    (key.clone(), state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mrtr_by_hand_wrong_key_right_key_tampered_state_and_missing_capability() {
    require_node();
    let dir = TempDir::new("stateless-fixture");
    let config = format!("{}{}", everything_stdio("everything"), fixture_server("fixture", &dir));
    let bridge = Bridge::start(&config, &[]).await;
    let url = bridge.url("/mcp/everything");

    let r = call(&url, &elicit(json!("e1"), json!({}))).await;
    let (key, state) = assert_input_required(&r, &json!("e1"));

    // An answer under a key that was not asked for answers nothing: the same question again.
    let wrong = format!("{key}999");
    let retry = json!({"requestState": state, "inputResponses": {wrong: {"action": "accept", "content": {"name": "Wrong"}}}});
    let r = call(&url, &elicit(json!("e2"), retry)).await;
    let (key2, state2) = assert_input_required(&r, &json!("e2"));
    assert_eq!(key2, key, "the same upstream request is still waiting");
    let part = |s: &str| s.split('.').nth(1).map(str::to_string);
    assert_eq!(part(&state2), part(&state), "still the same backing session: {state} / {state2}");

    // A requestState whose session part was changed belongs to nothing.
    let mut pieces: Vec<String> = state2.split('.').map(str::to_string).collect();
    pieces[1] = pieces[1].chars().rev().collect();
    let tampered = pieces.join(".");
    assert_ne!(tampered, state2);
    let retry = json!({"requestState": tampered, "inputResponses": {key.clone(): {"action": "decline"}}});
    let r = call(&url, &elicit(json!("e3"), retry)).await;
    let a = r.answer();
    assert_eq!(a["id"], "e3", "{a}");
    assert_eq!(a["error"]["code"], -32602, "a tampered requestState: {a}");
    assert!(a["error"]["message"].as_str().is_some_and(|m| m.contains("requestState")), "{a}");
    let r = call(&url, &elicit(json!("e3b"), json!({"requestState": "not-ours", "inputResponses": {}}))).await;
    assert_eq!(r.answer()["error"]["code"], -32602, "{r:?}");

    // The right key (with the untampered state) completes the original request.
    let answer =
        json!({"action": "accept", "content": {"name": "Answer From Raw HTTP", "check": true, "email": "raw@example.com"}});
    let retry = json!({"requestState": state2, "inputResponses": {key: answer}});
    let r = call(&url, &elicit(json!("e4"), retry)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let a = r.answer();
    assert_eq!(a["id"], "e4", "the final answer carries the retry's id: {a}");
    assert_eq!(a["result"]["resultType"], "complete", "{a}");
    let text = text_of(&a["result"]);
    assert!(text.contains("Answer From Raw HTTP") && text.contains("raw@example.com"), "the answer reached the tool: {text}");
    // server-everything registers trigger-sampling-request only for clients that declare
    // sampling (tools/registerConditionalTools), so a request without the capability never
    // gets a sampling request: the tool is not listed, and calling it is the SDK's
    // "Tool ... not found" tool error. That is correct per spec (a server must not send a
    // request the client did not declare), and the bridge passes it through as a result.
    let no_caps = json!({});
    let r = call(&url, &request(json!("s0"), "tools/list", json!({}), no_caps.clone())).await;
    let tools: Vec<&str> =
        r.answer()["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(tools.contains(&"echo") && !tools.contains(&"trigger-sampling-request"), "{tools:?}");
    let params = json!({"name": "trigger-sampling-request", "arguments": {"prompt": "p"}});
    let r = call(&url, &request(json!("s1"), "tools/call", params, no_caps.clone())).await;
    let a = r.answer();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert!(text_of(&a["result"]).contains("not found"), "{a}");

    // An upstream that asks anyway (the fixture): the client hears -32021 naming sampling.
    let fixture = bridge.url("/mcp/fixture");
    let params = json!({"name": "ask-sampling", "arguments": {}});
    let r = call(&fixture, &request(json!("s2"), "tools/call", params.clone(), no_caps)).await;
    let v = assert_error("sampling without the capability", &r, 400, -32021, &json!("s2"));
    assert!(v["error"]["data"]["requiredCapabilities"]["sampling"].is_object(), "{v}");
    // With the capability the same call is an MRTR round trip.
    let r = call(&fixture, &request(json!("s3"), "tools/call", params.clone(), json!({"sampling": {}}))).await;
    let a = r.answer();
    assert_eq!(a["result"]["resultType"], "input_required", "{a}");
    let (key, ask) = a["result"]["inputRequests"].as_object().and_then(|o| o.iter().next()).expect("one input request");
    assert_eq!(ask["method"], "sampling/createMessage", "{a}");
    assert_eq!(key, "\"ask-s3\"", "the key is the upstream request id's JSON text: {a}");
    let mut retry = request(json!("s4"), "tools/call", params, json!({"sampling": {}}));
    retry["params"]["requestState"] = a["result"]["requestState"].clone();
    retry["params"]["inputResponses"] =
        json!({key.clone(): {"role": "assistant", "model": "m", "content": {"type": "text", "text": "fixture sample"}}});
    let r = call(&fixture, &retry).await;
    let a = r.answer();
    assert_eq!((&a["id"], &a["result"]["resultType"]), (&json!("s4"), &json!("complete")), "{a}");
    assert!(text_of(&a["result"]).contains("fixture sample"), "{a}");
}

/// MRTR ties the answers to the `requestState` they come with: a spent `requestState` (its
/// request already answered, its backing session idle again and now serving another request
/// Y) is refused with -32602, and its `inputResponses` never reach Y's question. (Found by this
/// test: the bridge used to forward any key to the backing session.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_request_state_is_refused_and_answers_no_other_request() {
    require_node();
    let bridge = Bridge::start(&everything_stdio("everything"), &[]).await;
    let url = bridge.url("/mcp/everything");

    // X: asked, answered, done; its backing session goes back to the idle pool.
    let (kx, sx) = assert_input_required(&call(&url, &elicit(json!("x1"), json!({}))).await, &json!("x1"));
    let done = json!({"requestState": sx, "inputResponses": {kx: {"action": "accept", "content": {"name": "X Done"}}}});
    let r = call(&url, &elicit(json!("x2"), done)).await;
    assert!(text_of(&r.answer()["result"]).contains("X Done"), "{r:?}");

    // Y: same client identity, so the same backing session; parked on its own question.
    let (ky, sy) = assert_input_required(&call(&url, &elicit(json!("y1"), json!({}))).await, &json!("y1"));
    assert_eq!(sx.split('.').nth(1), sy.split('.').nth(1), "precondition: X and Y share the backing session");

    // A retry of X (spent state) that carries an answer under Y's key.
    let stale =
        json!({"requestState": sx, "inputResponses": {ky.clone(): {"action": "accept", "content": {"name": "Injected Via X"}}}});
    let r = call(&url, &elicit(json!("x3"), stale)).await;
    let a = r.answer();
    assert_eq!((&a["id"], a["error"]["code"].as_i64()), (&json!("x3"), Some(-32602)), "{a}");
    assert!(a["error"]["message"].as_str().is_some_and(|m| m.contains("requestState")), "{a}");

    // X forges a state for Y's stream out of its own (the session part is the same): the
    // signature does not match, so it reaches nothing. (Found in review: before states were
    // signed, this handed X Y's question, and X's answer became Y's result.)
    let parts: Vec<&str> = sx.split('.').collect();
    let (sy_stream, sy_asked) = (sy.split('.').nth(2).expect("stream"), sy.split('.').nth(3).expect("asked"));
    let forged = format!("{}.{}.{}.{}.{}.{}", parts[0], parts[1], sy_stream, sy_asked, parts[4], parts[5]);
    let hijack = json!({"requestState": forged, "inputResponses": {ky.clone(): {"action": "accept", "content": {"name": "Injected Via X"}}}});
    let r = call(&url, &elicit(json!("x4"), hijack)).await;
    let a = r.answer();
    assert_eq!((&a["id"], a["error"]["code"].as_i64()), (&json!("x4"), Some(-32602)), "a forged state is refused: {a}");

    // Y's own retry must complete with Y's own answer.
    let own = json!({"requestState": sy, "inputResponses": {ky: {"action": "accept", "content": {"name": "Y Own Answer"}}}});
    let r = call(&url, &elicit(json!("y2"), own)).await;
    let text = text_of(&r.answer()["result"]);
    assert!(
        text.contains("Y Own Answer") && !text.contains("Injected Via X"),
        "Y's question was answered by a retry of another request (spent requestState): {text}"
    );
}

/// A request the bridge times out (`limits.request_timeout`) may still run upstream, since
/// `notifications/cancelled` is only advisory: its backing session is ended rather than handed
/// to the next request, whose stream would otherwise carry the old call's progress. (Found in
/// review: the next client got the timed-out call's progress notifications.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_request_does_not_leak_into_the_next_one() {
    require_node();
    let config = format!("[limits]\nrequest_timeout = \"2s\"\n\n{}", everything_stdio("everything"));
    let bridge = Bridge::start(&config, &[]).await;
    let url = bridge.url("/mcp/everything");

    let mut slow = request(
        json!("a"),
        "tools/call",
        json!({"name": "trigger-long-running-operation", "arguments": {"duration": 6, "steps": 6}}),
        json!({}),
    );
    slow["params"]["_meta"]["progressToken"] = json!("USER-A");
    let r = call(&url, &slow).await;
    let a = r.answer();
    assert_eq!((&a["id"], a["error"]["code"].as_i64()), (&json!("a"), Some(-32001)), "the bridge's timeout: {a}");

    let mut next = request(
        json!("b"),
        "tools/call",
        json!({"name": "trigger-long-running-operation", "arguments": {"duration": 1, "steps": 4}}),
        json!({}),
    );
    next["params"]["_meta"]["progressToken"] = json!("USER-B");
    let r = call(&url, &next).await;
    assert!(text_of(&r.answer()["result"]).contains("completed"), "{r:?}");
    let progress = r.notifications("notifications/progress");
    assert_eq!(progress.len(), 4, "{r:?}");
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "USER-B"), "only B's own progress: {progress:?}");
    let log = bridge.log();
    assert_eq!(
        lines_with(&log, &["session ended", "reason=cancelled", "a request timed out"]).len(),
        1,
        "the timed-out request's backing session was ended:\n{log}"
    );
}
// ---- 6. MRTR across two cluster instances -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mrtr_retry_on_another_cluster_instance_reaches_the_parked_backing_session() {
    require_node();
    let c = Cluster::start(&everything_stdio("everything"), 2, false).await;
    let (a, b) = (&c.instances[0], &c.instances[1]);
    let (url_a, url_b) = (a.url("/mcp/everything"), b.url("/mcp/everything"));

    for (i, url) in [&url_a, &url_b].into_iter().enumerate() {
        let r = call(
            url,
            &request(json!(i), "tools/call", json!({"name": "echo", "arguments": {"message": format!("on {i}")}}), json!({})),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(text_of(&r.answer()["result"]), format!("Echo: on {i}"), "{r:?}");
    }

    let r = call(&url_a, &elicit(json!("c1"), json!({}))).await;
    let (key, state) = assert_input_required(&r, &json!("c1"));
    let sid = state.split('.').nth(1).expect("the session part").to_string();
    let answer = json!({"action": "accept", "content": {"name": "Across Instances"}});
    let r = call(&url_b, &elicit(json!("c2"), json!({"requestState": state, "inputResponses": {key: answer}}))).await;
    assert_eq!(r.status, 200, "{r:?}");
    let fin = r.answer();
    assert_eq!((&fin["id"], &fin["result"]["resultType"]), (&json!("c2"), &json!("complete")), "{fin}");
    assert!(text_of(&fin["result"]).contains("Across Instances"), "{fin}");

    // The backing session lives on A (its upstream started there, never on B); B's request
    // was an exchange on that session from afar.
    let (log_a, log_b) = (a.log(), b.log());
    assert_eq!(lines_with(&log_a, &["upstream started", &format!("session={sid}")]).len(), 1, "A:\n{log_a}");
    assert!(lines_with(&log_b, &["upstream started", &format!("session={sid}")]).is_empty(), "B:\n{log_b}");
    assert_eq!(lines_with(&log_a, &[&format!("session={sid}"), "outcome=\"input_required\""]).len(), 1, "A:\n{log_a}");
    // B served the retry: its answered stateless requests are its echo and this retry.
    let metrics = common::http().get(b.url("/metrics")).send().await.expect("B's /metrics").text().await.expect("text");
    let answered = metrics
        .lines()
        .find(|l| l.starts_with("mcp_bridge_stateless_requests_total{") && l.contains("outcome=\"answered\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(answered, Some(2), "B answered its echo and the retry:\n{metrics}");
}
