//! Checking backing sessions out and in: an idle one of the client's identity, or a new one
//! opened for it; returned after the request, parked between MRTR rounds, or ended.
//!
//! **Lock order.** The ledger's mutex (`Pool::ledger`) is a leaf: it is held only to read or
//! change the ledger, never while the registry's lock or a session's state lock is taken, and
//! never across an `.await`. A checkout takes the ids it needs under the ledger lock, drops
//! it, looks the sessions up in the registry and asks each whether it is quiet, then locks the
//! ledger again to take one, checking that no other checkout took it meanwhile
//! (`Ledger::take_if_free`, `Ledger::is_free`). Sessions are removed from the registry and
//! ended with the ledger unlocked. `Pool::tool_headers` is another leaf, never held with the
//! ledger.

use std::sync::{Arc, Mutex, MutexGuard};

use super::ledger::Ledger;
use super::open::{initialize, Starting};
use super::{Armed, Backing, CheckoutError, Key, Pool, IDLE_PER_KEY};
use crate::config::ServerConfig;
use crate::ids::SessionId;
use crate::locator::{self, Locator, OpError};
use crate::protocol::modern::{Init, RequestMeta};
use crate::session::registry::Registry;
use crate::session::{CloseReason, Session, Transport};

/// The ledger, locked (a poisoned lock is taken over: the ledger is consistent after each call).
pub(super) fn lock(ledger: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ends a backing session: out of the ledger, out of the registry, then ended, one at a time.
pub(super) fn end(ledger: &Mutex<Ledger>, registry: &Registry, s: &Arc<Session>, reason: CloseReason, detail: &str) {
    lock(ledger).remove(s.id);
    registry.remove(s.id);
    s.end(reason, detail);
}

/// Looks sessions up with the ledger unlocked: those that live and are quiet (in the order
/// given), and the ids of those that ended (idle expiry, upstream exit).
fn look(registry: &Registry, ids: &[SessionId]) -> (Vec<Arc<Session>>, Vec<SessionId>) {
    let (mut quiet, mut dead) = (Vec::new(), Vec::new());
    for id in ids {
        match seen(registry, *id) {
            Seen::Quiet(s) => quiet.push(s),
            Seen::Busy => {}
            Seen::Gone => dead.push(*id),
        }
    }
    (quiet, dead)
}

/// What a backing session is, looked at with the ledger unlocked.
enum Seen {
    /// It lives and serves nothing: it may be checked out.
    Quiet(Arc<Session>),
    /// It lives and still has a request in flight (a cancelled one the upstream has not answered).
    Busy,
    /// It ended (idle expiry, upstream exit) or was removed.
    Gone,
}

fn seen(registry: &Registry, id: SessionId) -> Seen {
    match registry.get(id) {
        // `quiet` is false for an ended session, so the common case takes one state lock.
        Some(s) if s.quiet() => Seen::Quiet(s),
        Some(s) if s.ended().is_none() => Seen::Busy,
        _ => Seen::Gone,
    }
}

impl Pool {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    fn backing(&self, locator: &Locator, session: Arc<Session>, init: Arc<Init>, key: Key, generation: u64) -> Backing {
        let guard = Some(Armed { ledger: self.ledger.clone(), registry: locator.registry.clone() });
        Backing { session, init, key, generation, guard }
    }

    /// An idle backing session for this client (one that serves no request: none checked
    /// out here, none parked between MRTR rounds), or a new one initialized with its identity
    /// and capabilities.
    pub(crate) async fn checkout(
        &self,
        locator: &Locator,
        server: Arc<ServerConfig>,
        principal: Option<Arc<str>>,
        meta: &RequestMeta,
    ) -> Result<Backing, CheckoutError> {
        let key = Key::of(&server.name, principal.as_ref(), meta);
        if let Some(b) = self.idle_of(locator, &key) {
            return Ok(b);
        }
        self.prune(locator);
        let session = match locator::create(locator, server.clone(), Transport::Stateless, principal.clone()).await {
            // At the instance's cap, an idle backing session of another client makes room.
            Err(OpError::Limit { per_principal: false, .. }) if self.evict_one(locator) => {
                locator::create(locator, server, Transport::Stateless, principal).await?
            }
            other => other?,
        };
        let mut starting = Starting { registry: &locator.registry, session: Some(session.clone()) };
        match initialize(&session, meta, locator.config.limits.request_timeout).await {
            Ok(init) => {
                starting.session = None;
                let init = Arc::new(init);
                let generation = {
                    let mut ledger = self.ledger();
                    ledger.insert(session.id, key.clone(), init.clone());
                    ledger.take(session.id, &key)
                };
                Ok(self.backing(locator, session, init, key, generation))
            }
            Err(e) => {
                starting.session = None;
                locator.registry.remove(session.id);
                session.end(CloseReason::Error, &e);
                Err(CheckoutError::Init(e))
            }
        }
    }

    /// An idle backing session of `key` (quiet and not checked out), checked out; the ones
    /// of `key` that ended are forgotten on the way. The free sessions are looked at one at a
    /// time, in the ledger's order, until one will do: a steady load takes the first it looks
    /// at, with two short holds of the ledger. Each session is looked at once at most (it is
    /// taken, passed over, or forgotten), so the loop ends.
    fn idle_of(&self, locator: &Locator, key: &Key) -> Option<Backing> {
        let mut passed: Vec<SessionId> = Vec::new();
        loop {
            let id = self.ledger().next_free(key, &passed)?;
            match seen(&locator.registry, id) {
                Seen::Quiet(session) => {
                    // A statement of its own: the ledger is unlocked again before the Backing is built.
                    let taken = self.ledger().take_if_free(id, key);
                    match taken {
                        Some((init, generation)) => return Some(self.backing(locator, session, init, key.clone(), generation)),
                        // Another checkout took it since it was looked at.
                        None => passed.push(id),
                    }
                }
                Seen::Busy => passed.push(id),
                Seen::Gone => self.ledger().remove(id),
            }
        }
    }

    /// Forgets every session that ended, of any identity (run when a session is created, which
    /// costs a child start anyway, so the pool's memory follows the live sessions).
    fn prune(&self, locator: &Locator) {
        let all = self.ledger().all();
        let dead: Vec<SessionId> =
            all.into_iter().filter(|id| locator.registry.get(*id).is_none_or(|s| s.ended().is_some())).collect();
        if dead.is_empty() {
            return;
        }
        let mut ledger = self.ledger();
        for id in dead {
            ledger.remove(id);
        }
    }

    /// Ends one idle backing session of any client (to make room at the session cap); says
    /// whether there was one.
    fn evict_one(&self, locator: &Locator) -> bool {
        let free = self.ledger().free_any();
        for id in free {
            let Some(s) = locator.registry.get(id).filter(|s| s.ended().is_none() && s.quiet()) else { continue };
            // Taken out of the ledger under its lock: no checkout can pick it from now on.
            let taken = {
                let mut ledger = self.ledger();
                let free = ledger.is_free(id);
                if free {
                    ledger.remove(id);
                }
                free
            };
            if taken {
                locator.registry.remove(id);
                s.end(CloseReason::Completed, "an idle backing session made room for a new session (limits.max_sessions)");
                return true;
            }
        }
        false
    }

    /// The backing session `id`, checked out for the retry of a request parked on it, if this
    /// instance opened it and it lives.
    pub(crate) fn local(&self, locator: &Locator, id: SessionId) -> Option<Backing> {
        let session = locator.registry.get(id).filter(|s| s.ended().is_none())?;
        let (key, init, generation) = {
            let mut ledger = self.ledger();
            let (key, init) = ledger.entry(id)?;
            let generation = ledger.take(id, &key);
            (key, init, generation)
        };
        Some(self.backing(locator, session, init, key, generation))
    }

    /// A request parked between MRTR rounds holds its backing session no longer; the session
    /// is idle again once the request completes, wherever its retry lands.
    pub fn release(&self, mut b: Backing) {
        b.disarm();
        self.ledger().free(b.session.id, b.generation);
    }

    /// Returns a backing session whose request is over, for the next request of its client.
    /// More idle sessions than the client ever used at once: this one ends instead.
    pub(crate) fn checkin(&self, locator: &Locator, mut b: Backing) {
        b.disarm();
        let ended = b.session.ended().is_some();
        let free = {
            let mut ledger = self.ledger();
            ledger.free(b.session.id, b.generation);
            if ended {
                ledger.remove(b.session.id);
                return;
            }
            // No more free sessions than the client keeps: no surplus, since the quiet ones are
            // among the free ones (the common case, decided without looking at any session).
            if ledger.free_count(&b.key) <= ledger.keep(&b.key, IDLE_PER_KEY) {
                return;
            }
            ledger.free_of(&b.key)
        };
        let (quiet, dead) = look(&locator.registry, &free);
        let surplus = {
            let mut ledger = self.ledger();
            for id in dead {
                ledger.remove(id);
            }
            // Decided and taken out of the ledger under one lock, and only if no checkout took
            // it since it was freed: no checkout can pick it now.
            let surplus = quiet.len() > ledger.keep(&b.key, IDLE_PER_KEY) && ledger.is_free(b.session.id);
            if surplus {
                ledger.remove(b.session.id);
            }
            surplus
        };
        if surplus {
            locator.registry.remove(b.session.id);
            b.session.end(CloseReason::Completed, "more idle backing sessions than this client ever used at once");
        }
    }

    /// Ends a backing session (a cancelled request's, or a closed listen stream's).
    pub(crate) fn forget(&self, locator: &Locator, s: &Arc<Session>, reason: CloseReason, detail: &str) {
        end(&self.ledger, &locator.registry, s, reason, detail);
    }

    /// Idle backing sessions held now (for tests and the admin view).
    pub(crate) fn idle(&self, locator: &Locator) -> usize {
        let free = self.ledger().free_any();
        free.into_iter().filter(|id| locator.registry.get(*id).is_some_and(|s| s.quiet())).count()
    }
}
