//! Streamable HTTP (2025-03-26, 2025-06-18, 2025-11-25) at `/mcp/{name}`: POST with JSON or
//! SSE answers, the standalone GET stream, resumption with `Last-Event-ID`, and DELETE. Status
//! codes follow the spec and the official TypeScript server.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::event_stream::{EventStream, StreamInfo};
use super::{accepts, client_addr, op_error, rpc_error, sse_response};
use crate::app::AppState;
use crate::config::ServerConfig;
use crate::http::auth::Who;
use crate::locator::{self, Detach, Handle, OpError};
use crate::protocol::jsonrpc::{self, code, Kind, Peek};
use crate::protocol::SUPPORTED_VERSIONS;
use crate::session::event_log::EventId;
use crate::session::{Attached, CloseReason, Frame, SessionId, Transport};
use crate::sse;

const SESSION_HEADER: &str = "mcp-session-id";

/// Splits and checks a body of JSON-RPC messages; a bad body is a 400 with a JSON-RPC error.
pub(crate) fn parse_messages(body: &[u8]) -> Result<(Vec<(Bytes, Peek)>, bool), Response> {
    let bad = |e: jsonrpc::PeekError| rpc_error(StatusCode::BAD_REQUEST, e.code(), &format!("Parse error: {e}"));
    let (items, batch) = jsonrpc::split(body).map_err(bad)?;
    let mut out = Vec::with_capacity(items.len());
    for raw in items {
        let peek = jsonrpc::peek(&raw).map_err(bad)?;
        out.push((raw, peek));
    }
    Ok((out, batch))
}

pub(crate) async fn post(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Who(principal): Who,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(server) = app.locator.server(&name) else {
        return super::sse::unknown_server(&name);
    };
    if !(accepts(&headers, "application/json") && accepts(&headers, "text/event-stream")) {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            code::CONNECTION_CLOSED,
            "Not Acceptable: Client must accept both application/json and text/event-stream",
        );
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::CONNECTION_CLOSED,
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }
    if super::modern::is_modern(&headers, &body) {
        return super::modern::post(app, server, principal, headers, body).await;
    }
    let (messages, batch) = match parse_messages(&body) {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    let initialize = messages.iter().any(|(_, p)| p.kind == Kind::Request && p.method.as_deref() == Some("initialize"));
    let (handle, new) = if initialize {
        if messages.len() > 1 {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                code::INVALID_REQUEST,
                "Invalid Request: Only one initialization request is allowed",
            );
        }
        if matches!(session_from(&app, &headers, &name, principal.as_deref()).await, Some(Ok(_))) {
            return rpc_error(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, "Invalid Request: Server already initialized");
        }
        match locator::create(&app.locator, server.clone(), Transport::Streamable, principal.clone()).await {
            Ok(s) => (Handle::Local(s), true),
            Err(e) => return op_error(e),
        }
    } else {
        let handle = match checked_session(&app, &headers, &name, principal.as_deref()).await {
            Ok(s) => s,
            Err(resp) => return resp,
        };
        if batch {
            if let Some(v) = handle.protocol_version().filter(|v| crate::protocol::at_least(v, crate::protocol::V2025_06_18)) {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    code::INVALID_REQUEST,
                    &format!("Invalid Request: JSON-RPC batches are not part of protocol version {v}"),
                );
            }
        }
        (handle, false)
    };
    let session_header = [(SESSION_HEADER, handle.id().to_string())];
    let extra: &[(&'static str, String)] = if new { &session_header } else { &[] };
    let requests = messages.iter().filter(|(_, p)| p.kind == Kind::Request).count();
    if requests == 0 {
        return match handle.send(&app.locator, messages, 0).await {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(e) => op_error(e),
        };
    }
    let (opened, attached, detach) = match handle.open(&app.locator, messages, requests, server.json_response).await {
        Ok(o) => o,
        Err(e) => return op_error(e),
    };
    if server.json_response {
        return json_answer(attached, batch, extra).await;
    }
    let client = client_addr(&app.config.edge, &headers, peer);
    let priming = opened.priming.map(|seq| EventId { session: handle.id(), stream: opened.stream, seq });
    stream_response(&app, &server, handle.id(), attached, detach, opened.polling, priming, client, extra)
}

/// Collects a JSON-mode stream's responses into one body.
async fn json_answer(mut attached: Attached, batch: bool, extra: &[(&'static str, String)]) -> Response {
    let mut out: Vec<Bytes> = Vec::new();
    while let Some(frame) = attached.rx.recv().await {
        if let Frame::Message(_, data) = frame {
            out.push(data);
        }
    }
    let body = if out.len() == 1 && !batch {
        out.pop().unwrap_or_default()
    } else {
        let mut v = b"[".to_vec();
        for (i, m) in out.iter().enumerate() {
            if i > 0 {
                v.push(b',');
            }
            v.extend_from_slice(m);
        }
        v.push(b']');
        Bytes::from(v)
    };
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            resp.headers_mut().insert(*k, v);
        }
    }
    resp
}

/// An SSE answer: the `retry:` hint, a priming event when there is one, and for clients that
/// negotiated 2025-11-25 the optional stream lifetime.
#[allow(clippy::too_many_arguments)]
fn stream_response(
    app: &AppState,
    server: &ServerConfig,
    id: SessionId,
    attached: Attached,
    detach: Detach,
    polling: bool,
    priming: Option<EventId>,
    client: String,
    extra: &[(&'static str, String)],
) -> Response {
    let mut first = sse::retry(app.config.sessions.retry.as_millis() as u64).to_vec();
    if let Some(priming) = priming {
        first.extend_from_slice(&sse::event(Some(&priming.to_string()), None, b""));
    }
    let lifetime = app.config.sessions.max_stream_lifetime.filter(|_| polling);
    let info = StreamInfo {
        session: id,
        stream: attached.stream,
        server: server.name.as_str().into(),
        transport: Transport::Streamable,
        client,
        instance: app.instance.clone(),
    };
    let body = EventStream::new(info, Bytes::from(first), attached, server.heartbeat, lifetime, Some(detach));
    sse_response(body, extra)
}

pub(crate) async fn get(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Who(principal): Who,
    headers: HeaderMap,
) -> Response {
    let Some(server) = app.locator.server(&name) else {
        return super::sse::unknown_server(&name);
    };
    if let Some(refused) = super::modern::refuse(&headers) {
        return refused;
    }
    if !accepts(&headers, "text/event-stream") {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            code::CONNECTION_CLOSED,
            "Not Acceptable: Client must accept text/event-stream",
        );
    }
    let handle = match checked_session(&app, &headers, &name, principal.as_deref()).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(EventId::parse)
        .filter(|id| id.session == handle.id());
    let attached = match &last {
        Some(id) => handle.attach(&app.locator, id.stream, Some(id.seq), true).await,
        None => handle.attach(&app.locator, 0, None, false).await,
    };
    let (attached, polling, detach) = match attached {
        Ok(a) => a,
        Err(OpError::Gap(detail)) => {
            let _ = handle.end(&app.locator, CloseReason::EventLogOverflow, &detail).await;
            return rpc_error(
                StatusCode::NOT_FOUND,
                code::SESSION_NOT_FOUND,
                &format!("Session not found: events were lost ({detail})"),
            );
        }
        Err(e) => return op_error(e),
    };
    let client = client_addr(&app.config.edge, &headers, peer);
    stream_response(&app, &server, handle.id(), attached, detach, polling, None, client, &[])
}

pub(crate) async fn delete(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Who(principal): Who,
    headers: HeaderMap,
) -> Response {
    if app.locator.server(&name).is_none() {
        return super::sse::unknown_server(&name);
    }
    if let Some(refused) = super::modern::refuse(&headers) {
        return refused;
    }
    let handle = match checked_session(&app, &headers, &name, principal.as_deref()).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    match handle.end(&app.locator, CloseReason::Deleted, "the client sent DELETE").await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => op_error(e),
    }
}

pub(crate) async fn not_allowed() -> Response {
    let mut resp = rpc_error(StatusCode::METHOD_NOT_ALLOWED, code::CONNECTION_CLOSED, "Method not allowed.");
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
    resp
}

/// The session a request names, if it names one: `Err` if it is unknown (or unreachable).
async fn session_from(
    app: &AppState,
    headers: &HeaderMap,
    name: &str,
    principal: Option<&str>,
) -> Option<Result<Handle, Response>> {
    let raw = headers.get(SESSION_HEADER)?;
    let Some(id) = raw.to_str().ok().and_then(SessionId::parse) else {
        return Some(Err(rpc_error(StatusCode::NOT_FOUND, code::SESSION_NOT_FOUND, "Session not found")));
    };
    let found = match locator::find_for(&app.locator, id, principal).await {
        Ok(h) => h,
        Err(e) => return Some(Err(op_error(OpError::Unavailable(e)))),
    };
    let found = found.filter(|h| {
        h.transport() == Transport::Streamable && h.server_name() == name && !matches!(h, Handle::Local(s) if s.ended().is_some())
    });
    Some(found.ok_or_else(|| rpc_error(StatusCode::NOT_FOUND, code::SESSION_NOT_FOUND, "Session not found")))
}

/// The session of a non-initialize request, with its protocol version header checked.
async fn checked_session(app: &AppState, headers: &HeaderMap, name: &str, principal: Option<&str>) -> Result<Handle, Response> {
    let handle = match session_from(app, headers, name, principal).await {
        None => {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                code::CONNECTION_CLOSED,
                "Bad Request: Mcp-Session-Id header is required",
            ))
        }
        Some(r) => r?,
    };
    if let Some(v) = headers.get("mcp-protocol-version") {
        let v = v.to_str().unwrap_or("");
        if !SUPPORTED_VERSIONS.contains(&v) {
            let v: String = v.chars().take(64).collect();
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                code::CONNECTION_CLOSED,
                &format!(
                    "Bad Request: Unsupported protocol version: {v} (supported versions: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
    }
    Ok(handle)
}
