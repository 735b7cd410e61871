//! Plain HTTP in front of MCP servers, for callers that speak no MCP (workflow engines, scripts,
//! OpenAPI-driven agents): `GET /rest/{server}/tools`, `POST /rest/{server}/tools/{tool}` (the
//! body is the arguments object, the answer the `CallToolResult`), `GET
//! /rest/{server}/resources[?uri=…]` and `POST /rest/{server}/prompts/{name}`. Each request is
//! one MCP request on a warm backing session of the caller's principal (`call.rs`); failures
//! are `application/problem+json` carrying the JSON-RPC error (`http::Error::Rest`).
//!
//! - `call.rs`: one request on a backing session, questions refused or declined, cancellation.
//! - `stream.rs`: a tool call answered as SSE (`progress`, `log`, then `result`).
//! - `openapi.rs`: the OpenAPI 3.1 documents (`/rest/{server}/openapi.json`, `/rest/openapi.json`).
//! - `reply.rs`: leaf: the server a path names, a JSON answer.
//! - `route.rs`: the design note's route, `POST /mcp/router/route/{service}[/timeout/{seconds}]`.

mod call;
mod openapi;
mod reply;
mod route;
mod stream;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::app::AppState;
use crate::config::ServerConfig;
use crate::http::auth::{Allowed, Who};
use crate::http::{Error, Failure};
use crate::protocol::method;
use crate::stateless::catalog::Catalog;
use call::{Call, Params};
use reply::{json, server};

/// Pages of a list followed before the bridge gives up on an upstream that never ends one.
const MAX_PAGES: usize = 100;

/// How long the document over all servers waits for one server's tools before it leaves the
/// server out (one slow upstream does not hold up the others).
const LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/rest/{server}/tools", get(tools))
        .route("/rest/{server}/tools/{tool}", post(call_tool))
        .route("/rest/{server}/resources", get(resources))
        .route("/rest/{server}/prompts/{name}", post(prompt))
        .route("/rest/{server}/openapi.json", get(server_openapi))
        .route("/rest/openapi.json", get(all_openapi))
        .route("/mcp/router/route/{service}", post(route::route))
        .route("/mcp/router/route/{service}/timeout/{seconds}", post(route::route_with_timeout))
}

/// A request body that must be a JSON object (empty means `{}`), as JSON text.
fn object_body(body: &Bytes) -> Result<String, Error> {
    let text = std::str::from_utf8(body).map_err(|_| Error::rest(Failure::BadRequest, "the body is not UTF-8"))?;
    if text.trim().is_empty() {
        return Ok("{}".into());
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(text.to_string()),
        Ok(_) => Err(Error::rest(Failure::InvalidParams, "Invalid params: the body must be a JSON object of arguments")),
        Err(e) => Err(Error::rest(Failure::BadRequest, format!("the body is not JSON: {e}"))),
    }
}

/// Every page of a list (`tools/list`, `resources/list`), its `key` member's items joined.
async fn list_all(
    app: &AppState,
    server: &Arc<ServerConfig>,
    principal: &Option<Arc<str>>,
    list: &'static str,
    key: &str,
) -> Result<Vec<serde_json::Value>, Error> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params: Params =
            cursor.take().map(|c| vec![("cursor".into(), serde_json::Value::from(c).to_string())]).unwrap_or_default();
        let page = Call::start(app, server, principal.clone(), list, params, false).await?.result().await?;
        let page: serde_json::Value = serde_json::from_slice(&page)
            .map_err(|e| Error::rest(Failure::BadGateway, format!("the upstream's {list} answer is not JSON: {e}")))?;
        if let Some(more) = page.get(key).and_then(serde_json::Value::as_array) {
            items.extend(more.iter().cloned());
        }
        match page.get("nextCursor").and_then(serde_json::Value::as_str) {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(items),
        }
    }
    Err(Error::rest(Failure::BadGateway, format!("the upstream's {list} did not end within {MAX_PAGES} pages")))
}

/// A server's tools as the principal sees them: the kept list, or all pages fetched again
/// (`fresh`, or when the list changed since).
pub(crate) async fn catalog(
    app: &AppState,
    server: &Arc<ServerConfig>,
    principal: &Option<Arc<str>>,
    fresh: bool,
) -> Result<Arc<Vec<serde_json::Value>>, Error> {
    let kept = &app.stateless.catalog;
    if let Some(tools) = kept.tools(&server.name, principal.as_ref()).filter(|_| !fresh) {
        return Ok(tools);
    }
    let watch = Catalog::watch(&app.locator.env.changes, &server.name, principal.as_ref());
    let tools = list_all(app, server, principal, method::TOOLS_LIST, "tools").await?;
    Ok(kept.keep(&server.name, principal.as_ref(), tools, watch))
}

/// `GET /rest/{server}/tools`: every tool, all pages, as `{"tools": […]}`.
async fn tools(State(app): State<AppState>, Path(name): Path<String>, Who(principal): Who) -> Result<Response, Error> {
    let server = server(&app, &name)?;
    let tools = catalog(&app, &server, &principal, false).await?;
    Ok(json(serde_json::json!({ "tools": *tools }).to_string()))
}

/// `POST /rest/{server}/tools/{tool}`: the body is the arguments; the answer the
/// `CallToolResult` (a tool's own error, `isError: true`, is a completed call: 200), or with
/// `Accept: text/event-stream` an SSE stream of `progress` and `log` events, then `result`.
async fn call_tool(
    State(app): State<AppState>,
    Path((name, tool)): Path<(String, String)>,
    Who(principal): Who,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let server = server(&app, &name)?;
    let arguments = object_body(&body)?;
    let named = |tools: &[serde_json::Value]| tools.iter().any(|t| t.get("name").and_then(|n| n.as_str()) == Some(&tool));
    // A tool missing from the kept list may be new: the list is fetched again once.
    if !named(&catalog(&app, &server, &principal, false).await?) && !named(&catalog(&app, &server, &principal, true).await?) {
        let tool: String = tool.chars().take(128).collect();
        return Err(Error::rest(Failure::NotFound, format!("server `{}` has no tool `{tool}`", server.name)));
    }
    let params = vec![("name".into(), serde_json::Value::from(tool.as_str()).to_string()), ("arguments".into(), arguments)];
    let streaming = super::accepts(&headers, "text/event-stream");
    let call = Call::start(&app, &server, principal, method::TOOLS_CALL, params, streaming).await?;
    if streaming {
        return Ok(stream::respond(call, server.heartbeat.interval));
    }
    Ok(json(call.result().await?))
}

#[derive(serde::Deserialize)]
struct ResourceQuery {
    uri: Option<String>,
}

/// `GET /rest/{server}/resources?uri=…`: the `ReadResourceResult`; without `uri`, every
/// resource, all pages, as `{"resources": […]}`.
async fn resources(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ResourceQuery>,
    Who(principal): Who,
) -> Result<Response, Error> {
    let server = server(&app, &name)?;
    let Some(uri) = q.uri else {
        let resources = list_all(&app, &server, &principal, method::RESOURCES_LIST, "resources").await?;
        return Ok(json(serde_json::json!({ "resources": resources }).to_string()));
    };
    let params = vec![("uri".into(), serde_json::Value::from(uri).to_string())];
    let call = Call::start(&app, &server, principal, method::RESOURCES_READ, params, false).await?;
    Ok(json(call.result().await?))
}

/// `POST /rest/{server}/prompts/{name}`: the body is the prompt's arguments; the answer the
/// `GetPromptResult`.
async fn prompt(
    State(app): State<AppState>,
    Path((name, prompt)): Path<(String, String)>,
    Who(principal): Who,
    body: Bytes,
) -> Result<Response, Error> {
    let server = server(&app, &name)?;
    let arguments = object_body(&body)?;
    let params = vec![("name".into(), serde_json::Value::from(prompt).to_string()), ("arguments".into(), arguments)];
    let call = Call::start(&app, &server, principal, method::PROMPTS_GET, params, false).await?;
    Ok(json(call.result().await?))
}

/// `GET /rest/{server}/openapi.json`: the server's tools as an OpenAPI 3.1 document.
async fn server_openapi(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Who(principal): Who,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let server = server(&app, &name)?;
    let tools = catalog(&app, &server, &principal, false).await?;
    let base = super::public_prefix(&headers, app.config.public_base_path.as_deref());
    let listed = [openapi::Listed { server: &server.name, tools: &tools }];
    Ok(json(openapi::document(&format!("mcp-bridge: {}", server.name), &base, &listed, &[]).to_string()))
}

/// `GET /rest/openapi.json`: every server the caller may use, listed side by side; a server
/// whose tools cannot be listed within [`LIST_WAIT`] is left out and named in the document.
async fn all_openapi(
    State(app): State<AppState>,
    Who(principal): Who,
    allowed: Option<Extension<Allowed>>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let servers: Vec<Arc<ServerConfig>> = app
        .locator
        .servers()
        .values()
        .filter(|s| allowed.as_ref().is_none_or(|Extension(a)| a.permits(&s.name)))
        .cloned()
        .collect();
    let lists = futures_util::future::join_all(servers.iter().map(|s| {
        let (app, principal) = (&app, &principal);
        async move { tokio::time::timeout(LIST_WAIT, catalog(app, s, principal, false)).await }
    }))
    .await;
    let (mut listed, mut unavailable) = (Vec::new(), Vec::new());
    for (server, list) in servers.iter().zip(&lists) {
        match list {
            Ok(Ok(tools)) => listed.push(openapi::Listed { server: &server.name, tools }),
            Ok(Err(e)) => {
                tracing::warn!(server = %server.name, error = %e, "left out of /rest/openapi.json: its tools could not be listed");
                unavailable.push(server.name.clone());
            }
            Err(_) => {
                tracing::warn!(server = %server.name, "left out of /rest/openapi.json: its tools were not listed in time");
                unavailable.push(server.name.clone());
            }
        }
    }
    let base = super::public_prefix(&headers, app.config.public_base_path.as_deref());
    Ok(json(openapi::document("mcp-bridge", &base, &listed, &unavailable).to_string()))
}
