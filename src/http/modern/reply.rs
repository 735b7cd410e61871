//! The answers of the 2026-07-28 endpoint that are not a backing session's: JSON bodies with
//! their status, and the endpoint's refusals as [`Error`]s: JSON-RPC errors naming the request,
//! header mismatches (-32020), a failed checkout. A leaf the endpoint's files share.

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::Error;
use crate::protocol::jsonrpc;
use crate::protocol::modern::code;
use crate::stateless::CheckoutError;

/// A JSON body with its status.
pub(super) fn answer(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A JSON-RPC error naming the request's id, with its status (rendered by [`Error`]).
pub(super) fn error(status: StatusCode, id: Option<&str>, code: i64, message: &str) -> Error {
    Error::Rpc { status, id: id.map(Box::from), code, message: message.to_string() }
}

/// A -32020 answer: a mirrored header does not match the body.
pub(super) fn mismatch(id: &str, message: &str) -> Error {
    error(StatusCode::BAD_REQUEST, Some(id), code::HEADER_MISMATCH, &format!("Header mismatch: {message}"))
}

/// The answer when no backing session could be had.
pub(super) fn checkout_failed(id: &str, e: CheckoutError) -> Error {
    match e {
        CheckoutError::Op(e) => e.into(),
        CheckoutError::Init(detail) => error(
            StatusCode::BAD_GATEWAY,
            Some(id),
            jsonrpc::code::INTERNAL_ERROR,
            &format!("mcp-bridge: could not open an upstream session for this request: {detail}"),
        ),
    }
}
