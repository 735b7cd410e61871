//! The 2024-11-05 HTTP+SSE transport: `GET /sse/{name}` opens (or, with `Last-Event-ID`,
//! resumes) a session and announces its message endpoint; `POST …/message?sessionId=`
//! delivers client messages.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::event_stream::{EventStream, StreamInfo};
use super::{client_addr, op_error, public_prefix, rpc_error, sse_response};
use crate::app::AppState;
use crate::http::auth::Who;
use crate::locator::{self, Detach, Handle, OpError};
use crate::protocol::jsonrpc;
use crate::session::event_log::EventId;
use crate::session::{CloseReason, SessionId, Transport};
use crate::sse;

pub(crate) async fn open(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Who(principal): Who,
    headers: HeaderMap,
) -> Response {
    let Some(server) = app.locator.server(&name) else {
        return unknown_server(&name);
    };
    let client = client_addr(&app.config.edge, &headers, peer);
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(EventId::parse);
    let retry = sse::retry(app.config.sessions.retry.as_millis() as u64);
    let (id, attached, detach, first) = match resume {
        Some(last) => {
            let handle = match locator::find_for(&app.locator, last.session, principal.as_deref()).await {
                Ok(h) => h.filter(|h| h.server_name() == name && h.transport() == Transport::Sse),
                Err(e) => return op_error(OpError::Unavailable(e)),
            };
            let Some(handle) = handle else {
                return (StatusCode::NOT_FOUND, format!("session {} is not held any more; open a new one", last.session))
                    .into_response();
            };
            match handle.attach(&app.locator, 0, Some(last.seq), true).await {
                Ok((attached, _, detach)) => (handle.id(), attached, detach, retry),
                Err(OpError::Gap(detail)) => {
                    let _ = handle.end(&app.locator, CloseReason::EventLogOverflow, &detail).await;
                    return (StatusCode::GONE, format!("session {}: {detail}; the session is ended", handle.id()))
                        .into_response();
                }
                Err(e) => return op_error(e),
            }
        }
        None => {
            let session = match locator::create(&app.locator, server.clone(), Transport::Sse, principal).await {
                Ok(s) => s,
                Err(e) => return op_error(e),
            };
            let attached = match session.attach(0, None, true) {
                Ok(a) => a,
                Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            };
            let seq = session.reserve_seq(0).unwrap_or(0);
            let prefix = public_prefix(&headers, app.config.public_base_path.as_deref());
            let endpoint = format!("{prefix}/sse/{name}/message?sessionId={}", session.id);
            let id = EventId { session: session.id, stream: 0, seq }.to_string();
            let mut first = retry.to_vec();
            first.extend_from_slice(&sse::event(Some(&id), Some("endpoint"), endpoint.as_bytes()));
            (session.id, attached, Detach::Local(session), Bytes::from(first))
        }
    };
    let info = StreamInfo {
        session: id,
        stream: 0,
        server: name.as_str().into(),
        transport: Transport::Sse,
        client,
        instance: app.instance.clone(),
    };
    let body = EventStream::new(info, first, attached, server.heartbeat, None, Some(detach));
    sse_response(body, &[])
}

#[derive(Deserialize)]
pub(crate) struct MessageQuery {
    #[serde(rename = "sessionId", alias = "session_id")]
    session_id: Option<String>,
}

pub(crate) async fn message(
    State(app): State<AppState>,
    name: Option<Path<String>>,
    Query(q): Query<MessageQuery>,
    Who(principal): Who,
    body: Bytes,
) -> Response {
    let Some(raw_id) = q.session_id else {
        return (StatusCode::BAD_REQUEST, "missing the sessionId query parameter").into_response();
    };
    let Some(id) = SessionId::parse(&raw_id) else {
        return (StatusCode::NOT_FOUND, "session not found").into_response();
    };
    let handle = match locator::find_for(&app.locator, id, principal.as_deref()).await {
        Ok(h) => h,
        Err(e) => return op_error(OpError::Unavailable(e)),
    };
    let handle = handle.filter(|h: &Handle| {
        h.transport() == Transport::Sse && name.as_ref().is_none_or(|Path(n)| n.as_str() == h.server_name())
    });
    let Some(handle) = handle else {
        return (StatusCode::NOT_FOUND, "session not found").into_response();
    };
    let messages = match super::streamable::parse_messages(&body) {
        Ok((m, _)) => m,
        Err(resp) => return resp,
    };
    match handle.send(&app.locator, messages, 0).await {
        Ok(()) => (StatusCode::ACCEPTED, "Accepted").into_response(),
        Err(e) => op_error(e),
    }
}

pub(crate) fn unknown_server(name: &str) -> Response {
    let name: String = name.chars().take(128).collect();
    rpc_error(StatusCode::NOT_FOUND, jsonrpc::code::CONNECTION_CLOSED, &format!("unknown MCP server `{name}`"))
}
