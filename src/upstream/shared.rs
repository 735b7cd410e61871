//! Shared mode: one long-lived stdio child serves every session of a server. Ids are
//! rewritten on the way in and back on the way out, so responses, progress and cancellations
//! reach the session they belong to; server-initiated requests go to a session that declared
//! the capability to answer them; other notifications go to every session. The bridge
//! initializes the child itself, once, with the newest version it speaks; each session gets
//! that answer with the version negotiated for it (see [`init_answer`]). A failed
//! initialize is passed on, never kept. A child that does not answer it within
//! `limits.upstream_stall` (30 s when off) is ended and the next session starts a fresh one.
//! When the child ends, every session learns so through a watch it selects on, which a full
//! event queue cannot lose.
//!
//! Only servers that keep no per-client state are safe to share (see the README).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::AbortHandle;

use super::stdio;
use super::{ChildSlots, UpstreamEvent, QUEUE};
use crate::ids::{CloseReason, SessionId};
use crate::protocol::jsonrpc;
use crate::protocol::method;
use crate::protocol::SUPPORTED_VERSIONS;

/// The shared child of one server and the maps that route its messages.
pub(super) struct Shared {
    server: Arc<str>,
    tx: super::budget::Sender<Bytes>,
    state: Mutex<Mux>,
    /// Why the child ended, once it has: set once, and watched by every session's task, so
    /// no session misses it however full its event queue is.
    ended: watch::Sender<Option<(CloseReason, String)>>,
    /// The child's task: aborting it kills the child's process group.
    child: AbortHandle,
    /// How long the child may take to answer the bridge's initialize.
    init_timeout: Duration,
}

/// The bound on a shared child's initialize when `limits.upstream_stall` is off.
const INIT_TIMEOUT_OFF: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Mux {
    next: u64,
    /// Bridge id → (session, the client's id as JSON text).
    requests: HashMap<u64, (SessionId, String)>,
    /// (session, client id) → bridge id, for cancellations.
    by_client: HashMap<(SessionId, String), u64>,
    /// Bridge progress token → (session, the client's token).
    tokens: HashMap<String, (SessionId, Value)>,
    /// Id given to a session for a server-initiated request (random, unguessable) → the
    /// session it was sent to, the only one whose answer is taken, and the child's id.
    server_requests: HashMap<String, (SessionId, Value)>,
    sessions: HashMap<SessionId, Member>,
    /// The child's result for the bridge's own initialize, answered (per version) to every
    /// session.
    init_result: Option<Value>,
    /// Sessions waiting for it: each gets the result, or the error (which is not kept).
    init_waiters: Vec<oneshot::Sender<Result<Value, Value>>>,
    /// The bridge's initialize is on its way to the child.
    init_sent: bool,
    last_active: Option<SessionId>,
}

struct Member {
    events: super::Events,
    capabilities: HashSet<String>,
    /// Told when a message for this session found its event queue full: the session ends
    /// (`event_log_overflow`) rather than go on without a message it never received.
    overflowed: Arc<Notify>,
}

/// Every server's shared children, started on first use and restarted after they exit: one
/// per (server, principal), so that with `[auth]` no message of one client's child (a
/// token-less notification, a guessed server request) can reach another client.
#[derive(Default)]
pub struct SharedChildren {
    map: Mutex<HashMap<ChildKey, Arc<Shared>>>,
}

/// A shared child's server and principal.
type ChildKey = (String, Option<Arc<str>>);

impl SharedChildren {
    pub(super) fn get(&self, server: &str, principal: Option<Arc<str>>, spec: stdio::Spec, slots: ChildSlots) -> Arc<Shared> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = (server.to_string(), principal);
        if let Some(s) = map.get(&key) {
            if !s.tx.is_closed() && s.ended.borrow().is_none() {
                return s.clone();
            }
        }
        let (tx, rx) = super::budget::channel(QUEUE, spec.pump.queue_bytes);
        let (events_tx, events_rx) = super::events(&spec.pump);
        // The child's log lines name this all-zero session.
        let id = SessionId::parse("00000000000000000000000000000000").unwrap_or_else(SessionId::random);
        let init_timeout = spec.pump.upstream_stall.unwrap_or(INIT_TIMEOUT_OFF);
        let child = tokio::spawn(stdio::run(spec, server.into(), id, slots, rx, events_tx)).abort_handle();
        let (ended, _) = watch::channel(None);
        let shared = Arc::new(Shared { server: server.into(), tx, state: Mutex::default(), ended, child, init_timeout });
        tokio::spawn(demux(Arc::downgrade(&shared), events_rx));
        map.insert(key, shared.clone());
        shared
    }
}

impl Shared {
    fn mux(&self) -> std::sync::MutexGuard<'_, Mux> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the child (if it still runs) and tells every session why; the first reason stays.
    fn end(&self, reason: CloseReason, detail: String) {
        let first = self.ended.send_if_modified(|e| {
            let first = e.is_none();
            if first {
                *e = Some((reason, detail.clone()));
            }
            first
        });
        if first {
            tracing::warn!(server = %self.server, "the shared child ended: {detail}");
            self.child.abort();
        }
    }

    /// Serves one session: its messages go to the child until the session ends.
    pub(super) async fn serve(
        self: Arc<Self>,
        session: SessionId,
        mut rx: super::budget::Receiver<Bytes>,
        events: super::Events,
    ) {
        let overflowed = Arc::new(Notify::new());
        let member = Member { events: events.clone(), capabilities: HashSet::new(), overflowed: overflowed.clone() };
        self.mux().sessions.insert(session, member);
        let _leave = Leave(self.clone(), session);
        let mut ended = self.ended.subscribe();
        let mut lost = false;
        loop {
            let raw = tokio::select! {
                biased;
                _ = ended.wait_for(Option::is_some) => break,
                _ = overflowed.notified() => {
                    lost = true;
                    break;
                }
                raw = rx.recv() => match raw {
                    Some(raw) => raw,
                    None => return,
                },
            };
            let Ok(mut msg) = serde_json::from_slice::<Value>(&raw) else { continue };
            if let Some(out) = self.inbound(session, &mut msg).await {
                tokio::select! {
                    biased;
                    _ = ended.wait_for(Option::is_some) => break,
                    sent = self.tx.send(Bytes::from(out.to_string())) => if sent.is_err() { break },
                }
            }
        }
        // The child ended (or a message for this session could not be queued): the session
        // ends. The session's task drains its queue without blocking, so this send waits only
        // for room; the bound is a backstop.
        let closed = if lost {
            let detail = "a message of the shared child found the session's event queue full; the session ends rather than go on without it";
            UpstreamEvent::Closed { reason: CloseReason::EventLogOverflow, detail: detail.into() }
        } else {
            let (reason, detail) =
                self.ended.borrow().clone().unwrap_or((CloseReason::UpstreamExited, "the shared child ended".into()));
            UpstreamEvent::Closed { reason, detail: format!("the shared child ended: {detail}") }
        };
        if tokio::time::timeout(Duration::from_secs(30), events.send(closed)).await.is_err() {
            tracing::warn!(server = %self.server, %session, "a session did not take the news that its shared child ended within 30 s");
        }
    }

    /// Rewrites a client message for the child; `None` if it goes no further.
    async fn inbound(&self, session: SessionId, msg: &mut Value) -> Option<Value> {
        let method = msg.get("method").and_then(Value::as_str).map(str::to_string);
        let id = msg.get("id").cloned().filter(|v| !v.is_null());
        match (method.as_deref(), id) {
            (Some(method::INITIALIZE), Some(id)) => {
                let caps = msg.pointer("/params/capabilities").and_then(Value::as_object).map(|c| c.keys().cloned().collect());
                let asked = msg.pointer("/params/protocolVersion").and_then(Value::as_str).map(str::to_string);
                let waiter = {
                    let mut mux = self.mux();
                    if let (Some(caps), Some(m)) = (caps, mux.sessions.get_mut(&session)) {
                        m.capabilities = caps;
                    }
                    if let Some(result) = mux.init_result.clone() {
                        self.send_to(&mux, session, init_answer(&id, Ok(result), asked.as_deref()));
                        return None;
                    }
                    let (tx, rx) = oneshot::channel();
                    mux.init_waiters.push(tx);
                    let first = !mux.init_sent;
                    mux.init_sent = true;
                    (rx, first)
                };
                let (rx, first) = waiter;
                let outcome = self.await_init(rx, first).await;
                let mux = self.mux();
                self.send_to(&mux, session, init_answer(&id, outcome, asked.as_deref()));
                None
            }
            // The bridge sends its own, once the child has answered its initialize.
            (Some(method::INITIALIZED), None) => None,
            (Some(method::CANCELLED), None) => {
                let client_id = msg.pointer("/params/requestId")?.to_string();
                let bridge_id = *self.mux().by_client.get(&(session, client_id))?;
                msg["params"]["requestId"] = json!(bridge_id);
                Some(msg.clone())
            }
            (Some(_), Some(id)) => {
                let mut mux = self.mux();
                mux.next += 1;
                let bridge_id = mux.next;
                mux.requests.insert(bridge_id, (session, id.to_string()));
                mux.by_client.insert((session, id.to_string()), bridge_id);
                mux.last_active = Some(session);
                msg["id"] = json!(bridge_id);
                if let Some(token) = msg.pointer("/params/_meta/progressToken").cloned() {
                    let bridge_token = format!("mcp-bridge-{bridge_id}");
                    mux.tokens.insert(bridge_token.clone(), (session, token));
                    msg["params"]["_meta"]["progressToken"] = json!(bridge_token);
                }
                Some(msg.clone())
            }
            (None, Some(id)) => {
                // The client's answer to a server-initiated request: taken only from the
                // session the request was sent to.
                let mut mux = self.mux();
                let key = id.to_string();
                if mux.server_requests.get(&key).is_none_or(|(to, _)| *to != session) {
                    tracing::warn!(server = %self.server, %session, "dropped an answer to a server request this session was not sent");
                    return None;
                }
                let (_, child_id) = mux.server_requests.remove(&key)?;
                msg["id"] = child_id;
                Some(msg.clone())
            }
            _ => Some(msg.clone()),
        }
    }

    /// Sends the bridge's initialize if `first`, and waits for the child's answer, at most
    /// `init_timeout`: past it the child is ended (the next session starts a fresh one), and
    /// the answer is an error that says why.
    async fn await_init(&self, rx: oneshot::Receiver<Result<Value, Value>>, first: bool) -> Result<Value, Value> {
        let mut ended = self.ended.subscribe();
        let bound = self.init_timeout;
        let wait = async {
            if first {
                let _ = self.tx.send(Bytes::from(bridge_initialize().to_string())).await;
            }
            rx.await
        };
        let failed = |detail: &str| json!({"code": jsonrpc::code::INTERNAL_ERROR, "message": format!("mcp-bridge: {detail}")});
        tokio::select! {
            biased;
            outcome = wait => match outcome {
                Ok(outcome) => outcome,
                Err(_) => Err(failed("the shared child ended before it answered initialize")),
            },
            _ = ended.wait_for(Option::is_some) => {
                let detail = self.ended.borrow().as_ref().map(|(_, d)| d.clone()).unwrap_or_default();
                Err(failed(&format!("the shared child ended before it answered initialize: {detail}")))
            }
            _ = tokio::time::sleep(bound) => {
                let detail = format!("the shared server did not answer initialize within {bound:?} (limits.upstream_stall)");
                self.end(CloseReason::UpstreamStalled, detail.clone());
                Err(failed(&detail))
            }
        }
    }

    fn send_to(&self, mux: &Mux, session: SessionId, msg: Value) {
        if let Some(m) = mux.sessions.get(&session) {
            if let Err(mpsc::error::TrySendError::Full(_)) =
                m.events.try_send(UpstreamEvent::Message(Bytes::from(msg.to_string())))
            {
                tracing::warn!(session = %session, server = %self.server, "a message of the shared child found the session's event queue full: the session ends");
                m.overflowed.notify_one();
            }
        }
    }

    /// Routes one child message to its session(s).
    fn outbound(&self, raw: &[u8]) {
        let Ok(mut msg) = serde_json::from_slice::<Value>(raw) else { return };
        let method = msg.get("method").and_then(Value::as_str).map(str::to_string);
        let id = msg.get("id").cloned().filter(|v| !v.is_null());
        let mut mux = self.mux();
        match (method.as_deref(), id) {
            (None, Some(id)) if id == json!(INIT_ID) => {
                let outcome = init_outcome(&msg);
                match &outcome {
                    Ok(result) => {
                        mux.init_result = Some(result.clone());
                        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
                        let _ = self.tx.try_send(Bytes::from(initialized.to_string()));
                    }
                    Err(e) => {
                        tracing::warn!(server = %self.server, error = %e, "the shared child refused initialize");
                        // The next session's initialize tries again.
                        mux.init_sent = false;
                    }
                }
                for w in mux.init_waiters.drain(..) {
                    let _ = w.send(outcome.clone());
                }
            }
            (None, Some(id)) => {
                let Some((session, client_id)) = id.as_u64().and_then(|b| mux.requests.remove(&b)) else { return };
                mux.by_client.remove(&(session, client_id.clone()));
                let bridge_token = format!("mcp-bridge-{}", id);
                mux.tokens.remove(&bridge_token);
                msg["id"] = serde_json::from_str(&client_id).unwrap_or(Value::Null);
                self.send_to(&mux, session, msg);
            }
            (Some(method::PROGRESS), None) => {
                let token = msg.pointer("/params/progressToken").and_then(Value::as_str).unwrap_or_default().to_string();
                let Some((session, client_token)) = mux.tokens.get(&token).cloned() else { return };
                msg["params"]["progressToken"] = client_token;
                self.send_to(&mux, session, msg);
            }
            (Some(method), Some(id)) => {
                // A server-initiated request: to a session that can answer it.
                let needs = match method {
                    method::SAMPLING_CREATE_MESSAGE => Some("sampling"),
                    method::ELICITATION_CREATE => Some("elicitation"),
                    method::ROOTS_LIST => Some("roots"),
                    _ => None,
                };
                let able = |s: &SessionId| needs.is_none_or(|n| mux.sessions.get(s).is_some_and(|m| m.capabilities.contains(n)));
                // Most likely the session whose request is being served: the newest one still
                // waiting for its answer. The child does not say, so this is a guess; servers
                // that call back into their clients are not safe to share (see the README).
                let newest_waiting =
                    mux.requests.iter().filter(|(_, (s, _))| able(s)).max_by_key(|(b, _)| **b).map(|(_, (s, _))| *s);
                let target = newest_waiting
                    .or(mux.last_active.filter(|s| able(s)))
                    .or_else(|| mux.sessions.keys().copied().find(|s| able(s)));
                let Some(target) = target else {
                    let err = jsonrpc::error(
                        Some(&id.to_string()),
                        -32601,
                        "mcp-bridge: no session of this shared server can answer that request",
                    );
                    let _ = self.tx.try_send(err);
                    return;
                };
                // 128 random bits: no other session can name it.
                let session_id = format!("mcp-bridge-srv-{}", SessionId::random());
                mux.server_requests.insert(json!(session_id).to_string(), (target, id));
                msg["id"] = json!(session_id);
                self.send_to(&mux, target, msg);
            }
            _ => {
                for s in mux.sessions.keys().copied().collect::<Vec<_>>() {
                    self.send_to(&mux, s, msg.clone());
                }
            }
        }
    }
}

/// The id of the bridge's own initialize to a shared child.
const INIT_ID: &str = "mcp-bridge-shared-init";

/// The bridge's initialize: the newest version it speaks, its own name, and every capability
/// it can route to a session that declared it (a request no session can answer gets -32601).
fn bridge_initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": INIT_ID, "method": "initialize", "params": {
        "protocolVersion": SUPPORTED_VERSIONS[SUPPORTED_VERSIONS.len() - 1],
        "capabilities": {"roots": {"listChanged": true}, "sampling": {}, "elicitation": {}},
        "clientInfo": {"name": "mcp-bridge", "version": env!("CARGO_PKG_VERSION")}
    }})
}

/// The child's answer to the bridge's initialize: its result if it chose a version the bridge
/// speaks, else a JSON-RPC error object.
fn init_outcome(msg: &Value) -> Result<Value, Value> {
    if let Some(e) = msg.get("error") {
        return Err(e.clone());
    }
    let Some(result) = msg.get("result") else {
        return Err(
            json!({"code": jsonrpc::code::INTERNAL_ERROR, "message": "mcp-bridge: the shared server answered initialize with neither result nor error"}),
        );
    };
    match result.get("protocolVersion").and_then(Value::as_str) {
        Some(v) if SUPPORTED_VERSIONS.contains(&v) => Ok(result.clone()),
        v => {
            let v: String = v.unwrap_or("none").chars().take(64).collect();
            let message = format!("mcp-bridge: the shared server chose protocol version {v}, which the bridge does not speak");
            Err(json!({"code": jsonrpc::code::INTERNAL_ERROR, "message": message}))
        }
    }
}

/// One session's answer to its initialize. The version is negotiated as the spec says, among
/// the versions both the bridge and the child speak (the child's and older): the one the
/// client asked for if it is one of them, else the newest.
fn init_answer(id: &Value, outcome: Result<Value, Value>, asked: Option<&str>) -> Value {
    let mut result = match outcome {
        Ok(r) => r,
        Err(error) => return json!({"jsonrpc": "2.0", "id": id, "error": error}),
    };
    let child = result.get("protocolVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut offered = SUPPORTED_VERSIONS.iter().copied().filter(|v| *v <= child.as_str());
    let version = match asked {
        Some(a) if SUPPORTED_VERSIONS.contains(&a) && a <= child.as_str() => a.to_string(),
        _ => offered.next_back().unwrap_or(child.as_str()).to_string(),
    };
    result["protocolVersion"] = json!(version);
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Takes a session out of the mux when it ends, cancelling what it left in flight.
struct Leave(Arc<Shared>, SessionId);

impl Drop for Leave {
    fn drop(&mut self) {
        let mut mux = self.0.mux();
        mux.sessions.remove(&self.1);
        let gone: Vec<u64> = mux.requests.iter().filter(|(_, (s, _))| *s == self.1).map(|(b, _)| *b).collect();
        for b in gone {
            if let Some((_, client_id)) = mux.requests.remove(&b) {
                mux.by_client.remove(&(self.1, client_id));
            }
            mux.tokens.remove(&format!("mcp-bridge-{b}"));
            let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": b, "reason": "the session ended"}});
            let _ = self.0.tx.try_send(Bytes::from(cancel.to_string()));
        }
        // The child's questions to this session will get no answer from it.
        let unanswered: Vec<String> =
            mux.server_requests.iter().filter(|(_, (s, _))| *s == self.1).map(|(k, _)| k.clone()).collect();
        for k in unanswered {
            if let Some((_, child_id)) = mux.server_requests.remove(&k) {
                let err =
                    jsonrpc::error(Some(&child_id.to_string()), jsonrpc::code::INTERNAL_ERROR, "mcp-bridge: the session ended");
                let _ = self.0.tx.try_send(err);
            }
        }
        if mux.last_active == Some(self.1) {
            mux.last_active = None;
        }
    }
}

/// Reads the child's messages; when it exits, every session learns so.
async fn demux(shared: Weak<Shared>, mut rx: super::EventsRx) {
    while let Some(ev) = rx.recv().await {
        let Some(s) = shared.upgrade() else { return };
        match ev {
            UpstreamEvent::Message(raw) => s.outbound(&raw),
            UpstreamEvent::Session { .. } => {}
            UpstreamEvent::Closed { reason, detail } => return s.end(reason, detail),
        }
    }
    // The child's task ended without a word (it was aborted: `end` has already run).
    if let Some(s) = shared.upgrade() {
        s.end(CloseReason::UpstreamExited, "its task ended".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_session_gets_its_own_negotiated_version() {
        let child = Ok(json!({"protocolVersion": "2025-06-18", "capabilities": {}}));
        let v = |asked| init_answer(&json!(1), child.clone(), asked)["result"]["protocolVersion"].clone();
        assert_eq!(v(Some("2025-03-26")), "2025-03-26");
        assert_eq!(v(Some("1900-01-01")), "2025-06-18", "an unknown version gets the newest both speak");
        assert_eq!(v(Some("2025-11-25")), "2025-06-18", "never newer than the child's");
        assert_eq!(v(None), "2025-06-18");
    }

    #[test]
    fn an_error_or_an_unknown_version_is_an_error() {
        let refused = json!({"jsonrpc": "2.0", "id": INIT_ID, "error": {"code": -1, "message": "no"}});
        assert_eq!(init_outcome(&refused), Err(json!({"code": -1, "message": "no"})));
        let odd = json!({"jsonrpc": "2.0", "id": INIT_ID, "result": {"protocolVersion": "1900-01-01"}});
        assert!(init_outcome(&odd).is_err());
        let answer = init_answer(&json!(7), init_outcome(&refused), Some("2025-06-18"));
        assert_eq!(answer, json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -1, "message": "no"}}));
    }
}
