//! The 2026-07-28 (stateless) revision at `/mcp/{name}`, beside the session-based ones: a
//! request that carries its protocol version in `params._meta` (or names a modern version in
//! `MCP-Protocol-Version`) is validated here and served through a backing session from
//! [`crate::stateless`]. Status codes and error codes follow the revision's transport page:
//! header mismatches are 400 with -32020, unsupported versions 400 with -32022, unknown
//! methods 404 with -32601, GET and DELETE 405.

mod exchange;
mod headers;
mod listen;
mod reply;

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::app::AppState;
use crate::config::ServerConfig;
use crate::http::Error;
use crate::locator::{Handle, OpError};
use crate::protocol::all_versions;
use crate::protocol::headers::check_param_headers;
use crate::protocol::jsonrpc::{self, Kind};
use crate::protocol::method;
use crate::protocol::modern::{self as wire, code, ModernRequest, META_VERSION};
use crate::protocol::{MODERN_VERSIONS, SUPPORTED_VERSIONS};
use exchange::{respond, resume, Exchange, Held};
use headers::{unsupported, validate};
use listen::listen;
use reply::{answer, checkout_failed, error, mismatch};

/// Methods of the session-based revisions that a stateless request may not use.
const LEGACY_ONLY: &[&str] =
    &[method::INITIALIZE, method::PING, method::LOGGING_SET_LEVEL, method::RESOURCES_SUBSCRIBE, method::RESOURCES_UNSUBSCRIBE];

/// Whether a POST is a modern one: it names a modern version, carries per-request metadata
/// in `params._meta`, or names a version the bridge does not know without naming a session (a
/// modern server's answer, with the supported versions, serves that client best).
pub(crate) fn is_modern(headers: &HeaderMap, body: &[u8]) -> bool {
    let version = headers.get("mcp-protocol-version").map(|v| v.to_str().unwrap_or("?"));
    if version.is_some_and(|v| MODERN_VERSIONS.contains(&v)) {
        return true;
    }
    // The cheap test first; the text may also just be in a legacy request's arguments.
    if body.windows(META_VERSION.len()).any(|w| w == META_VERSION.as_bytes()) && carries_modern_meta(body) {
        return true;
    }
    version.is_some_and(|v| !SUPPORTED_VERSIONS.contains(&v)) && headers.get("mcp-session-id").is_none()
}

/// Whether a body is one request with `params._meta["io.modelcontextprotocol/protocolVersion"]`.
fn carries_modern_meta(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Msg<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<Meta<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Meta<'a> {
        #[serde(borrow, rename = "io.modelcontextprotocol/protocolVersion")]
        version: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<Msg>(body).ok().and_then(|m| m.params).and_then(|p| p.meta).is_some_and(|m| m.version.is_some())
}

/// GET and DELETE from a modern client: the revision has no standalone stream and no session.
pub(crate) fn refuse(headers: &HeaderMap) -> Result<(), Error> {
    match headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok()) {
        Some(v) if MODERN_VERSIONS.contains(&v) => Err(Error::StatelessMethod(v.to_string())),
        _ => Ok(()),
    }
}

/// A modern POST: one request, checked, then served by a backing session.
pub(crate) async fn post(
    app: AppState,
    server: Arc<ServerConfig>,
    principal: Option<Arc<str>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let (items, batch) = jsonrpc::split(&body).map_err(Error::Parse)?;
    let Some(raw) = items.into_iter().next().filter(|_| !batch) else {
        let msg = "Invalid Request: a 2026-07-28 POST carries one JSON-RPC request; batches are not part of this revision";
        return Err(error(StatusCode::BAD_REQUEST, None, jsonrpc::code::INVALID_REQUEST, msg));
    };
    let peek =
        jsonrpc::peek(&raw).map_err(|e| error(StatusCode::BAD_REQUEST, None, e.code(), &format!("Invalid Request: {e}")))?;
    match peek.kind {
        Kind::Response => {
            let msg = "Invalid Request: clients send no JSON-RPC responses in 2026-07-28 (answers to server requests go in inputResponses)";
            return Err(error(StatusCode::BAD_REQUEST, None, jsonrpc::code::INVALID_REQUEST, msg));
        }
        // The revision defines no client notifications over HTTP; a listen stream is cancelled
        // by closing it (the TypeScript client also posts notifications/cancelled): accepted.
        Kind::Notification => return Ok(StatusCode::ACCEPTED.into_response()),
        Kind::Request => {}
    }
    let req = wire::parse_request(&raw)
        .map_err(|msg| error(StatusCode::BAD_REQUEST, peek.id.as_deref(), code::INVALID_PARAMS, &msg))?;
    super::mirrored::once(&headers).map_err(|m| mismatch(&req.id, &m))?;
    validate(&headers, &req)?;
    // A modern upstream judges the version itself: its list of versions is the one that counts.
    if let Some(resp) = passthrough(&app, &server, &headers, &body, &req).await {
        return resp;
    }
    unsupported(&req)?;
    match req.method.as_str() {
        method::SERVER_DISCOVER => discover(&app, server, principal, &req).await,
        method::SUBSCRIPTIONS_LISTEN => listen(&app, server, principal, &req).await,
        m if LEGACY_ONLY.contains(&m) => Err(error(
            StatusCode::NOT_FOUND,
            Some(&req.id),
            code::METHOD_NOT_FOUND,
            &format!(
                "Method not found: {m} is not part of protocol version 2026-07-28 (no initialize or ping; subscriptions/listen replaces \
                 resources/subscribe; the logLevel in _meta replaces logging/setLevel)"
            ),
        )),
        _ if req.request_state.is_some() => resume(&app, &server, principal, req).await,
        _ => call(&app, server, principal, &headers, raw, peek, req).await,
    }
}

/// Request headers a modern request carries on to a modern upstream.
fn forwarded(name: &str) -> bool {
    matches!(name, "content-type" | "accept" | "mcp-protocol-version" | "mcp-method" | "mcp-name")
        || name.starts_with("mcp-param-")
}

/// A remote upstream that serves 2026-07-28 itself gets modern requests as they came (body
/// and `Mcp-*` headers, which the bridge has validated), and its answer streams back. Closing
/// the response closes the upstream request too, which is the upstream's cancellation.
async fn passthrough(
    app: &AppState,
    server: &ServerConfig,
    headers: &HeaderMap,
    body: &Bytes,
    req: &ModernRequest,
) -> Option<Result<Response, Error>> {
    let crate::config::UpstreamSpec::StreamableHttp { url, headers: extra } = &server.upstream else { return None };
    let http = server.http(&app.locator.env.upstream.http);
    let target = app.stateless.passthrough_target(&app.locator, server, http, url, extra).await?;
    let mut out = crate::upstream::with_headers(http.post(target.url()), extra);
    for (k, v) in headers {
        if forwarded(k.as_str()) {
            out = out.header(k, v);
        }
    }
    let resp = match out.body(body.clone()).send().await {
        Ok(r) => r,
        Err(e) => {
            target.report(false);
            let msg = format!("mcp-bridge: the upstream could not be reached: {}", crate::upstream::cause(&e));
            return Some(Err(error(StatusCode::BAD_GATEWAY, Some(&req.id), jsonrpc::code::INTERNAL_ERROR, &msg)));
        }
    };
    target.report(!resp.status().is_server_error());
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    let streaming = content_type.as_ref().is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    // The target (a pool instance's lease) is held until the answer has streamed.
    let stream = resp.bytes_stream().map(move |chunk| {
        let _held = &target;
        chunk
    });
    let mut response =
        if streaming { super::sse_response(stream, &[]) } else { Response::new(axum::body::Body::from_stream(stream)) };
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Some(Ok(response))
}

/// `server/discover`, answered from the upstream's initialize result.
async fn discover(
    app: &AppState,
    server: Arc<ServerConfig>,
    principal: Option<Arc<str>>,
    req: &ModernRequest,
) -> Result<Response, Error> {
    let scope = if principal.is_some() { "private" } else { "public" };
    let backing =
        app.stateless.checkout(&app.locator, server, principal, &req.meta).await.map_err(|e| checkout_failed(&req.id, e))?;
    let init = backing.init.clone();
    app.stateless.checkin(&app.locator, backing);
    let versions = serde_json::to_string(&all_versions()).unwrap_or_default();
    let caps = init.capabilities.as_ref().map_or("{}", |c| c.get());
    let info = init.server_info.as_ref().map_or("null", |c| c.get());
    let instructions = init
        .instructions
        .as_ref()
        .map(|i| format!(r#","instructions":{}"#, serde_json::to_string(i).unwrap_or_default()))
        .unwrap_or_default();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{{"resultType":"complete","supportedVersions":{versions},"capabilities":{caps}{instructions},"_meta":{{"io.modelcontextprotocol/serverInfo":{info}}},"ttlMs":60000,"cacheScope":"{scope}"}}}}"#,
        req.id
    );
    Ok(answer(StatusCode::OK, Bytes::from(body)))
}

/// A request served by a backing session checked out for it.
async fn call(
    app: &AppState,
    server: Arc<ServerConfig>,
    principal: Option<Arc<str>>,
    headers: &HeaderMap,
    raw: Bytes,
    peek: jsonrpc::Peek,
    req: ModernRequest,
) -> Result<Response, Error> {
    let backing = app
        .stateless
        .checkout(&app.locator, server.clone(), principal.clone(), &req.meta)
        .await
        .map_err(|e| checkout_failed(&req.id, e))?;
    if req.method == method::TOOLS_CALL {
        let tools = app.stateless.tool_headers(&backing, app.config.limits.request_timeout).await;
        if let Some(wanted) = req.name.as_ref().and_then(|n| tools.get(n)) {
            let arguments: serde_json::Value =
                req.arguments.as_ref().and_then(|a| serde_json::from_str(a.get()).ok()).unwrap_or_default();
            if let Err(msg) = check_param_headers(headers, &arguments, wanted) {
                app.stateless.checkin(&app.locator, backing);
                return Err(mismatch(&req.id, &msg));
            }
        }
    }
    let session = backing.session.clone();
    let (opened, attached) = session.open_stream(1, false).map_err(OpError::from)?;
    session.send(vec![(raw, peek)], opened.stream).await.map_err(OpError::from)?;
    let ex = Exchange::new(app, Handle::Local(session), Some(backing), attached, Held(None), &req, None, principal);
    respond(ex, &server).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn which_posts_are_modern() {
        let meta = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert!(is_modern(&h(&[("mcp-protocol-version", "2026-07-28")]), b"{}"));
        assert!(is_modern(&HeaderMap::new(), meta), "per-request _meta without the header: modern (and then a -32020)");
        let legacy_args = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"io.modelcontextprotocol/protocolVersion"}}}"#;
        assert!(!is_modern(&h(&[("mcp-session-id", "ab"), ("mcp-protocol-version", "2025-11-25")]), legacy_args));
        assert!(!is_modern(&HeaderMap::new(), br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#));
        assert!(is_modern(&h(&[("mcp-protocol-version", "2099-01-01")]), b"{}"), "unknown version, no session");
        assert!(!is_modern(&h(&[("mcp-protocol-version", "2099-01-01"), ("mcp-session-id", "ab")]), b"{}"));
    }
}
