//! One lock per session id being taken over, made on first use and dropped with its last
//! holder: two requests for one session never build two copies of it, and the takeovers of
//! different sessions (all of a dead instance's, say) never wait for each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::ids::SessionId;

/// A session's lock and the number of its holder and waiters.
type Counted = (Arc<AsyncMutex<()>>, usize);

#[derive(Default)]
pub(crate) struct SessionLocks {
    held: Mutex<HashMap<SessionId, Counted>>,
}

/// Held while a session is taken over; the map forgets the lock when its last holder or
/// waiter lets go (a waiter whose request gave up included).
pub(crate) struct SessionLock<'a> {
    locks: &'a SessionLocks,
    sid: SessionId,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl SessionLocks {
    pub(crate) async fn lock(&self, sid: SessionId) -> SessionLock<'_> {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            let (lock, users) = held.entry(sid).or_default();
            *users += 1;
            lock.clone()
        };
        let mut counted = SessionLock { locks: self, sid, _guard: None };
        counted._guard = Some(lock.lock_owned().await);
        counted
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

impl Drop for SessionLock<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, users)) = held.get_mut(&self.sid) {
            *users -= 1;
            if *users == 0 {
                held.remove(&self.sid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_session_waits_others_do_not_and_the_map_empties() {
        let locks = Arc::new(SessionLocks::default());
        let (a, b) = (SessionId::random(), SessionId::random());
        let first = locks.lock(a).await;
        // Another session's lock is free at once.
        let other = tokio::time::timeout(Duration::from_millis(100), locks.lock(b)).await;
        assert!(other.is_ok(), "a different session waited");
        drop(other);
        // The same session's waits until the first lets go.
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _l = locks.lock(a).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a second takeover of one session did not wait");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("the waiter got the lock").unwrap();
        assert_eq!(locks.len(), 0, "locks of finished takeovers are kept");
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_nothing_behind() {
        let locks = SessionLocks::default();
        let a = SessionId::random();
        let first = locks.lock(a).await;
        assert!(tokio::time::timeout(Duration::from_millis(20), locks.lock(a)).await.is_err());
        assert_eq!(locks.len(), 1);
        drop(first);
        assert_eq!(locks.len(), 0);
    }
}
