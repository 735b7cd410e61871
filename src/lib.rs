//! mcp-bridge: an HTTP gateway that puts named MCP servers on the network, over the legacy
//! HTTP+SSE transport (`/sse/{name}`) and Streamable HTTP (`/mcp/{name}`), and keeps their
//! streams alive. See ARCHITECTURE.md for the floors and the map.
//!
//! The modules are the crate's own; what `main`, the echo server and the fuzz targets use is
//! re-exported below, and nothing else is public.

// Floor 1, the ground.
pub(crate) mod config;
pub(crate) mod diagnose;
pub(crate) mod health;
pub(crate) mod ids;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod protocol;
pub(crate) mod sse;
pub(crate) mod timed_io;
// Floor 2.
pub(crate) mod upstream;
// Floor 3.
pub(crate) mod session;
// Floor 4.
pub(crate) mod cluster;
// Floor 5.
pub(crate) mod locator;
// Floor 6.
pub(crate) mod stateless;
// Floor 7.
pub(crate) mod app;
// Floor 8.
pub(crate) mod http;
// Floor 9.
pub mod server;

pub use app::{AppState, Reloader};
pub use config::{parse_interval, Config, HeartbeatFormat, RedisTarget, DEFAULT_SENTINEL_MASTER};
pub use diagnose::{main as diagnose, parse_seconds, Options as DiagnoseOptions};
pub use logging::init as init_logging;

/// What the fuzz targets (`fuzz/`) drive. Nothing else uses it.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::config::edge::Edge;
    pub use crate::config::{valid_name, Config};
    pub use crate::http::auth::{bearer, Auth};
    pub use crate::http::mirrored;
    pub use crate::http::origin::Policy;
    pub use crate::http::{client_addr, public_prefix};
    pub use crate::ids::SessionId;
    pub use crate::protocol::jsonrpc;
    pub use crate::session::event_log::EventId;
    pub use crate::sse::parse as sse_parse;
    pub use crate::upstream::stderr;

    /// The 2026-07-28 wire helpers.
    pub mod stateless {
        pub use crate::protocol::headers::{check_param_headers, decode_header_value, param_headers};
        pub use crate::protocol::modern::{final_response, parse_request, with_meta, ClientCaps};
        pub use crate::protocol::request_state::RequestState;
    }
}
