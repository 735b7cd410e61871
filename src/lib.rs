//! mcp-bridge: an HTTP gateway that puts named MCP servers on the network, over the legacy
//! HTTP+SSE transport (`/sse/{name}`) and Streamable HTTP (`/mcp/{name}`), and keeps their
//! streams alive. See ARCHITECTURE.md for the map.

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod diagnose;
pub mod health;
pub mod jsonrpc;
pub mod logging;
pub mod metrics;
pub mod probes;
pub mod server;
pub mod session;
pub mod sse;
pub mod stateless;
pub mod timed_io;
pub mod transport;
pub mod upstream;
