//! An aggregate's upstream: one task that is an MCP server to its session and an MCP client
//! to each member, whose own upstreams it starts with [`super::start`] (one member session per
//! client session and member). It answers `initialize` and the lists itself, merged from the
//! members (`lists.rs`, `names.rs`); routes calls to the member that has the name, with ids
//! remapped (`route.rs`); relays a member's questions (sampling, elicitation, roots) to the
//! client and the answers back; and relays `list_changed`, debounced, after a re-merge.
//!
//! The task never awaits room in a member's queue (it is the reader of that member's events):
//! it `try_send`s, and a full queue answers the client's request with an error. It awaits
//! only the session's event channel, which the session task drains without blocking.

mod kind;
mod lists;
mod names;
pub(crate) mod narrow;
mod route;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::stream::{self, BoxStream, SelectAll, StreamExt};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{budget, Context, Events, UpstreamEvent};
use crate::config::aggregates::Aggregate;
use crate::config::ServerConfig;
use crate::ids::{CloseReason, SessionId};
use crate::protocol::jsonrpc::{self, code, Kind as MessageKind};
use crate::protocol::method;
use crate::protocol::rewrite::{self, Members};
use kind::Kind;

/// `list_changed` notifications from members within this long go to the client as one.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// A member's answer: its `result`, or its `error` object.
type Answer = Result<Value, Value>;

/// Where a member's answer goes.
enum Route {
    /// To the client, under the client's own id (its JSON text).
    Client(Box<str>),
    /// To a task of this aggregate (initialize, a list).
    Internal(oneshot::Sender<Answer>),
}

/// What the aggregate's tasks share: the members' queues, the session's event channel, and
/// the id maps, the catalog and the member states under one lock (never held across an await).
pub(super) struct Hub {
    name: Arc<str>,
    agg: Arc<Aggregate<ServerConfig>>,
    txs: Vec<budget::Sender<Bytes>>,
    events: Events,
    state: Mutex<State>,
    /// Set once `initialize` has been answered: what arrives before it (a takeover replays the
    /// initialize without awaiting its answer) waits for it.
    ready: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Requests sent to members: (member, id text) → where the answer goes.
    pending: HashMap<(usize, Box<str>), Route>,
    /// Client requests forwarded: the client's id → (member, the member-side id).
    calls: HashMap<Box<str>, (usize, Box<str>)>,
    /// Member requests relayed to the client: the client-side id → (member, the member's id).
    asks: HashMap<Box<str>, (usize, Box<str>)>,
    /// Members that answered `initialize` and have not ended, with their capabilities.
    up: HashMap<usize, Value>,
    /// The client sent `notifications/initialized`.
    initialized: bool,
    catalog: route::Catalog,
    narrowing: narrow::Narrowing,
}

impl Hub {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `initialize` has been answered (at most `member_timeout` and a second).
    async fn initialized(&self) {
        let mut ready = self.ready.subscribe();
        let bound = self.agg.spec.member_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(bound, ready.wait_for(|r| *r)).await;
    }

    fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    fn member(&self, m: usize) -> &str {
        &self.agg.spec.members[m].name
    }

    /// Sends `msg` (a request whose id this sets) to member `m`; its answer goes to `route`.
    /// `Err` if the member's queue is full or gone.
    fn send_request(&self, m: usize, mut msg: Members, route: Route) -> Result<Box<str>, String> {
        let id: Box<str> = {
            let mut st = self.state();
            st.next_id += 1;
            let id: Box<str> = st.next_id.to_string().into();
            st.pending.insert((m, id.clone()), route);
            id
        };
        msg.insert("id".into(), rewrite::raw(id.to_string()));
        if self.txs[m].try_send(rewrite::to_bytes(&msg)).is_err() {
            self.state().pending.remove(&(m, id));
            return Err(format!("member `{}` is busy or ended", self.member(m)));
        }
        Ok(id)
    }

    /// A request to member `m` whose answer comes back here, awaited until `deadline` (then
    /// forgotten, and cancelled at the member); `Err` says why there is no result.
    async fn ask(&self, m: usize, method: &str, params: Value, deadline: Instant) -> Result<Value, String> {
        let (tx, rx) = oneshot::channel();
        let msg = json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": params});
        let id = self.send_request(m, serde_json::from_value(msg).unwrap_or_default(), Route::Internal(tx))?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(error))) => Err(format!("it answered {method} with an error: {error}")),
            Ok(Err(_)) => Err("it ended".into()),
            Err(_) => {
                self.forget(m, &id);
                Err(format!("it did not answer {method} within member_timeout"))
            }
        }
    }

    /// Gives up a request to member `m`: its answer, if one comes, is dropped.
    fn forget(&self, m: usize, id: &str) {
        self.state().pending.remove(&(m, Box::from(id)));
        let cancel = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id},"reason":"timed out in the aggregate"}}}}"#
        );
        let _ = self.txs[m].try_send(Bytes::from(cancel));
    }

    /// A client request forwarded to member `m` (its id swapped; the answer gets it back).
    fn forward(&self, m: usize, client_id: Box<str>, msg: Members) -> Result<(), String> {
        let id = self.send_request(m, msg, Route::Client(client_id.clone()))?;
        self.state().calls.insert(client_id, (m, id));
        Ok(())
    }

    /// A message to the client, through the session.
    async fn to_client(&self, msg: Bytes) {
        let _ = self.events.send(UpstreamEvent::Message(msg)).await;
    }

    async fn answer(&self, id: &str, result: Value) {
        self.to_client(Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#))).await;
    }

    async fn error(&self, id: &str, code: i64, message: &str) {
        self.to_client(jsonrpc::error(Some(id), code, message)).await;
    }

    /// A member left out of something, logged and counted.
    fn left_out(&self, m: usize, what: &str, why: &str) {
        tracing::warn!(aggregate = %self.name, member = self.member(m), "member left out of {what}: {why}");
        let labels = crate::metrics::AggregateMember { aggregate: self.name.to_string(), member: self.member(m).to_string() };
        crate::metrics::get().aggregate_members_left_out.get_or_create(&labels).inc();
    }
}

/// Runs an aggregate for one session until the session drops it (which drops the members'
/// upstreams with it) or every member has ended.
pub(super) async fn run(
    agg: Arc<Aggregate<ServerConfig>>,
    name: Arc<str>,
    (session, principal): (SessionId, Option<Arc<str>>),
    ctx: Context,
    mut rx: budget::Receiver<Bytes>,
    events: Events,
) {
    let mut upstreams = Vec::new();
    let mut from_members: SelectAll<BoxStream<'static, (usize, UpstreamEvent)>> = SelectAll::new();
    let mut txs = Vec::new();
    for (i, server) in agg.servers.iter().enumerate() {
        let (etx, erx) = super::events(&ctx.pump);
        let up = super::start(server, (session, principal.clone()), ctx.clone(), etx, None);
        txs.push(up.tx.clone());
        upstreams.push(up);
        let member = stream::unfold(erx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
        from_members.push(member.map(move |e| (i, e)).boxed());
    }
    let ready = tokio::sync::watch::Sender::new(false);
    let hub = Arc::new(Hub { name, agg, txs, events, state: Mutex::default(), ready });
    let mut jobs = JoinSet::new();
    let mut changed: BTreeSet<Kind> = BTreeSet::new();
    let mut flush_at: Option<Instant> = None;
    let mut ended = std::collections::HashSet::new();
    loop {
        let flush = async move {
            match flush_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => on_client(&hub, &mut jobs, msg).await,
                None => return,
            },
            Some((m, event)) = from_members.next() => match event {
                UpstreamEvent::Message(msg) => {
                    if let Some(kind) = on_member(&hub, m, msg).await {
                        changed.insert(kind);
                        flush_at.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                    }
                }
                UpstreamEvent::Session { .. } => {}
                UpstreamEvent::Closed { reason, detail } => {
                    if ended.insert(m) {
                        member_ended(&hub, m, reason, &detail).await;
                    }
                    if ended.len() == upstreams.len() {
                        let detail = "every member of the aggregate ended".to_string();
                        let _ = hub.events.send(UpstreamEvent::Closed { reason: CloseReason::UpstreamExited, detail }).await;
                        return;
                    }
                }
            },
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            _ = flush => {
                flush_at = None;
                for kind in std::mem::take(&mut changed) {
                    jobs.spawn(lists::changed(hub.clone(), kind));
                }
            }
        }
    }
}

/// One message from the client.
async fn on_client(hub: &Arc<Hub>, jobs: &mut JoinSet<()>, msg: Bytes) {
    let Ok(peek) = jsonrpc::peek(&msg) else { return };
    let method = peek.method.as_deref().unwrap_or("");
    match (peek.kind, peek.id) {
        (MessageKind::Request, Some(id)) => match (method, Kind::of_list(method)) {
            (_, Some(kind)) => {
                jobs.spawn(lists::answer(hub.clone(), kind, id));
            }
            (method::INITIALIZE, _) => {
                jobs.spawn(lists::initialize(hub.clone(), id, msg));
            }
            (method::PING, _) => hub.answer(&id, json!({})).await,
            (method::LOGGING_SET_LEVEL, _) => {
                let params = serde_json::from_slice::<Value>(&msg).ok().and_then(|mut v| v.get_mut("params").map(Value::take));
                let members: Vec<usize> =
                    hub.state().up.iter().filter(|(_, c)| c.get("logging").is_some()).map(|(m, _)| *m).collect();
                let deadline = Instant::now() + hub.agg.spec.member_timeout;
                let params = params.unwrap_or(json!({}));
                let hub = hub.clone();
                jobs.spawn(async move {
                    join_all(members.into_iter().map(|m| hub.ask(m, method::LOGGING_SET_LEVEL, params.clone(), deadline))).await;
                    hub.answer(&id, json!({})).await;
                });
            }
            _ if route::routed(method) => route::call(hub, jobs, id, msg).await,
            _ => hub.error(&id, code::METHOD_NOT_FOUND, &format!("Method not found: {method}")).await,
        },
        (MessageKind::Notification, _) => match method {
            method::INITIALIZED | method::ROOTS_LIST_CHANGED => {
                let up: Vec<usize> = {
                    let mut st = hub.state();
                    st.initialized |= method == method::INITIALIZED;
                    st.up.keys().copied().collect()
                };
                for m in up {
                    let _ = hub.txs[m].try_send(msg.clone());
                }
            }
            method::CANCELLED => route::cancelled_by_client(hub, &msg),
            _ => tracing::debug!(aggregate = %hub.name, method, "client notification not relayed"),
        },
        (MessageKind::Response, Some(id)) => route::answer_to_member(hub, &id, &msg),
        _ => {}
    }
}

/// One message from member `m`; `Some(kind)` when it says one of its lists changed.
async fn on_member(hub: &Arc<Hub>, m: usize, msg: Bytes) -> Option<Kind> {
    let Ok(peek) = jsonrpc::peek(&msg) else { return None };
    match (peek.kind, peek.id) {
        (MessageKind::Response, Some(id)) => route::answer_from_member(hub, m, &id, &msg, peek.error).await,
        (MessageKind::Request, Some(id)) if peek.method.as_deref() == Some(method::PING) => {
            let _ = hub.txs[m].try_send(Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#)));
        }
        (MessageKind::Request, Some(id)) => route::ask_client(hub, m, id, &msg).await,
        (MessageKind::Notification, _) => {
            let method = peek.method.as_deref().unwrap_or("");
            if let Some(kind) = Kind::of_change(method) {
                return Some(kind);
            }
            if method == method::CANCELLED {
                route::cancelled_by_member(hub, m, &msg).await;
            } else {
                hub.to_client(msg).await;
            }
        }
        _ => {}
    }
    None
}

/// Member `m` ended: its requests in flight are answered with errors, its questions dropped.
async fn member_ended(hub: &Hub, m: usize, reason: CloseReason, detail: &str) {
    tracing::warn!(aggregate = %hub.name, member = hub.member(m), reason = reason.as_str(), "aggregate member ended: {detail}");
    let lost: Vec<Box<str>> = {
        let mut st = hub.state();
        st.up.remove(&m);
        st.asks.retain(|_, (member, _)| *member != m);
        let keys: Vec<_> = st.pending.keys().filter(|(member, _)| *member == m).cloned().collect();
        let routes: Vec<Route> = keys.iter().filter_map(|k| st.pending.remove(k)).collect();
        let lost: Vec<Box<str>> =
            routes.into_iter().filter_map(|r| if let Route::Client(c) = r { Some(c) } else { None }).collect();
        for c in &lost {
            st.calls.remove(c);
        }
        lost
    };
    let message = format!("member `{}` of this aggregate ended ({})", hub.member(m), reason.as_str());
    for id in lost {
        hub.error(&id, code::INTERNAL_ERROR, &message).await;
    }
}
