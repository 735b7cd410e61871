//! Bytes held by event logs: each session's share (`sessions.event_log_bytes`, across its
//! streams' logs) and the whole instance's (`sessions.max_event_log_memory`), counted with
//! atomics and given back by a Drop guard, so no path that drops an entry can leak a charge.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The bytes every event log of this process holds.
#[derive(Debug, Default)]
pub struct Pool {
    used: AtomicU64,
}

impl Pool {
    pub const fn new() -> Pool {
        Pool { used: AtomicU64::new(0) }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// The instance's pool: one per process, shared by every session.
pub(crate) static INSTANCE: Pool = Pool::new();

/// Which byte bound a charge did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// `sessions.event_log_bytes`: the session's own logs hold this many bytes at most.
    Session(u64),
    /// `sessions.max_event_log_memory`: all logs of the instance hold this many at most.
    Instance(u64),
}

#[derive(Debug)]
struct Share {
    used: AtomicU64,
    max: u64,
    pool: &'static Pool,
    pool_max: u64,
}

/// One session's share of log memory, cloned into each of its streams' logs.
#[derive(Debug, Clone)]
pub struct Budget(Arc<Share>);

impl Budget {
    /// A session's budget of `max` bytes, drawn from the instance's pool of `pool_max`.
    pub fn new(max: u64, pool_max: u64) -> Budget {
        Budget::with_pool(max, &INSTANCE, pool_max)
    }

    /// A budget drawn from another pool (tests).
    pub fn with_pool(max: u64, pool: &'static Pool, pool_max: u64) -> Budget {
        Budget(Arc::new(Share { used: AtomicU64::new(0), max, pool, pool_max }))
    }

    /// Bytes the session's logs hold now.
    pub fn used(&self) -> u64 {
        self.0.used.load(Ordering::Relaxed)
    }

    /// Whether `len` more bytes fit both bounds now.
    pub fn fits(&self, len: u64) -> Result<(), Bound> {
        let s = &self.0;
        if s.used.load(Ordering::Relaxed) + len > s.max {
            return Err(Bound::Session(s.max));
        }
        if s.pool.used.load(Ordering::Relaxed) + len > s.pool_max {
            return Err(Bound::Instance(s.pool_max));
        }
        Ok(())
    }

    /// Charges `len` bytes to the session and the instance if both have room. The pool is
    /// reserved with a compare-and-swap, so concurrent sessions cannot both take its last bytes.
    pub fn charge(&self, len: u64) -> Result<Charge, Bound> {
        let s = &self.0;
        s.used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| (u + len <= s.max).then_some(u + len))
            .map_err(|_| Bound::Session(s.max))?;
        if s.pool.used.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| (u + len <= s.pool_max).then_some(u + len)).is_err()
        {
            s.used.fetch_sub(len, Ordering::AcqRel);
            return Err(Bound::Instance(s.pool_max));
        }
        Ok(Charge { budget: self.clone(), len })
    }

    /// Charges `len` bytes whatever the bounds (entries restored from another instance's log,
    /// which the next push may evict).
    pub fn charge_anyway(&self, len: u64) -> Charge {
        self.0.used.fetch_add(len, Ordering::AcqRel);
        self.0.pool.used.fetch_add(len, Ordering::AcqRel);
        Charge { budget: self.clone(), len }
    }
}

/// The bytes of one logged event, charged until the entry is dropped (evicted, expired, or
/// its log dropped with its session).
#[derive(Debug)]
pub struct Charge {
    budget: Budget,
    len: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        let s = &self.budget.0;
        s.used.fetch_sub(self.len, Ordering::AcqRel);
        s.pool.used.fetch_sub(self.len, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> &'static Pool {
        Box::leak(Box::new(Pool::new()))
    }

    #[test]
    fn charges_are_given_back_on_drop() {
        let p = pool();
        let a = Budget::with_pool(100, p, 150);
        let b = Budget::with_pool(100, p, 150);
        let c1 = a.charge(60).unwrap();
        assert_eq!(a.charge(50).unwrap_err(), Bound::Session(100));
        let c2 = b.charge(80).unwrap();
        assert_eq!((a.used(), b.used(), p.used()), (60, 80, 140));
        assert_eq!(b.charge(20).unwrap_err(), Bound::Instance(150), "the pool is full before b's share is");
        assert_eq!(b.used(), 80, "a refused charge leaves nothing behind");
        drop(c1);
        assert_eq!((a.used(), p.used()), (0, 80));
        assert!(b.charge(20).is_ok());
        drop(c2);
        assert_eq!(p.used(), 0);
    }
}
