//! Who may do what: named clients with a bearer token or API key (kept as a SHA-256 hash),
//! each allowed a set of servers, and (`jwt`) bearer JWTs from an identity provider, whose
//! roles give servers and tools (`rules`). Missing or wrong credentials get 401 with
//! `WWW-Authenticate`; a server the client may not use gets 403, and so does a tool. The
//! principal rides on the request so that sessions can be bound to it. Client credentials
//! never reach an upstream.

mod jwt;
mod rules;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::Error;
use crate::config::auth::jwt::GrantModel;
use crate::config::auth::AuthModel;
use crate::protocol::jsonrpc::code;
pub(crate) use rules::{percent_decode, Rules};

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
    jwt: Option<jwt::Verifier>,
    grants: Vec<GrantModel>,
    /// `limits.max_body`, for the bodies read here (a `tools/call` of a principal some tools
    /// are withheld from).
    max_body: usize,
}

impl Auth {
    /// Builds the checks from a table `config` validated (`AuthModel::check`); `Err((key,
    /// reason))` names what is wrong.
    pub fn from_model(m: AuthModel, servers: &[&str]) -> Result<Auth, (String, String)> {
        let clients = m.check(servers)?.into_iter().map(|c| Client { name: c.name, hash: c.hash, servers: c.servers }).collect();
        let jwt = m.jwt.as_ref().map(|j| j.check(servers)).transpose()?;
        let grants = jwt.as_ref().map(|j| j.grants.clone()).unwrap_or_default();
        let mut metadata = m.resource_metadata;
        if let Some(j) = &jwt {
            // RFC 9728: the issuer whose tokens are accepted is the authorization server.
            let md = metadata.get_or_insert_with(Default::default);
            let servers = md.entry("authorization_servers").or_insert_with(|| serde_json::json!([]));
            if let Some(list) = servers.as_array_mut().filter(|l| !l.iter().any(|s| s.as_str() == Some(&j.issuer))) {
                list.push(j.issuer.clone().into());
            }
            md.entry("bearer_methods_supported").or_insert_with(|| serde_json::json!(["header"]));
        }
        let metadata = metadata.map(|md| serde_json::Value::Object(md).to_string());
        let jwt = jwt.map(jwt::Verifier::new);
        Ok(Auth { realm: m.realm, clients, metadata, jwt, grants, max_body: 8 * 1024 * 1024 })
    }

    /// Bodies read by the middleware stop at `max_body` (`limits.max_body`), as handlers' do.
    pub fn with_max_body(mut self, max_body: usize) -> Auth {
        self.max_body = max_body;
        self
    }

    /// The principal and what it may use, from the request's credential: a named client's
    /// token, else a JWT. `Err` is the 401.
    async fn identify(&self, headers: &axum::http::HeaderMap, path: &str) -> Result<(Arc<str>, Rules), Error> {
        let Some(token) = presented(headers) else {
            return Err(self.challenge(None));
        };
        if let Some(c) = self.client(token) {
            return Ok((c.name.clone(), Rules::servers(&c.servers)));
        }
        match &self.jwt {
            Some(v) if jwt::Verifier::looks_like_jwt(token) => match v.verify(token).await {
                Ok(id) => Ok((id.principal, Rules::from_roles(&self.grants, &id.roles))),
                Err(reason) => {
                    tracing::warn!(path, %reason, "refused a JWT");
                    Err(self.challenge(Some("invalid_token")))
                }
            },
            _ => {
                tracing::warn!(path, "refused a request with an unknown token");
                Err(self.challenge(Some("invalid_token")))
            }
        }
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
pub(crate) fn server_of(path: &str) -> Option<&str> {
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
    let path = req.uri().path().to_string();
    if path == "/readyz" {
        if let Ok((principal, _)) = auth.identify(req.headers(), &path).await {
            req.extensions_mut().insert(Principal(principal));
        }
        return Ok(next.run(req).await);
    }
    if matches!(path.as_str(), "/healthz" | "/metrics") || path.starts_with("/admin") {
        return Ok(next.run(req).await);
    }
    if path == "/.well-known/oauth-protected-resource" {
        let md = auth.metadata.clone().ok_or(Error::NoMetadata)?;
        return Ok(([(header::CONTENT_TYPE, "application/json")], md).into_response());
    }
    let (principal, rules) = auth.identify(req.headers(), &path).await?;
    let server = server_of(&path);
    if let Some(server) = server {
        if !rules.permits_server(server) {
            tracing::warn!(%principal, server, "refused a server the client may not use");
            return Err(Error::ServerForbidden { server: server.to_string() });
        }
    }
    // Credentials stop here: upstream requests are built from the configuration alone.
    req.headers_mut().remove(header::AUTHORIZATION);
    req.headers_mut().remove("x-api-key");
    req.extensions_mut().insert(Principal(principal.clone()));
    req.extensions_mut().insert(Allowed(rules.server_list()));
    let server = server.map(str::to_string);
    if !rules.narrows(server.as_deref()) {
        return Ok(next.run(req).await);
    }
    if req.method() == Method::POST {
        req = refuse_withheld_calls(&auth, &rules, server.as_deref(), &path, req).await.inspect_err(|e| {
            tracing::warn!(%principal, server = server.as_deref().unwrap_or(""), error = %e, "refused a tool the client may not call");
        })?;
    }
    let resp = next.run(req).await;
    Ok(narrow_lists(rules, server, resp).await)
}

/// The request, unchanged, unless it calls a tool the principal may not: a `tools/call` in the
/// body, or the tool a REST path names.
async fn refuse_withheld_calls(
    auth: &Auth,
    rules: &Rules,
    server: Option<&str>,
    path: &str,
    req: Request,
) -> Result<Request, Error> {
    let forbidden = |id: Option<String>, tool: &str| Error::Rpc {
        status: StatusCode::FORBIDDEN,
        id: id.map(Into::into),
        code: code::CONNECTION_CLOSED,
        message: format!("Forbidden: this client may not call tool `{}`", clip(tool)),
    };
    if let Some(tool) = path.strip_prefix("/rest/").and_then(|r| r.split_once("/tools/")).map(|(_, t)| rules::percent_decode(t)) {
        if !rules.permits_tool(server, &tool) {
            return Err(forbidden(None, &tool));
        }
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, auth.max_body).await else {
        return Err(Error::Rpc {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            id: None,
            code: code::INVALID_REQUEST,
            message: "Payload Too Large: the body is longer than limits.max_body".into(),
        });
    };
    if let Some((id, tool)) = rules.refused_call(server, &bytes) {
        return Err(forbidden(id, &tool));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// A tool name as echoed in a refusal: at most 128 bytes.
fn clip(tool: &str) -> &str {
    let mut end = tool.len().min(128);
    while !tool.is_char_boundary(end) {
        end -= 1;
    }
    &tool[..end]
}

/// The response with its tool lists cut to what the principal may call: an SSE body event by
/// event as it streams, a JSON body whole.
async fn narrow_lists(rules: Rules, server: Option<String>, resp: Response) -> Response {
    let kind = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let (mut parts, body) = resp.into_parts();
    if kind.starts_with("text/event-stream") {
        let mut cut = rules::SseNarrow::new(rules, server);
        let body = Body::from_stream(body.into_data_stream().map(move |chunk| chunk.map(|c| cut.push(&c))));
        return Response::from_parts(parts, body);
    }
    if !kind.starts_with("application/json") {
        return Response::from_parts(parts, body);
    }
    // The bridge's own JSON answers, bounded by the limits that made them.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    match rules.narrow_json(server.as_deref(), &bytes) {
        Some(cut) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(cut))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
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
