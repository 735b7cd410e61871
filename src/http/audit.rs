//! `[auth.audit]`: one JSON line per tool call, resource read and prompt get: when, who (the
//! principal), which server, transport, method and tool (or prompt, or resource URI), the
//! outcome, the duration, the bytes in and out, and with `arguments` for that server the
//! arguments. The middleware (inside `[auth]` and outside `[auth.rate_limits]`, so it sees the principal and
//! a rate-limit refusal) notes each such request of a POST and watches the answer for its
//! response (`watch`): on the POST's own body, or for the legacy message endpoint (202) on the
//! session's SSE stream. The lines go to `audit.file` through a writer thread, else into the log.

mod line;
mod watch;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::auth::{percent_decode, server_of, Principal};
use super::Error;
use crate::protocol::jsonrpc::{self, Kind};
use crate::protocol::method;
pub(crate) use line::Audit;
use line::{Outcome, Pending};

fn transport(path: &str) -> &'static str {
    match path {
        p if p.starts_with("/mcp/router/route/") => "route",
        p if p.starts_with("/mcp/") => "streamable",
        p if p.starts_with("/rest/") => "rest",
        _ => "sse",
    }
}

/// `router` behind `[auth.audit]`, if the file has one.
pub(crate) fn layer(
    router: axum::Router<crate::app::AppState>,
    app: &crate::app::AppState,
) -> axum::Router<crate::app::AppState> {
    let names: Vec<String> = app.config.servers.keys().cloned().collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let Some(Ok(Some(settings))) = app.config.auth.as_ref().map(|a| a.audit(&refs)) else { return router };
    let audit = Audit::new(settings, names.clone(), app.config.limits.max_body);
    router.layer(axum::middleware::from_fn_with_state(audit, check))
}

/// The middleware.
pub(crate) async fn check(State(audit): State<Arc<Audit>>, req: Request, next: Next) -> Result<Response, Error> {
    let path = req.uri().path().to_string();
    let legacy_alias = matches!(path.as_str(), "/message" | "/messages");
    let server = server_of(&path).filter(|s| audit.servers.iter().any(|n| n == s)).map(str::to_string);
    if server.is_none() && !legacy_alias {
        return Ok(next.run(req).await);
    }
    let principal = req.extensions().get::<Principal>().map(|p| p.0.clone());
    let query = req.uri().query().unwrap_or("").to_string();
    if req.method() == Method::GET && path.starts_with("/sse/") {
        // A legacy stream: answers to its session's POSTs come here.
        let resume = req.headers().get("last-event-id").and_then(|v| v.to_str().ok()).map(String::from);
        let resp = next.run(req).await;
        let session = resume.and_then(|id| id.split('-').next().map(String::from));
        return Ok(watch::legacy_stream(audit, session, resp));
    }
    let base = Pending {
        started: Instant::now(),
        time: SystemTime::now(),
        principal,
        server: server.clone().unwrap_or_default(),
        transport: transport(&path),
        method: "",
        name: String::new(),
        id: None,
        bytes_in: 0,
        arguments: None,
    };
    let (req, pendings, rest) = noted(&audit, &path, &query, base, req).await?;
    if pendings.is_empty() {
        return Ok(next.run(req).await);
    }
    let resp = next.run(req).await;
    let status = resp.status();
    if rest {
        return Ok(watch::rest_answer(audit, pendings, resp));
    }
    if status == StatusCode::ACCEPTED {
        let session = query.split('&').find_map(|kv| kv.strip_prefix("sessionId=")).unwrap_or("").to_string();
        for p in pendings {
            audit.wait(&session, p);
        }
        return Ok(resp);
    }
    if !status.is_success() {
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        for p in &pendings {
            audit.write(p, Outcome::Refused(status.as_u16()), bytes.len());
        }
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    }
    Ok(watch::post_answer(audit, pendings, resp))
}

/// The audited requests of a request, and whether it is a REST call; the request rebuilt.
async fn noted(
    audit: &Audit,
    path: &str,
    query: &str,
    base: Pending,
    req: Request,
) -> Result<(Request, Vec<Pending>, bool), Error> {
    let with_args = audit.settings.arguments_for(&base.server);
    if let Some(rest) = path.strip_prefix("/rest/") {
        let mut parts = rest.splitn(3, '/').skip(1);
        let (what, name) = (parts.next().unwrap_or(""), parts.next().map(percent_decode));
        let (m, name) = match (req.method(), what, name) {
            (&Method::POST, "tools", Some(tool)) => (method::TOOLS_CALL, tool),
            (&Method::POST, "prompts", Some(prompt)) => (method::PROMPTS_GET, prompt),
            (&Method::GET, "resources", None) => match query.split('&').find_map(|kv| kv.strip_prefix("uri=")) {
                Some(uri) => (method::RESOURCES_READ, percent_decode(uri)),
                None => return Ok((req, Vec::new(), true)),
            },
            _ => return Ok((req, Vec::new(), true)),
        };
        let (req, bytes) = read_body(audit, req).await?;
        let arguments =
            (with_args && m != method::RESOURCES_READ).then(|| serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null));
        let p = Pending { method: m, name, bytes_in: bytes.len(), arguments, ..base };
        return Ok((req, vec![p], true));
    }
    if req.method() != Method::POST {
        return Ok((req, Vec::new(), false));
    }
    let (req, bytes) = read_body(audit, req).await?;
    let Ok((messages, _)) = jsonrpc::split(&bytes) else { return Ok((req, Vec::new(), false)) };
    let mut out = Vec::new();
    for raw in messages {
        let Ok(peek) = jsonrpc::peek(&raw) else { continue };
        let m = match peek.method.as_deref() {
            Some(method::TOOLS_CALL) => method::TOOLS_CALL,
            Some(method::RESOURCES_READ) => method::RESOURCES_READ,
            Some(method::PROMPTS_GET) => method::PROMPTS_GET,
            _ => continue,
        };
        if peek.kind != Kind::Request {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
        let name = v.pointer(if m == method::RESOURCES_READ { "/params/uri" } else { "/params/name" });
        let name = name.and_then(|n| n.as_str()).unwrap_or("").chars().take(256).collect();
        let arguments = (with_args && m != method::RESOURCES_READ)
            .then(|| v.pointer("/params/arguments").cloned().unwrap_or(serde_json::Value::Null));
        out.push(Pending { method: m, name, id: peek.id.clone(), bytes_in: raw.len(), arguments, ..base.clone() });
    }
    Ok((req, out, false))
}

async fn read_body(audit: &Audit, req: Request) -> Result<(Request, axum::body::Bytes), Error> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, audit.max_body).await.map_err(|_| Error::Rpc {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        id: None,
        code: jsonrpc::code::INVALID_REQUEST,
        message: "Payload Too Large: the body is longer than limits.max_body".into(),
    })?;
    Ok((Request::from_parts(parts, Body::from(bytes.clone())), bytes))
}
