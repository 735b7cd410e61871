//! What a session writes down for a successor: in cluster mode, another instance that takes the
//! session over rebuilds it from these entries. The session only emits them; the cluster
//! implements [`Journal`] and turns each entry into its Redis writes. In memory mode there is
//! no journal and nothing is written.

use bytes::Bytes;

use crate::ids::SessionId;

/// One fact about a session a successor needs.
#[derive(Debug)]
pub(crate) enum Entry {
    /// An event logged in `stream` under `seq`; the log has dropped every event up to
    /// `evicted_upto`.
    Event { stream: u32, seq: u64, data: Bytes, evicted_upto: u64 },
    /// A sequence number of `stream` taken without a message (a priming event).
    Reserve { stream: u32, seq: u64 },
    /// A client request `id` in flight, to be answered on `stream`.
    Pending { id: Box<str>, stream: u32 },
    /// Request `id` is answered, cancelled or given up: no successor answers it.
    Answered { id: Box<str> },
    /// Request `id` got its upstream's answer on `stream`: no successor answers it, and one
    /// sent again on that stream (by an instance that could not tell it arrived) is not
    /// delivered again.
    Done { id: Box<str>, stream: u32 },
    /// The client's own initialize request, replayed to re-create the upstream side.
    Initialize(Bytes),
    /// The protocol version the upstream answered the client's initialize with.
    ProtocolVersion(String),
    /// The number the next POST stream gets.
    NextStream(u32),
    /// A remote Streamable HTTP upstream's session, reused as it is.
    UpstreamSession { url: String, id: String },
    /// The session ended for good: forget it.
    Forget,
}

/// Where a session's entries go. Writing never waits: an implementation queues.
pub(crate) trait Journal: Send + Sync {
    fn write(&self, sid: SessionId, entry: Entry);

    /// Whether this instance surely still owns the sessions it holds (a cheap check, made for
    /// every upstream message). When it is not sure, the session awaits [`Journal::confirm`]
    /// before delivering anything: an instance that was paused past its lease must not hand a
    /// client what its upstream said meanwhile, since another instance may own the session now.
    fn trusted(&self) -> bool;

    /// Settles ownership (in cluster mode: renews the lease, or rejoins and ends the sessions
    /// another instance took over); `false` when it cannot be settled now (Redis unreachable).
    fn confirm(&self) -> futures_util::future::BoxFuture<'_, bool>;

    /// A mark for [`Journal::durable`], taken before the writes it is to cover.
    fn mark(&self) -> u64;

    /// Waits (bounded) until every entry written so far is stored; `false` when one written
    /// since `mark` may not be (a write failed or was dropped) or the wait ran out.
    fn durable(&self, mark: u64) -> futures_util::future::BoxFuture<'_, bool>;
}

/// How long a session holds an upstream message while ownership cannot be settled (Redis
/// unreachable) before it delivers it anyway: long enough to ride out a Sentinel or Redis
/// Cluster failover, short enough that a long outage of the only Redis (when no other
/// instance can take anything over either) does not stall the session's upstream.
pub(crate) const SETTLE_FOR: std::time::Duration = std::time::Duration::from_secs(3);

/// Waits (at most [`SETTLE_FOR`]) until `journal` confirms ownership.
pub(crate) async fn settle(journal: &dyn Journal) {
    let deadline = tokio::time::Instant::now() + SETTLE_FOR;
    while !journal.confirm().await && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
