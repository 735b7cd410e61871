//! What the cluster keeps in Redis and how it names it: the key and channel names, and the
//! queued writes (`Op`) the writer task applies in order.

use tokio::sync::oneshot;

use super::wire::Envelope;
use crate::ids::SessionId;
use crate::session::journal::Entry;

pub(crate) fn key_lease(sid: SessionId) -> String {
    format!("mcpb:lease:{sid}")
}
pub(crate) fn key_session(sid: SessionId) -> String {
    format!("mcpb:sess:{sid}")
}
pub(crate) fn key_pending(sid: SessionId) -> String {
    format!("mcpb:pend:{sid}")
}
pub(crate) fn key_log(sid: SessionId, stream: u32) -> String {
    format!("mcpb:log:{sid}:{stream}")
}
pub(super) fn channel(instance: &str) -> String {
    format!("mcpb:inst:{instance}")
}

/// One queued Redis write or publish; the writer task applies them in order, pipelined.
pub(crate) enum Op {
    /// An envelope for another instance's channel, encoded by the writer.
    Publish { channel: String, envelope: Envelope },
    /// A session's journal entry, written as its records (see `writer`).
    Session { sid: SessionId, entry: Entry },
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// A session as the cluster's records list it.
pub(crate) struct Listed {
    pub id: String,
    pub server: String,
    pub transport: String,
    pub principal: Option<String>,
    pub owner: Option<String>,
}
