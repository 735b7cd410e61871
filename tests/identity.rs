//! Issue 17, clients with JWTs: the real bridge with `[auth.jwt]` against a JWKS served over
//! HTTP by a real identity provider process (tests/clients/jwt_issuer.mjs, on the `jose`
//! library, with keys it made for this run). The matrix of token cases and their answers, key
//! rotation through `kid` (with the refetch rate-limited), malformed tokens that must not crash
//! anything, and the metadata document naming the issuer. Scopes on every transport are in
//! tests/identity_scopes.rs.

mod common;
#[path = "identity/issuer.rs"]
mod issuer;

use std::time::Duration;

use common::{echo_server, initialize_request, raw, rpc_error_code, Bridge, ACCEPT_BOTH};
use issuer::*;
use serde_json::{json, Value};

/// POSTs an `initialize` to `/mcp/echo` with `Authorization: Bearer {token}`.
async fn init_with(port: u16, token: &str) -> common::RawResponse {
    let auth = format!("Bearer {token}");
    let h = [("accept", ACCEPT_BOTH), ("content-type", "application/json"), ("authorization", auth.as_str())];
    raw(port, "POST", "/mcp/echo", &h, &initialize_request(1).to_string()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_matrix() {
    let idp = Issuer::start().await;
    let config = format!("{}{}", auth_table(&idp.jwks_url()), echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let port = bridge.port;
    let c = |sub: &str| claims(sub, "admin");
    let with = |sub: &str, k: &str, v: Value| {
        let mut m = c(sub);
        m[k] = v;
        m
    };
    let without = |sub: &str, k: &str| {
        let mut m = c(sub);
        m.as_object_mut().expect("claims").remove(k);
        m
    };
    let stray = idp.stray("RS256").await;
    let good = idp.sign(c("carol"), "RS256", None).await;
    let (h, p, _) = {
        let mut parts = good.split('.');
        (parts.next().unwrap().to_string(), parts.next().unwrap().to_string(), parts.next().unwrap().to_string())
    };
    // (case, token, expected status, what the log names as the reason)
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("valid RS256", good.clone(), 200, ""),
        ("valid ES256", idp.sign(c("dave"), "ES256", None).await, 200, ""),
        ("expired 2 minutes ago", idp.sign(with("e", "exp", json!(now() - 120)), "RS256", None).await, 401, "ExpiredSignature"),
        ("expired 5 s ago (within the 30 s leeway)", idp.sign(with("e", "exp", json!(now() - 5)), "RS256", None).await, 200, ""),
        ("nbf 2 minutes ahead", idp.sign(with("n", "nbf", json!(now() + 120)), "RS256", None).await, 401, "ImmatureSignature"),
        ("nbf 5 s ahead (within the leeway)", idp.sign(with("n", "nbf", json!(now() + 5)), "RS256", None).await, 200, ""),
        ("no exp", idp.sign(without("x", "exp"), "RS256", None).await, 401, "Missing required claim: exp"),
        ("no sub", idp.sign(without("x", "sub"), "RS256", None).await, 401, "Missing required claim: sub"),
        (
            "sub with a newline",
            idp.sign(with("x", "sub", json!("a\nforged log line")), "RS256", None).await,
            401,
            "`sub` is empty",
        ),
        ("wrong aud", idp.sign(with("a", "aud", json!("another-service")), "RS256", None).await, 401, "InvalidAudience"),
        ("aud list holding ours", idp.sign(with("a", "aud", json!(["x", AUDIENCE])), "ES256", None).await, 200, ""),
        ("wrong iss", idp.sign(with("i", "iss", json!("https://evil.example")), "RS256", None).await, 401, "InvalidIssuer"),
        ("alg none, no signature", forged(&json!({"alg": "none", "typ": "JWT"}), &c("m"), ""), 401, "header does not parse"),
        ("alg none with kid", forged(&json!({"alg": "none", "kid": "rs256-1"}), &c("m"), ""), 401, "header does not parse"),
        ("HS256 signed with the public key", idp.sign_hmac_with_public_key(c("m")).await, 401, "HS256 is not allowed"),
        ("signed by an unpublished key", idp.sign(c("m"), "RS256", Some(&stray)).await, 401, "no key in the JWKS matches"),
        (
            "claims changed under a good signature",
            {
                let other = issuer::forged(&json!({}), &with("carol", "scope", json!("admin more")), "");
                format!("{h}.{}.{}", other.split('.').nth(1).unwrap(), good.split('.').nth(2).unwrap())
            },
            401,
            "InvalidSignature",
        ),
        ("signature cut", format!("{h}.{p}."), 401, "InvalidSignature"),
        ("static client token", STATIC_TOKEN.to_string(), 200, ""),
        ("a JWT-shaped unknown token", "eyJ.eyJ.x".to_string(), 401, "header does not parse"),
    ];
    let mut matrix = Vec::new();
    for (what, token, want, reason) in &cases {
        let refusals = bridge.count("refused a JWT");
        let r = init_with(port, token).await;
        assert_eq!(r.status, *want, "{what}: {r:?}");
        let mut said = String::new();
        if *want == 401 {
            let challenge = r.header("www-authenticate").unwrap_or_default();
            assert!(challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
            assert!(rpc_error_code(&r.body).is_some(), "{what}: JSON-RPC error body: {}", r.body);
            let line = bridge.wait_for_log_line(what, Duration::from_secs(5), |_| bridge.count("refused a JWT") > refusals).await;
            let line = bridge.lines_with(&["refused a JWT"]).into_iter().nth(refusals).unwrap_or(line);
            assert!(line.contains(reason), "{what}: the log names {reason:?}: {line}");
            said = line.split("reason=").nth(1).unwrap_or("").trim().to_string();
        }
        matrix.push(format!("| {what} | {} | {said} |", r.status));
    }
    eprintln!("token matrix:\n{}", matrix.join("\n"));
    assert!(!bridge.raw_log().contains(&good), "a token never reaches the log");

    // RFC 9728: the metadata document names the issuer, and every challenge names the document.
    let md = raw(port, "GET", "/.well-known/oauth-protected-resource", &[], "").await;
    assert_eq!(md.status, 200, "{md:?}");
    let doc: Value = serde_json::from_str(&md.body).expect("metadata JSON");
    assert_eq!(doc["authorization_servers"], json!([ISSUER]), "{doc}");
    let r = init_with(port, "eyJ.eyJ.x").await;
    assert!(r.header("www-authenticate").is_some_and(|c| c.contains("resource_metadata=")), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_through_its_kid_and_refetches_are_rate_limited() {
    let idp = Issuer::start().await;
    let config = format!("{}{}", auth_table(&idp.jwks_url()), echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let port = bridge.port;
    let old = idp.sign(claims("erin", "admin"), "RS256", None).await;
    assert_eq!(init_with(port, &old).await.status, 200, "the first key");
    assert_eq!(idp.fetches().await, 1, "the JWKS is fetched once and kept");
    assert_eq!(init_with(port, &old).await.status, 200);
    assert_eq!(idp.fetches().await, 1, "and not fetched again for a known kid");

    // The IdP rotates: a new kid replaces the old key.
    let kid = idp.rotate("RS256").await;
    let new = idp.sign(claims("erin", "admin"), "RS256", Some(&kid)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(init_with(port, &new).await.status, 200, "the new kid is fetched");
    assert_eq!(idp.fetches().await, 2);
    assert_eq!(init_with(port, &old).await.status, 401, "the retired key is gone with the refetch");

    // A flood of unknown kids costs at most one fetch per interval (1 s here).
    let before = idp.fetches().await;
    let started = std::time::Instant::now();
    for i in 0..40 {
        let stray = forged(&json!({"alg": "RS256", "kid": format!("unknown-{i}")}), &claims("m", "admin"), "c2ln");
        assert_eq!(init_with(port, &stray).await.status, 401);
    }
    let secs = started.elapsed().as_secs() + 1;
    let fetched = idp.fetches().await - before;
    assert!(fetched <= secs, "{fetched} fetches in {secs} s for 40 unknown kids");
    assert_eq!(init_with(port, &new).await.status, 200, "the good key still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_jwts_are_401_and_crash_nothing() {
    let idp = Issuer::start().await;
    let config = format!("{}{}", auth_table(&idp.jwks_url()), echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let port = bridge.port;
    for (what, token) in malformed() {
        let r = init_with(port, &token).await;
        // A header past hyper's limit may be refused before auth (431); anything else is 401.
        assert!(r.status == 401 || (r.status == 431 && token.len() > 16_000), "{what}: {r:?}");
    }
    let good = idp.sign(claims("frank", "admin"), "ES256", None).await;
    assert_eq!(init_with(port, &good).await.status, 200, "the bridge still serves");
    assert!(!bridge.raw_log().contains("panicked"), "no panic:\n{}", bridge.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_file_serves_as_well() {
    let idp = Issuer::start().await;
    let dir = common::TempDir::new("jwks-file");
    let path = dir.path().join("jwks.json");
    let jwks = reqwest::get(idp.jwks_url()).await.expect("JWKS").bytes().await.expect("body");
    std::fs::write(&path, &jwks).expect("write JWKS");
    let table = auth_table(&idp.jwks_url()).replace(
        &format!("jwks_url = \"{}\"", idp.jwks_url()),
        &format!("jwks_file = {}", common::toml_str(&path.display().to_string())),
    );
    let bridge = Bridge::start(&format!("{table}{}", echo_server("echo")), &[]).await;
    let fetches = idp.fetches().await;
    assert_eq!(init_with(bridge.port, &idp.sign(claims("ivan", "admin"), "ES256", None).await).await.status, 200);
    let stray = idp.stray("ES256").await;
    assert_eq!(init_with(bridge.port, &idp.sign(claims("ivan", "admin"), "ES256", Some(&stray)).await).await.status, 401);
    assert_eq!(idp.fetches().await, fetches, "a file is never fetched");
}
