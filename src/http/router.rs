//! The routes: each path to its handler, behind `[auth]` and the gate: the in-flight count
//! that shutdown waits on, the Origin check and the admin guard. The gate is no middleware
//! layer: [`Routes::serve`] runs it and then the router, inside the one future the server
//! boxes per request (each `from_fn` layer costs a boxed future, a boxed `Next` and a service
//! clone per request).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;

use super::{origin, sse, streamable, Error};
use crate::app::AppState;

/// The router and the gate in front of it.
#[derive(Clone)]
pub(crate) struct Routes {
    router: Router,
    gate: Arc<Gate>,
}

pub(crate) fn router(app: AppState) -> Routes {
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
    let gate = Arc::new(Gate { app: app.clone(), origin: origin_policy });
    Routes { router: router.with_state(app), gate }
}

struct Gate {
    app: AppState,
    origin: Arc<origin::Policy>,
}

impl Routes {
    /// Serves one request: counts it in [`AppState::in_flight`] while it is served, then
    /// screens it: the Origin check (`origin::screen`), then the admin guard
    /// (`admin::screen`), then the routes. While draining, every answer says
    /// `Connection: close`, so a proxy stops reusing its pooled connections to this instance
    /// before they are closed: a request written to a connection just as the bridge closes it
    /// fails (nginx answers 502 and does not retry a POST).
    pub(crate) async fn serve(mut self, req: Request) -> Response {
        let _in_flight = self.gate.app.lifecycle.enter();
        let mut resp = screened(&self.gate, req, &mut self.router).await.unwrap_or_else(IntoResponse::into_response);
        if self.gate.app.lifecycle.is_draining() {
            resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
        resp
    }
}

async fn screened(gate: &Gate, req: Request, router: &mut Router) -> Result<Response, Error> {
    let cors = match origin::screen(&gate.origin, &req)? {
        origin::Screened::Route(cors) => cors,
        origin::Screened::Preflight(resp) => return Ok(resp),
    };
    let admin = super::admin::screen(&gate.app, &req)?;
    let mut resp = match tower::Service::call(router, req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    if admin {
        super::admin::harden(&mut resp);
    }
    if let Some(origin) = cors {
        origin::cors(resp.headers_mut(), origin);
    }
    Ok(resp)
}
