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
use super::{client_addr, parse_messages, public_prefix, sse_response, Error};
use crate::app::AppState;
use crate::config::{ServerConfig, UpstreamSpec};
use crate::http::auth::Who;
use crate::locator::{self, Detach, Handle, OpError};
use crate::session::event_log::EventId;
use crate::session::{Attached, CloseReason, SessionId, Transport};
use crate::sse;

/// `GET /sse/{name}`: a new session, or with `Last-Event-ID` the one it names, resumed.
pub(crate) async fn open(
    State(app): State<AppState>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Who(principal): Who,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let server = app.locator.server(&name).ok_or_else(|| Error::unknown_server(&name))?;
    let client = client_addr(&app.config.edge, &headers, peer);
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(EventId::parse);
    let retry = sse::retry(app.config.sessions.retry.as_millis() as u64);
    let (id, attached, detach, first) = match resume {
        Some(last) => {
            let (id, attached, detach) = resume_stream(&app, &name, last, principal.as_deref()).await?;
            (id, attached, detach, retry)
        }
        None => {
            let session = locator::create(&app.locator, server.clone(), Transport::Sse, principal).await?;
            let attached = match session.attach(0, None, true) {
                Ok(a) => a,
                Err(e) => {
                    // Its task (started by `end`) takes it out of the registry.
                    session.end(CloseReason::Error, "its stream could not attach");
                    return Err(Error::Attach(e));
                }
            };
            let seq = session.reserve_seq(0).unwrap_or(0);
            let prefix = public_prefix(&headers, app.config.public_base_path.as_deref());
            let narrowed = super::narrow::endpoint_suffix(super::narrow::tools_of(&server, &uri).as_deref());
            let endpoint = format!("{prefix}/sse/{name}/message?sessionId={}{narrowed}", session.id);
            let id = EventId { session: session.id, stream: 0, seq }.to_string();
            let mut first = retry.to_vec();
            first.extend_from_slice(&sse::event(Some(&id), Some("endpoint"), endpoint.as_bytes()));
            (session.id, attached, Detach::Local(session), Bytes::from(first))
        }
    };
    Ok(stream(&app, &server, id, client, first, attached, detach))
}

/// Reattaches a client to the session its `Last-Event-ID` names, replaying what it missed. A
/// session whose log no longer holds those events is ended (410).
async fn resume_stream(
    app: &AppState,
    name: &str,
    last: EventId,
    principal: Option<&str>,
) -> Result<(SessionId, Attached, Detach), Error> {
    let handle = locator::find_for(&app.locator, last.session, principal).await?;
    let handle = handle.filter(|h| h.server_name() == name && h.transport() == Transport::Sse);
    let handle = handle.ok_or(Error::SseNotHeld(last.session))?;
    match handle.attach(&app.locator, 0, Some(last.seq), true).await {
        Ok((attached, _, detach)) => Ok((handle.id(), attached, detach)),
        Err(OpError::Gap(detail)) => {
            let _ = handle.end(&app.locator, CloseReason::EventLogOverflow, &detail).await;
            Err(Error::SseEventsLost { session: handle.id(), detail })
        }
        Err(e) => Err(e.into()),
    }
}

/// The event stream of the session's one SSE stream.
fn stream(
    app: &AppState,
    server: &ServerConfig,
    session: SessionId,
    client: super::ClientAddr,
    first: Bytes,
    attached: Attached,
    detach: Detach,
) -> Response {
    let info = StreamInfo {
        session,
        stream: 0,
        server: server.name.as_str().into(),
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
    /// An aggregate's narrowing, from the endpoint URL (`http/narrow.rs`).
    tools: Option<String>,
}

/// `POST …/message?sessionId=`: client messages for a legacy SSE session (202).
pub(crate) async fn message(
    State(app): State<AppState>,
    name: Option<Path<String>>,
    Query(q): Query<MessageQuery>,
    Who(principal): Who,
    body: Bytes,
) -> Result<Response, Error> {
    let raw_id = q.session_id.ok_or(Error::MissingSessionId)?;
    let id = SessionId::parse(&raw_id).ok_or(Error::SseNoSession)?;
    let handle = locator::find_for(&app.locator, id, principal.as_deref()).await?;
    let handle = handle.filter(|h: &Handle| {
        h.transport() == Transport::Sse && name.as_ref().is_none_or(|Path(n)| n.as_str() == h.server_name())
    });
    let handle = handle.ok_or(Error::SseNoSession)?;
    let (messages, _) = parse_messages(&body)?;
    let aggregate = app.locator.server(handle.server_name()).is_some_and(|s| matches!(s.upstream, UpstreamSpec::Aggregate(_)));
    let messages = super::narrow::initialize(q.tools.as_deref().filter(|_| aggregate), messages);
    handle.send(&app.locator, messages, 0).await?;
    Ok((StatusCode::ACCEPTED, "Accepted").into_response())
}
