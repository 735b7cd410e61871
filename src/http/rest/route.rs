//! The design note's route, so that its callers move over unchanged: `POST
//! /mcp/router/route/{service}` (and `…/timeout/{seconds}`) takes the envelope `{id, jsonrpc,
//! method, params}` for `tools/list`, `tools/call`, `resources/list`, `resources/read`,
//! `prompts/list`, `prompts/get` and `ping`, runs it as one request on a warm backing session
//! of the caller (like every REST call), and answers `{id, jsonrpc, method, result | error,
//! targetService, timestamp}` (milliseconds since the epoch). Failures keep the REST statuses.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::call::{Call, Params};
use super::reply::{json, server};
use crate::app::AppState;
use crate::http::auth::Who;
use crate::http::{Error, Failure};
use crate::protocol::method;

/// The methods the route takes, as the note lists them.
const ROUTED: &[&str] = &[
    method::TOOLS_LIST,
    method::TOOLS_CALL,
    method::RESOURCES_LIST,
    method::RESOURCES_READ,
    method::PROMPTS_LIST,
    method::PROMPTS_GET,
    method::PING,
];

/// The longest `…/timeout/{seconds}` taken.
const MAX_TIMEOUT_S: u64 = 3600;

/// The note's request envelope.
#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(default)]
    id: Value,
    method: String,
    #[serde(default)]
    params: Option<serde_json::Map<String, Value>>,
}

/// The note's answer around a `result` or an `error`.
fn answer(id: &Value, method: &str, service: &str, member: &str, value: Value) -> Value {
    json!({ "id": id, "jsonrpc": "2.0", "method": method, member: value, "targetService": service, "timestamp": crate::ids::unix_ms() })
}

/// `POST /mcp/router/route/{service}`.
pub(super) async fn route(
    State(app): State<AppState>,
    Path(service): Path<String>,
    Who(principal): Who,
    body: Bytes,
) -> Result<Response, Error> {
    serve(app, service, principal, body, None).await
}

/// `POST /mcp/router/route/{service}/timeout/{seconds}`: the call is cancelled upstream and
/// answered 504 when it takes longer.
pub(super) async fn route_with_timeout(
    State(app): State<AppState>,
    Path((service, seconds)): Path<(String, String)>,
    Who(principal): Who,
    body: Bytes,
) -> Result<Response, Error> {
    let Some(seconds) = seconds.parse::<u64>().ok().filter(|s| (1..=MAX_TIMEOUT_S).contains(s)) else {
        let envelope = json!({ "jsonrpc": "2.0", "error": { "code": -32600, "message": format!("the timeout must be 1 to {MAX_TIMEOUT_S} seconds") }, "targetService": service, "timestamp": crate::ids::unix_ms() });
        return Err(Error::Routed { failure: Failure::BadRequest, envelope: Box::new(envelope) });
    };
    serve(app, service, principal, body, Some(Duration::from_secs(seconds))).await
}

async fn serve(
    app: AppState,
    service: String,
    principal: Option<std::sync::Arc<str>>,
    body: Bytes,
    timeout: Option<Duration>,
) -> Result<Response, Error> {
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            let error = json!({ "code": -32700, "message": format!("Parse error: not the route's envelope {{id, jsonrpc, method, params}}: {e}") });
            let envelope = answer(&Value::Null, "", &service, "error", error);
            return Err(Error::Routed { failure: Failure::BadRequest, envelope: Box::new(envelope) });
        }
    };
    let (id, name) = (envelope.id.clone(), envelope.method.clone());
    let wrap = |error: Value| answer(&id, &name, &service, "error", error);
    let Some(method) = ROUTED.iter().copied().find(|m| *m == envelope.method) else {
        let detail = format!("Method not found: the route takes {}", ROUTED.join(", "));
        return Err(Error::rest(Failure::NotFound, detail).routed(wrap));
    };
    let server = server(&app, &service).map_err(|e| e.routed(wrap))?;
    let params: Params = envelope.params.unwrap_or_default().into_iter().map(|(k, v)| (k, v.to_string())).collect();
    let call = async {
        let call = Call::start(&app, &server, principal, method, params, false).await?;
        call.result().await
    };
    let result = match timeout {
        None => call.await,
        // Dropping the call on time cancels it upstream.
        Some(t) => match tokio::time::timeout(t, call).await {
            Ok(r) => r,
            Err(_) => {
                Err(Error::rest(Failure::Timeout, format!("the call took longer than the route's timeout ({}s)", t.as_secs())))
            }
        },
    };
    let result = result.map_err(|e| e.routed(wrap))?;
    let result: Value = serde_json::from_slice(&result).unwrap_or(Value::Null);
    Ok(json(answer(&id, &name, &service, "result", result).to_string()))
}
