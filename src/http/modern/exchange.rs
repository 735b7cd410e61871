//! One 2026-07-28 request in flight on a backing session's stream ([`Exchange`]), read as the
//! client should see it: progress and wanted log messages, the final answer, or the upstream's
//! requests for the client gathered into an `InputRequiredResult` (MRTR) with a signed
//! `requestState`; and [`respond`], which answers with JSON or an SSE stream. The retry of a
//! parked request ([`resume`]) continues the same stream.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;

use super::reply::{answer, error};
use crate::app::AppState;
use crate::config::ServerConfig;
use crate::http::Error;
use crate::locator::{self, Detach, Handle, OpError};
use crate::protocol::jsonrpc::{self, Kind, Peek};
use crate::protocol::method;
use crate::protocol::modern::{self as wire, code, ClientCaps, ModernRequest};
use crate::protocol::request_state::RequestState;
use crate::session::event_log::Entry;
use crate::session::{Attached, CloseReason, Frame, FrameRx, SessionId, Target, Transport};
use crate::stateless::Backing;
use crate::{metrics, sse};

/// Upstream requests for the client that arrive within this long of each other go out in one
/// `InputRequiredResult` (a server that asks for several inputs at once sends them together).
const GATHER: Duration = Duration::from_millis(25);

/// The retry of a request that got an `InputRequiredResult`: the answers go to the upstream's
/// waiting requests, and the original request's stream carries on from where it asked.
pub(super) async fn resume(
    app: &AppState,
    server: &ServerConfig,
    principal: Option<Arc<str>>,
    req: ModernRequest,
) -> Result<Response, Error> {
    let expired = |why: &str| {
        let msg = format!("Invalid params: requestState {why}; send the request again without requestState and inputResponses");
        error(StatusCode::OK, Some(&req.id), code::INVALID_PARAMS, &msg)
    };
    let secret = app.stateless.secret();
    let Some(state) = req.request_state.as_deref().and_then(|s| RequestState::verify(s, principal.as_deref(), secret)) else {
        return Err(expired("was not issued by this bridge for this client (or was altered)"));
    };
    if state.request != RequestState::digest(&req.method, req.name.as_deref()) {
        return Err(expired("belongs to another request (a different method or target)"));
    }
    let handle = match locator::find_for(&app.locator, state.session, principal.as_deref()).await {
        Ok(Some(h)) if h.transport() == Transport::Stateless && h.server_name() == server.name => h,
        Ok(_) => return Err(expired("belongs to an upstream session that has ended")),
        Err(e) => return Err(OpError::Unavailable(e).into()),
    };
    let (attached, _, detach) = match handle.attach(&app.locator, state.stream, Some(state.asked - 1), true).await {
        Ok(a) => a,
        Err(OpError::Gap(_)) => return Err(expired("refers to events no longer kept")),
        Err(OpError::NotFound(_)) => return Err(expired("belongs to an upstream session that has ended")),
        Err(e) => return Err(e.into()),
    };
    // The state is spent once its request was answered; and answers count only for the
    // questions this state's request asked (the upstream requests logged on its stream from the
    // asking event on). Anything else in inputResponses is ignored.
    let detach = Held(Some(detach));
    if attached.reason.get() == Some(&CloseReason::Completed) {
        return Err(expired("belongs to a request that has completed"));
    }
    let asked: HashSet<Box<str>> = attached
        .replay
        .iter()
        .filter_map(|e| jsonrpc::peek(&e.data).ok().filter(|p| p.kind == Kind::Request).and_then(|p| p.id))
        .collect();
    let mut answers = Vec::new();
    let mut answered = HashSet::new();
    for (key, value) in &req.input_responses {
        if !asked.contains(key.as_str()) {
            continue;
        }
        let msg = Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{key},"result":{}}}"#, value.get()));
        if let Ok(p) = jsonrpc::peek(&msg) {
            answered.insert(key.clone());
            answers.push((msg, p));
        }
    }
    // Checked out before the answers go: once they do, the request may complete at once and
    // the session look idle to another checkout.
    let backing = match &handle {
        Handle::Local(s) => app.stateless.local(&app.locator, s.id),
        Handle::Remote(_) => None,
    };
    handle.send(&app.locator, answers, 0).await?;
    let ex = Exchange::new(app, handle, backing, attached, detach, &req, Some((state.asked, answered)), principal);
    respond(ex, server).await
}

/// A client stream held here for a session owned by another instance: released when dropped,
/// however the request ends.
pub(super) struct Held(pub(super) Option<Detach>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(Detach::Remote(cluster, token)) = self.0.take() {
            cluster.release_held(token);
        }
    }
}

/// What an exchange yields to the client.
enum Out {
    /// A notification about the request (progress, a log message it asked for).
    Notify(Bytes),
    /// The answer: the upstream's final response, or an `InputRequiredResult`.
    Final { body: Bytes, status: StatusCode },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Answered with an `InputRequiredResult`; the upstream request waits for the retry.
    Parked,
    Done,
}

/// One modern request in flight on a backing session's stream, read as the client should
/// see it. Dropped before its answer (the client closed the response), it cancels.
pub(super) struct Exchange {
    app: AppState,
    server: String,
    /// The client, whose `requestState`s are signed for it alone.
    principal: Option<Arc<str>>,
    handle: Option<Handle>,
    session_id: SessionId,
    backing: Option<Backing>,
    /// Released when the exchange goes.
    _held: Held,
    stream: u32,
    replay: std::vec::IntoIter<Entry>,
    rx: FrameRx,
    /// The id of the HTTP request being answered (a retry's own id).
    reply_id: Box<str>,
    method: String,
    caps: ClientCaps,
    log_level: Option<String>,
    /// The request's method and target, as its `requestState` names them.
    digest: u32,
    /// On a retry: the upstream requests the client answered now, by id text.
    answered: HashSet<String>,
    /// Upstream requests for the client gathered so far (id text, message), the event of the
    /// first, and when the gathering ends.
    asks: Vec<(String, Bytes)>,
    first_ask: u64,
    gather_until: Option<tokio::time::Instant>,
    phase: Phase,
    started: Instant,
}

impl Exchange {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        app: &AppState,
        handle: Handle,
        backing: Option<Backing>,
        attached: Attached,
        detach: Held,
        req: &ModernRequest,
        retry: Option<(u64, HashSet<String>)>,
        principal: Option<Arc<str>>,
    ) -> Exchange {
        let Attached { stream, replay, rx, .. } = attached;
        Exchange {
            app: app.clone(),
            server: handle.server_name().to_string(),
            principal,
            session_id: handle.id(),
            handle: Some(handle),
            backing,
            _held: detach,
            stream,
            replay: replay.into_iter(),
            rx,
            reply_id: req.id.clone(),
            method: req.method.clone(),
            caps: ClientCaps::of(&req.meta),
            log_level: req.meta.log_level.clone(),
            digest: RequestState::digest(&req.method, req.name.as_deref()),
            answered: retry.map(|(_, a)| a).unwrap_or_default(),
            asks: Vec::new(),
            first_ask: 0,
            gather_until: None,
            phase: Phase::Running,
            started: Instant::now(),
        }
    }

    /// Sends a message to the upstream without making the caller wait (the caller may be
    /// a `select!` that drops this future at any await).
    fn to_upstream(&self, msg: Bytes) {
        let (Some(handle), Ok(peek)) = (self.handle.clone(), jsonrpc::peek(&msg)) else { return };
        let app = self.app.clone();
        tokio::spawn(async move {
            let _ = handle.send(&app.locator, vec![(msg, peek)], Target::Discard).await;
        });
    }

    fn refuse_upstream(&self, id: &str, message: &str) {
        self.to_upstream(jsonrpc::error(Some(id), code::METHOD_NOT_FOUND, message));
    }

    /// The next thing the client gets. Cancel-safe (it runs under `select!` and `timeout`):
    /// what it has taken from the stream is kept in `self` until it is answered.
    async fn next(&mut self) -> Option<Out> {
        while self.phase == Phase::Running {
            let (seq, data) = match self.read().await {
                Read::Event(seq, data) => (seq, data),
                Read::Priming => continue,
                Read::Closed => return None,
                Read::Gathered => return Some(self.park()),
            };
            let Ok(peek) = jsonrpc::peek(&data) else { continue };
            let out = match peek.kind {
                Kind::Response => Some(self.finish(&peek, &data)),
                Kind::Request => self.upstream_request(&peek, seq, data),
                // While requests are being gathered, notifications wait: the retry replays
                // everything from the first of them on.
                Kind::Notification if !self.asks.is_empty() => continue,
                Kind::Notification => match peek.method.as_deref() {
                    Some(method::PROGRESS) => Some(Out::Notify(data)),
                    Some(method::MESSAGE) if wire::log_wanted(self.log_level.as_deref(), &data) => Some(Out::Notify(data)),
                    // Change notifications belong on subscriptions/listen streams.
                    _ => continue,
                },
            };
            if out.is_some() {
                return out;
            }
        }
        None
    }

    /// The next event of the request's stream: the replay first, then what arrives, until
    /// the gathering of upstream requests (if one began) runs out. Cancel-safe.
    async fn read(&mut self) -> Read {
        if let Some(e) = self.replay.next() {
            return Read::Event(e.seq, e.data);
        }
        let frame = match self.gather_until {
            Some(until) => match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(frame) => frame,
                Err(_) => return Read::Gathered,
            },
            None => self.rx.recv().await,
        };
        match frame {
            Some(Frame::Message(seq, data)) => Read::Event(seq, data),
            Some(Frame::Priming(_)) => Read::Priming,
            None => Read::Closed,
        }
    }

    /// The upstream's requests that came together, all asked at once in an
    /// `InputRequiredResult`; the upstream request waits for the retry.
    fn park(&mut self) -> Out {
        self.phase = Phase::Parked;
        let state = RequestState { session: self.session_id, stream: self.stream, asked: self.first_ask, request: self.digest };
        let state = state.sign(self.principal.as_deref(), self.app.stateless.secret());
        let body = wire::input_required(&self.reply_id, &self.asks, &state);
        Out::Final { body, status: StatusCode::OK }
    }

    /// The upstream's final response to the request: the backing session is checked in.
    fn finish(&mut self, peek: &Peek, data: &Bytes) -> Out {
        self.phase = Phase::Done;
        if let Some(b) = self.backing.take() {
            self.app.stateless.checkin(&self.app.locator, b);
        }
        if self.method == method::TOOLS_LIST && !peek.error {
            if let Some(h) = &self.handle {
                self.app.stateless.learn_tools(h.server_name(), data);
            }
        }
        let status = if peek.error { status_for(error_code(data)) } else { StatusCode::OK };
        let cacheable = wire::CACHEABLE.contains(&self.method.as_str());
        Out::Final { body: wire::final_response(data, &self.reply_id, cacheable), status }
    }

    /// A request from the upstream for the client: gathered into the `InputRequiredResult`
    /// when the client can answer it here, answered (ping) or refused otherwise. `Some` when
    /// the client must be answered at once (a capability it did not declare).
    fn upstream_request(&mut self, peek: &Peek, seq: u64, data: Bytes) -> Option<Out> {
        let uid = peek.id.as_deref()?;
        if self.answered.contains(uid) {
            return None;
        }
        let method = peek.method.as_deref().unwrap_or("");
        if method == method::PING {
            self.to_upstream(Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{uid},"result":{{}}}}"#)));
            return None;
        }
        match self.caps.allows(method) {
            Some((_, true)) if wire::MRTR_METHODS.contains(&self.method.as_str()) => {
                if self.asks.is_empty() {
                    self.first_ask = seq;
                    self.gather_until = Some(tokio::time::Instant::now() + GATHER);
                }
                self.asks.push((uid.to_string(), data));
            }
            Some((_, true)) => self.refuse_upstream(
                uid,
                &format!("mcp-bridge: a 2026-07-28 client answers {method} only within tools/call, prompts/get or resources/read, not {}", self.method),
            ),
            Some((cap, false)) => {
                // The request cannot complete as the client asked for it: the client hears
                // -32021 naming the capability, and the upstream session (its request still
                // waiting) is ended.
                self.refuse_upstream(uid, &format!("mcp-bridge: the client did not declare the `{cap}` capability"));
                self.phase = Phase::Done;
                if let Some(b) = self.backing.take() {
                    let detail = "the upstream needed a client capability the request did not declare";
                    self.app.stateless.forget(&self.app.locator, &b.session, CloseReason::Completed, detail);
                }
                let body = wire::missing_capability(&self.reply_id, cap, method);
                return Some(Out::Final { body, status: StatusCode::BAD_REQUEST });
            }
            None => self.refuse_upstream(
                uid,
                &format!("mcp-bridge: a 2026-07-28 client cannot receive server requests of method {method}"),
            ),
        }
        None
    }
}

/// What [`Exchange::read`] took from the request's stream.
enum Read {
    Event(u64, Bytes),
    Priming,
    /// The gathering of upstream requests ran out: they are asked now.
    Gathered,
    /// The stream ended.
    Closed,
}

/// The HTTP status of a JSON-RPC error answer, as the revision assigns them.
fn status_for(code: Option<i64>) -> StatusCode {
    match code {
        Some(code::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(code::HEADER_MISMATCH | code::MISSING_CLIENT_CAPABILITY | code::UNSUPPORTED_PROTOCOL_VERSION) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::OK,
    }
}

fn error_code(raw: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct E {
        error: Option<C>,
    }
    #[derive(serde::Deserialize)]
    struct C {
        code: i64,
    }
    serde_json::from_slice::<E>(raw).ok()?.error.map(|c| c.code)
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let outcome = match self.phase {
            Phase::Done => "answered",
            Phase::Parked => "input_required",
            Phase::Running => "cancelled",
        };
        if self.phase == Phase::Running {
            // Closing the response is how a 2026-07-28 client cancels: the upstream session
            // serving the request ends, which stops the work (a child is killed; a remote
            // upstream session is deleted).
            let detail = "the client closed the response before the answer (2026-07-28 cancellation)";
            match (self.backing.take(), self.handle.take()) {
                (Some(b), _) => self.app.stateless.forget(&self.app.locator, &b.session, CloseReason::Cancelled, detail),
                (None, Some(h)) => {
                    let app = self.app.clone();
                    tokio::spawn(async move {
                        let _ = h.end(&app.locator, CloseReason::Cancelled, detail).await;
                    });
                }
                (None, None) => {}
            }
        }
        if let (Phase::Parked, Some(b)) = (self.phase, self.backing.take()) {
            self.app.stateless.release(b);
        }
        let labels = metrics::Stateless { server: self.server.clone(), outcome };
        metrics::get().stateless_requests.get_or_create(&labels).inc();
        // An answered request is the common case (the metric counts it); one that was cancelled
        // or is waiting for the client's input is worth a line.
        let duration_ms = self.started.elapsed().as_millis() as u64;
        if self.phase == Phase::Done {
            tracing::debug!(session = %self.session_id, method = %self.method, outcome, duration_ms, "stateless request ended");
        } else {
            tracing::info!(session = %self.session_id, method = %self.method, outcome, duration_ms, "stateless request ended");
        }
    }
}

/// Answers with JSON when the answer comes before the first heartbeat is due (an unknown
/// method can then still be a 404), and otherwise with an SSE stream that carries the
/// notifications, heartbeats, and the answer.
pub(super) async fn respond(mut ex: Exchange, server: &ServerConfig) -> Result<Response, Error> {
    let every = server.heartbeat.interval;
    let wait = every.unwrap_or(Duration::from_secs(10)).min(Duration::from_secs(10));
    let first = match tokio::time::timeout(wait, ex.next()).await {
        Ok(Some(Out::Final { body, status })) => return Ok(answer(status, body)),
        Ok(None) => {
            let msg = "mcp-bridge: the upstream session ended before it answered";
            return Err(error(StatusCode::OK, Some(&ex.reply_id.clone()), jsonrpc::code::INTERNAL_ERROR, msg));
        }
        Ok(Some(Out::Notify(b))) => sse::event(None, None, &b),
        Err(_) => sse::comment("heartbeat"),
    };
    struct Body {
        ex: Exchange,
        first: Option<Bytes>,
        heartbeat: Option<tokio::time::Interval>,
        done: bool,
    }
    let heartbeat = every.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
    let body = Body { ex, first: Some(first), heartbeat, done: false };
    let stream = futures_util::stream::unfold(body, |mut b| async move {
        if let Some(first) = b.first.take() {
            return Some((Ok::<Bytes, Infallible>(first), b));
        }
        if b.done {
            return None;
        }
        let out = match &mut b.heartbeat {
            Some(hb) => tokio::select! {
                out = b.ex.next() => Some(out),
                _ = hb.tick() => None,
            },
            None => Some(b.ex.next().await),
        };
        match out {
            None => Some((Ok(sse::comment("heartbeat")), b)),
            Some(None) => None,
            Some(Some(Out::Notify(m))) => Some((Ok(sse::event(None, None, &m)), b)),
            Some(Some(Out::Final { body, .. })) => {
                b.done = true;
                Some((Ok(sse::event(None, None, &body)), b))
            }
        }
    });
    Ok(crate::http::sse_response(stream, &[]))
}
