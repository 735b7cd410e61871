//! The answers of the 2026-07-28 endpoint that are not a backing session's: JSON bodies with
//! their status, JSON-RPC errors, header mismatches (-32020), a failed checkout, and the
//! versions the endpoint speaks. A leaf the endpoint's files share.

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::protocol::jsonrpc;
use crate::protocol::modern::code;
use crate::protocol::{MODERN_VERSIONS, SUPPORTED_VERSIONS};
use crate::stateless::CheckoutError;

/// Every version the endpoint speaks, newest first.
pub(super) fn all_versions() -> Vec<&'static str> {
    let mut v: Vec<&str> = MODERN_VERSIONS.iter().chain(SUPPORTED_VERSIONS).copied().collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

/// A JSON body with its status.
pub(super) fn answer(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A JSON-RPC error answer.
pub(super) fn error(status: StatusCode, id: Option<&str>, code: i64, message: &str) -> Response {
    answer(status, jsonrpc::error(id, code, message))
}

/// A -32020 answer: a mirrored header does not match the body.
pub(super) fn mismatch(id: &str, message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, Some(id), code::HEADER_MISMATCH, &format!("Header mismatch: {message}"))
}

/// The answer when no backing session could be had.
pub(super) fn checkout_failed(id: &str, e: CheckoutError) -> Response {
    match e {
        CheckoutError::Op(e) => crate::http::op_error(e),
        CheckoutError::Init(detail) => error(
            StatusCode::BAD_GATEWAY,
            Some(id),
            jsonrpc::code::INTERNAL_ERROR,
            &format!("mcp-bridge: could not open an upstream session for this request: {detail}"),
        ),
    }
}
