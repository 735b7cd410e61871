//! What the cluster keeps in Redis and how it names it: the key and channel names, and the
//! queued writes (`Op`) the writer task applies in order.
//!
//! Every key of one session carries the hash tag `{<sid>}`, and every key of one instance the
//! tag `{i:<instance>}`, so that in a Redis Cluster each group lives in one slot: a session's
//! record, pending requests and event logs can be read and changed together (one pipeline,
//! one script), and so can an instance's lease and epoch counter.

use tokio::sync::oneshot;

use super::wire::Envelope;
use crate::ids::SessionId;
use crate::session::journal::Entry;

/// A session's record (a hash): server, transport, principal, protocol version, owner and
/// epoch, stream counters.
pub(crate) fn key_session(sid: SessionId) -> String {
    format!("mcpb:{{{sid}}}:rec")
}
pub(crate) fn key_pending(sid: SessionId) -> String {
    format!("mcpb:{{{sid}}}:pend")
}
/// The latest answered requests of a session, as `"<stream> <id>"` (a list, newest first).
pub(crate) fn key_done(sid: SessionId) -> String {
    format!("mcpb:{{{sid}}}:done")
}
pub(crate) fn key_log(sid: SessionId, stream: u32) -> String {
    format!("{}{stream}", key_log_prefix(sid))
}
/// What a session's event log keys start with: the stream number follows.
pub(super) fn key_log_prefix(sid: SessionId) -> String {
    format!("mcpb:{{{sid}}}:log:")
}
/// An instance's lease: its live epoch, expiring unless renewed.
pub(super) fn key_lease(instance: &str) -> String {
    format!("mcpb:{{i:{instance}}}:lease")
}
/// An instance's epoch counter: one more on every start and every rejoin after a lapse.
pub(super) fn key_epoch(instance: &str) -> String {
    format!("mcpb:{{i:{instance}}}:epoch")
}
/// The ids of the sessions an instance took on in one epoch.
pub(super) fn key_index(instance: &str, epoch: u64) -> String {
    format!("mcpb:{{i:{instance}}}:s:{epoch}")
}
/// An instance's inbox channel.
pub(super) fn channel(instance: &str) -> String {
    format!("mcpb:{{i:{instance}}}:ch")
}
/// Every (instance, epoch) that may still own sessions, as [`epoch_member`]s.
pub(super) const KEY_EPOCHS: &str = "mcpb:epochs";

/// An (instance, epoch) as a member of [`KEY_EPOCHS`]: `instance epoch`.
pub(super) fn epoch_member(instance: &str, epoch: u64) -> String {
    format!("{instance} {epoch}")
}

/// The (instance, epoch) of a [`KEY_EPOCHS`] member.
pub(super) fn parse_epoch_member(member: &str) -> Option<(&str, u64)> {
    let (instance, epoch) = member.split_once(' ')?;
    Some((instance, epoch.parse().ok()?))
}

/// One queued Redis write or publish; the writer task applies them in order, pipelined.
pub(crate) enum Op {
    /// An envelope for another instance's channel, encoded by the writer.
    Publish { to: std::sync::Arc<str>, envelope: Envelope },
    /// A session's journal entry, written as its records (see `writer`).
    Session { sid: SessionId, entry: Entry },
    /// A session joins an instance epoch's index.
    Index { instance: std::sync::Arc<str>, epoch: u64, sid: SessionId },
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

impl Op {
    /// The hash tag of the keys the op writes: in a Redis Cluster, ops with the same tag go
    /// in one pipeline.
    pub(super) fn tag(&self) -> String {
        match self {
            Op::Publish { to, .. } | Op::Index { instance: to, .. } => format!("i:{to}"),
            Op::Session { sid, .. } => sid.to_string(),
            Op::Flush(_) => String::new(),
        }
    }
}

/// A session as the cluster's records list it.
pub(crate) struct Listed {
    pub id: String,
    pub server: String,
    pub transport: String,
    pub principal: Option<String>,
    pub owner: Option<String>,
}
