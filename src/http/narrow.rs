//! `?tools=glob,…` on an aggregate's URL (`/mcp/NAME?tools=…`, `/sse/NAME?tools=…`): the
//! client's `initialize` carries the narrowing to the aggregate (`upstream/aggregate/narrow.rs`),
//! which publishes and calls only the tools it matches. Other servers ignore the query.

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::Uri;
use serde::Deserialize;

use crate::config::{ServerConfig, UpstreamSpec};
use crate::protocol::jsonrpc::{Kind, Peek};
use crate::protocol::method;
use crate::upstream::aggregate::narrow;

#[derive(Deserialize)]
struct ToolsQuery {
    tools: Option<String>,
}

/// The `tools` query value of a request to an aggregate, percent-decoded.
pub(crate) fn tools_of(server: &ServerConfig, uri: &Uri) -> Option<String> {
    if !matches!(server.upstream, UpstreamSpec::Aggregate(_)) {
        return None;
    }
    Query::<ToolsQuery>::try_from_uri(uri).ok()?.0.tools
}

/// `&tools=…` for the SSE endpoint URL, so that the client's POSTs carry the narrowing too.
pub(crate) fn endpoint_suffix(tools: Option<&str>) -> String {
    tools.map(|t| format!("&tools={}", narrow::query_encode(t))).unwrap_or_default()
}

/// `messages` with the narrowing added to an `initialize` among them.
pub(crate) fn initialize(tools: Option<&str>, mut messages: Vec<(Bytes, Peek)>) -> Vec<(Bytes, Peek)> {
    let Some(tools) = tools else { return messages };
    let globs = narrow::parse_globs(tools);
    for (raw, peek) in &mut messages {
        if peek.kind == Kind::Request && peek.method.as_deref() == Some(method::INITIALIZE) {
            if let Some(narrowed) = narrow::add_to_initialize(raw, &globs) {
                *raw = narrowed;
            }
        }
    }
    messages
}
