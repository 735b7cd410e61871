//! Who may do what: named clients with a bearer token or API key (kept as a SHA-256 hash),
//! each allowed a set of servers. Missing or wrong credentials get 401 with
//! `WWW-Authenticate`; a server the client may not use gets 403. The principal rides on the
//! request so that sessions can be bound to it. Client credentials never reach an upstream.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::Error;
use crate::config::auth::AuthModel;

/// The authenticated client of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal(pub Arc<str>);

/// The servers the request's client may use (`*` for all), for answers that span servers.
#[derive(Debug, Clone)]
pub(crate) struct Allowed(pub Vec<String>);

impl Allowed {
    pub(crate) fn permits(&self, server: &str) -> bool {
        self.0.iter().any(|s| s == "*" || s == server)
    }
}

struct Client {
    name: Arc<str>,
    hash: [u8; 32],
    servers: Vec<String>,
}

/// The checks, built once from the configuration.
pub struct Auth {
    realm: String,
    clients: Vec<Client>,
    metadata: Option<String>,
}

impl Auth {
    /// Builds the checks from a table `config` validated (`AuthModel::check`); `Err((key,
    /// reason))` names what is wrong.
    pub fn from_model(m: AuthModel, servers: &[&str]) -> Result<Auth, (String, String)> {
        let clients = m.check(servers)?.into_iter().map(|c| Client { name: c.name, hash: c.hash, servers: c.servers }).collect();
        let metadata = m.resource_metadata.map(|md| serde_json::Value::Object(md).to_string());
        Ok(Auth { realm: m.realm, clients, metadata })
    }

    /// The client a token belongs to. Every stored hash is compared in full, so the time taken
    /// does not tell which bytes matched.
    fn client(&self, token: &str) -> Option<&Client> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for c in &self.clients {
            let diff = c.hash.iter().zip(presented.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(c);
            }
        }
        found
    }

    /// The 401 with this realm's `WWW-Authenticate` challenge.
    fn challenge(&self, error: Option<&str>) -> Error {
        let mut challenge = format!("Bearer realm=\"{}\"", self.realm);
        if self.metadata.is_some() {
            challenge.push_str(", resource_metadata=\"/.well-known/oauth-protected-resource\"");
        }
        if let Some(e) = error {
            challenge.push_str(&format!(", error=\"{e}\""));
        }
        Error::Unauthorized { challenge }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header. The scheme is case-insensitive
/// (RFC 9110 section 11.1): `bearer` and `BEARER` count too.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// A client credential: the bearer token, else `X-API-Key`.
fn presented(headers: &axum::http::HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim))
}

/// The server a request path names (`/sse/{name}…`, `/mcp/{name}`, `/rest/{name}/…`,
/// `/mcp/router/route/{name}…`), if any.
fn server_of(path: &str) -> Option<&str> {
    if let Some(routed) = path.strip_prefix("/mcp/router/route/") {
        return routed.split('/').next();
    }
    if let Some(rest) = path.strip_prefix("/rest/") {
        // `/rest/openapi.json` names no server.
        return rest.split_once('/').map(|(server, _)| server);
    }
    let rest = path.strip_prefix("/sse/").or_else(|| path.strip_prefix("/mcp/"))?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// The middleware. Health, readiness and the metadata document stay open (`/readyz` shows its
/// details to a known client, so it learns the principal here); `/metrics` and the admin API
/// check their own tokens.
pub(crate) async fn check(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Result<Response, Error> {
    let path = req.uri().path();
    if path == "/readyz" {
        if let Some(c) = presented(req.headers()).and_then(|t| auth.client(t)) {
            let principal = Principal(c.name.clone());
            req.extensions_mut().insert(principal);
        }
        return Ok(next.run(req).await);
    }
    if matches!(path, "/healthz" | "/metrics") || path.starts_with("/admin") {
        return Ok(next.run(req).await);
    }
    if path == "/.well-known/oauth-protected-resource" {
        let md = auth.metadata.clone().ok_or(Error::NoMetadata)?;
        return Ok(([(header::CONTENT_TYPE, "application/json")], md).into_response());
    }
    let Some(token) = presented(req.headers()) else {
        return Err(auth.challenge(None));
    };
    let Some(client) = auth.client(token) else {
        tracing::warn!(path, "refused a request with an unknown token");
        return Err(auth.challenge(Some("invalid_token")));
    };
    if let Some(server) = server_of(path) {
        if !client.servers.iter().any(|s| s == "*" || s == server) {
            tracing::warn!(principal = %client.name, server, "refused a server the client may not use");
            return Err(Error::ServerForbidden { server: server.to_string() });
        }
    }
    // Credentials stop here: upstream requests are built from the configuration alone.
    req.headers_mut().remove(header::AUTHORIZATION);
    req.headers_mut().remove("x-api-key");
    req.extensions_mut().insert(Principal(client.name.clone()));
    req.extensions_mut().insert(Allowed(client.servers.clone()));
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(clients: &str) -> AuthModel {
        toml::from_str(clients).unwrap()
    }

    #[test]
    fn tokens_hashes_and_errors() {
        let hash = format!("{:x}", Sha256::digest(b"s3cret"));
        let m = model(&format!(
            "[[clients]]\nname = \"a\"\ntoken = \"t1\"\nservers = [\"echo\"]\n[[clients]]\nname = \"b\"\ntoken_sha256 = \"{hash}\"\n"
        ));
        let auth = Auth::from_model(m, &["echo", "other"]).unwrap();
        assert_eq!(auth.client("t1").map(|c| &*c.name), Some("a"));
        assert_eq!(auth.client("s3cret").map(|c| &*c.name), Some("b"));
        assert!(auth.client("nope").is_none());
        let bad = model("[[clients]]\nname = \"a\"\ntoken = \"t\"\nservers = [\"missing\"]\n");
        assert!(Auth::from_model(bad, &["echo"]).err().is_some_and(|(_, r)| r.contains("missing")));
        let both = model("[[clients]]\nname = \"a\"\n");
        assert!(Auth::from_model(both, &[]).is_err());
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer t1", "bearer t1", "BEARER t1", "BeArEr  t1 "] {
            let mut h = axum::http::HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            assert_eq!(bearer(&h), Some("t1"), "{v}");
        }
        for v in ["Basic t1", "Bearer", "Bearert1", "Bearer  "] {
            let mut h = axum::http::HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            assert_eq!(bearer(&h), None, "{v}");
        }
    }

    #[test]
    fn server_names_from_paths() {
        assert_eq!(server_of("/sse/echo"), Some("echo"));
        assert_eq!(server_of("/sse/echo/message"), Some("echo"));
        assert_eq!(server_of("/mcp/x"), Some("x"));
        assert_eq!(server_of("/message"), None);
        assert_eq!(server_of("/rest/echo/tools/add"), Some("echo"));
        assert_eq!(server_of("/rest/openapi.json"), None);
        assert_eq!(server_of("/mcp/router/route/echo/timeout/5"), Some("echo"));
    }
}

/// The request's principal, if authentication is configured: a handler argument.
#[derive(Debug, Clone, Default)]
pub(crate) struct Who(pub Option<Arc<str>>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Who {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Who(parts.extensions.get::<Principal>().map(|p| p.0.clone())))
    }
}
