//! The REST endpoints (`/rest/{server}/…`) with reqwest against real servers: the bundled echo
//! server and server-everything (stdio and remote Streamable HTTP). Every status of issue 14:
//! 200 (also for a tool's own `isError`), 400, 404, 409, 422, 502, 503 with `Retry-After`, 504;
//! problem+json bodies carrying the JSON-RPC error; warm backing sessions reused per principal
//! and never shared; `rest.on_input = "decline"`. Streaming and cancellation are in
//! `rest/stream.rs`, the OpenAPI documents in `rest/openapi.rs`, the design note's route in
//! `rest/route.rs`.

mod common;
#[path = "rest/openapi.rs"]
mod openapi;
#[path = "rest/route.rs"]
mod route;
#[path = "rest/stream.rs"]
mod stream;
#[path = "rest/support.rs"]
mod support;

use std::time::Duration;

use common::{echo_server, everything_stdio, require_node, toml_str, Bridge, Everything};
use serde_json::{json, Value};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_tools_listed_called_and_refused_with_problems() {
    let bridge = Bridge::start(&echo_server("echo"), &[]).await;
    let (status, _, tools) = get(&bridge, "/rest/echo/tools", None).await;
    assert_eq!(status, 200, "{tools}");
    let names: Vec<&str> = tools["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["echo", "add"], "{tools}");

    let (status, headers, v) = post(&bridge, "/rest/echo/tools/add", r#"{"a": 2, "b": 3}"#, None).await;
    assert_eq!((status, header(&headers, "content-type")), (200, "application/json".into()), "{v}");
    assert_eq!(v, json!({"content": [{"type": "text", "text": "5"}]}));
    let (status, _, v) = post(&bridge, "/rest/echo/tools/echo", r#"{"message": "hi"}"#, None).await;
    assert_eq!((status, &v["content"][0]["text"]), (200, &json!("hi")), "{v}");

    // Unknown tool and unknown server: 404, as problem+json carrying a JSON-RPC error.
    let (status, headers, v) = post(&bridge, "/rest/echo/tools/nope", "{}", None).await;
    assert_problem(404, status, &headers, &v);
    assert!(v["detail"].as_str().unwrap().contains("no tool `nope`"), "{v}");
    let (status, headers, v) = post(&bridge, "/rest/missing/tools/echo", "{}", None).await;
    assert_problem(404, status, &headers, &v);
    let (status, headers, v) = get(&bridge, "/rest/missing/tools", None).await;
    assert_problem(404, status, &headers, &v);

    // Arguments that are not an object: -32602, 422; a body that is not JSON: 400.
    let (status, headers, v) = post(&bridge, "/rest/echo/tools/add", "[1, 2]", None).await;
    assert_problem(422, status, &headers, &v);
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let (status, headers, v) = post(&bridge, "/rest/echo/tools/add", "{nope", None).await;
    assert_problem(400, status, &headers, &v);

    // Every call above ran on one warm backing session, reused.
    let sessions = rest_sessions(&bridge, "echo").await;
    assert_eq!(sessions.len(), 1, "one warm session served every call: {sessions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_sessions_are_per_principal_and_auth_is_the_mcp_clients() {
    let config = format!(
        "{}[servers.other]\ncommand = {}\n[auth]\n[[auth.clients]]\nname = \"alice\"\ntoken = \"{ALICE}\"\nservers = [\"*\"]\n\
         [[auth.clients]]\nname = \"bob\"\ntoken = \"{BOB}\"\nservers = [\"echo\"]\n",
        echo_server("echo"),
        toml_str(env!("CARGO_BIN_EXE_mcp-echo-server")),
    );
    let bridge = Bridge::start(&config, &[]).await;
    for _ in 0..3 {
        for who in [ALICE, BOB] {
            let (status, _, v) = post(&bridge, "/rest/echo/tools/echo", r#"{"message": "x"}"#, Some(who)).await;
            assert_eq!(status, 200, "{v}");
        }
    }
    let sessions = rest_sessions(&bridge, "echo").await;
    let mut principals: Vec<&str> = sessions.iter().filter_map(|s| s["principal"].as_str()).collect();
    principals.sort();
    assert_eq!(principals, ["alice", "bob"], "one warm session each, never shared: {sessions:?}");

    // No credential: 401 with the challenge; a server the client may not use: 403.
    let resp = common::http().post(bridge.url("/rest/echo/tools/echo")).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("www-authenticate").is_some());
    let (status, _, _) = post(&bridge, "/rest/other/tools/echo", "{}", Some(BOB)).await;
    assert_eq!(status, 403);
    let (status, _, _) = get(&bridge, "/rest/other/tools", Some(ALICE)).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_results_tool_errors_questions_prompts_and_resources() {
    require_node();
    let bridge = Bridge::start(&everything_stdio("everything"), &[]).await;
    let (status, _, v) = post(&bridge, "/rest/everything/tools/get-sum", r#"{"a": 2, "b": 40}"#, None).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["content"][0]["text"].as_str().unwrap().contains("42"), "{v}");
    let (status, _, v) = post(&bridge, "/rest/everything/tools/get-structured-content", r#"{"location": "Chicago"}"#, None).await;
    assert_eq!((status, &v["structuredContent"]["temperature"]), (200, &json!(36)), "{v}");

    // A tool's own error is a completed call: 200 with isError.
    let (status, _, v) = post(&bridge, "/rest/everything/tools/get-sum", r#"{"a": "two"}"#, None).await;
    assert_eq!((status, &v["isError"]), (200, &json!(true)), "{v}");

    // A tool that asks the caller something: 409, naming what it asked.
    for (tool, asked) in
        [("trigger-sampling-request", "sampling/createMessage"), ("trigger-elicitation-request", "elicitation/create")]
    {
        let (status, headers, v) = post(&bridge, &format!("/rest/everything/tools/{tool}"), r#"{"prompt": "hi"}"#, None).await;
        assert_problem(409, status, &headers, &v);
        assert_eq!(v["error"]["data"]["method"], asked, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("rest.on_input"), "the problem says how to decline instead: {v}");
    }

    // Prompts: a result, and the upstream's own -32602 as 422.
    let (status, _, v) = post(&bridge, "/rest/everything/prompts/simple-prompt", "", None).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["messages"].as_array().is_some_and(|m| !m.is_empty()), "{v}");
    let (status, headers, v) = post(&bridge, "/rest/everything/prompts/args-prompt", "{}", None).await;
    assert_problem(422, status, &headers, &v);
    assert_eq!(v["error"]["code"], -32602, "the upstream's JSON-RPC error is carried: {v}");

    // Resources: the list, then one read by its URI.
    let (status, _, list) = get(&bridge, "/rest/everything/resources", None).await;
    assert_eq!(status, 200, "{list}");
    let uri = list["resources"][0]["uri"].as_str().expect("a resource").to_string();
    let query = format!("/rest/everything/resources?uri={}", urlencode(&uri));
    let (status, _, v) = get(&bridge, &query, None).await;
    assert_eq!((status, &v["contents"][0]["uri"]), (200, &json!(uri)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_input_decline_answers_the_questions_no() {
    require_node();
    let config = format!("{}[servers.everything.rest]\non_input = \"decline\"\n", everything_stdio("everything"));
    let bridge = Bridge::start(&config, &[]).await;
    let (status, _, v) = post(&bridge, "/rest/everything/tools/trigger-elicitation-request", "{}", None).await;
    assert_eq!(status, 200, "{v}");
    assert!(v.to_string().contains("decline"), "the elicitation was declined: {v}");
    // Sampling declined is an error to the tool, which reports it as its own error.
    let (status, _, v) = post(&bridge, "/rest/everything/tools/trigger-sampling-request", r#"{"prompt": "hi"}"#, None).await;
    assert_eq!((status, &v["isError"]), (200, &json!(true)), "{v}");
    assert!(v.to_string().contains("declined"), "{v}");
    // Roots are declared only when declined: an empty list.
    let (status, _, v) = post(&bridge, "/rest/everything/tools/get-roots-list", "{}", None).await;
    assert_eq!(status, 200, "{v}");
    assert!(v.to_string().contains("no roots"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridges_request_timeout_is_504() {
    require_node();
    // The timeout also bounds the backing session's initialize: long enough for a loaded machine.
    let config = format!("[limits]\nrequest_timeout = \"5s\"\n{}", everything_stdio("everything"));
    let bridge = Bridge::start(&config, &[]).await;
    let (status, _, v) = post(&bridge, "/rest/everything/tools/echo", r#"{"message": "warm"}"#, None).await;
    assert_eq!(status, 200, "{v}");
    let started = std::time::Instant::now();
    let args = r#"{"duration": 30, "steps": 30}"#;
    let (status, headers, v) = post(&bridge, "/rest/everything/tools/trigger-long-running-operation", args, None).await;
    assert_problem(504, status, &headers, &v);
    assert_eq!(v["error"]["code"], -32001, "{v}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(4500) && took < Duration::from_secs(20), "answered at the timeout: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_starts_is_503_then_crash_looping_503_with_retry_after() {
    let bridge = Bridge::start("[servers.dead]\ncommand = \"false\"\n", &[]).await;
    let mut crash_loop = None;
    for _ in 0..12 {
        let (status, headers, v) = post(&bridge, "/rest/dead/tools/anything", "{}", None).await;
        assert_problem(503, status, &headers, &v);
        let retry: u64 = header(&headers, "retry-after").parse().expect("Retry-After in seconds");
        if v["detail"].as_str().unwrap().contains("keeps crashing") {
            crash_loop = Some(retry);
            break;
        }
        assert!(v["detail"].as_str().unwrap().contains("unavailable"), "{v}");
    }
    let retry = crash_loop.expect("the server was marked crash-looping after 5 exits");
    assert!(retry >= 2, "Retry-After is the backoff left: {retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_gone_during_a_call_is_502() {
    require_node();
    let everything = Everything::start("streamableHttp").await;
    let config = format!("[servers.remote]\nurl = {}\n", toml_str(&everything.url("/mcp")));
    let bridge = Bridge::start(&config, &[]).await;
    let (status, _, v) = post(&bridge, "/rest/remote/tools/echo", r#"{"message": "up"}"#, None).await;
    assert_eq!(status, 200, "{v}");
    let url = bridge.url("/rest/remote/tools/trigger-long-running-operation");
    let call = tokio::spawn(async move {
        let resp = common::http().post(url).body(r#"{"duration": 20, "steps": 20}"#).send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap())
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(everything);
    let (status, headers, v) = tokio::time::timeout(Duration::from_secs(30), call).await.expect("answered").unwrap();
    assert_problem(502, status, &headers, &v);
}
