//! Issue 17, scopes mapped to servers and tools, on every transport: a JWT whose `scope` holds
//! `echo:tools` may use server `echo` and only its tool `echo`; `admin` may use everything.
//! On `/mcp` (Streamable HTTP), `/sse` (legacy), `/rest` and the design note's route, a call of
//! a withheld tool is 403 with a JSON-RPC error, a withheld server 403, and every tool list
//! shows only what may be called. The identity provider is tests/clients/jwt_issuer.mjs.

mod common;
#[path = "identity/issuer.rs"]
mod issuer;

use std::time::Duration;

use common::{echo_server, Bridge, Legacy, McpSession};
use issuer::*;
use serde_json::{json, Value};

fn client(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().expect("header value"));
    reqwest::Client::builder().default_headers(h).build().expect("reqwest client")
}

fn call(id: u64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}})
}

fn names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> =
        list.as_array().unwrap_or(&Vec::new()).iter().filter_map(|t| t["name"].as_str().map(String::from)).collect();
    n.sort();
    n
}

struct Setup {
    _idp: Issuer,
    bridge: Bridge,
    narrow: String,
    admin: String,
}

async fn setup() -> Setup {
    let idp = Issuer::start().await;
    let config = format!("{}{}{}", auth_table(&idp.jwks_url()), echo_server("echo"), echo_server("other"));
    let bridge = Bridge::start(&config, &[]).await;
    let narrow = idp.sign(claims("grace", "openid echo:tools"), "ES256", None).await;
    let admin = idp.sign(claims("heidi", "admin"), "RS256", None).await;
    Setup { _idp: idp, bridge, narrow, admin }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_lists_and_calls_only_granted_tools() {
    let s = setup().await;
    let url = s.bridge.url("/mcp/echo");
    let narrow = McpSession::open_with(client(&s.narrow), &url).await;
    let list = common::responses(narrow.post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await).await;
    assert_eq!(names(&list[0]["result"]["tools"]), ["echo"], "{list:?}");
    assert_eq!(narrow.echo(3, "hi").await, "hi");
    let refused = narrow.post(&call(4, "add", json!({"a": 1, "b": 2}))).await;
    assert_eq!(refused.status(), 403);
    let body: Value = serde_json::from_slice(&refused.bytes().await.expect("body")).expect("JSON-RPC error");
    assert_eq!(body["id"], 4, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("add")), "{body}");
    let batch = json!([call(5, "echo", json!({"message": "x"})), call(6, "add", json!({"a": 1, "b": 2}))]);
    assert_eq!(narrow.post(&batch).await.status(), 403, "a batch holding a withheld call");
    assert_eq!(common::post_initialize(&client(&s.narrow), &s.bridge.url("/mcp/other")).await.status(), 403, "server other");

    let admin = McpSession::open_with(client(&s.admin), &url).await;
    let list = common::responses(admin.post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await).await;
    assert_eq!(names(&list[0]["result"]["tools"]), ["add", "echo"], "admin sees all: {list:?}");
    let added = common::responses(admin.post(&call(3, "add", json!({"a": 1, "b": 2}))).await).await;
    assert!(added[0]["result"].is_object(), "{added:?}");
    let other = McpSession::open_with(client(&s.admin), &s.bridge.url("/mcp/other")).await;
    assert_eq!(other.echo(2, "o").await, "o");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_lists_and_calls_only_granted_tools() {
    let s = setup().await;
    let base = s.bridge.base();
    let mut narrow = Legacy::connect_with(client(&s.narrow), &base, "echo").await;
    narrow.handshake(&common::initialize_request(1)).await;
    assert_eq!(narrow.post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await, 202);
    let list = narrow.answer(2, Duration::from_secs(30)).await;
    assert_eq!(names(&list["result"]["tools"]), ["echo"], "{list}");
    let (status, body) = narrow.post_raw(&call(3, "add", json!({"a": 1, "b": 2})).to_string()).await;
    assert_eq!(status, 403, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON-RPC error");
    assert_eq!(v["id"], 3, "{v}");
    assert_eq!(narrow.echo(4, "still here").await, "still here");
    let refused = Legacy::try_connect_with(client(&s.narrow), &base, "other", None).await.err().map(|e| e.0);
    assert_eq!(refused, Some(403), "server other");

    let mut admin = Legacy::connect_with(client(&s.admin), &base, "echo").await;
    admin.handshake(&common::initialize_request(1)).await;
    assert_eq!(admin.post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await, 202);
    let list = admin.answer(2, Duration::from_secs(30)).await;
    assert_eq!(names(&list["result"]["tools"]), ["add", "echo"], "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_the_route_list_and_call_only_granted_tools() {
    let s = setup().await;
    let (narrow, admin) = (client(&s.narrow), client(&s.admin));
    let get = |http: &reqwest::Client, path: &str| http.get(s.bridge.url(path)).send();
    let json_of = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap_or(Value::Null);

    let r = get(&narrow, "/rest/echo/tools").await.expect("GET tools");
    assert_eq!(r.status(), 200);
    assert_eq!(names(&json_of(&r.bytes().await.expect("body"))["tools"]), ["echo"]);
    let r = get(&admin, "/rest/echo/tools").await.expect("GET tools");
    assert_eq!(names(&json_of(&r.bytes().await.expect("body"))["tools"]), ["add", "echo"]);

    let post = |http: &reqwest::Client, path: &str, body: Value| {
        http.post(s.bridge.url(path)).header("content-type", "application/json").body(body.to_string()).send()
    };
    let ok = post(&narrow, "/rest/echo/tools/echo", json!({"message": "r"})).await.expect("POST echo");
    assert_eq!(ok.status(), 200);
    let refused = post(&narrow, "/rest/echo/tools/add", json!({"a": 1, "b": 2})).await.expect("POST add");
    assert_eq!(refused.status(), 403);
    let refused = post(&narrow, "/rest/echo/tools/a%64d", json!({"a": 1, "b": 2})).await.expect("POST a%64d");
    assert_eq!(refused.status(), 403, "a percent-encoded name is the same tool");
    assert_eq!(post(&admin, "/rest/echo/tools/add", json!({"a": 1, "b": 2})).await.expect("add").status(), 200);
    assert_eq!(get(&narrow, "/rest/other/tools").await.expect("other").status(), 403);

    let doc = json_of(&get(&narrow, "/rest/openapi.json").await.expect("openapi").bytes().await.expect("body"));
    let paths: Vec<&String> = doc["paths"].as_object().map(|p| p.keys().collect()).unwrap_or_default();
    assert_eq!(paths, ["/rest/echo/tools/echo"], "the document names only what may be called");
    let doc = json_of(&get(&admin, "/rest/openapi.json").await.expect("openapi").bytes().await.expect("body"));
    assert_eq!(doc["paths"].as_object().map(|p| p.len()), Some(4), "admin: both tools of both servers");

    let routed = |tool: &str| json!({"id": 1, "jsonrpc": "2.0", "method": "tools/call", "params": {"name": tool, "arguments": {"message": "m", "a": 1, "b": 2}}});
    let r = post(&narrow, "/mcp/router/route/echo", routed("add")).await.expect("route add");
    assert_eq!(r.status(), 403, "the route refuses a withheld tool");
    let r = post(&narrow, "/mcp/router/route/echo", routed("echo")).await.expect("route echo");
    assert_eq!(r.status(), 200);
    let list = post(&narrow, "/mcp/router/route/echo", json!({"id": 2, "jsonrpc": "2.0", "method": "tools/list", "params": {}}))
        .await
        .expect("route list");
    assert_eq!(names(&json_of(&list.bytes().await.expect("body"))["result"]["tools"]), ["echo"]);
}
