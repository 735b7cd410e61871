//! The operational endpoints and what each shows to whom. `/readyz` gives its status to
//! anyone (a balancer needs no token) and its details (instance, servers with their last
//! errors, counts) only to an authenticated caller when `[auth]` is on: a client token or the
//! admin token. `/metrics` wants the `[metrics]` token when one is set, and is closed when
//! `[auth]` is on without one (client tokens do not read every server's metrics).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Error;
use crate::app::AppState;
use crate::http::auth::Who;

/// `GET /readyz`: 200 ready or degraded, 503 draining.
pub(crate) async fn readyz(State(app): State<AppState>, who: Who, headers: HeaderMap) -> Response {
    let redis = app.locator.cluster.as_ref().map(|c| if c.healthy() { "ok" } else { "unavailable" });
    let degraded: Vec<&str> = redis.filter(|r| *r != "ok").map(|_| "redis").into_iter().collect();
    let draining = app.lifecycle.is_draining();
    let status = if draining {
        "draining"
    } else if degraded.is_empty() {
        "ready"
    } else {
        "degraded"
    };
    let admin = app.config.edge.admin_token.as_ref();
    let details = app.config.auth.is_none()
        || who.0.is_some()
        || admin
            .is_some_and(|want| crate::http::auth::bearer(&headers).is_some_and(|t| crate::config::edge::token_matches(t, want)));
    let body = if details {
        serde_json::json!({
            "status": status,
            "degraded": degraded,
            "instance": &*app.instance,
            "mode": if app.locator.cluster.is_some() { "cluster" } else { "memory" },
            "redis": redis,
            "servers": app.locator.servers().keys().map(|name| (name.clone(), app.locator.env.health.status(name))).collect::<std::collections::BTreeMap<_, _>>(),
            "children": app.locator.env.upstream.children.running(),
            "sessions": app.locator.registry.len(),
            // Of those, 2026-07-28 backing sessions idle in the pool, ready for the next request.
            "stateless_idle": app.stateless.idle(&app.locator),
        })
    } else {
        serde_json::json!({ "status": status, "degraded": degraded, "redis": redis })
    };
    let code = if draining { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// `GET /metrics`: the Prometheus text, behind the `[metrics]` token.
pub(crate) async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, Error> {
    let refusal = match &app.config.edge.metrics_token {
        Some(want) => (!crate::http::auth::bearer(&headers).is_some_and(|t| crate::config::edge::token_matches(t, want)))
            .then_some("/metrics needs the [metrics] token as a bearer token"),
        None if app.config.auth.is_some() => {
            Some("/metrics is closed: with [auth] on, set a [metrics] token (client tokens do not read metrics)")
        }
        None => None,
    };
    if let Some(why) = refusal {
        return Err(Error::MetricsUnauthorized(why));
    }
    let m = crate::metrics::get();
    for name in app.locator.servers().keys() {
        let healthy = app.locator.env.health.status(name).healthy;
        m.upstream_healthy.get_or_create(&crate::metrics::Server { server: name.clone() }).set(i64::from(healthy));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.render()).into_response())
}
