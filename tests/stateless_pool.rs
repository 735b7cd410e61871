//! A 2026-07-28 request passed through to a pooled modern upstream goes through the pool's
//! circuit breaker, as a session's does (README, "Pools and shared children"): a pool member
//! that cannot be reached counts as a failure, the request moves on to the next member, and
//! once the dead member's breaker is open it is skipped. The real bridge, the real modern
//! server (tests/clients/modern_server.mjs, `MODERN_ONLY=1`), and a member nobody listens on.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, http, toml_str, Bridge, ModernServer, ACCEPT_BOTH};
use serde_json::{json, Value};

const MODERN: &str = "2026-07-28";
const MINUTE: Duration = Duration::from_secs(60);

/// A modern `tools/call` of `echo`, posted with its mirrored headers: (status, the answer).
async fn echo(url: &str, n: usize) -> (u16, Value) {
    let msg = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {
    "name": "echo", "arguments": {"message": format!("m{n}")},
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-bridge-stateless-pool-tests", "version": "0"},
    }}});
    let resp = http()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .timeout(MINUTE)
        .body(msg.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.text().await.expect("read the answer");
    let json = body.lines().find_map(|l| l.strip_prefix("data:")).map(str::trim).unwrap_or(body.trim());
    (status, serde_json::from_str(json).unwrap_or_else(|e| panic!("a JSON-RPC answer ({e}): {body}")))
}

/// The admin API's view of the pool's member at `url`.
async fn member(bridge: &Bridge, url: &str) -> Value {
    let text = http()
        .get(bridge.url("/admin/api/servers"))
        .send()
        .await
        .expect("admin servers")
        .text()
        .await
        .expect("admin servers body");
    let servers: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("admin servers JSON ({e}): {text}"));
    let pooled = servers["servers"].as_array().into_iter().flatten().find(|s| s["name"] == "pooled").cloned();
    let pool = pooled.map(|s| s["pool"].clone()).unwrap_or_default();
    pool.as_array()
        .into_iter()
        .flatten()
        .find(|m| m["url"] == url)
        .cloned()
        .unwrap_or_else(|| panic!("no pool member {url} in the admin view: {servers}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_pool_member_is_skipped_once_its_breaker_is_open() {
    let modern = ModernServer::start().await;
    let live = format!("http://127.0.0.1:{}/mcp", modern.port);
    // Nobody listens here: every connection is refused at once.
    let dead = format!("http://127.0.0.1:{}/mcp", free_port());
    let config = format!("[servers.pooled]\nurls = [{}, {}]\nbalance = \"round-robin\"\n", toml_str(&dead), toml_str(&live));
    let bridge = Bridge::start(&config, &[]).await;
    let url = bridge.url("/mcp/pooled");

    // Round-robin sends every other request to the dead member first: each of those counts
    // as a failure and moves on to the live one, so every request is answered there.
    for n in 0..6 {
        let (status, v) = echo(&url, n).await;
        assert_eq!(status, 200, "request {n} was passed through to the live member: {v}");
        assert_eq!(v["result"]["content"][0]["text"], format!("Echo: m{n}"), "request {n}: {v}");
    }
    let opened = bridge
        .wait_for_log_line("the dead member's breaker opens", MINUTE, |l| {
            l.contains("pool instance taken out (circuit open)") && l.contains(&dead)
        })
        .await;
    assert!(opened.contains("cooldown_ms=5000"), "the first cool-down: {opened}");
    let before = member(&bridge, &dead).await;
    assert_eq!((before["healthy"].as_bool(), before["failures"].as_u64()), (Some(false), Some(0)), "{before}");
    let tries = |log: &str| log.lines().filter(|l| l.contains("pool instance unreachable") && l.contains(&dead)).count();
    let tried = tries(&bridge.log());
    assert_eq!(tried, 3, "three failures in a row open the breaker:\n{}", bridge.log());

    // With its breaker open the dead member is not tried at all: no new failure is counted
    // and every request goes straight to the live member (the cool-down is 5 s; these take
    // well under that).
    let started = Instant::now();
    for n in 6..12 {
        let (status, v) = echo(&url, n).await;
        assert_eq!(status, 200, "request {n}: {v}");
        assert_eq!(v["result"]["content"][0]["text"], format!("Echo: m{n}"), "request {n}: {v}");
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "the requests took {elapsed:?}, past what the cool-down proves");
    let after = member(&bridge, &dead).await;
    assert_eq!((after["healthy"].as_bool(), after["failures"].as_u64()), (Some(false), Some(0)), "skipped, not tried: {after}");
    assert_eq!(tries(&bridge.log()), tried, "no attempt on the dead member while its breaker is open:\n{}", bridge.log());
    let live_member = member(&bridge, &live).await;
    assert_eq!(live_member["healthy"], true, "{live_member}");
    let log = bridge.log();
    assert!(!log.contains("transport=\"stateless\""), "no backing session: every request passed through:\n{log}");
}
