//! Whether other instances are alive, asked of Redis once for everyone who waits: a request
//! forwarded to an owner that stopped answering waits on one shared watch of that owner's
//! lease (not a poll of its own, which made a dead instance's thousands of waiting requests
//! poll Redis thousands of times a second), and an epoch seen lapsed is remembered, so the
//! takeovers that follow do not each ask again.
//!
//! A lapsed epoch never comes back: its instance's renewal finds the lease gone and takes a
//! new epoch (see `lease::RENEW`), so remembering a lapse is safe.
//!
//! A lapse is not always a death. When Redis itself was out of reach (a Sentinel or Cluster
//! failover, a stalled server), every lease lapsed, the live owners' too, and each owner claims
//! its sessions back as soon as its renewal gets through (`lease::rejoin`). An instance that
//! was cut off itself lately therefore gives a lapsed owner a moment to do so before it takes
//! one of its sessions over ([`Cluster::owner_rejoined`]): a takeover from a live owner would
//! end the session there and drop the answers it still held for its client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use super::keys::key_lease;
use super::lease::LEASE;
use super::recent::Recent;
use super::{Cluster, ClusterError};
use crate::ids::SessionId;

/// A forwarded request unanswered this long starts watching the owner's lease…
const WATCH_AFTER: Duration = Duration::from_millis(200);
/// …this often (one poll per watched owner, however many wait).
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// How long an owner seen alive is taken to be alive without asking again, for forwarding:
/// a request forwarded to an owner that died meanwhile is not answered, and the forwarding
/// instance watches the lease afresh (see [`Cluster::watch`]).
const ALIVE_FOR: Duration = Duration::from_millis(250);
/// How long after its own renewal failed (or found its lease lapsed) an instance takes another
/// owner's lapse for the same outage: past the renewal that sees Redis again and the rejoin.
const CUT_OFF_RECENT: Duration = Duration::from_secs(3);
/// How long a takeover waits for a lapsed owner to claim its session back, after an outage:
/// the owner renews every `LEASE / 4` and reclaims right after its renewal finds the lapse.
const REJOIN_WAIT: Duration = LEASE;
/// How often the record is read meanwhile.
const REJOIN_POLL: Duration = Duration::from_millis(100);
/// How long a lapse is remembered.
const REMEMBER: Duration = Duration::from_secs(30);
/// Owners remembered at most (they are the instances, and their dead epochs).
const REMEMBERED: usize = 64;

type Owner = (Arc<str>, u64);

pub(super) struct Liveness {
    /// The owners watched now: `true` is sent when the lease lapses.
    watched: Mutex<HashMap<Owner, watch::Sender<bool>>>,
    /// Owners seen alive (`true`, for [`ALIVE_FOR`]) or lapsed (`false`, for [`REMEMBER`]).
    seen: Recent<Owner, bool>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness { watched: Mutex::default(), seen: Recent::new(REMEMBERED) }
    }
}

impl Liveness {
    fn known_lapsed(&self, instance: &str, epoch: u64) -> bool {
        self.seen.get(&(Arc::from(instance), epoch)) == Some(false)
    }

    fn remember_lapse(&self, instance: &str, epoch: u64) {
        self.seen.insert((Arc::from(instance), epoch), false, REMEMBER);
    }
}

impl Cluster {
    /// Whether `instance` is alive in `epoch` (its lease holds that epoch), as seen less than
    /// [`ALIVE_FOR`] ago or asked now.
    pub(crate) async fn alive(&self, instance: &str, epoch: u64) -> Result<bool, ClusterError> {
        let key: Owner = (Arc::from(instance), epoch);
        if let Some(alive) = self.liveness.seen.get(&key) {
            return Ok(alive);
        }
        let alive = self.alive_now(instance, epoch).await?;
        if alive {
            self.liveness.seen.insert(key, true, ALIVE_FOR);
        }
        Ok(alive)
    }

    /// Whether `instance` is alive in `epoch`, asked of Redis now (unless its lapse is known).
    async fn alive_now(&self, instance: &str, epoch: u64) -> Result<bool, ClusterError> {
        if self.liveness.known_lapsed(instance, epoch) {
            return Ok(false);
        }
        let mut conn = self.conn();
        let v: Option<u64> = redis::cmd("GET").arg(key_lease(instance)).query_async(&mut conn).await?;
        if v != Some(epoch) {
            self.liveness.remember_lapse(instance, epoch);
        }
        Ok(v == Some(epoch))
    }

    /// Whether Redis was lately out of reach from here (the inbox's connection dropped, or a
    /// renewal failed or found the lease lapsed): then other owners' leases lapsed too.
    pub(crate) fn cut_off_lately(&self) -> bool {
        self.gap_lately() || self.troubled_within(CUT_OFF_RECENT)
    }

    /// Before `sid` is taken over from `(owner, epoch)`, whose lease lapsed: if this instance
    /// was itself cut off from Redis lately, waits (at most [`REJOIN_WAIT`]) for the owner to
    /// rejoin and claim the session back. `true` once the record names another owner or epoch
    /// (find it again); `false` at once when nothing was cut off, or when the wait ran out.
    pub(crate) async fn owner_rejoined(&self, sid: SessionId, owner: &str, epoch: u64) -> Result<bool, ClusterError> {
        if !self.cut_off_lately() {
            return Ok(false);
        }
        let deadline = tokio::time::Instant::now() + REJOIN_WAIT;
        loop {
            let now = self.record(sid).await?.owner;
            if now.as_ref().is_none_or(|(o, e)| o != owner || *e != epoch) {
                tracing::debug!(session = %sid, from = %owner, epoch, "a lapsed owner claimed its session back");
                return Ok(true);
            }
            if tokio::time::Instant::now() + REJOIN_POLL > deadline {
                return Ok(false);
            }
            tokio::time::sleep(REJOIN_POLL).await;
        }
    }

    /// Returns once `instance`'s lease no longer holds `epoch` (it died, or was cut off and
    /// lost its lease). Watches only after [`WATCH_AFTER`]: a live owner answers long before.
    pub(super) async fn watch(&self, instance: &str, epoch: u64) {
        tokio::time::sleep(WATCH_AFTER).await;
        let key: Owner = (Arc::from(instance), epoch);
        let mut lapse = {
            let mut watched = self.liveness.watched.lock().unwrap_or_else(|e| e.into_inner());
            match watched.get(&key) {
                Some(tx) => tx.subscribe(),
                None => {
                    let (tx, rx) = watch::channel(false);
                    watched.insert(key.clone(), tx);
                    tokio::spawn(poll(self.me.clone(), key));
                    rx
                }
            }
        };
        // The poll ends only once nobody waits, or after sending the lapse.
        let _ = lapse.wait_for(|lapsed| *lapsed).await;
    }
}

/// Asks Redis about one owner every [`WATCH_EVERY`] while anyone waits for it.
async fn poll(cluster: Weak<Cluster>, key: Owner) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(c) = cluster.upgrade() else { return };
        let waiting = {
            let mut watched = c.liveness.watched.lock().unwrap_or_else(|e| e.into_inner());
            let waiting = watched.get(&key).is_some_and(|tx| tx.receiver_count() > 0);
            if !waiting {
                watched.remove(&key);
            }
            waiting
        };
        if !waiting {
            return;
        }
        if let Ok(false) = c.alive_now(&key.0, key.1).await {
            if let Some(tx) = c.liveness.watched.lock().unwrap_or_else(|e| e.into_inner()).remove(&key) {
                tx.send_replace(true);
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lapse_is_remembered_for_its_epoch_only_and_the_memory_is_bounded() {
        let l = Liveness::default();
        assert!(!l.known_lapsed("s1", 3));
        l.remember_lapse("s1", 3);
        assert!(l.known_lapsed("s1", 3));
        assert!(!l.known_lapsed("s1", 4), "a later epoch of the same instance is not dead");
        assert!(!l.known_lapsed("s2", 3));
        for e in 0..200 {
            l.remember_lapse("s9", e);
        }
        assert_eq!(l.seen.len(), REMEMBERED);
        assert!(l.known_lapsed("s9", 199) && !l.known_lapsed("s1", 3), "the oldest lapse is forgotten first");
    }
}
