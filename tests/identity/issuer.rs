//! Shared by tests/identity*.rs: the test's identity provider (tests/clients/jwt_issuer.mjs, on
//! the `jose` library: keys it makes, a JWKS served over HTTP, tokens it signs), claims, an
//! `[auth.jwt]` table, and hand-made malformed tokens.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{json, Value};

use crate::common::NodeServer;

pub(crate) const ISSUER: &str = "https://idp.test.example";
pub(crate) const AUDIENCE: &str = "mcp-bridge-test";
pub(crate) const STATIC_TOKEN: &str = "static-token-7e1f0c";

/// The identity provider, running.
pub(crate) struct Issuer(pub(crate) NodeServer);

impl Issuer {
    pub(crate) async fn start() -> Issuer {
        Issuer(NodeServer::start("jwt_issuer.mjs", &[], &[]).await)
    }

    pub(crate) fn jwks_url(&self) -> String {
        self.0.url("/jwks")
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = reqwest::Client::new().post(self.0.url(path)).body(body.to_string()).send().await.expect("issuer POST");
        assert_eq!(resp.status(), 200, "issuer {path}");
        serde_json::from_slice(&resp.bytes().await.expect("issuer body")).expect("issuer JSON")
    }

    /// A token over `claims`, signed with the published key of `alg` (or key `kid`).
    pub(crate) async fn sign(&self, claims: Value, alg: &str, kid: Option<&str>) -> String {
        let v = self.post("/sign", json!({"claims": claims, "alg": alg, "kid": kid})).await;
        v["token"].as_str().expect("token").to_string()
    }

    /// HS256 over `claims` with the published RS256 key's JWK as the secret.
    pub(crate) async fn sign_hmac_with_public_key(&self, claims: Value) -> String {
        let v = self.post("/sign", json!({"claims": claims, "alg": "RS256", "hmacWithPublicKey": true})).await;
        v["token"].as_str().expect("token").to_string()
    }

    /// A new key of `alg` replaces the published ones; its kid.
    pub(crate) async fn rotate(&self, alg: &str) -> String {
        self.post("/rotate", json!({"alg": alg})).await["kid"].as_str().expect("kid").to_string()
    }

    /// A key that is never published; its kid.
    pub(crate) async fn stray(&self, alg: &str) -> String {
        self.post("/stray", json!({"alg": alg})).await["kid"].as_str().expect("kid").to_string()
    }

    /// How many times the JWKS was fetched.
    pub(crate) async fn fetches(&self) -> u64 {
        let body = reqwest::get(self.0.url("/fetches")).await.expect("fetches").bytes().await.expect("body");
        let v: Value = serde_json::from_slice(&body).expect("JSON");
        v["fetches"].as_u64().expect("a count")
    }
}

pub(crate) fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// Good claims for `sub` with `scope`, valid for five minutes.
pub(crate) fn claims(sub: &str, scope: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "scope": scope, "iat": now(), "exp": now() + 300})
}

/// `[auth]` with one named client (all servers) and `[auth.jwt]` against `jwks_url`: role
/// `echo:tools` may use server `echo` and its tool `echo` only, `admin` everything.
pub(crate) fn auth_table(jwks_url: &str) -> String {
    format!(
        r#"
[auth]
realm = "identity-test"

[[auth.clients]]
name = "ops"
token = "{STATIC_TOKEN}"

[auth.jwt]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_url = "{jwks_url}"
jwks_refetch_interval = "1s"

[[auth.jwt.grants]]
role = "echo:tools"
servers = ["echo"]
tools = ["echo"]

[[auth.jwt.grants]]
role = "admin"
"#
    )
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// A token with `header` and `claims` and `sig` as given, made by hand (no library signs these).
pub(crate) fn forged(header: &Value, claims: &Value, sig: &str) -> String {
    format!("{}.{}.{sig}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()))
}

/// Malformed tokens: (what, token).
pub(crate) fn malformed() -> Vec<(&'static str, String)> {
    let good_claims = b64(claims("mallory", "admin").to_string().as_bytes());
    let nested = format!("{}{}", "{\"a\":".repeat(5000), "}".repeat(5000));
    vec![
        ("bad base64 header", format!("!!!.{good_claims}.sig")),
        ("bad base64 signature", format!("{}.{good_claims}.%%%", b64(br#"{"alg":"RS256"}"#))),
        ("header not JSON", format!("{}.{good_claims}.sig", b64(b"not json"))),
        ("header a JSON array", format!("{}.{good_claims}.sig", b64(b"[1,2,3]"))),
        (
            "huge header (6 KB)",
            format!("{}.{good_claims}.sig", b64(format!(r#"{{"alg":"RS256","x":"{}"}}"#, "A".repeat(4500)).as_bytes())),
        ),
        (
            "huge header (64 KB)",
            format!("{}.{good_claims}.sig", b64(format!(r#"{{"alg":"RS256","x":"{}"}}"#, "A".repeat(48_000)).as_bytes())),
        ),
        ("nested JSON header", format!("{}.{good_claims}.sig", b64(nested.as_bytes()))),
        ("nested JSON claims", format!("{}.{}.sig", b64(br#"{"alg":"RS256","kid":"rs256-1"}"#), b64(nested.as_bytes()))),
        ("empty parts", "..".to_string()),
        ("unknown alg", forged(&json!({"alg": "XX999"}), &claims("m", "admin"), "c2ln")),
        ("kid not a string", forged(&json!({"alg": "RS256", "kid": {"$ref": 1}}), &claims("m", "admin"), "c2ln")),
    ]
}
