//! What this instance saw a moment ago and may use again for a while without asking Redis: an
//! owner alive or its epoch lapsed (`liveness.rs`), a record read to forward (`records.rs`).
//! Each entry holds until its own expiry; the map is bounded in entries.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(super) struct Recent<K, V> {
    cap: usize,
    seen: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Recent<K, V> {
    pub(super) fn new(cap: usize) -> Self {
        Recent { cap, seen: Mutex::new(HashMap::new()) }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What was seen of `k`, unless it expired.
    pub(super) fn get(&self, k: &K) -> Option<V> {
        self.seen().get(k).filter(|(_, until)| Instant::now() < *until).map(|(v, _)| v.clone())
    }

    /// Keeps `v` for `k` for `hold`. When full, the expired entries go first, then the one
    /// that would expire soonest.
    pub(super) fn insert(&self, k: K, v: V, hold: Duration) {
        let now = Instant::now();
        let mut seen = self.seen();
        if seen.len() >= self.cap && !seen.contains_key(&k) {
            seen.retain(|_, (_, until)| now < *until);
            if seen.len() >= self.cap {
                if let Some(soonest) = seen.iter().min_by_key(|(_, (_, until))| *until).map(|(k, _)| k.clone()) {
                    seen.remove(&soonest);
                }
            }
        }
        seen.insert(k, (v, now + hold));
    }

    pub(super) fn remove(&self, k: &K) {
        self.seen().remove(k);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.seen().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_on_their_own_and_the_soonest_to_expire_makes_room() {
        let r = Recent::new(3);
        r.insert(1, "a", Duration::from_secs(60));
        r.insert(2, "b", Duration::ZERO);
        assert_eq!((r.get(&1), r.get(&2), r.get(&9)), (Some("a"), None, None), "an expired entry is not seen");
        r.insert(3, "c", Duration::from_secs(30));
        r.insert(4, "d", Duration::from_secs(90));
        assert_eq!(r.len(), 3, "the expired entry made room");
        r.insert(5, "e", Duration::from_secs(90));
        assert_eq!(r.len(), 3);
        assert_eq!(r.get(&3), None, "full of live entries: the one expiring soonest went");
        assert_eq!((r.get(&1), r.get(&4), r.get(&5)), (Some("a"), Some("d"), Some("e")));
        r.insert(1, "a2", Duration::from_secs(60));
        assert_eq!((r.get(&1), r.len()), (Some("a2"), 3), "a key seen again is replaced, nothing evicted");
        r.remove(&1);
        assert_eq!(r.get(&1), None);
    }
}
