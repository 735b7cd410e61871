//! Issue 17, rate limits (`[rate_limits]`, token buckets from governor): a burst over a
//! principal's bucket gets 429s with `Retry-After` and a JSON-RPC error while a well-behaved
//! client is untouched; the (principal, tool) bucket refuses one tool and not another, naming
//! the request id; the in-flight cap refuses a third concurrent call and frees its place when a
//! call ends; a server's bucket leaves other servers alone. Refusals are counted in /metrics by
//! principal class and server, never by principal. In cluster mode the per-principal bucket is
//! shared through a real redis-server: two instances together allow the rate once.

mod cluster_support;
mod common;
mod support_nginx;

use std::time::Duration;

use common::{echo_server, python_fixture, Bridge, McpSession, Metrics};
use serde_json::{json, Value};

const GREEDY: &str = "greedy-token-1";
const GOOD: &str = "good-token-2";
const METRICS: &str = "metrics-token-3";

fn client(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().expect("header value"));
    reqwest::Client::builder().default_headers(h).timeout(Duration::from_secs(60)).build().expect("reqwest client")
}

fn config(limits: &str) -> String {
    format!(
        "[auth]\n[[auth.clients]]\nname = \"greedy\"\ntoken = \"{GREEDY}\"\n[[auth.clients]]\nname = \"good\"\ntoken = \"{GOOD}\"\n\
         [metrics]\ntoken = \"{METRICS}\"\n[auth.rate_limits]\n{limits}\n{}{}{}",
        echo_server("echo"),
        echo_server("other"),
        python_fixture("slow", "elicit_server.py"),
    )
}

/// POST /rest/{server}/tools/{tool}: (status, Retry-After, body).
async fn rest(http: &reqwest::Client, bridge: &Bridge, server: &str, tool: &str, args: Value) -> (u16, Option<String>, Value) {
    let r = http
        .post(bridge.url(&format!("/rest/{server}/tools/{tool}")))
        .header("content-type", "application/json")
        .body(args.to_string())
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(String::from);
    let body = serde_json::from_slice(&r.bytes().await.expect("body")).unwrap_or(Value::Null);
    (status, retry, body)
}

async fn metrics(bridge: &Bridge) -> Metrics {
    let r = client(METRICS).get(bridge.url("/metrics")).send().await.expect("GET /metrics");
    assert_eq!(r.status(), 200);
    Metrics(r.text().await.expect("metrics text"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_gets_429_and_the_good_client_is_untouched() {
    let bridge = Bridge::start(&config("per_principal = { rate = 1, burst = 5 }"), &[]).await;
    let (greedy, good) = (client(GREEDY), client(GOOD));
    // Warm the REST catalogue once for each, inside their bursts.
    assert_eq!(rest(&good, &bridge, "echo", "echo", json!({"message": "w"})).await.0, 200);

    let burst = (0..30).map(|i| {
        let (g, b) = (greedy.clone(), &bridge);
        async move { rest(&g, b, "echo", "echo", json!({"message": format!("g{i}")})).await }
    });
    let steady = async {
        let mut out = Vec::new();
        for i in 0..4 {
            out.push(rest(&good, &bridge, "echo", "echo", json!({"message": format!("good{i}")})).await);
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        out
    };
    let (burst, steady) = tokio::join!(futures_util::future::join_all(burst), steady);
    let ok = burst.iter().filter(|r| r.0 == 200).count();
    let refused: Vec<_> = burst.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(ok + refused.len(), 30, "only 200 or 429: {burst:?}");
    assert!((5..=7).contains(&ok), "a burst of 5 (plus refills): {ok} passed");
    for (_, retry, body) in &refused {
        let secs: u64 = retry.as_deref().and_then(|r| r.parse().ok()).expect("Retry-After in seconds");
        assert!((1..=2).contains(&secs), "Retry-After {secs}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("rate_limits.per_principal")), "{body}");
    }
    assert!(steady.iter().all(|r| r.0 == 200), "the good client is untouched: {steady:?}");

    let m = metrics(&bridge).await;
    let labels = [("class", "named"), ("server", "echo"), ("limit", "per_principal"), ("kind", "rate")];
    assert_eq!(m.value("mcp_bridge_rate_limited_total", &labels), refused.len() as f64);
    assert!(!m.0.contains("greedy"), "no principal label");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_bucket_refuses_one_tool_not_another() {
    let bridge = Bridge::start(&config("per_tool = { rate = 1, burst = 2 }"), &[]).await;
    let s = McpSession::open_with(client(GREEDY), &bridge.url("/mcp/echo")).await;
    let mut statuses = Vec::new();
    for id in 10..16 {
        let call =
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}});
        let r = s.post(&call).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").is_some());
            let body: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("JSON-RPC error");
            assert_eq!(body["id"], id, "the error names the request: {body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("per_tool")), "{body}");
        } else {
            let _ = common::responses(r).await;
        }
    }
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 3, "{statuses:?}");
    assert_eq!(s.echo(20, "echo is another bucket").await, "echo is another bucket");
    // Another principal's bucket for the same tool is full.
    let good = McpSession::open_with(client(GOOD), &bridge.url("/mcp/echo")).await;
    let r = good
        .post(
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_cap_refuses_a_third_call_and_frees_its_place() {
    let bridge = Bridge::start(&config("per_principal = { concurrent = 2 }"), &[]).await;
    let greedy = client(GREEDY);
    let sleep = |ms: u64| {
        let (g, b) = (greedy.clone(), &bridge);
        async move { rest(&g, b, "slow", "sleep", json!({"ms": ms})).await }
    };
    // The catalogue first, so the calls below are one request each.
    assert_eq!(sleep(1).await.0, 200);
    let (a, b, c) = tokio::join!(sleep(2500), sleep(2500), async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        sleep(1).await
    });
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    assert_eq!(c.0, 429, "the third call in flight: {c:?}");
    assert_eq!(c.1.as_deref(), Some("1"));
    assert_eq!(rest(&client(GOOD), &bridge, "slow", "echo", json!({"message": "m"})).await.0, 200, "another principal");
    assert_eq!(sleep(1).await.0, 200, "the places are free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_bucket_leaves_other_servers_alone() {
    let bridge = Bridge::start(&config("per_server = { rate = 1, burst = 3 }"), &[]).await;
    let good = client(GOOD);
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(rest(&good, &bridge, "echo", "echo", json!({"message": format!("{i}")})).await.0);
    }
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 4, "{statuses:?}");
    for i in 0..3 {
        assert_eq!(rest(&good, &bridge, "other", "echo", json!({"message": format!("{i}")})).await.0, 200, "server other");
    }
    let m = metrics(&bridge).await;
    assert!(m.value("mcp_bridge_rate_limited_total", &[("server", "echo"), ("limit", "per_server")]) >= 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_the_principal_limit_holds_across_instances() {
    let redis = cluster_support::Redis::start();
    let config = config("per_principal = { rate = 1, burst = 6 }");
    let a = Bridge::instance(&config, &redis.url(), "rl-a").await;
    let b = Bridge::instance(&config, &redis.url(), "rl-b").await;
    let greedy = client(GREEDY);
    // 12 calls on each instance at once: alone, each would let 6 (plus refills) through.
    let calls = (0..24).map(|i| {
        let (g, bridge) = (greedy.clone(), if i % 2 == 0 { &a } else { &b });
        async move { rest(&g, bridge, "echo", "echo", json!({"message": format!("{i}")})).await.0 }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok + statuses.iter().filter(|s| **s == 429).count(), 24, "{statuses:?}");
    assert!((6..=9).contains(&ok), "one bucket of 6 for both instances, {ok} passed: {statuses:?}");
    let keys = redis.cli_raw(&["--scan", "--pattern", "mcpb:{rl:*"]);
    assert_eq!(keys.lines().count(), 1, "one shared bucket: {keys}");
    assert!(!keys.contains("greedy"), "the principal is hashed: {keys}");
    // The good client has a bucket of its own.
    assert_eq!(rest(&client(GOOD), &b, "echo", "echo", json!({"message": "g"})).await.0, 200);
}
