//! What the bridge knows of MCP and JSON-RPC as data: peeking at and splitting messages, error
//! codes and bodies, the protocol revisions, method names. No I/O and nothing of the crate
//! above the ground.

pub mod jsonrpc;
pub(crate) mod method;

pub(crate) use method::is_list_change;

/// Protocol revisions of the session-based eras a client may name in `MCP-Protocol-Version`
/// (2024-11-05 is HTTP+SSE's; the other three are Streamable HTTP's).
pub(crate) const SUPPORTED_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// Protocol revisions served statelessly (2026-07-28).
pub(crate) const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
