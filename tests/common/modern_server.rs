//! tests/clients/modern_server.mjs, a remote MCP server that serves only 2026-07-28
//! (`MODERN_ONLY=1`: it refuses 2025 traffic), on a free port; stopped on Drop.

use std::ops::Deref;

use super::node_server::NodeServer;

/// tests/clients/modern_server.mjs on a free port (`MODERN_ONLY=1`).
pub(crate) struct ModernServer(NodeServer);

impl ModernServer {
    pub(crate) async fn start() -> ModernServer {
        ModernServer(NodeServer::start("modern_server.mjs", &[], &[("MODERN_ONLY", "1")]).await)
    }
}

impl Deref for ModernServer {
    type Target = NodeServer;

    fn deref(&self) -> &NodeServer {
        &self.0
    }
}
