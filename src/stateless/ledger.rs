//! The pool's bookkeeping: which backing sessions this instance opened, for which client
//! identity, which are checked out now, and how many each identity ever had out at once. Pure
//! data under the pool's lock: it looks at no session and no registry (the pool does that with
//! the lock released, see `pool.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use super::Key;
use crate::ids::SessionId;
use crate::protocol::modern::Init;

#[derive(Default)]
pub(super) struct Ledger {
    /// Every backing session opened here that may still live: its key and initialize result.
    known: HashMap<SessionId, (Key, Arc<Init>)>,
    /// The same sessions by client identity, so a checkout looks only at its own.
    by_key: HashMap<Key, Vec<SessionId>>,
    /// Those checked out now (serving a request, or a listen stream), by checkout number.
    busy: HashMap<SessionId, u64>,
    /// The most backing sessions each client identity had busy at once.
    peak: HashMap<Key, usize>,
    checkouts: u64,
}

impl Ledger {
    pub(super) fn insert(&mut self, id: SessionId, key: Key, init: Arc<Init>) {
        self.by_key.entry(key.clone()).or_default().push(id);
        self.known.insert(id, (key, init));
    }

    /// Forgets a session; an identity left with none is forgotten too.
    pub(super) fn remove(&mut self, id: SessionId) {
        self.busy.remove(&id);
        let Some((key, _)) = self.known.remove(&id) else { return };
        if let Some(ids) = self.by_key.get_mut(&key) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_key.remove(&key);
                self.peak.remove(&key);
            }
        }
    }

    /// Marks a session checked out, and remembers how many its identity has out now.
    pub(super) fn take(&mut self, id: SessionId, key: &Key) -> u64 {
        self.checkouts += 1;
        self.busy.insert(id, self.checkouts);
        let out = self.by_key.get(key).map_or(0, |ids| ids.iter().filter(|i| self.busy.contains_key(*i)).count());
        // Looked up before inserting: the key is cloned only for an identity's first checkout.
        match self.peak.get_mut(key) {
            Some(peak) => *peak = (*peak).max(out),
            None => {
                self.peak.insert(key.clone(), out);
            }
        }
        self.checkouts
    }

    /// Checks `id` out if it is still known here and not checked out (another checkout may have
    /// taken it since it was looked at): its initialize result and checkout number.
    pub(super) fn take_if_free(&mut self, id: SessionId, key: &Key) -> Option<(Arc<Init>, u64)> {
        if !self.is_free(id) {
            return None;
        }
        let init = self.known.get(&id)?.1.clone();
        Some((init, self.take(id, key)))
    }

    /// Frees a session if checkout `generation` still holds it.
    pub(super) fn free(&mut self, id: SessionId, generation: u64) {
        if self.busy.get(&id) == Some(&generation) {
            self.busy.remove(&id);
        }
    }

    /// Whether a session is known here and not checked out.
    pub(super) fn is_free(&self, id: SessionId) -> bool {
        self.known.contains_key(&id) && !self.busy.contains_key(&id)
    }

    /// The key and initialize result of a session opened here.
    pub(super) fn entry(&self, id: SessionId) -> Option<(Key, Arc<Init>)> {
        self.known.get(&id).cloned()
    }

    /// The sessions of `key` not checked out now, in the order they were opened.
    fn frees<'a>(&'a self, key: &Key) -> impl Iterator<Item = SessionId> + 'a {
        self.by_key.get(key).into_iter().flatten().filter(|id| !self.busy.contains_key(*id)).copied()
    }

    /// The sessions of `key` not checked out now.
    pub(super) fn free_of(&self, key: &Key) -> Vec<SessionId> {
        self.frees(key).collect()
    }

    /// The first session of `key` not checked out now and not among `passed`.
    pub(super) fn next_free(&self, key: &Key, passed: &[SessionId]) -> Option<SessionId> {
        self.frees(key).find(|id| !passed.contains(id))
    }

    /// How many sessions of `key` are not checked out now.
    pub(super) fn free_count(&self, key: &Key) -> usize {
        self.frees(key).count()
    }

    /// Every session not checked out now, of any identity.
    pub(super) fn free_any(&self) -> Vec<SessionId> {
        self.known.keys().filter(|id| !self.busy.contains_key(*id)).copied().collect()
    }

    /// Every session opened here.
    pub(super) fn all(&self) -> Vec<SessionId> {
        self.known.keys().copied().collect()
    }

    /// How many idle sessions `key` keeps: the most it ever had out at once, and at least `floor`.
    pub(super) fn keep(&self, key: &Key, floor: usize) -> usize {
        self.peak.get(key).copied().unwrap_or(0).max(floor)
    }
}
