//! Shared mode: one long-lived stdio child serves every session of a server. Ids are
//! rewritten on the way in and back on the way out, so responses, progress and cancellations
//! reach the session they belong to; server-initiated requests go to a session that declared
//! the capability to answer them; other notifications go to every session. The child is
//! initialized once, with the first session's `initialize`; later sessions get that answer.
//!
//! Only servers that keep no per-client state are safe to share (see the README).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::stdio;
use super::{ChildSlots, UpstreamEvent, QUEUE};
use crate::jsonrpc;
use crate::session::SessionId;

/// The shared child of one server and the maps that route its messages.
pub(super) struct Shared {
    server: Arc<str>,
    tx: mpsc::Sender<Bytes>,
    state: Mutex<Mux>,
}

#[derive(Default)]
struct Mux {
    next: u64,
    /// Bridge id → (session, the client's id as JSON text).
    requests: HashMap<u64, (SessionId, String)>,
    /// (session, client id) → bridge id, for cancellations.
    by_client: HashMap<(SessionId, String), u64>,
    /// Bridge progress token → (session, the client's token).
    tokens: HashMap<String, (SessionId, Value)>,
    /// Id given to a session for a server-initiated request → the child's id.
    server_requests: HashMap<String, Value>,
    sessions: HashMap<SessionId, Member>,
    /// The child's answer to the first initialize, replayed to later sessions.
    init_result: Option<Value>,
    init_waiters: Vec<oneshot::Sender<Value>>,
    init_sent: bool,
    initialized_sent: bool,
    last_active: Option<SessionId>,
}

struct Member {
    events: mpsc::Sender<UpstreamEvent>,
    capabilities: HashSet<String>,
}

/// Every server's shared child, started on first use and restarted after it exits.
#[derive(Default)]
pub struct SharedChildren {
    map: Mutex<HashMap<String, Arc<Shared>>>,
}

impl SharedChildren {
    pub(super) fn get(&self, server: &str, spec: stdio::Spec, slots: ChildSlots) -> Arc<Shared> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(server) {
            if !s.tx.is_closed() {
                return s.clone();
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let (events_tx, events_rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared { server: server.into(), tx, state: Mutex::default() });
        // The child's log lines name this all-zero session.
        let id = SessionId::parse("00000000000000000000000000000000").unwrap_or_else(SessionId::random);
        tokio::spawn(stdio::run(spec, server.into(), id, slots, rx, events_tx));
        tokio::spawn(demux(Arc::downgrade(&shared), events_rx));
        map.insert(server.to_string(), shared.clone());
        shared
    }
}

impl Shared {
    fn mux(&self) -> std::sync::MutexGuard<'_, Mux> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves one session: its messages go to the child until the session ends.
    pub(super) async fn serve(
        self: Arc<Self>,
        session: SessionId,
        mut rx: mpsc::Receiver<Bytes>,
        events: mpsc::Sender<UpstreamEvent>,
    ) {
        self.mux().sessions.insert(session, Member { events, capabilities: HashSet::new() });
        let _leave = Leave(self.clone(), session);
        while let Some(raw) = rx.recv().await {
            let Ok(mut msg) = serde_json::from_slice::<Value>(&raw) else { continue };
            if let Some(out) = self.inbound(session, &mut msg).await {
                if self.tx.send(Bytes::from(out.to_string())).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Rewrites a client message for the child; `None` if it goes no further.
    async fn inbound(&self, session: SessionId, msg: &mut Value) -> Option<Value> {
        let method = msg.get("method").and_then(Value::as_str).map(str::to_string);
        let id = msg.get("id").cloned().filter(|v| !v.is_null());
        match (method.as_deref(), id) {
            (Some("initialize"), Some(id)) => {
                let caps = msg.pointer("/params/capabilities").and_then(Value::as_object).map(|c| c.keys().cloned().collect());
                let waiter = {
                    let mut mux = self.mux();
                    if let (Some(caps), Some(m)) = (caps, mux.sessions.get_mut(&session)) {
                        m.capabilities = caps;
                    }
                    if let Some(result) = mux.init_result.clone() {
                        self.send_to(&mux, session, json!({"jsonrpc": "2.0", "id": id, "result": result}));
                        return None;
                    }
                    let (tx, rx) = oneshot::channel();
                    mux.init_waiters.push(tx);
                    let first = !mux.init_sent;
                    mux.init_sent = true;
                    (rx, first)
                };
                let (rx, first) = waiter;
                if first {
                    let mut init = msg.clone();
                    init["id"] = json!("mcp-bridge-shared-init");
                    let _ = self.tx.send(Bytes::from(init.to_string())).await;
                }
                if let Ok(result) = rx.await {
                    let mux = self.mux();
                    self.send_to(&mux, session, json!({"jsonrpc": "2.0", "id": id, "result": result}));
                }
                None
            }
            (Some("notifications/initialized"), None) => {
                let mut mux = self.mux();
                if mux.initialized_sent {
                    return None;
                }
                mux.initialized_sent = true;
                Some(msg.clone())
            }
            (Some("notifications/cancelled"), None) => {
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
                // The client's answer to a server-initiated request.
                let child_id = self.mux().server_requests.remove(&id.to_string())?;
                msg["id"] = child_id;
                Some(msg.clone())
            }
            _ => Some(msg.clone()),
        }
    }

    fn send_to(&self, mux: &Mux, session: SessionId, msg: Value) {
        if let Some(m) = mux.sessions.get(&session) {
            if let Err(mpsc::error::TrySendError::Full(_)) =
                m.events.try_send(UpstreamEvent::Message(Bytes::from(msg.to_string())))
            {
                tracing::warn!(session = %session, server = %self.server, "dropped a message of the shared child: the session's event queue is full");
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
            (None, Some(id)) if id == json!("mcp-bridge-shared-init") => {
                let result = msg.get("result").cloned().unwrap_or_else(|| json!({}));
                mux.init_result = Some(result.clone());
                for w in mux.init_waiters.drain(..) {
                    let _ = w.send(result.clone());
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
            (Some("notifications/progress"), None) => {
                let token = msg.pointer("/params/progressToken").and_then(Value::as_str).unwrap_or_default().to_string();
                let Some((session, client_token)) = mux.tokens.get(&token).cloned() else { return };
                msg["params"]["progressToken"] = client_token;
                self.send_to(&mux, session, msg);
            }
            (Some(method), Some(id)) => {
                // A server-initiated request: to a session that can answer it.
                let needs = match method {
                    "sampling/createMessage" => Some("sampling"),
                    "elicitation/create" => Some("elicitation"),
                    "roots/list" => Some("roots"),
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
                mux.next += 1;
                let session_id = format!("mcp-bridge-srv-{}", mux.next);
                mux.server_requests.insert(json!(session_id).to_string(), id);
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
        if mux.last_active == Some(self.1) {
            mux.last_active = None;
        }
    }
}

/// Reads the child's messages; when it exits, every session learns so.
async fn demux(shared: Weak<Shared>, mut rx: mpsc::Receiver<UpstreamEvent>) {
    while let Some(ev) = rx.recv().await {
        let Some(s) = shared.upgrade() else { return };
        match ev {
            UpstreamEvent::Message(raw) => s.outbound(&raw),
            UpstreamEvent::Session { .. } => {}
            UpstreamEvent::Closed { reason, detail } => {
                tracing::warn!(server = %s.server, "the shared child ended: {detail}");
                let mux = s.mux();
                for m in mux.sessions.values() {
                    let detail = format!("the shared child ended: {detail}");
                    let _ = m.events.try_send(UpstreamEvent::Closed { reason, detail });
                }
                return;
            }
        }
    }
}
