//! Cluster mode: sessions shared through Redis, so a request can land on any instance.
//!
//! Every session has one owner instance, named with the owner's epoch in the session's record;
//! the owner is alive while its instance lease (see `lease`) holds that epoch. Only the owner
//! touches the session's upstream. Another instance that receives a request for the
//! session forwards it to the owner over pub/sub ([`wire::Envelope`]); when the client's stream
//! is held elsewhere, the owner publishes the stream's events to that instance. The owner also
//! writes each session's record, pending requests and event logs to Redis, so that when it dies
//! another instance can take the session over (see `restore`) and a client that reconnects with
//! `Last-Event-ID` anywhere gets what it missed.

mod inbox;
mod janitor;
mod keys;
mod lease;
mod liveness;
mod locks;
mod ratelimit;
mod recent;
mod records;
pub(crate) mod restore;
mod resync;
mod store;
pub(crate) mod wire;
mod writer;

use keys::channel;
pub(crate) use keys::Op;
pub(crate) use keys::{key_pending, key_session, Listed};
pub(crate) use lease::LEASE;
pub(crate) use records::Record;
pub(crate) use store::Conn;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::config::RedisTarget;
use crate::ids::{CloseReason, SessionId};
use crate::session::journal::{Entry, Journal};
use crate::session::registry::Registry;
use crate::session::{CloseCell, Frame, FrameRx, FrameTx, Session};
use wire::{Envelope, Failure, Reply, Request};

/// How long a forwarded request waits for a live owner's answer (one whose lease lapses is
/// given up on at once, see `lease::watch`): long enough to ride out a Redis failover that
/// loses replies on the way.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// A forwarded request is not served later than this before its sender gives up, so that
/// the reply (sent again while the sender asks again) has time to arrive: a request its
/// sender gave up on was not served.
const REPLY_GUARD: Duration = Duration::from_secs(3);
/// A forwarded request unanswered this long is sent again, as the same request, until
/// [`RPC_TIMEOUT`].
const RESEND_EVERY: Duration = Duration::from_millis(1000);
/// Writes and publishes queued before new ones are refused (and the stream counts as slow).
const QUEUE: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("instance {0} did not answer within {RPC_TIMEOUT:?}")]
    Timeout(String),
    #[error("instance {owner}: {}", failure.message)]
    Remote { owner: String, failure: Failure },
    /// The owner of a session stopped answering and no instance took the session over in
    /// time; `last` is the last error met while looking for it.
    #[error("the owner of session {id} did not answer within {RPC_TIMEOUT:?}, and no other instance took the session over")]
    OwnerGone {
        id: SessionId,
        #[source]
        last: Option<Box<ClusterError>>,
    },
    #[error("the cluster queue is full")]
    Busy,
    /// The shared `requestState` key in Redis is not 64 hex digits.
    #[error("the shared requestState key in redis (mcpb:mrtr-key) is malformed: {0}")]
    MalformedSecret(#[source] hex::FromHexError),
    #[error("this instance is shutting down; its sessions continue on the other instances")]
    ShuttingDown,
    /// This instance's lease is past its local validity and Redis cannot be reached to renew
    /// it: another instance may own its sessions by now.
    #[error("this instance cannot reach Redis to confirm it still owns its sessions")]
    Unconfirmed,
    /// This instance's inbox subscription is being taken again: a forwarded request's reply
    /// could not reach it.
    #[error("this instance is subscribing to its inbox again (its Redis Cluster slot moved); try again")]
    InboxDown,
}

/// A client stream this instance holds for a session owned elsewhere.
struct HeldStream {
    tx: FrameTx,
    reason: CloseCell,
    owner: String,
    /// The owner's epoch when the stream was opened: the stream ends when it lapses.
    epoch: u64,
    sid: SessionId,
    stream: u32,
    /// The number of the last frame passed on: a frame published twice (the owner's writer
    /// sends a failed pipeline again) is passed on once.
    last_seq: Option<u64>,
    /// Whether the owner's reply (its stream number, its replay) has come (see `resync`).
    established: bool,
    /// `Cluster::gaps` and `Cluster::healed` when it was opened.
    gaps: u64,
    healed: u64,
    /// Frames that came while it resyncs, passed on after the owner's replay, and the close
    /// that came then, applied after them.
    waiting: Option<Vec<(u64, String)>>,
    closing: Option<CloseReason>,
    /// Since when its owner's lease is known to have lapsed (see `resync::rehome`).
    lapsed: Option<std::time::Instant>,
}

pub(crate) struct Cluster {
    pub instance: Arc<str>,
    /// One is held while this instance takes a session over, so that two requests for one
    /// session never build two copies of it, while different sessions (all of a dead
    /// instance's, say) are taken over side by side.
    takeover: locks::SessionLocks,
    store: store::Store,
    lease: lease::Lease,
    queue: mpsc::Sender<Op>,
    /// Requests, replies and probes: published by their own task (see `Envelope::is_rpc`).
    rpc_queue: mpsc::Sender<Op>,
    /// The last probe sent to this instance's own inbox, and the last one that came back.
    probe_sent: AtomicU64,
    probe_seen: AtomicU64,
    /// Whether the inbox subscription is known to work (see `Cluster::inbox_lost`).
    inbox_ok: AtomicBool,
    /// This cluster itself, for the tasks it starts.
    me: Weak<Cluster>,
    liveness: liveness::Liveness,
    forwarding: records::Forwarding,
    /// Forwarded requests served here lately, by sender and request number.
    served: Mutex<inbox::Served>,
    rpc: Mutex<HashMap<u64, oneshot::Sender<Result<Reply, Failure>>>>,
    held: Mutex<HashMap<u64, HeldStream>>,
    next: AtomicU64,
    healthy: AtomicBool,
    /// Times the connection carrying the inbox dropped, and the last of them known to be
    /// over (see `resync`).
    gaps: AtomicU64,
    healed: AtomicU64,
    /// When the last gap began (Unix ms; 0: never).
    gap_at: AtomicU64,
    /// Journal writes that failed or were dropped so far (see `Journal::durable`).
    lost_writes: AtomicU64,
    /// The sessions owned here: forwarded requests are served from it, leases renewed for it.
    registry: Weak<Registry>,
    /// Events kept per stream log in Redis.
    log_size: usize,
    /// Lifetime of every key, refreshed on write.
    ttl: Duration,
}

impl Cluster {
    /// Connects, subscribes to this instance's channel, takes a new epoch and its lease, and
    /// starts the writer, inbox and lease tasks. The connection reconnects and resubscribes by
    /// itself. `ca`: the PEM roots of `redis_ca_file`, for `rediss://` URLs. `registry`: the
    /// sessions this instance owns.
    pub(crate) async fn connect(
        target: &RedisTarget,
        ca: Option<&[u8]>,
        instance: Arc<str>,
        (log_size, ttl): (usize, Duration),
        registry: &Arc<Registry>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let store = store::Store::connect(target, ca, channel(&instance), push_tx).await?;
        let lease = lease::join(&mut store.lease_conn(), &instance).await?;
        let first_number = (lease.epoch() << 40) + 1;
        tracing::info!(instance = %instance, epoch = lease.epoch(), redis = target.mode(), "joined the cluster");
        let (queue, queue_rx) = mpsc::channel(QUEUE);
        let (rpc_queue, rpc_rx) = mpsc::channel(QUEUE);
        let cluster = Arc::new_cyclic(|me: &Weak<Cluster>| Cluster {
            instance,
            takeover: locks::SessionLocks::default(),
            store,
            lease,
            queue,
            rpc_queue,
            probe_sent: AtomicU64::new(0),
            probe_seen: AtomicU64::new(0),
            inbox_ok: AtomicBool::new(true),
            me: me.clone(),
            liveness: liveness::Liveness::default(),
            forwarding: records::Forwarding::default(),
            served: Mutex::default(),
            rpc: Mutex::default(),
            held: Mutex::default(),
            // Request numbers and tokens never repeat across this instance's restarts (the
            // epoch grows on each): an owner keeps the replies it sent by (sender, number).
            next: AtomicU64::new(first_number),
            healthy: AtomicBool::new(true),
            gaps: AtomicU64::new(0),
            healed: AtomicU64::new(0),
            gap_at: AtomicU64::new(0),
            lost_writes: AtomicU64::new(0),
            registry: Arc::downgrade(registry),
            log_size,
            ttl,
        });
        tokio::spawn(writer::writer(Arc::downgrade(&cluster), queue_rx));
        tokio::spawn(writer::publisher(Arc::downgrade(&cluster), rpc_rx));
        tokio::spawn(inbox::inbox(Arc::downgrade(&cluster), push_rx));
        tokio::spawn(lease::renew_loop(Arc::downgrade(&cluster)));
        tokio::spawn(lease::housekeeping(Arc::downgrade(&cluster)));
        Ok(cluster)
    }

    /// The key every instance signs 2026-07-28 `requestState`s with: the first instance to
    /// start stores a random one in Redis, and the others read it, so a retry verifies on any
    /// instance.
    pub(crate) async fn shared_secret(&self) -> Result<[u8; 32], ClusterError> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).expect("the OS provides randomness");
        let mut conn = self.conn();
        let _: Option<String> =
            redis::cmd("SET").arg("mcpb:mrtr-key").arg(hex::encode(fresh)).arg("NX").query_async(&mut conn).await?;
        let stored: String = redis::cmd("GET").arg("mcpb:mrtr-key").query_async(&mut conn).await?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(stored.trim(), &mut key).map_err(ClusterError::MalformedSecret)?;
        Ok(key)
    }

    /// The takeover lock of `sid`.
    pub(crate) async fn takeover(&self, sid: SessionId) -> locks::SessionLock<'_> {
        self.takeover.lock(sid).await
    }

    fn registry(&self) -> Option<Arc<Registry>> {
        self.registry.upgrade()
    }

    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn set_healthy(&self, ok: bool) {
        self.healthy.store(ok, Ordering::Relaxed);
    }

    pub(crate) fn conn(&self) -> Conn {
        self.store.conn()
    }

    /// Queues a write without waiting; a full queue drops it and marks the cluster unhealthy.
    pub(crate) fn enqueue(&self, op: Op) -> bool {
        match self.queue.try_send(op) {
            Ok(()) => true,
            Err(_) => {
                self.healthy.store(false, Ordering::Relaxed);
                self.lost_writes.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues an envelope for `to`; the writer encodes it (off any session's lock).
    fn publish(&self, to: &str, envelope: Envelope) -> bool {
        let queue = if envelope.is_rpc() { &self.rpc_queue } else { &self.queue };
        match queue.try_send(Op::Publish { to: to.into(), envelope }) {
            Ok(()) => true,
            Err(_) => {
                self.set_healthy(false);
                false
            }
        }
    }

    /// Checks that the last probe came back (else subscribes to the inbox again), and sends
    /// the next one.
    pub(super) async fn probe_inbox(&self) {
        let sent = self.probe_sent.load(Ordering::Relaxed);
        if sent != 0 && self.probe_seen.load(Ordering::Relaxed) != sent && self.inbox_ok.load(Ordering::Relaxed) {
            tracing::warn!(instance = %self.instance, channel = self.store.channel(), "the inbox probe did not come back");
            self.inbox_lost("the inbox probe did not come back");
            return;
        }
        self.send_probe();
    }

    fn send_probe(&self) -> u64 {
        let nonce = self.probe_sent.fetch_add(1, Ordering::Relaxed) + 1;
        self.publish(&self.instance.clone(), Envelope::Probe { nonce });
        nonce
    }

    /// The inbox subscription is gone (Redis dropped it when its slot moved, or a probe did
    /// not come back). What was published to it meanwhile is lost, so: the streams held here
    /// ask their owners for it once a probe comes back (`resync`), no request is forwarded
    /// until then (its reply could not arrive), and the subscription is taken again every
    /// 200 ms (for at most 30 s; the periodic probe goes on).
    pub(super) fn inbox_lost(&self, why: &str) {
        if !self.inbox_ok.swap(false, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(why, "the inbox is lost; subscribing again");
        self.gap_at.store(crate::ids::unix_ms(), Ordering::Relaxed);
        self.gaps.fetch_add(1, Ordering::Relaxed);
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            for _ in 0..150 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if me.inbox_ok.load(Ordering::Relaxed) {
                    return;
                }
                if let Err(e) = me.store.resubscribe().await {
                    tracing::debug!(error = %e, "subscribing to the inbox again failed");
                }
                me.send_probe();
            }
        });
    }

    /// A probe came back: the inbox works.
    pub(super) fn probe_back(&self, nonce: u64) {
        self.probe_seen.store(nonce, Ordering::Relaxed);
        if !self.inbox_ok.swap(true, Ordering::Relaxed) {
            tracing::info!(instance = %self.instance, "the inbox is subscribed again");
            self.gap_over(self.gaps.load(Ordering::Relaxed));
        }
    }

    /// Records a new session owned here, naming this instance and its epoch as the owner.
    /// Awaited, so that no other instance can see the session id before Redis knows who owns
    /// it. The record has no expiry while its owner lives (see `janitor`).
    pub(crate) async fn register(&self, s: &Session) -> Result<(), ClusterError> {
        let _epoch = self.epoch_held().await?;
        let mut conn = self.conn();
        let epoch = self.epoch();
        redis::cmd("HSET")
            .arg(key_session(s.id))
            .arg("server")
            .arg(&*s.server.name)
            .arg("transport")
            .arg(s.transport.as_str())
            .arg("principal")
            .arg(s.principal.as_deref().unwrap_or(""))
            .arg("owner")
            .arg(&*self.instance)
            .arg("epoch")
            .arg(epoch)
            .query_async::<()>(&mut conn)
            .await?;
        self.index(s);
        Ok(())
    }

    /// Waits (bounded: a write is tried again for a while, see `writer`) until every write
    /// queued so far has been sent to Redis; `false` if that did not happen in time.
    pub(crate) async fn flush(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.queue.send(Op::Flush(tx)).await.is_err() {
            return false;
        }
        tokio::time::timeout(writer::RETRY_FOR * 2, rx).await.is_ok_and(|r| r.is_ok())
    }

    /// Sends a request to `owner` (alive in `epoch`) for `sid` and waits for its answer; gives
    /// up early when the owner's lease lapses meanwhile (it died: see `lease::watch`).
    pub(crate) async fn call(&self, (owner, epoch): (&str, u64), sid: SessionId, body: Request) -> Result<Reply, ClusterError> {
        if !self.inbox_ok.load(Ordering::Relaxed) {
            return Err(ClusterError::InboxDown);
        }
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.rpc.lock().unwrap_or_else(|e| e.into_inner()).insert(req, tx);
        let until = crate::ids::unix_ms() + (RPC_TIMEOUT - REPLY_GUARD).as_millis() as u64;
        let env = Envelope::Request { from: self.instance.to_string(), req, sid: sid.to_string(), body, until };
        if !self.publish(owner, env.clone()) {
            self.rpc.lock().unwrap_or_else(|e| e.into_inner()).remove(&req);
            return Err(ClusterError::Busy);
        }
        let started = std::time::Instant::now();
        // A reply can be lost (the publish failed while Redis failed over): the same request
        // (same `req`) goes again, and the owner, which remembers what it served (see
        // `inbox::Served`), answers it again instead of serving it twice.
        let answer = tokio::select! {
            answer = async {
                let mut rx = rx;
                while started.elapsed() < RPC_TIMEOUT {
                    match tokio::time::timeout(RESEND_EVERY, &mut rx).await {
                        Ok(answer) => return answer.ok(),
                        Err(_) => {
                            self.publish(owner, env.clone());
                        }
                    }
                }
                None
            } => answer,
            () = self.watch(owner, epoch) => None,
        };
        let m = crate::metrics::get();
        m.forwarded.inc();
        m.forward_latency.observe(started.elapsed().as_secs_f64());
        self.rpc.lock().unwrap_or_else(|e| e.into_inner()).remove(&req);
        match answer {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(failure)) => Err(ClusterError::Remote { owner: owner.to_string(), failure }),
            _ => Err(ClusterError::Timeout(owner.to_string())),
        }
    }

    /// Registers a client stream this instance holds for a session owned by `owner`; frames
    /// the owner publishes under the returned token arrive on the receiver.
    pub(crate) fn hold(&self, owner: &str, epoch: u64, sid: SessionId) -> (u64, FrameRx, CloseCell) {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crate::session::frames();
        let reason = CloseCell::default();
        let held = HeldStream {
            tx,
            reason: reason.clone(),
            owner: owner.to_string(),
            epoch,
            sid,
            stream: u32::MAX,
            last_seq: None,
            established: false,
            gaps: self.gaps.load(Ordering::Relaxed),
            healed: self.healed.load(Ordering::Relaxed),
            waiting: None,
            closing: None,
            lapsed: None,
        };
        self.held.lock().unwrap_or_else(|e| e.into_inner()).insert(token, held);
        (token, rx, reason)
    }

    /// The client of a held stream went away: forget it and tell the owner.
    pub(crate) fn release_held(&self, token: u64) {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&token);
        if let Some(h) = held {
            self.publish(&h.owner, Envelope::Detached { sid: h.sid.to_string(), stream: h.stream, token });
        }
    }

    /// Sends a frame to a stream held on `instance` (the owner side of `session::Sink::Remote`).
    pub(crate) fn send_frame(&self, instance: &str, token: u64, frame: &Frame) -> bool {
        let (seq, data) = match frame {
            Frame::Message(seq, data) => (*seq, String::from_utf8_lossy(data).into_owned()),
            Frame::Priming(seq) => (*seq, String::new()),
        };
        self.publish(instance, Envelope::Frame { token, seq, data })
    }

    pub(crate) fn send_close(&self, instance: &str, token: u64, reason: CloseReason) {
        self.publish(instance, Envelope::Close { token, reason: reason.as_str().to_string() });
    }

    /// Moves the client streams held here for an instance that no longer holds the session's
    /// lease to the session's live owner, or ends them (see `resync::rehome`).
    async fn check_held(&self) {
        let owners: std::collections::HashSet<(String, u64)> =
            self.held.lock().unwrap_or_else(|e| e.into_inner()).values().map(|h| (h.owner.clone(), h.epoch)).collect();
        for (owner, epoch) in owners {
            // Without Redis nobody can tell; keep the streams.
            let Ok(alive) = self.alive(&owner, epoch).await else { return };
            if !alive {
                self.rehome(&owner, epoch).await;
            }
        }
    }
}

/// Sessions write their journals into the writer's queue.
impl Journal for Cluster {
    fn write(&self, sid: SessionId, entry: Entry) {
        self.enqueue(Op::Session { sid, entry });
    }

    fn trusted(&self) -> bool {
        self.lease.valid()
    }

    fn confirm(&self) -> futures_util::future::BoxFuture<'_, bool> {
        Box::pin(async { self.fence().await.is_ok() })
    }

    fn mark(&self) -> u64 {
        self.lost_writes.load(Ordering::Relaxed)
    }

    fn durable(&self, mark: u64) -> futures_util::future::BoxFuture<'_, bool> {
        Box::pin(async move { self.flush().await && self.lost_writes.load(Ordering::Relaxed) == mark })
    }
}
