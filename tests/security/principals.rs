//! Shared by tests/security.rs and tests/security_limits.rs: an `[auth]` table of two principals
//! (alice may use every server, bob only `echo`), clients that carry their tokens, and small
//! request helpers.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};
use sha2::Digest;

use crate::common::{self, initialize_request, raw, Bridge, Legacy, RawResponse, ACCEPT_BOTH};

pub(crate) const ALICE: &str = "alice-token-4f0c2a9e";
pub(crate) const BOB: &str = "bob-token-9b1d77c3";
pub(crate) const UNKNOWN_SESSION: &str = "0123456789abcdef0123456789abcdef";
/// `[auth]`: alice may use every server, bob only `echo` (and his token is stored hashed).
pub(crate) fn auth_table() -> String {
    let bob_hash = format!("{:x}", sha2::Sha256::digest(BOB.as_bytes()));
    format!(
        r#"
[auth]
realm = "mcp-bridge-test"
resource_metadata = {{ resource = "http://127.0.0.1/mcp", authorization_servers = ["https://auth.example.com"], bearer_methods_supported = ["header"] }}

[[auth.clients]]
name = "alice"
token = "{ALICE}"
servers = ["*"]

[[auth.clients]]
name = "bob"
token_sha256 = "{bob_hash}"
servers = ["echo"]
"#
    )
}

/// A client that sends `token` as a bearer token on every request.
pub(crate) fn client(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().expect("header value"));
    reqwest::Client::builder().pool_max_idle_per_host(0).default_headers(h).build().expect("reqwest client")
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Opens a legacy stream with `http`'s credentials and completes the handshake.
pub(crate) async fn open_legacy(http: &reqwest::Client, base: &str, name: &str) -> Legacy {
    let mut s = Legacy::connect_with(http.clone(), base, name).await;
    assert_eq!(s.post(&initialize_request(1)).await, 202, "initialize is accepted");
    let answer = s.next_message(Duration::from_secs(30)).await.expect("initialize answer");
    assert!(answer["result"]["protocolVersion"].is_string(), "initialize answered: {answer}");
    assert_eq!(s.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await, 202);
    s
}

pub(crate) fn tool_call(id: u64, name: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}})
}

/// A raw initialize POST to `path` with extra headers.
pub(crate) async fn raw_init(port: u16, path: &str, extra: &[(&str, &str)]) -> RawResponse {
    let mut h = vec![("accept", ACCEPT_BOTH), ("content-type", "application/json")];
    h.extend_from_slice(extra);
    raw(port, "POST", path, &h, &initialize_request(1).to_string()).await
}

pub(crate) async fn healthz(bridge: &Bridge) {
    let r = common::http().get(bridge.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200, "the bridge stays up");
}
