//! Routing between the client and the members: a call goes to the member that has its name
//! (`round-robin` over those that are up), with the name rewritten back and a member-side id;
//! its answer comes back under the client's id. A member's question to the client gets a
//! client-side id, and the client's answer goes back under the member's. Cancellations follow
//! their request both ways. Progress tokens pass unchanged: they are the client's, unique
//! among its requests in flight, and each request reaches one member.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::task::JoinSet;

use super::kind::Kind;
use super::lists;
use super::names::Table;
use super::{Hub, Route};
use crate::protocol::jsonrpc::{self, code};
use crate::protocol::method;
use crate::protocol::rewrite::{self, Members};

/// Members' questions to the client awaiting its answer, at most (across members).
const MAX_ASKS: usize = 1024;

/// JSON-RPC code for a resource no member has (the MCP spec's).
const RESOURCE_NOT_FOUND: i64 = -32002;

/// The routes of the last merge of each list (`None`: not listed yet).
#[derive(Default)]
pub(super) struct Catalog {
    tools: Option<Table>,
    prompts: Option<Table>,
    resources: Option<Table>,
    templates: Option<Table>,
    /// Advances on every round-robin pick.
    turn: usize,
}

impl Catalog {
    pub(super) fn set(&mut self, kind: Kind, table: Table) {
        *self.table(kind) = Some(table);
    }

    fn table(&mut self, kind: Kind) -> &mut Option<Table> {
        match kind {
            Kind::Tools => &mut self.tools,
            Kind::Prompts => &mut self.prompts,
            Kind::Resources => &mut self.resources,
            Kind::Templates => &mut self.templates,
        }
    }
}

/// Whether the aggregate routes `method` to one member.
pub(super) fn routed(method: &str) -> bool {
    matches!(
        method,
        method::TOOLS_CALL
            | method::PROMPTS_GET
            | method::RESOURCES_READ
            | method::RESOURCES_SUBSCRIBE
            | method::RESOURCES_UNSUBSCRIBE
            | method::COMPLETION_COMPLETE
    )
}

/// What a request names, and the list that knows it.
enum Target {
    Named(Kind, String),
    Uri(String),
}

fn target(method: &str, params: &Value) -> Option<Target> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    match method {
        method::TOOLS_CALL => s(params, "name").map(|n| Target::Named(Kind::Tools, n)),
        method::PROMPTS_GET => s(params, "name").map(|n| Target::Named(Kind::Prompts, n)),
        method::COMPLETION_COMPLETE => {
            let r = params.get("ref")?;
            match r.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => s(r, "name").map(|n| Target::Named(Kind::Prompts, n)),
                _ => s(r, "uri").map(Target::Uri),
            }
        }
        _ => s(params, "uri").map(Target::Uri),
    }
}

/// A member, and its own name for what was asked (for a named target).
type Member = (usize, Option<String>);

/// A client-facing JSON-RPC error object.
type Refusal = Value;

fn refusal(code: i64, message: String) -> Refusal {
    serde_json::json!({"code": code, "message": message})
}

/// The member for `target` and its own name for it: `Ok(None)` before `initialize` was
/// answered or if the lists it needs were never fetched, `Err` with the client's error if no member has it.
fn resolve(hub: &Hub, t: &Target) -> Result<Option<Member>, Refusal> {
    if !hub.is_ready() {
        return Ok(None);
    }
    let mut st = hub.state();
    let turn = st.catalog.turn;
    st.catalog.turn = turn.wrapping_add(1);
    let up: Vec<usize> = st.up.keys().copied().collect();
    let pick = |routes: &[(usize, String)]| {
        let live: Vec<&(usize, String)> = routes.iter().filter(|(m, _)| up.contains(m)).collect();
        (!live.is_empty()).then(|| live[turn % live.len()].clone())
    };
    match t {
        Target::Named(kind, name) => {
            let what = if *kind == Kind::Tools { "tool" } else { "prompt" };
            let unknown = || refusal(code::INVALID_PARAMS, format!("Unknown {what}: {name}"));
            if *kind == Kind::Tools && !st.narrowing.allows(name) {
                return Err(unknown());
            }
            let Some(table) = st.catalog.table(*kind).as_ref() else { return Ok(None) };
            let routes = table.get(name).ok_or_else(unknown)?;
            pick(routes).map(|(m, own)| Some((m, Some(own)))).ok_or_else(unknown)
        }
        Target::Uri(uri) => {
            let unknown = || serde_json::json!({"code": RESOURCE_NOT_FOUND, "message": format!("Resource not found: {uri}"), "data": {"uri": uri}});
            let (Some(resources), Some(templates)) = (st.catalog.resources.as_ref(), st.catalog.templates.as_ref()) else {
                return Ok(None);
            };
            if let Some(routes) = resources.get(uri) {
                return pick(routes).map(|(m, _)| Some((m, None))).ok_or_else(unknown);
            }
            // The template whose literal start (before its first `{`) is the longest match.
            let best = templates
                .iter()
                .filter_map(|(t, routes)| {
                    let head = t.split('{').next().unwrap_or("");
                    (t.contains('{') && uri.starts_with(head)).then_some((head.len(), routes))
                })
                .max_by_key(|(len, _)| *len);
            best.and_then(|(_, routes)| pick(routes)).map(|(m, _)| Some((m, None))).ok_or_else(unknown)
        }
    }
}

/// A client request for one member: routed now when the catalog knows its target, else
/// after the lists it needs are fetched (in a job).
pub(super) async fn call(hub: &Arc<Hub>, jobs: &mut JoinSet<()>, id: Box<str>, msg: Bytes) {
    let Ok(m) = serde_json::from_slice::<Members>(&msg) else { return };
    let method = m.get("method").and_then(|v| serde_json::from_str::<String>(v.get()).ok()).unwrap_or_default();
    let params: Value = m.get("params").and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or(Value::Null);
    let Some(t) = target(&method, &params) else {
        return hub.error(&id, code::INVALID_PARAMS, &format!("{method} names no tool, prompt or resource")).await;
    };
    match resolve(hub, &t) {
        Ok(Some(to)) => send(hub, id, m, to).await,
        Err(error) => hub.to_client(jsonrpc::error_with(&id, &error)).await,
        Ok(None) => {
            let hub = hub.clone();
            jobs.spawn(async move {
                hub.initialized().await;
                let kinds = match &t {
                    Target::Named(kind, _) => vec![*kind],
                    Target::Uri(_) => vec![Kind::Resources, Kind::Templates],
                };
                for kind in kinds {
                    if let Err(why) = lists::refresh(&hub, kind).await {
                        return hub.error(&id, code::INTERNAL_ERROR, &format!("aggregate `{}`: {why}", hub.name)).await;
                    }
                }
                match resolve(&hub, &t) {
                    Ok(Some(to)) => send(&hub, id, m, to).await,
                    Ok(None) => hub.error(&id, code::INTERNAL_ERROR, "the aggregate could not list its members").await,
                    Err(error) => hub.to_client(jsonrpc::error_with(&id, &error)).await,
                }
            });
        }
    }
}

/// Sends a routed request to member `m` with its name rewritten to the member's own.
async fn send(hub: &Hub, id: Box<str>, mut msg: Members, (m, own): Member) {
    if let Some(own) = own {
        let mut params = rewrite::members_of(&msg, "params");
        let name = rewrite::raw(Value::String(own).to_string());
        if params.contains_key("ref") {
            let mut r = rewrite::members_of(&params, "ref");
            r.insert("name".into(), name);
            params.insert("ref".into(), rewrite::nested(&r));
        } else {
            params.insert("name".into(), name);
        }
        msg.insert("params".into(), rewrite::nested(&params));
    }
    if let Err(why) = hub.forward(m, id.clone(), msg) {
        hub.error(&id, code::INTERNAL_ERROR, &why).await;
    }
}

/// A member's answer: to the client under its id, or to the task that asked.
pub(super) async fn answer_from_member(hub: &Hub, m: usize, id: &str, msg: &[u8], error: bool) {
    let route = hub.state().pending.remove(&(m, Box::from(id)));
    match route {
        Some(Route::Client(client_id)) => {
            hub.state().calls.remove(&client_id);
            hub.to_client(with_id(msg, &client_id)).await;
        }
        Some(Route::Internal(tx)) => {
            let v: Value = serde_json::from_slice(msg).unwrap_or(Value::Null);
            let _ = tx.send(if error { Err(v["error"].clone()) } else { Ok(v["result"].clone()) });
        }
        None => tracing::debug!(aggregate = %hub.name, member = hub.member(m), "an answer to no request here: dropped"),
    }
}

/// A member's request to the client (sampling, elicitation, roots), under a client-side id.
pub(super) async fn ask_client(hub: &Hub, m: usize, id: Box<str>, msg: &[u8]) {
    let ours: Box<str> = {
        let mut st = hub.state();
        if st.asks.len() >= MAX_ASKS {
            drop(st);
            let refused = jsonrpc::error(Some(&id), code::INTERNAL_ERROR, "too many questions to the client in flight");
            let _ = hub.txs[m].try_send(refused);
            return;
        }
        st.next_id += 1;
        let ours: Box<str> = format!("\"{}-{}\"", hub.member(m), st.next_id).into();
        st.asks.insert(ours.clone(), (m, id));
        ours
    };
    hub.to_client(with_id(msg, &ours)).await;
}

/// The client's answer to a member's question, back under the member's id.
pub(super) fn answer_to_member(hub: &Hub, id: &str, msg: &[u8]) {
    let Some((m, theirs)) = hub.state().asks.remove(id) else { return };
    let _ = hub.txs[m].try_send(with_id(msg, &theirs));
}

/// The client cancelled a request: the member that has it is told, under its id.
/// Its answer, if one comes, is dropped here (the session does not expect it).
pub(super) fn cancelled_by_client(hub: &Hub, msg: &[u8]) {
    let Some(id) = request_id(msg) else { return };
    let call = {
        let mut st = hub.state();
        let call = st.calls.remove(id.as_str());
        call.inspect(|(m, theirs)| {
            st.pending.remove(&(*m, theirs.clone()));
        })
    };
    let Some((m, theirs)) = call else { return };
    let _ = hub.txs[m].try_send(with_request_id(msg, &theirs));
}

/// A member cancelled its question to the client: the client is told, under its id.
pub(super) async fn cancelled_by_member(hub: &Hub, m: usize, msg: &[u8]) {
    let Some(id) = request_id(msg) else { return };
    let ours = {
        let mut st = hub.state();
        let ours = st.asks.iter().find(|(_, (member, theirs))| *member == m && **theirs == *id).map(|(k, _)| k.clone());
        ours.inspect(|k| {
            st.asks.remove(k);
        })
    };
    if let Some(ours) = ours {
        hub.to_client(with_request_id(msg, &ours)).await;
    }
}

/// `params.requestId` as JSON text.
fn request_id(msg: &[u8]) -> Option<String> {
    let m: Members = serde_json::from_slice(msg).ok()?;
    rewrite::members_of(&m, "params").get("requestId").map(|v| v.get().to_string())
}

fn with_id(msg: &[u8], id: &str) -> Bytes {
    let Ok(mut m) = serde_json::from_slice::<Members>(msg) else { return Bytes::copy_from_slice(msg) };
    m.insert("id".into(), rewrite::raw(id.to_string()));
    rewrite::to_bytes(&m)
}

fn with_request_id(msg: &[u8], id: &str) -> Bytes {
    let Ok(mut m) = serde_json::from_slice::<Members>(msg) else { return Bytes::copy_from_slice(msg) };
    let mut params = rewrite::members_of(&m, "params");
    params.insert("requestId".into(), rewrite::raw(id.to_string()));
    m.insert("params".into(), rewrite::nested(&params));
    rewrite::to_bytes(&m)
}
