//! What the bridge knows of MCP and JSON-RPC as data: peeking at and splitting messages, error
//! codes and bodies, the protocol revisions, method names. No I/O and nothing of the crate
//! above the ground.

pub(crate) mod headers;
pub mod jsonrpc;
pub(crate) mod method;
pub(crate) mod modern;
pub(crate) mod request_state;
pub(crate) mod rewrite;

pub(crate) use method::is_list_change;

/// HTTP+SSE's revision.
pub(crate) const V2024_11_05: &str = "2024-11-05";
/// The first Streamable HTTP revision.
pub(crate) const V2025_03_26: &str = "2025-03-26";
/// From here on: no JSON-RPC batches, `MCP-Protocol-Version` on every request.
pub(crate) const V2025_06_18: &str = "2025-06-18";
/// From here on: a server may end a POST's stream early and the client polls (SEP-1699).
pub(crate) const V2025_11_25: &str = "2025-11-25";
/// The stateless revision.
pub(crate) const V2026_07_28: &str = "2026-07-28";

/// Protocol revisions of the session-based eras a client may name in `MCP-Protocol-Version`
/// (2024-11-05 is HTTP+SSE's; the other three are Streamable HTTP's).
pub(crate) const SUPPORTED_VERSIONS: &[&str] = &[V2024_11_05, V2025_03_26, V2025_06_18, V2025_11_25];

/// Protocol revisions served statelessly (2026-07-28).
pub(crate) const MODERN_VERSIONS: &[&str] = &[V2026_07_28];

/// Whether revision `v` is `rev` or later. Revisions are dates, so they order as strings.
pub(crate) fn at_least(v: &str, rev: &str) -> bool {
    v >= rev
}

/// Every revision the bridge speaks, stateless and session-based, newest first.
pub(crate) fn all_versions() -> Vec<&'static str> {
    let mut v: Vec<&str> = MODERN_VERSIONS.iter().chain(SUPPORTED_VERSIONS).copied().collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}
