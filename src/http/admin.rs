//! The admin API and status page (`/admin`): servers with their health, sessions (all
//! instances in cluster mode), one session's request timeline, ending a session, reloading the
//! configuration. Behind its own token; without one, only loopback clients that did not come
//! through a proxy may use it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::Error;
use crate::app::AppState;
use crate::locator;
use crate::session::{CloseReason, SessionId};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/api/servers", get(servers))
        .route("/admin/api/sessions", get(sessions))
        .route("/admin/api/sessions/{id}", get(session).delete(end_session))
        .route("/admin/api/reload", post(reload))
}

/// Admits a request with the admin token, or from loopback when no token is configured; a
/// browser may call the API only from the status page itself (same origin: the API has no
/// CORS), and no page may frame the status page.
/// `Ok(true)`: a request for the page or its API, whose answer then goes through [`harden`].
pub(crate) fn screen(app: &AppState, req: &Request) -> Result<bool, Error> {
    let path = req.uri().path();
    if !path.starts_with("/admin") {
        return Ok(false);
    }
    // The page itself holds no data; its API calls carry the token.
    if path.starts_with("/admin/api") {
        if let Err(why) = same_origin(req.headers()) {
            tracing::warn!(path, reason = %why, "refused an admin request");
            return Err(Error::AdminCrossOrigin(why));
        }
        let allowed = match &app.config.edge.admin_token {
            Some(want) => crate::http::auth::bearer(req.headers()).is_some_and(|t| crate::config::edge::token_matches(t, want)),
            None => {
                let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
                peer.is_some_and(|p| p.ip().is_loopback()) && !proxied(req.headers())
            }
        };
        if !allowed {
            return Err(Error::AdminUnauthorized);
        }
    }
    Ok(true)
}

/// No page may frame the admin page or its API's answers.
pub(crate) fn harden(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// Whether a request came through a proxy: any forwarding header. Such a request is not a
/// loopback client, even if the proxy runs on loopback.
fn proxied(h: &HeaderMap) -> bool {
    h.keys().any(|k| matches!(k.as_str(), "forwarded" | "x-real-ip") || k.as_str().starts_with("x-forwarded-"))
}

/// A request with an `Origin` must come from the page the bridge served: the origin's
/// `host[:port]` is the request's `Host`.
fn same_origin(h: &HeaderMap) -> Result<(), &'static str> {
    let Some(origin) = h.get(header::ORIGIN) else { return Ok(()) };
    let authority = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, a)| a.trim_end_matches('/'));
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    match (authority, host) {
        (Some(a), Some(host)) if a.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err("the admin API answers only its own status page (a request from another origin)"),
    }
}

async fn page() -> Html<&'static str> {
    Html(include_str!("admin/status.html"))
}

async fn servers(State(app): State<AppState>) -> Json<serde_json::Value> {
    let summaries: Vec<_> = app.locator.registry.all().into_iter().map(|s| s.summary()).collect();
    let list: Vec<serde_json::Value> = app
        .locator
        .servers()
        .iter()
        .map(|(name, s)| {
            let kind = match &s.upstream {
                crate::config::UpstreamSpec::Stdio { .. } => "stdio",
                crate::config::UpstreamSpec::StreamableHttp { .. } => "streamable-http",
                crate::config::UpstreamSpec::Sse { .. } => "sse",
                crate::config::UpstreamSpec::Aggregate(_) => "aggregate",
            };
            serde_json::json!({
                "name": name,
                "kind": kind,
                "health": app.locator.env.health.status(name),
                "sessions": summaries.iter().filter(|x| x.server == *name).count(),
                "heartbeat_ms": s.heartbeat.interval.map(|d| d.as_millis() as u64),
                "pool": app.locator.env.upstream.pools.status(name),
            })
        })
        .collect();
    Json(serde_json::json!({ "instance": &*app.instance, "servers": list }))
}

async fn sessions(State(app): State<AppState>) -> Result<Json<serde_json::Value>, Error> {
    let mut list: Vec<serde_json::Value> = app
        .locator
        .registry
        .all()
        .into_iter()
        .map(|s| {
            let mut v = serde_json::to_value(s.summary()).unwrap_or_default();
            v["instance"] = serde_json::Value::from(&*app.instance);
            v
        })
        .collect();
    if let Some(cluster) = &app.locator.cluster {
        match cluster.list_sessions().await {
            Ok(remote) => {
                let local: std::collections::HashSet<String> =
                    list.iter().filter_map(|v| v["id"].as_str().map(String::from)).collect();
                list.extend(remote.into_iter().filter(|r| !local.contains(&r.id)).map(|r| {
                    serde_json::json!({ "id": r.id, "server": r.server, "transport": r.transport, "instance": r.owner, "principal": r.principal })
                }));
            }
            Err(source) => return Err(Error::AdminCluster { context: "cannot list the cluster's sessions: ", source }),
        }
    }
    let by_server = list.iter().fold(BTreeMap::<String, usize>::new(), |mut m, v| {
        *m.entry(v["server"].as_str().unwrap_or("").to_string()).or_default() += 1;
        m
    });
    Ok(Json(serde_json::json!({ "instance": &*app.instance, "count": list.len(), "by_server": by_server, "sessions": list })))
}

async fn session(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, Error> {
    let Some(s) = SessionId::parse(&id).and_then(|id| app.locator.registry.get(id)) else {
        return Err(Error::AdminNoSession("no such session on this instance (in cluster mode, ask its owner)"));
    };
    Ok(Json(serde_json::json!({ "session": s.summary(), "timeline": s.timeline() })))
}

async fn end_session(State(app): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, Error> {
    let no_such = Error::AdminNoSession("no such session");
    let Some(id) = SessionId::parse(&id) else { return Err(no_such) };
    let found = locator::find(&app.locator, id).await.map_err(|source| Error::AdminCluster { context: "", source })?;
    let h = found.ok_or(no_such)?;
    h.end(&app.locator, CloseReason::Deleted, "ended through the admin API").await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn reload(State(app): State<AppState>) -> Result<Json<serde_json::Value>, Error> {
    app.reload().map(Json).map_err(Error::ReloadRefused)
}
