//! Whether other instances are alive, asked of Redis once for everyone who waits: a request
//! forwarded to an owner that stopped answering waits on one shared watch of that owner's
//! lease (not a poll of its own, which made a dead instance's thousands of waiting requests
//! poll Redis thousands of times a second), and an epoch seen lapsed is remembered, so the
//! takeovers that follow do not each ask again.
//!
//! A lapsed epoch never comes back: its instance's renewal finds the lease gone and takes a
//! new epoch (see `lease::RENEW`), so remembering a lapse is safe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use super::keys::key_lease;
use super::recent::Recent;
use super::{Cluster, ClusterError};

/// A forwarded request unanswered this long starts watching the owner's lease…
const WATCH_AFTER: Duration = Duration::from_millis(200);
/// …this often (one poll per watched owner, however many wait).
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// How long an owner seen alive is taken to be alive without asking again, for forwarding:
/// a request forwarded to an owner that died meanwhile is not answered, and the forwarding
/// instance watches the lease afresh (see [`Cluster::watch`]).
const ALIVE_FOR: Duration = Duration::from_millis(250);
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
