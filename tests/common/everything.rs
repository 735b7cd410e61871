//! server-everything (the reference MCP server) listening on loopback as a remote upstream, in
//! `sse` or `streamableHttp` mode; stopped on Drop.

use std::ops::Deref;

use super::node_server::NodeServer;

/// server-everything listening on 127.0.0.1 in `sse` or `streamableHttp` mode.
pub(crate) struct Everything(NodeServer);

impl Everything {
    pub(crate) async fn start(mode: &str) -> Everything {
        Everything(NodeServer::start("everything_server.mjs", &[mode], &[]).await)
    }
}

impl Deref for Everything {
    type Target = NodeServer;

    fn deref(&self) -> &NodeServer {
        &self.0
    }
}
