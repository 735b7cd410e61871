//! The 2024-11-05 HTTP+SSE transport: `GET /sse/{name}` opens (or, with `Last-Event-ID`,
//! resumes) a session and announces its message endpoint; `POST …/message?sessionId=`
//! delivers client messages.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::event_stream::{EventStream, StreamInfo};
use super::{client_addr, public_prefix, rpc_error, sse_response};
use crate::jsonrpc::{self, code};
use crate::server::AppState;
use crate::session::event_log::EventId;
use crate::session::{AttachError, CloseReason, Session, SessionId, Transport};
use crate::sse;

pub async fn open(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(server) = app.server(&name) else {
        return unknown_server(&name);
    };
    let client = client_addr(&headers, peer);
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(EventId::parse);
    let retry = sse::retry(app.config.sessions.retry.as_millis() as u64);
    let (session, attached, first) = match resume {
        Some(last) => {
            let session = app.registry.get(last.session).filter(|s| s.server.name == name && s.transport == Transport::Sse);
            let Some(session) = session else {
                return (StatusCode::NOT_FOUND, format!("session {} is not held here any more; open a new one", last.session))
                    .into_response();
            };
            match session.attach(0, Some(last.seq), true) {
                Ok(a) => (session, a, retry),
                Err(AttachError::Gap(gap)) => {
                    let detail = format!("the client resumed after event {} but the log starts at {}", gap.after, gap.oldest);
                    session.end(CloseReason::EventLogOverflow, &detail);
                    return (
                        StatusCode::GONE,
                        format!("session {}: events were lost ({detail}); the session is ended", session.id),
                    )
                        .into_response();
                }
                Err(e) => return (StatusCode::NOT_FOUND, format!("session {}: {e}", session.id)).into_response(),
            }
        }
        None => {
            let session = app.registry.create(server.clone(), Transport::Sse, app.settings_for(&server), app.ctx.clone());
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
            (session, attached, Bytes::from(first))
        }
    };
    let info = StreamInfo {
        session: session.id,
        stream: 0,
        server: name.as_str().into(),
        transport: Transport::Sse,
        client,
        instance: app.instance.clone(),
    };
    let body = EventStream::new(info, first, attached, server.heartbeat, None, Some(session));
    sse_response(body, &[])
}

#[derive(Deserialize)]
pub struct MessageQuery {
    #[serde(rename = "sessionId", alias = "session_id")]
    session_id: Option<String>,
}

pub async fn message(
    State(app): State<AppState>,
    name: Option<Path<String>>,
    Query(q): Query<MessageQuery>,
    body: Bytes,
) -> Response {
    let Some(raw_id) = q.session_id else {
        return (StatusCode::BAD_REQUEST, "missing the sessionId query parameter").into_response();
    };
    let session = SessionId::parse(&raw_id)
        .and_then(|id| app.registry.get(id))
        .filter(|s: &Arc<Session>| s.transport == Transport::Sse && name.as_ref().is_none_or(|Path(n)| *n == s.server.name));
    let Some(session) = session else {
        return (StatusCode::NOT_FOUND, "session not found").into_response();
    };
    let messages = match super::streamable::parse_messages(&body) {
        Ok((m, _)) => m,
        Err(resp) => return resp,
    };
    match session.send(messages, 0).await {
        Ok(()) => (StatusCode::ACCEPTED, "Accepted").into_response(),
        Err(e) => rpc_error(StatusCode::NOT_FOUND, code::SESSION_NOT_FOUND, &format!("session not found: {e}")),
    }
}

pub fn unknown_server(name: &str) -> Response {
    let name: String = name.chars().take(128).collect();
    rpc_error(StatusCode::NOT_FOUND, jsonrpc::code::CONNECTION_CLOSED, &format!("unknown MCP server `{name}`"))
}
