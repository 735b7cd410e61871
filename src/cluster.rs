//! Cluster mode: sessions shared through Redis, so a request can land on any instance.
//!
//! Every session has one owner instance, held by a lease in Redis that the owner renews. Only
//! the owner touches the session's upstream. Another instance that receives a request for the
//! session forwards it to the owner over pub/sub ([`wire::Envelope`]); when the client's stream
//! is held elsewhere, the owner publishes the stream's events to that instance. The owner also
//! writes each session's record, pending requests and event logs to Redis, so that when it dies
//! another instance can take the session over (see `restore`) and a client that reconnects with
//! `Last-Event-ID` anywhere gets what it missed.

mod inbox;
mod keys;
mod records;
pub(crate) mod restore;
pub(crate) mod wire;
mod writer;

use keys::channel;
pub(crate) use keys::Op;
pub(crate) use keys::{key_lease, key_log, key_pending, key_session, Listed};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::{mpsc, oneshot};

use crate::ids::{CloseReason, SessionId};
use crate::session::journal::{Entry, Journal};
use crate::session::registry::Registry;
use crate::session::{CloseCell, Frame, Session};
use wire::{Envelope, Failure, Reply, Request};

/// How long a lease lives without renewal; the owner renews it four times per period
/// (every `LEASE / 4`), so three renewals in a row may fail before it lapses.
pub(crate) const LEASE: Duration = Duration::from_secs(4);
/// How long a forwarded request waits for the owner's answer.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(4);
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
    #[error("instance the owner of session {id} did not answer within {RPC_TIMEOUT:?}")]
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
}

/// A client stream this instance holds for a session owned elsewhere.
struct HeldStream {
    tx: mpsc::Sender<Frame>,
    reason: CloseCell,
    owner: String,
    sid: SessionId,
    stream: u32,
}

pub(crate) struct Cluster {
    pub instance: Arc<str>,
    /// Held while this instance takes a session over.
    pub takeover: tokio::sync::Mutex<()>,
    conn: ConnectionManager,
    queue: mpsc::Sender<Op>,
    rpc: Mutex<HashMap<u64, oneshot::Sender<Result<Reply, Failure>>>>,
    held: Mutex<HashMap<u64, HeldStream>>,
    next: AtomicU64,
    healthy: AtomicBool,
    /// The sessions owned here: forwarded requests are served from it, leases renewed for it.
    registry: Weak<Registry>,
    /// Events kept per stream log in Redis.
    log_size: usize,
    /// Lifetime of every key, refreshed on write.
    ttl: Duration,
}

const RENEW: &str = r#"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0"#;

impl Cluster {
    /// Connects, subscribes to this instance's channel, and starts the writer, inbox and
    /// lease tasks. The connection reconnects and resubscribes by itself.
    /// `ca`: the PEM roots of `redis_ca_file`, for a `rediss://` URL. `registry`: the sessions
    /// this instance owns.
    pub(crate) async fn connect(
        url: &str,
        ca: Option<&[u8]>,
        instance: Arc<str>,
        (log_size, ttl): (usize, Duration),
        registry: &Arc<Registry>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let url = if url.contains("protocol=") {
            url.to_string()
        } else {
            format!("{url}{}protocol=resp3", if url.contains('?') { '&' } else { '?' })
        };
        let client = crate::config::tls::redis_client(&url, ca)?;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(push_tx)
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(1));
        let mut conn = ConnectionManager::new_with_config(client, config).await?;
        conn.subscribe(channel(&instance)).await?;
        let (queue, queue_rx) = mpsc::channel(QUEUE);
        let cluster = Arc::new(Cluster {
            instance,
            takeover: tokio::sync::Mutex::new(()),
            conn,
            queue,
            rpc: Mutex::default(),
            held: Mutex::default(),
            next: AtomicU64::new(1),
            healthy: AtomicBool::new(true),
            registry: Arc::downgrade(registry),
            log_size,
            ttl,
        });
        tokio::spawn(writer::writer(Arc::downgrade(&cluster), cluster.conn.clone(), queue_rx));
        tokio::spawn(inbox::inbox(Arc::downgrade(&cluster), push_rx));
        tokio::spawn(renew_leases(Arc::downgrade(&cluster)));
        Ok(cluster)
    }

    /// The key every instance signs 2026-07-28 `requestState`s with: the first instance to
    /// start stores a random one in Redis, and the others read it, so a retry verifies on any
    /// instance.
    pub(crate) async fn shared_secret(&self) -> Result<[u8; 32], ClusterError> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).expect("the OS provides randomness");
        let mut conn = self.conn.clone();
        let _: Option<String> =
            redis::cmd("SET").arg("mcpb:mrtr-key").arg(hex::encode(fresh)).arg("NX").query_async(&mut conn).await?;
        let stored: String = redis::cmd("GET").arg("mcpb:mrtr-key").query_async(&mut conn).await?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(stored.trim(), &mut key).map_err(ClusterError::MalformedSecret)?;
        Ok(key)
    }

    fn registry(&self) -> Option<Arc<Registry>> {
        self.registry.upgrade()
    }

    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Queues a write without waiting; a full queue drops it and marks the cluster unhealthy.
    pub(crate) fn enqueue(&self, op: Op) -> bool {
        match self.queue.try_send(op) {
            Ok(()) => true,
            Err(_) => {
                self.healthy.store(false, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues an envelope for `to`; the writer encodes it (off any session's lock).
    fn publish(&self, to: &str, envelope: Envelope) -> bool {
        self.enqueue(Op::Publish { channel: channel(to), envelope })
    }

    /// Records a new session owned here: its lease and its record. Awaited, so that no other
    /// instance can see the session id before Redis knows who owns it.
    pub(crate) async fn register(&self, s: &Session) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        let ttl = self.ttl.as_millis() as u64;
        redis::pipe()
            .cmd("SET")
            .arg(key_lease(s.id))
            .arg(&*self.instance)
            .arg("PX")
            .arg(LEASE.as_millis() as u64)
            .ignore()
            .hset_multiple(
                key_session(s.id),
                &[
                    ("server", s.server.name.as_str()),
                    ("transport", s.transport.as_str()),
                    ("principal", s.principal.as_deref().unwrap_or("")),
                ],
            )
            .ignore()
            .pexpire(key_session(s.id), ttl as i64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Who holds the lease of `sid`, if anyone.
    pub(crate) async fn owner(&self, sid: SessionId) -> Result<Option<String>, ClusterError> {
        let mut conn = self.conn();
        Ok(conn.get(key_lease(sid)).await?)
    }

    /// Claims the lease of an ownerless session.
    pub(crate) async fn claim(&self, sid: SessionId) -> Result<bool, ClusterError> {
        let mut conn = self.conn();
        let ok: Option<String> = redis::cmd("SET")
            .arg(key_lease(sid))
            .arg(&*self.instance)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        Ok(ok.is_some())
    }

    /// Gives up the leases of sessions ending here on shutdown, so others take them over at
    /// once instead of after the lease lapses.
    pub(crate) async fn release(&self, sids: &[SessionId]) {
        let mut conn = self.conn();
        for sid in sids {
            let _: Result<i64, _> = redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            )
            .key(key_lease(*sid))
            .arg(&*self.instance)
            .invoke_async(&mut conn)
            .await;
        }
    }

    /// Waits (bounded) until every write queued so far has reached Redis.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.queue.send(Op::Flush(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
    }

    /// Sends a request to the owner of `sid` and waits for its answer.
    pub(crate) async fn call(&self, owner: &str, sid: SessionId, body: Request) -> Result<Reply, ClusterError> {
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.rpc.lock().unwrap_or_else(|e| e.into_inner()).insert(req, tx);
        let env = Envelope::Request { from: self.instance.to_string(), req, sid: sid.to_string(), body };
        if !self.publish(owner, env) {
            self.rpc.lock().unwrap_or_else(|e| e.into_inner()).remove(&req);
            return Err(ClusterError::Busy);
        }
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(RPC_TIMEOUT, rx).await;
        let m = crate::metrics::get();
        m.forwarded.inc();
        m.forward_latency.observe(started.elapsed().as_secs_f64());
        self.rpc.lock().unwrap_or_else(|e| e.into_inner()).remove(&req);
        match answer {
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(failure))) => Err(ClusterError::Remote { owner: owner.to_string(), failure }),
            _ => Err(ClusterError::Timeout(owner.to_string())),
        }
    }

    /// Registers a client stream this instance holds for a session owned by `owner`; frames
    /// the owner publishes under the returned token arrive on the receiver.
    pub(crate) fn hold(&self, owner: &str, sid: SessionId) -> (u64, mpsc::Receiver<Frame>, CloseCell) {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(crate::session::STREAM_QUEUE);
        let reason = CloseCell::default();
        let held = HeldStream { tx, reason: reason.clone(), owner: owner.to_string(), sid, stream: u32::MAX };
        self.held.lock().unwrap_or_else(|e| e.into_inner()).insert(token, held);
        (token, rx, reason)
    }

    /// Records which stream a held token reads, once the owner has said.
    pub(crate) fn held_stream(&self, token: u64, stream: u32) {
        if let Some(h) = self.held.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&token) {
            h.stream = stream;
        }
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

    /// The sessions owned here whose lease renewal failed are ended: someone else owns them.
    /// With no session to renew, a PING keeps `healthy` (and so `/readyz`) true to Redis.
    async fn renew(&self) {
        let Some(registry) = self.registry() else { return };
        let ids = registry.ids();
        let mut conn = self.conn();
        if ids.is_empty() {
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
            self.healthy.store(pong.is_ok(), Ordering::Relaxed);
            return;
        }
        let script = redis::Script::new(RENEW);
        let mut lost = Vec::new();
        let mut recreated = Vec::new();
        let mut ok = true;
        for id in &ids {
            let r: Result<i64, _> =
                script.key(key_lease(*id)).arg(&*self.instance).arg(LEASE.as_millis() as u64).invoke_async(&mut conn).await;
            match r {
                Ok(0) => lost.push(*id),
                Ok(2) => recreated.push(*id),
                Ok(_) => {}
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        self.healthy.store(ok, Ordering::Relaxed);
        for id in lost {
            if let Some(s) = registry.remove(id) {
                s.end(CloseReason::Moved, "another instance holds this session's lease");
            }
        }
        // The lease was gone without anyone taking over: Redis lost its data (a restart
        // without persistence). Write the record again, so that other instances can find
        // the session and forward to it instead of answering "session not found".
        for id in recreated {
            let Some(s) = registry.get(id) else { continue };
            if self.register(&s).await.is_ok() {
                if let Some(v) = s.protocol_version() {
                    self.write(id, Entry::ProtocolVersion(v));
                }
                tracing::info!(session = %id, "re-registered a session whose record Redis had lost");
            }
        }
    }

    /// Ends the client streams held here for an instance that no longer holds the session's
    /// lease (it died, or lost the session): nothing would reach them any more. Their clients
    /// reconnect with `Last-Event-ID`, and whoever owns the session then replays what they
    /// missed.
    async fn check_held(&self) {
        let held: Vec<(u64, SessionId, String)> =
            self.held.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(t, h)| (*t, h.sid, h.owner.clone())).collect();
        let mut owners: HashMap<SessionId, Option<String>> = HashMap::new();
        let mut conn = self.conn();
        for (_, sid, _) in &held {
            if owners.contains_key(sid) {
                continue;
            }
            // Without Redis nobody can tell; keep the streams.
            let Ok(owner) = conn.get::<_, Option<String>>(key_lease(*sid)).await else { return };
            owners.insert(*sid, owner);
        }
        let mut map = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for (token, sid, owner) in held {
            if owners.get(&sid).is_some_and(|now| now.as_deref() != Some(owner.as_str())) {
                if let Some(h) = map.remove(&token) {
                    let _ = h.reason.set(CloseReason::Error);
                    tracing::info!(session = %sid, owner = %owner, "ending a stream held for an instance that lost the session");
                }
            }
        }
    }
}

/// Sessions write their journals into the writer's queue.
impl Journal for Cluster {
    fn write(&self, sid: SessionId, entry: Entry) {
        self.enqueue(Op::Session { sid, entry });
    }
}

async fn renew_leases(cluster: Weak<Cluster>) {
    let mut tick = tokio::time::interval(LEASE / 4);
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        c.renew().await;
        c.check_held().await;
    }
}
