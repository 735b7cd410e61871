//! What the aggregate answers itself, from every member at once: `initialize` (capabilities
//! are the union; a member that fails or is slower than `member_timeout` is left out, and
//! joins later if it answers within [`LATE_JOIN`]) and the four lists, each member's pages
//! followed to the end ([`MAX_PAGES`], [`MAX_ITEMS`]) and merged (`names.rs`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::kind::Kind;
use super::{names, narrow, Answer, Hub};
use crate::protocol::jsonrpc::code;
use crate::protocol::method;
use crate::protocol::rewrite::{self, Members};

/// Pages read from one member for one list, at most.
const MAX_PAGES: usize = 100;
/// Items kept from one member for one list, at most.
const MAX_ITEMS: usize = 10_000;
/// A member that answers `initialize` after `member_timeout` but within this long joins the
/// session late (the client is told its lists changed).
const LATE_JOIN: Duration = Duration::from_secs(60);

/// The client's `initialize`: sent to every member (less the bridge's narrowing), answered
/// with the union once each has answered or `member_timeout` passed.
pub(super) async fn initialize(hub: Arc<Hub>, id: Box<str>, msg: Bytes) {
    let mut m: Members = serde_json::from_slice(&msg).unwrap_or_default();
    let mut params = rewrite::members_of(&m, "params");
    let narrowing = narrow::Narrowing::take(&mut params);
    m.insert("params".into(), rewrite::nested(&params));
    hub.state().narrowing = narrowing;
    let requested = params.get("protocolVersion").and_then(|v| serde_json::from_str::<String>(v.get()).ok());
    let deadline = Instant::now() + hub.agg.spec.member_timeout;
    let mut receivers = Vec::new();
    for i in 0..hub.txs.len() {
        let (tx, rx) = tokio::sync::oneshot::channel::<Answer>();
        match hub.send_request(i, m.clone(), super::Route::Internal(tx)) {
            Ok(id) => receivers.push((i, Some((id, rx)))),
            Err(e) => {
                hub.left_out(i, "initialize", &e);
                receivers.push((i, None));
            }
        }
    }
    let mut results: Vec<(usize, Value)> = Vec::new();
    let mut late = Vec::new();
    for (i, rx) in receivers {
        let Some((id, mut rx)) = rx else { continue };
        match tokio::time::timeout_at(deadline, &mut rx).await {
            Ok(Ok(Ok(result))) => results.push((i, result)),
            Ok(Ok(Err(error))) => hub.left_out(i, "initialize", &format!("it answered with an error: {error}")),
            Ok(Err(_)) => hub.left_out(i, "initialize", "it ended"),
            Err(_) => {
                hub.left_out(i, "initialize", "it did not answer within member_timeout; it may join later");
                late.push((i, id, rx));
            }
        }
    }
    let spec = &hub.agg.spec;
    let missing: Vec<&str> = (0..spec.members.len())
        .filter(|i| spec.members[*i].required && !results.iter().any(|(m, _)| m == i))
        .map(|i| hub.member(i))
        .collect();
    let ready = || hub.ready.send_replace(true);
    if !missing.is_empty() || results.is_empty() {
        let why = if missing.is_empty() {
            "no member answered".to_string()
        } else {
            format!("required members failed: {}", missing.join(", "))
        };
        hub.error(&id, code::INTERNAL_ERROR, &format!("aggregate `{}` cannot start: {why}", hub.name)).await;
        ready();
        return;
    }
    for (i, result) in &results {
        hub.state().up.insert(*i, result.get("capabilities").cloned().unwrap_or(json!({})));
    }
    hub.answer(&id, merged_initialize(&hub, requested.as_deref(), &results)).await;
    ready();
    join_all(late.into_iter().map(|(i, id, rx)| join_late(&hub, i, id, rx))).await;
}

/// A member that answered `initialize` late joins, and the client hears its lists changed.
async fn join_late(hub: &Hub, i: usize, id: Box<str>, rx: tokio::sync::oneshot::Receiver<Answer>) {
    let result = match tokio::time::timeout(LATE_JOIN, rx).await {
        Ok(Ok(Ok(result))) => result,
        Ok(_) => return,
        Err(_) => return hub.forget(i, &id),
    };
    let caps = result.get("capabilities").cloned().unwrap_or(json!({}));
    let initialized = {
        let mut st = hub.state();
        st.up.insert(i, caps.clone());
        st.initialized
    };
    if initialized {
        let _ = hub.txs[i].try_send(Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#));
    }
    tracing::info!(aggregate = %hub.name, member = hub.member(i), "aggregate member joined late");
    for (cap, note) in [
        ("tools", method::TOOLS_LIST_CHANGED),
        ("prompts", method::PROMPTS_LIST_CHANGED),
        ("resources", method::RESOURCES_LIST_CHANGED),
    ] {
        if caps.get(cap).is_some() {
            hub.to_client(Bytes::from(format!(r#"{{"jsonrpc":"2.0","method":"{note}"}}"#))).await;
        }
    }
}

/// The aggregate's `initialize` result: the client's version if every member agreed to it,
/// else the oldest they answered; capabilities the union; instructions each member's, named.
fn merged_initialize(hub: &Hub, requested: Option<&str>, results: &[(usize, Value)]) -> Value {
    let versions: Vec<&str> = results.iter().filter_map(|(_, r)| r.get("protocolVersion").and_then(Value::as_str)).collect();
    let version = match requested {
        Some(v) if versions.iter().all(|x| *x == v) => v,
        _ => versions.iter().min().copied().unwrap_or(crate::protocol::V2025_06_18),
    };
    let mut caps = Map::new();
    for (_, r) in results {
        let Some(theirs) = r.get("capabilities").and_then(Value::as_object) else { continue };
        for (k, v) in theirs {
            if k == "tasks" {
                continue; // tasks would need ids of their own across members
            }
            let ours = caps.entry(k.clone()).or_insert_with(|| json!({}));
            if let (Some(ours), Some(v)) = (ours.as_object_mut(), v.as_object()) {
                for (flag, on) in v {
                    let was = ours.get(flag).and_then(Value::as_bool).unwrap_or(false);
                    ours.insert(
                        flag.clone(),
                        if on.is_boolean() { Value::Bool(was || on.as_bool() == Some(true)) } else { on.clone() },
                    );
                }
            }
        }
    }
    let instructions: Vec<String> = results
        .iter()
        .filter_map(|(i, r)| r.get("instructions").and_then(Value::as_str).map(|t| format!("## {}\n{t}", hub.member(*i))))
        .collect();
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": caps,
        "serverInfo": {"name": &*hub.name, "version": env!("CARGO_PKG_VERSION")},
    });
    if !instructions.is_empty() {
        result["instructions"] = Value::String(instructions.join("\n\n"));
    }
    result
}

/// Every page of `kind` from member `m`, until `deadline`.
async fn member_list(hub: &Hub, m: usize, kind: Kind, deadline: Instant) -> Result<Vec<Value>, String> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = cursor.take().map_or(json!({}), |c| json!({"cursor": c}));
        let mut result = hub.ask(m, kind.method(), params, deadline).await?;
        if let Some(Value::Array(page)) = result.get_mut(kind.field()).map(Value::take) {
            items.extend(page);
        }
        if items.len() > MAX_ITEMS {
            tracing::warn!(aggregate = %hub.name, member = hub.member(m), "{} lists over {MAX_ITEMS} items; the rest is left out", kind.field());
            items.truncate(MAX_ITEMS);
            return Ok(items);
        }
        match result.get("nextCursor").and_then(Value::as_str) {
            Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
            _ => return Ok(items),
        }
    }
    tracing::warn!(aggregate = %hub.name, member = hub.member(m), "{} has over {MAX_PAGES} pages; the rest is left out", kind.field());
    Ok(items)
}

/// Lists `kind` from every member that is up and has it, merges, and keeps the routes.
/// `Err` when a required member failed.
pub(super) async fn refresh(hub: &Hub, kind: Kind) -> Result<Vec<Value>, String> {
    let deadline = Instant::now() + hub.agg.spec.member_timeout;
    let mut asked: Vec<usize> =
        hub.state().up.iter().filter(|(_, c)| c.get(kind.capability()).is_some()).map(|(m, _)| *m).collect();
    asked.sort_unstable();
    let lists = join_all(asked.iter().map(|m| member_list(hub, *m, kind, deadline))).await;
    let mut got = Vec::new();
    let mut failed = Vec::new();
    for (m, list) in asked.into_iter().zip(lists) {
        match list {
            Ok(items) => got.push((m, items)),
            Err(why) => {
                hub.left_out(m, kind.method(), &why);
                failed.push(m);
            }
        }
    }
    let spec = &hub.agg.spec;
    let up = hub.state().up.keys().copied().collect::<Vec<_>>();
    let required: Vec<&str> = (0..spec.members.len())
        .filter(|m| spec.members[*m].required && (failed.contains(m) || !up.contains(m)))
        .map(|m| hub.member(m))
        .collect();
    if !required.is_empty() {
        return Err(format!("required members failed: {}", required.join(", ")));
    }
    let merged = names::merge(kind, spec, &hub.name, got);
    hub.state().catalog.set(kind, merged.table);
    Ok(merged.items)
}

/// The client's list request, answered with everything in one page.
pub(super) async fn answer(hub: Arc<Hub>, kind: Kind, id: Box<str>) {
    hub.initialized().await;
    match refresh(&hub, kind).await {
        Ok(mut items) => {
            if kind == Kind::Tools {
                let narrowing = hub.state().narrowing.clone();
                items.retain(|t| t.get("name").and_then(Value::as_str).is_some_and(|n| narrowing.allows(n)));
            }
            hub.answer(&id, json!({ kind.field(): items })).await;
        }
        Err(why) => hub.error(&id, code::INTERNAL_ERROR, &format!("aggregate `{}`: {why}", hub.name)).await,
    }
}

/// A member's list changed: re-merged (collisions are logged here), then the client is told.
pub(super) async fn changed(hub: Arc<Hub>, kind: Kind) {
    let kinds: &[Kind] = if kind == Kind::Resources { &[Kind::Resources, Kind::Templates] } else { &[kind] };
    for k in kinds {
        if let Err(why) = refresh(&hub, *k).await {
            tracing::warn!(aggregate = %hub.name, "after list_changed: {why}");
        }
    }
    let note = match kind {
        Kind::Tools => method::TOOLS_LIST_CHANGED,
        Kind::Prompts => method::PROMPTS_LIST_CHANGED,
        Kind::Resources | Kind::Templates => method::RESOURCES_LIST_CHANGED,
    };
    hub.to_client(Bytes::from(format!(r#"{{"jsonrpc":"2.0","method":"{note}"}}"#))).await;
}
