//! Streamable HTTP (2025-03-26, 2025-06-18, 2025-11-25) at `/mcp/{name}`: POST with JSON or
//! SSE answers, the standalone GET stream, resumption with `Last-Event-ID`, and DELETE. Status
//! codes follow the spec and the official TypeScript server.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::event_stream::{EventStream, StreamInfo};
use super::{accepts, client_addr, parse_messages, sse_response, Error};
use crate::app::AppState;
use crate::config::ServerConfig;
use crate::http::auth::Who;
use crate::locator::{self, Detach, Handle, OpError};
use crate::protocol::jsonrpc::{Kind, Peek};
use crate::protocol::method;
use crate::protocol::SUPPORTED_VERSIONS;
use crate::session::event_log::EventId;
use crate::session::{Attached, CloseReason, Frame, SessionId, Transport};
use crate::sse;

const SESSION_HEADER: &str = "mcp-session-id";

/// How long a POST's SSE answer waits for its first event before its head is sent, while other
/// requests are being served. An event that comes within it (a quick tool's answer) leaves in
/// the same write as the head, the `retry:` hint and the end of the stream: one send to the
/// client instead of two. A slower answer's head, hint and priming event go out when the wait
/// ends. It waits only while other POSTs' answers are open: a request served alone does not,
/// since there the wait's timer, the earliest the runtime has, wakes a parked worker to re-arm
/// its timeout, which cost more than the write saved (p50 at 1 session 123-140 µs without the
/// wait, 143-165 µs with it). Counting running handlers instead (as this did until issue 16's
/// fifth stage) missed every answer whose handler had already returned its stream, so with one
/// worker thread no answer ever waited: 2.0 writes per request instead of 1.0.
const FIRST_EVENT_WAIT: std::time::Duration = std::time::Duration::from_millis(5);

/// `POST /mcp/{name}`: client messages; requests are answered on an SSE stream or, for a
/// server in JSON mode, in one JSON body. An `initialize` opens a session.
pub(crate) async fn post(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Who(principal): Who,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let server = app.locator.server(&name).ok_or_else(|| Error::unknown_server(&name))?;
    if !(accepts(&headers, "application/json") && accepts(&headers, "text/event-stream")) {
        return Err(Error::NotAcceptable("both application/json and text/event-stream"));
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return Err(Error::UnsupportedMediaType);
    }
    if super::modern::is_modern(&headers, &body) {
        return super::modern::post(app, server, principal, headers, body).await;
    }
    let (messages, batch) = parse_messages(&body)?;
    let messages = super::narrow::initialize(super::narrow::tools_of(&server, &uri).as_deref(), messages);
    let (handle, new) = posted_to(&app, &name, &server, &headers, principal, &messages, batch).await?;
    // Formatted only for the answer that creates the session.
    let session_header = if new { vec![(SESSION_HEADER, handle.id().to_string())] } else { Vec::new() };
    let extra = session_header.as_slice();
    let requests = messages.iter().filter(|(_, p)| p.kind == Kind::Request).count();
    if requests == 0 {
        handle.send(&app.locator, messages, 0).await?;
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let (opened, attached, detach) = handle.open(&app.locator, messages, requests, server.json_response).await?;
    if server.json_response {
        return Ok(json_answer(attached, batch, extra).await);
    }
    let client = client_addr(&app.config.edge, &headers, peer);
    let priming = opened.priming.map(|seq| EventId { session: handle.id(), stream: opened.stream, seq });
    let mut body = stream_body(&app, &server, handle.id(), attached, detach, opened.polling, priming, client);
    body.counted(app.lifecycle.answering());
    if app.lifecycle.answers_open() > 1 {
        body.prefetch(FIRST_EVENT_WAIT).await;
    }
    match body.take_complete() {
        Some(whole) => Ok(super::sse_whole(whole, extra)),
        None => Ok(sse_response(body, extra)),
    }
}

/// The session a POST goes to, and whether it is new: a new one for an `initialize` (alone,
/// and not on a live session), else the one its header names.
async fn posted_to(
    app: &AppState,
    name: &str,
    server: &std::sync::Arc<ServerConfig>,
    headers: &HeaderMap,
    principal: Option<std::sync::Arc<str>>,
    messages: &[(Bytes, Peek)],
    batch: bool,
) -> Result<(Handle, bool), Error> {
    let initialize = messages.iter().any(|(_, p)| p.kind == Kind::Request && p.method.as_deref() == Some(method::INITIALIZE));
    if initialize {
        if messages.len() > 1 {
            return Err(Error::InvalidRequest("Only one initialization request is allowed".into()));
        }
        if matches!(session_from(app, headers, name, principal.as_deref()).await, Some(Ok(_))) {
            return Err(Error::InvalidRequest("Server already initialized".into()));
        }
        let session = locator::create(&app.locator, server.clone(), Transport::Streamable, principal).await?;
        return Ok((Handle::Local(session), true));
    }
    let handle = checked_session(app, headers, name, principal.as_deref()).await?;
    if batch {
        if let Some(v) = handle.protocol_version().filter(|v| crate::protocol::at_least(v, crate::protocol::V2025_06_18)) {
            return Err(Error::InvalidRequest(format!("JSON-RPC batches are not part of protocol version {v}")));
        }
    }
    Ok((handle, false))
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
fn stream_body(
    app: &AppState,
    server: &ServerConfig,
    id: SessionId,
    attached: Attached,
    detach: Detach,
    polling: bool,
    priming: Option<EventId>,
    client: super::ClientAddr,
) -> EventStream {
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
    EventStream::new(info, Bytes::from(first), attached, server.heartbeat, lifetime, Some(detach))
}

/// `GET /mcp/{name}`: the session's standalone stream, or with `Last-Event-ID` a stream
/// resumed.
pub(crate) async fn get(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Who(principal): Who,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let server = app.locator.server(&name).ok_or_else(|| Error::unknown_server(&name))?;
    super::modern::refuse(&headers)?;
    if !accepts(&headers, "text/event-stream") {
        return Err(Error::NotAcceptable("text/event-stream"));
    }
    let handle = checked_session(&app, &headers, &name, principal.as_deref()).await?;
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
            return Err(Error::EventsLost(detail));
        }
        Err(e) => return Err(e.into()),
    };
    let client = client_addr(&app.config.edge, &headers, peer);
    Ok(sse_response(stream_body(&app, &server, handle.id(), attached, detach, polling, None, client), &[]))
}

/// `DELETE /mcp/{name}`: ends the session.
pub(crate) async fn delete(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Who(principal): Who,
    headers: HeaderMap,
) -> Result<Response, Error> {
    if app.locator.server(&name).is_none() {
        return Err(Error::unknown_server(&name));
    }
    super::modern::refuse(&headers)?;
    let handle = checked_session(&app, &headers, &name, principal.as_deref()).await?;
    handle.end(&app.locator, CloseReason::Deleted, "the client sent DELETE").await?;
    Ok(StatusCode::OK.into_response())
}

/// Any other method on `/mcp/{name}`: 405.
pub(crate) async fn not_allowed() -> Error {
    Error::MethodNotAllowed
}

/// The session a request names, if it names one: `Err` if it is unknown (or unreachable).
async fn session_from(app: &AppState, headers: &HeaderMap, name: &str, principal: Option<&str>) -> Option<Result<Handle, Error>> {
    let raw = headers.get(SESSION_HEADER)?;
    let Some(id) = raw.to_str().ok().and_then(SessionId::parse) else {
        return Some(Err(Error::NoSession));
    };
    let found = match locator::find_for(&app.locator, id, principal).await {
        Ok(h) => h,
        Err(e) => return Some(Err(e.into())),
    };
    let found = found.filter(|h| {
        h.transport() == Transport::Streamable && h.server_name() == name && !matches!(h, Handle::Local(s) if s.ended().is_some())
    });
    Some(found.ok_or(Error::NoSession))
}

/// The session of a non-initialize request, with its protocol version header checked.
async fn checked_session(app: &AppState, headers: &HeaderMap, name: &str, principal: Option<&str>) -> Result<Handle, Error> {
    let handle = session_from(app, headers, name, principal)
        .await
        .ok_or_else(|| Error::BadRequest("Mcp-Session-Id header is required".into()))??;
    if let Some(v) = headers.get("mcp-protocol-version") {
        let v = v.to_str().unwrap_or("");
        if !SUPPORTED_VERSIONS.contains(&v) {
            let v: String = v.chars().take(64).collect();
            let supported = SUPPORTED_VERSIONS.join(", ");
            return Err(Error::BadRequest(format!("Unsupported protocol version: {v} (supported versions: {supported})")));
        }
    }
    Ok(handle)
}
