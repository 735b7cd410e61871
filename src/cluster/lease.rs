//! This instance's lease: one key in Redis holding its live epoch, renewed every
//! [`LEASE`]` / 4`. A session's record names its owner and the owner's epoch; the owner is
//! alive while its lease still holds that epoch, so idle sessions cost Redis nothing.
//!
//! Fencing: ownership is trusted locally only until [`MARGIN`] before the lease could have
//! lapsed in Redis (counted from when the last successful renewal was sent). Past that, the
//! instance asks Redis before it serves anything (see [`Cluster::fence`]): an instance that was
//! paused or cut off finds its lease lapsed, takes a new epoch, and claims its sessions back one
//! by one with a compare-and-set on each record; a session another instance took over meanwhile
//! ends here (reason `moved`) without touching its upstream again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::keys::{epoch_member, key_epoch, key_lease, key_session, Op, KEY_EPOCHS};
use super::{Cluster, ClusterError};
use crate::ids::CloseReason;
use crate::session::journal::{Entry, Journal};
use crate::session::Session;

/// How long an instance lease lives without renewal: a dead owner's sessions are taken over
/// between 3/4 of this and all of it after its death.
pub(crate) const LEASE: Duration = Duration::from_millis(1500);
/// Renewals per lease period.
const RENEWALS: u32 = 4;
/// Local trust ends this long before the lease could lapse in Redis.
const MARGIN: Duration = Duration::from_millis(375);
/// After Redis could not be reached, requests are served without asking again for this long.
const RETRY_UNREACHABLE: Duration = Duration::from_millis(250);

/// `1`: renewed. `2`: Redis lost the lease and the epoch counter (a restart without its data):
/// taken again with the same epoch, since nobody can have taken a session over from it. `0`:
/// lapsed or superseded.
const RENEW: &str = r#"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v and tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0"#;

/// Claims a session back for a new epoch: `1` it was still ours, `2` its record was gone and is
/// written again, `0` another instance owns it now.
const RECLAIM: &str = r#"
local o = redis.call('HMGET', KEYS[1], 'owner', 'epoch')
if not o[1] then
  redis.call('HSET', KEYS[1], 'server', ARGV[4], 'transport', ARGV[5], 'principal', ARGV[6], 'owner', ARGV[1], 'epoch', ARGV[3])
  return 2
end
if o[1] == ARGV[1] and o[2] == ARGV[2] then redis.call('HSET', KEYS[1], 'epoch', ARGV[3]) return 1 end
return 0"#;

const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// What this instance knows of its own lease.
pub(super) struct Lease {
    epoch: AtomicU64,
    origin: Instant,
    /// Nanoseconds after `origin` until which ownership holds without asking Redis.
    valid_until: AtomicU64,
    /// Nanoseconds after `origin` when Redis last could not be reached (0: it could).
    unreachable_at: AtomicU64,
    /// Nanoseconds after `origin` when a renewal last failed or found the lease lapsed (0:
    /// never): not cleared by a good renewal (see [`Cluster::cut_off_lately`]).
    troubled_at: AtomicU64,
    /// Held across a renewal (and a rejoin), so that one runs at a time.
    renewing: tokio::sync::Mutex<()>,
    /// Written across a rejoin (the new epoch and the reclaim); read while a session is
    /// recorded with the epoch and put in the registry (`Cluster::epoch_held`), so that a
    /// rejoin's reclaim sees every session recorded with the old epoch.
    epoch_lock: tokio::sync::RwLock<()>,
}

impl Lease {
    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_nanos() as u64
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    pub(super) fn valid(&self) -> bool {
        self.nanos(Instant::now()) < self.valid_until.load(Ordering::Relaxed)
    }

    /// A renewal failed or found the lease lapsed; `unreachable`: Redis could not be reached.
    fn trouble(&self, unreachable: bool) {
        let now = self.nanos(Instant::now()).max(1);
        self.troubled_at.store(now, Ordering::Relaxed);
        if unreachable {
            self.unreachable_at.store(now, Ordering::Relaxed);
        }
    }

    fn renewed(&self, sent: Instant) {
        let until = self.nanos(sent + LEASE - MARGIN);
        self.valid_until.store(until, Ordering::Relaxed);
        self.unreachable_at.store(0, Ordering::Relaxed);
    }
}

/// Takes a new epoch and the lease for it. Returns the lease state with that epoch.
pub(super) async fn join(conn: &mut super::Conn, instance: &str) -> Result<Lease, ClusterError> {
    let lease = Lease {
        epoch: AtomicU64::new(0),
        origin: Instant::now(),
        valid_until: AtomicU64::new(0),
        unreachable_at: AtomicU64::new(0),
        troubled_at: AtomicU64::new(0),
        renewing: tokio::sync::Mutex::new(()),
        epoch_lock: tokio::sync::RwLock::new(()),
    };
    let sent = Instant::now();
    lease.epoch.store(new_epoch(conn, instance).await?, Ordering::Relaxed);
    lease.renewed(sent);
    Ok(lease)
}

/// Increments the epoch counter and takes the lease for the new epoch.
async fn new_epoch(conn: &mut super::Conn, instance: &str) -> Result<u64, ClusterError> {
    let epoch: u64 = redis::cmd("INCR").arg(key_epoch(instance)).query_async(conn).await?;
    redis::pipe()
        .cmd("SET")
        .arg(key_lease(instance))
        .arg(epoch)
        .arg("PX")
        .arg(LEASE.as_millis() as u64)
        .ignore()
        .query_async::<()>(conn)
        .await?;
    let _: () = redis::cmd("SADD").arg(KEY_EPOCHS).arg(epoch_member(instance, epoch)).query_async(conn).await?;
    Ok(epoch)
}

impl Cluster {
    /// Before this instance serves a session it holds: returns at once while the lease is
    /// surely valid; otherwise renews it first (and, if it had lapsed, rejoins, which ends the
    /// sessions taken over elsewhere). `Err` when Redis cannot be reached to confirm it: the
    /// caller refuses (503) rather than risk serving a session another instance may own.
    pub(crate) async fn fence(&self) -> Result<(), ClusterError> {
        if self.lease.valid() {
            return Ok(());
        }
        let _one = self.lease.renewing.lock().await;
        let unreachable = self.lease.unreachable_at.load(Ordering::Relaxed);
        let now = self.lease.nanos(Instant::now());
        let tried_just_now = unreachable != 0 && now < unreachable + RETRY_UNREACHABLE.as_nanos() as u64;
        if !self.lease.valid() && !tried_just_now {
            self.renew_locked().await;
        }
        if self.lease.valid() {
            Ok(())
        } else {
            Err(ClusterError::Unconfirmed)
        }
    }

    /// Whether this instance's own lease renewal failed, or found the lease lapsed, in the last
    /// `within`: then Redis was lately out of reach here, and most likely for the others too.
    pub(super) fn troubled_within(&self, within: Duration) -> bool {
        let at = self.lease.troubled_at.load(Ordering::Relaxed);
        at != 0 && self.lease.nanos(Instant::now()) < at + within.as_nanos() as u64
    }

    /// The epoch sessions created now are recorded with.
    pub(crate) fn epoch(&self) -> u64 {
        self.lease.epoch()
    }

    /// Fences, then holds the epoch: no rejoin starts until the guard is dropped. Held while a
    /// session is recorded with [`Cluster::epoch`] and put in the registry (never across a
    /// wait on the session's upstream, which may need a renewal).
    pub(crate) async fn epoch_held(&self) -> Result<tokio::sync::RwLockReadGuard<'_, ()>, ClusterError> {
        self.fence().await?;
        let held = self.lease.epoch_lock.read().await;
        // A rejoin may have run between the two: it renewed the lease too.
        if self.lease.valid() {
            Ok(held)
        } else {
            Err(ClusterError::Unconfirmed)
        }
    }

    /// Renews the lease (the caller holds `renewing`).
    async fn renew_locked(&self) {
        let epoch = self.lease.epoch();
        let sent = Instant::now();
        let script = redis::Script::new(RENEW);
        let mut conn = self.store.lease_conn();
        let mut call = script.key(key_lease(&self.instance));
        call.key(key_epoch(&self.instance)).arg(epoch).arg(LEASE.as_millis() as u64);
        let renewal = call.invoke_async::<i64>(&mut conn);
        match tokio::time::timeout(LEASE / 2, renewal).await {
            Ok(Ok(1)) => {
                self.lease.renewed(sent);
                self.set_healthy(true);
            }
            Ok(Ok(2)) => {
                self.lease.renewed(sent);
                self.set_healthy(true);
                self.reclaim(epoch, epoch).await;
            }
            Ok(Ok(_)) => self.rejoin(epoch).await,
            Ok(Err(_)) | Err(_) => {
                self.lease.trouble(true);
                self.set_healthy(false);
            }
        }
    }

    /// The lease lapsed (this instance was paused, or cut off from Redis): a new epoch, then
    /// every session held here is claimed back, or ended if another instance owns it now.
    async fn rejoin(&self, old: u64) {
        self.lease.trouble(false);
        let _rejoining = self.lease.epoch_lock.write().await;
        let sent = Instant::now();
        let mut conn = self.store.lease_conn();
        let Ok(Ok(new)) = tokio::time::timeout(LEASE / 2, new_epoch(&mut conn, &self.instance)).await else {
            self.set_healthy(false);
            return;
        };
        self.lease.epoch.store(new, Ordering::Relaxed);
        // Served again only once every session is claimed back (or ended): `fence` waits.
        let (kept, lost) = self.reclaim(old, new).await;
        self.lease.renewed(sent);
        self.set_healthy(true);
        crate::metrics::get().fenced.inc();
        tracing::warn!(
            instance = %self.instance,
            old_epoch = old,
            epoch = new,
            kept,
            lost,
            "instance fenced: its lease lapsed (epoch superseded); rejoined with a new epoch"
        );
    }

    /// Claims every session held here for epoch `new`; ends those another instance owns now.
    /// Returns how many were kept and how many ended.
    async fn reclaim(&self, old: u64, new: u64) -> (usize, usize) {
        let Some(registry) = self.registry() else { return (0, 0) };
        let script = redis::Script::new(RECLAIM);
        let (mut kept, mut lost) = (0, 0);
        for chunk in registry.all().chunks(256) {
            let claims = chunk.iter().map(|s| {
                let mut conn = self.conn();
                let mut call = script.key(key_session(s.id));
                call.arg(&*self.instance).arg(old).arg(new);
                call.arg(&*s.server.name).arg(s.transport.as_str()).arg(s.principal.as_deref().unwrap_or(""));
                async move { (s, tokio::time::timeout(LEASE, call.invoke_async::<i64>(&mut conn)).await) }
            });
            for (s, claimed) in futures_util::future::join_all(claims).await {
                match claimed {
                    Ok(Ok(0)) => {
                        lost += 1;
                        registry.remove(s.id);
                        s.end(
                            CloseReason::Moved,
                            "another instance took this session over while this instance's lease had lapsed",
                        );
                    }
                    Ok(Ok(n)) => {
                        kept += 1;
                        self.index(s);
                        if n == 2 {
                            if let Some(v) = s.protocol_version() {
                                self.write(s.id, Entry::ProtocolVersion(v));
                            }
                            tracing::info!(session = %s.id, "re-registered a session whose record Redis had lost");
                        }
                    }
                    // Unknown: keep it; the next renewal tries again if the lease lapses again.
                    _ => kept += 1,
                }
            }
        }
        (kept, lost)
    }

    /// Adds `s` to this instance's index for its current epoch (queued).
    pub(crate) fn index(&self, s: &Session) {
        self.enqueue(Op::Index { instance: self.instance.clone(), epoch: self.epoch(), sid: s.id });
    }

    /// Gives the lease up on shutdown, so that other instances take this one's sessions over
    /// at once instead of after the lease lapses.
    pub(crate) async fn release(&self) {
        let mut conn = self.store.lease_conn();
        let _: Result<i64, _> =
            redis::Script::new(RELEASE).key(key_lease(&self.instance)).arg(self.lease.epoch()).invoke_async(&mut conn).await;
    }
}

/// Renews the lease every `LEASE / RENEWALS`, and nothing else: no other call, however slow
/// while Redis fails over, may hold a renewal up.
pub(super) async fn renew_loop(cluster: std::sync::Weak<Cluster>) {
    let mut tick = tokio::time::interval(LEASE / RENEWALS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        let _one = c.lease.renewing.lock().await;
        c.renew_locked().await;
    }
}

/// Beside the renewals: checks the streams held for other instances every renewal period, and
/// now and then probes the inbox and sweeps the sessions of dead epochs (see `janitor`).
pub(super) async fn housekeeping(cluster: std::sync::Weak<Cluster>) {
    let mut tick = tokio::time::interval(LEASE / RENEWALS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0u64.. {
        tick.tick().await;
        let Some(c) = cluster.upgrade() else { return };
        c.check_held().await;
        if round % super::janitor::EVERY == 0 {
            c.probe_inbox().await;
            super::janitor::sweep(&c).await;
        }
    }
}
