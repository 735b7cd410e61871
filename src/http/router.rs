//! The routes: each path to its handler, behind the admin guard, `[auth]`, the Origin check and
//! the in-flight count that shutdown waits on.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;

use super::{origin, sse, streamable, Error};
use crate::app::AppState;

pub(crate) fn router(app: AppState) -> Router {
    let origin_policy = origin::Policy::new(app.config.listen, &app.config.allowed_origins);
    let auth = app.config.auth.clone().map(|m| {
        let names: Vec<&str> = app.config.servers.keys().map(String::as_str).collect();
        // Clients may name servers added by a later reload only after a restart.
        let auth = crate::http::auth::Auth::from_model(m, &names).expect("the config was validated when it was loaded");
        Arc::new(auth.with_max_body(app.config.limits.max_body))
    });
    let router = Router::new()
        .route("/sse/{name}", get(sse::open))
        .route("/sse/{name}/message", post(sse::message))
        .route("/message", post(sse::message))
        .route("/messages", post(sse::message))
        .route(
            "/mcp/{name}",
            get(streamable::get).post(streamable::post).delete(streamable::delete).fallback(streamable::not_allowed),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(crate::http::probes::readyz))
        .route("/metrics", get(crate::http::probes::metrics))
        .merge(crate::http::admin::router())
        .merge(crate::http::rest::router())
        .fallback(any(|| async { Error::NoRoute }))
        .layer(DefaultBodyLimit::max(app.config.limits.max_body));
    // Inside `[auth]`: the audit (it sees a 429), then the rate limits.
    let router = crate::http::audit::layer(crate::http::ratelimit::layer(router, &app), &app);
    let router = match auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(auth, crate::http::auth::check)),
        None => router,
    };
    router
        .layer(axum::middleware::from_fn_with_state(app.clone(), crate::http::admin::guard))
        .layer(axum::middleware::from_fn_with_state(origin_policy, origin::check))
        .layer(axum::middleware::from_fn_with_state(app.clone(), count_in_flight))
        .with_state(app)
}

/// Counts the request in [`AppState::in_flight`] while its handler runs. While draining, every
/// answer says `Connection: close`, so a proxy stops reusing its pooled connections to this
/// instance before they are closed: a request written to a connection just as the bridge
/// closes it fails (nginx answers 502 and does not retry a POST).
async fn count_in_flight(State(app): State<AppState>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let _in_flight = app.lifecycle.enter();
    let mut resp = next.run(req).await;
    if app.lifecycle.is_draining() {
        resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    resp
}
