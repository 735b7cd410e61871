//! Issue 17, credentials for remote servers: OAuth 2.0 client credentials against a real OAuth
//! server package (`oauth2-mock-server`, run by tests/clients/protected_server.mjs beside a
//! remote MCP server that verifies every token with `jose`): the token is fetched with the
//! secret from the environment, sent upstream, kept, fetched again before it expires, and a
//! 401 (a revoked token) costs one refresh and one retry. `${env:…}` and `${file:…}` expand in
//! `headers`; a secret written inline is refused by `check-config`.

mod common;

use std::time::Duration;

use common::{free_port, toml_str, Bridge, McpSession, NodeServer, TempDir};
use serde_json::{json, Value};

const SECRET: &str = "client-secret-from-env-5d2";

async fn stats(upstream: &NodeServer) -> Value {
    let body = reqwest::get(upstream.url("/stats")).await.expect("stats").bytes().await.expect("body");
    serde_json::from_slice(&body).expect("stats JSON")
}

async fn post(upstream: &NodeServer, path: &str) {
    let r = reqwest::Client::new().post(upstream.url(path)).send().await.expect("POST");
    assert_eq!(r.status(), 200, "{path}");
}

/// Calls `whoami` through the bridge; what the upstream saw.
async fn whoami(s: &McpSession, id: u64) -> Value {
    let answers = common::responses(
        s.post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "whoami"}})).await,
    )
    .await;
    let text = answers[0]["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("whoami answered: {answers:?}"));
    serde_json::from_str(text).expect("whoami JSON")
}

struct Setup {
    upstream: NodeServer,
    bridge: Bridge,
    _dir: TempDir,
}

async fn setup() -> Setup {
    setup_at("/mcp", "").await
}

/// The bridge's server `remote` at the upstream's `path`, with `extra` keys (`type = "sse"`).
async fn setup_at(path: &str, extra: &str) -> Setup {
    let oauth_port = free_port().to_string();
    let upstream =
        NodeServer::start("protected_server.mjs", &[], &[("OAUTH_PORT", &oauth_port), ("EXPECTED_SECRET", SECRET)]).await;
    let dir = TempDir::new("credentials");
    let tenant = dir.path().join("tenant");
    std::fs::write(&tenant, "tenant-from-file\n").expect("write tenant file");
    let config = format!(
        "[servers.remote]\nurl = {}\n{extra}headers = {{ X-Tenant = {} }}\n\
         [servers.remote.oauth2]\ntoken_url = \"http://127.0.0.1:{oauth_port}/token\"\nclient_id = \"mcp-bridge\"\n\
         client_secret = \"${{env:MCPB_TEST_SECRET}}\"\nscope = \"mcp:tools\"\naudience = \"protected-mcp\"\n",
        toml_str(&upstream.url(path)),
        toml_str(&format!("${{file:{}}}", tenant.display())),
    );
    let bridge = Bridge::start_env(&config, &[], &[("MCPB_TEST_SECRET", SECRET)]).await;
    Setup { upstream, bridge, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_credentials_token_is_fetched_kept_and_sent_upstream() {
    let s = setup().await;
    let session = McpSession::open(&s.bridge.url("/mcp/remote")).await;
    let seen = whoami(&session, 2).await;
    assert_eq!(seen, json!({"sub": "mcp-bridge", "scope": "mcp:tools", "aud": "protected-mcp", "tenant": "tenant-from-file"}));
    let _ = whoami(&session, 3).await;
    let st = stats(&s.upstream).await;
    assert_eq!(st["tokenRequests"], 1, "one token, kept: {st}");
    assert_eq!(st["badSecrets"], 0, "the secret came from the environment: {st}");
    assert_eq!(st["forms"][0]["grant_type"], "client_credentials");
    assert_eq!(st["unauthorized"], 0, "{st}");
    assert!(!s.bridge.raw_log().contains(SECRET), "the secret never reaches the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_costs_one_refresh_and_one_retry() {
    let s = setup().await;
    let session = McpSession::open(&s.bridge.url("/mcp/remote")).await;
    let _ = whoami(&session, 2).await;
    post(&s.upstream, "/revoke").await;
    let seen = whoami(&session, 3).await;
    assert_eq!(seen["sub"], "mcp-bridge", "the call went through after the refresh");
    let st = stats(&s.upstream).await;
    assert_eq!(st["tokenRequests"], 2, "one refresh: {st}");
    assert_eq!(st["revoked"], 1, "the revoked token was refused once: {st}");
    assert_eq!(st["tokens"], 2, "{st}");
    s.bridge.wait_log(&["answered 401", "retrying once"], Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_sse_upstream_gets_the_token_and_a_401_retry() {
    let s = setup_at("/sse", "type = \"sse\"\n").await;
    let session = McpSession::open(&s.bridge.url("/mcp/remote")).await;
    let seen = whoami(&session, 2).await;
    assert_eq!((seen["sub"].as_str(), seen["tenant"].as_str()), (Some("mcp-bridge"), Some("tenant-from-file")), "{seen}");
    post(&s.upstream, "/revoke").await;
    assert_eq!(whoami(&session, 3).await["sub"], "mcp-bridge", "the POST went through after the refresh");
    let st = stats(&s.upstream).await;
    assert_eq!((st["tokenRequests"].as_u64(), st["revoked"].as_u64()), (Some(2), Some(1)), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_refreshed_before_it_expires() {
    let s = setup().await;
    // Tokens live 33 s: with at least 30 s kept in reserve, one is stale after 3 s.
    post(&s.upstream, "/lifetime?secs=33").await;
    let session = McpSession::open(&s.bridge.url("/mcp/remote")).await;
    let _ = whoami(&session, 2).await;
    assert_eq!(stats(&s.upstream).await["tokenRequests"], 1);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let _ = whoami(&session, 3).await;
    let st = stats(&s.upstream).await;
    assert_eq!(st["tokenRequests"], 2, "a new token before the old one expired: {st}");
    assert_eq!(st["unauthorized"], 0, "and no 401 on the way: {st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_written_inline_or_missing_are_config_errors() {
    let dir = TempDir::new("credentials-check");
    let check = |name: &str, server: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, server).expect("write config");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
            .arg("check-config")
            .arg(&path)
            .env_remove("MCPB_SURELY_UNSET")
            .output()
            .expect("run check-config");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout))
    };
    let base = "[servers.r]\nurl = \"https://example.invalid/mcp\"\n";
    let (ok, out) = check(
        "inline.toml",
        &format!("{base}[servers.r.oauth2]\ntoken_url = \"https://i/t\"\nclient_id = \"c\"\nclient_secret = \"hunter2\"\n"),
    );
    assert!(!ok && out.contains("servers.r.oauth2.client_secret"), "{out}");
    let (ok, out) = check("unset.toml", &format!("{base}headers = {{ X-Key = \"${{env:MCPB_SURELY_UNSET}}\" }}\n"));
    assert!(!ok && out.contains("servers.r.headers.X-Key") && out.contains("MCPB_SURELY_UNSET"), "{out}");
}
