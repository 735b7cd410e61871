//! Leaf: what the REST handlers and the note's route share: the server a path names (404 as a
//! problem) and a JSON answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::config::ServerConfig;
use crate::http::{Error, Failure};

/// The configured server a path names.
pub(super) fn server(app: &AppState, name: &str) -> Result<Arc<ServerConfig>, Error> {
    let name_clipped: String = name.chars().take(128).collect();
    app.locator.server(name).ok_or_else(|| Error::rest(Failure::NotFound, format!("unknown MCP server `{name_clipped}`")))
}

/// A JSON answer.
pub(super) fn json(body: impl Into<Bytes>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.into()).into_response()
}
