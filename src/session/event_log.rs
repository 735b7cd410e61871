//! Event ids and the bounded per-stream log that serves `Last-Event-ID` replay, bounded in
//! events, in age, and in bytes (see [`memory`]).

pub(crate) mod memory;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::SessionId;
use memory::{Bound, Budget, Charge};

/// Names one event: its session, the stream within the session (0 is the main stream: the
/// legacy SSE stream or the Streamable HTTP GET stream; POST streams count up from 1), and
/// its sequence number in that stream. Carrying the session lets a legacy client that
/// reconnects to `/sse/{name}` with `Last-Event-ID` find its session again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventId {
    pub session: SessionId,
    pub stream: u32,
    pub seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.session, self.stream, self.seq)
    }
}

impl EventId {
    /// Parses the wire form; anything malformed is `None`, never a panic.
    pub fn parse(s: &str) -> Option<EventId> {
        let mut parts = s.trim().rsplitn(3, '-');
        let seq = parts.next()?.parse().ok()?;
        let stream = parts.next()?.parse().ok()?;
        let session = SessionId::parse(parts.next()?)?;
        Some(EventId { session, stream, seq })
    }
}

/// One logged event: the JSON-RPC message exactly as the upstream sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub data: Bytes,
    at: Instant,
    /// Whether a client stream was attached when the event was logged. Evicting an entry that
    /// was never sent is a loss the client must be told about.
    sent_live: bool,
}

impl Entry {
    /// An entry replayed from another instance's log.
    pub fn replayed(seq: u64, data: Bytes) -> Entry {
        Entry { seq, data, at: Instant::now(), sent_live: true }
    }
}

/// Returned when the log had to drop, or could not keep, an event no client has received:
/// which bound it was, for the session's close line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overflow {
    #[error("sessions.event_log_size ({0} events per stream) reached with an event no client received")]
    Count(usize),
    #[error("sessions.event_log_bytes ({0} bytes per session) reached with events no client received")]
    SessionBytes(u64),
    #[error("sessions.max_event_log_memory ({0} bytes in all sessions) reached with events no client received")]
    InstanceBytes(u64),
}

impl From<Bound> for Overflow {
    fn from(b: Bound) -> Overflow {
        match b {
            Bound::Session(max) => Overflow::SessionBytes(max),
            Bound::Instance(max) => Overflow::InstanceBytes(max),
        }
    }
}

/// Returned when a client asks to resume from an event the log no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("events after {after} are no longer held (oldest kept is {oldest})")]
pub struct Gap {
    pub after: u64,
    pub oldest: u64,
}

/// A logged entry and the bytes it holds against its session's and the instance's bounds.
#[derive(Debug)]
struct Held {
    entry: Entry,
    _charge: Charge,
}

#[derive(Debug)]
pub struct EventLog {
    entries: VecDeque<Held>,
    /// The sequence number the next event gets. Sequence numbers start at 1, so
    /// `Last-Event-ID: …-0` means "nothing seen".
    next_seq: u64,
    /// The highest sequence number evicted so far (0: none). Resuming from before it is a gap.
    evicted_upto: u64,
    max_len: usize,
    max_age: Duration,
    budget: Budget,
}

impl EventLog {
    pub fn new(max_len: usize, max_age: Duration, budget: Budget) -> Self {
        Self { entries: VecDeque::new(), next_seq: 1, evicted_upto: 0, max_len: max_len.max(1), max_age, budget }
    }

    /// The sequence number of the newest event, 0 if none yet.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Rebuilds a log from entries kept elsewhere (Redis), for a session taken over. They are
    /// charged to `budget` even past its bound: they were sent, so the next push may evict them.
    pub fn restore(
        max_len: usize,
        max_age: Duration,
        budget: Budget,
        entries: Vec<(u64, Bytes)>,
        last_seq: u64,
        evicted_upto: u64,
    ) -> Self {
        let now = Instant::now();
        let mut log = Self::new(max_len, max_age, budget);
        for (seq, data) in entries {
            let _charge = log.budget.charge_anyway(data.len() as u64);
            log.entries.push_back(Held { entry: Entry { seq, data, at: now, sent_live: true }, _charge });
        }
        log.next_seq = last_seq.max(log.entries.back().map_or(0, |h| h.entry.seq)) + 1;
        log.evicted_upto = evicted_upto;
        log
    }

    /// Moves this log's entries (and their charges) to `budget`: a restored log joins the
    /// session that adopts it.
    pub fn rebudget(&mut self, budget: &Budget) {
        self.budget = budget.clone();
        for h in &mut self.entries {
            h._charge = budget.charge_anyway(h.entry.data.len() as u64);
        }
    }

    /// Marks every logged event as sent (a client attached and is replayed the rest).
    pub fn mark_all_sent(&mut self) {
        self.entries.iter_mut().for_each(|h| h.entry.sent_live = true);
    }

    /// Marks the newest `n` events as never sent: they were still queued for a client that was
    /// let go (a slow consumer), so evicting them would lose them.
    pub fn mark_newest_unsent(&mut self, n: usize) {
        self.entries.iter_mut().rev().take(n).for_each(|h| h.entry.sent_live = false);
    }

    /// The highest sequence number evicted so far.
    pub fn evicted_upto(&self) -> u64 {
        self.evicted_upto
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes the next sequence number without logging anything (for events, like a priming
    /// event, that carry an id but no message).
    pub fn reserve(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// Whether the oldest entry reached its client: it was handed to an attached stream and
    /// is not among the newest `in_flight` entries, which that stream's queue still holds.
    /// Whether `len` more bytes fit the session's and the instance's bounds now.
    pub fn fits(&self, len: u64) -> bool {
        self.budget.fits(len).is_ok()
    }

    fn front_delivered(&self, in_flight: usize) -> bool {
        self.entries.front().is_some_and(|h| h.entry.sent_live && self.entries.len() > in_flight)
    }

    fn evict_front(&mut self) {
        if let Some(old) = self.entries.pop_front() {
            self.evicted_upto = old.entry.seq;
        }
    }

    /// Evicts delivered entries, oldest first, until `len` more bytes fit the bounds or the
    /// oldest entry has not been delivered. `in_flight`: entries still queued for the client.
    pub fn make_room(&mut self, len: u64, in_flight: usize) {
        while self.budget.fits(len).is_err() && self.front_delivered(in_flight) {
            self.evict_front();
        }
    }

    /// Logs a message; returns its sequence number, or [`Overflow`] if a bound forced out an
    /// event that was never delivered (the message is logged) or left no room for this one
    /// (it is not). `in_flight`: how many of the newest entries the attached client's queue
    /// still holds; they are not delivered yet.
    pub fn push(&mut self, data: Bytes, sent_live: bool, in_flight: usize, now: Instant) -> Result<u64, Overflow> {
        let mut lost = false;
        while self.entries.len() >= self.max_len {
            lost |= !self.front_delivered(in_flight);
            self.evict_front();
        }
        self.expire(now, in_flight);
        let len = data.len() as u64;
        self.make_room(len, in_flight);
        let _charge = self.budget.charge(len).map_err(Overflow::from)?;
        let seq = self.reserve();
        self.entries.push_back(Held { entry: Entry { seq, data, at: now, sent_live }, _charge });
        if lost {
            Err(Overflow::Count(self.max_len))
        } else {
            Ok(seq)
        }
    }

    /// Drops delivered entries older than the age bound. Entries that were never delivered
    /// are kept: age alone must not lose a message.
    fn expire(&mut self, now: Instant, in_flight: usize) {
        while self.front_delivered(in_flight) {
            let Some(front) = self.entries.front() else { break };
            if now.duration_since(front.entry.at) <= self.max_age {
                break;
            }
            self.evict_front();
        }
    }

    /// Every logged event after `after`, in order, or a [`Gap`] if some were evicted.
    pub fn after(&self, after: u64) -> Result<Vec<Entry>, Gap> {
        if after < self.evicted_upto {
            let oldest = self.entries.front().map_or(self.next_seq, |h| h.entry.seq);
            return Err(Gap { after, oldest });
        }
        Ok(self.entries.iter().filter(|h| h.entry.seq > after).map(|h| h.entry.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unbounded() -> Budget {
        Budget::with_pool(u64::MAX / 4, Box::leak(Box::default()), u64::MAX / 4)
    }

    fn log(max_len: usize, max_age: Duration) -> EventLog {
        EventLog::new(max_len, max_age, unbounded())
    }

    fn sid() -> SessionId {
        SessionId::parse("0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn event_id_round_trip_and_rejects() {
        let id = EventId { session: sid(), stream: 3, seq: 42 };
        assert_eq!(EventId::parse(&id.to_string()), Some(id));
        for bad in ["", "x", "1-2", "zz-1-2", "0123456789abcdef0123456789abcdef-1-x", "0123456789abcdef0123456789abcdef--1"] {
            assert_eq!(EventId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn replay_after_is_ordered_and_exclusive() {
        let now = Instant::now();
        let mut log = log(10, Duration::from_secs(60));
        for i in 0..5u8 {
            log.push(Bytes::from(vec![i]), false, 0, now).unwrap();
        }
        let seqs: Vec<u64> = log.after(2).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert!(log.after(5).unwrap().is_empty());
        assert_eq!(log.after(0).unwrap().len(), 5);
    }

    #[test]
    fn overflow_only_when_an_unsent_event_is_evicted() {
        let now = Instant::now();
        let mut log = log(2, Duration::from_secs(60));
        log.push(Bytes::new(), true, 0, now).unwrap();
        log.push(Bytes::new(), true, 0, now).unwrap();
        assert!(log.push(Bytes::new(), false, 0, now).is_ok(), "evicting a sent event is fine");
        log.push(Bytes::new(), false, 0, now).unwrap();
        assert_eq!(log.push(Bytes::new(), false, 0, now), Err(Overflow::Count(2)));
    }

    #[test]
    fn resuming_from_an_evicted_event_is_a_gap() {
        let now = Instant::now();
        let mut log = log(2, Duration::from_secs(60));
        for _ in 0..4 {
            log.push(Bytes::new(), true, 0, now).unwrap();
        }
        assert_eq!(log.after(1), Err(Gap { after: 1, oldest: 3 }));
        assert_eq!(log.after(2).unwrap().len(), 2);
    }

    #[test]
    fn age_expires_sent_events_but_keeps_unsent_ones() {
        let t0 = Instant::now();
        let mut log = log(100, Duration::from_secs(10));
        log.push(Bytes::new(), true, 0, t0).unwrap();
        log.push(Bytes::new(), false, 0, t0).unwrap();
        log.push(Bytes::new(), true, 0, t0 + Duration::from_secs(11)).unwrap();
        assert_eq!(log.len(), 2);
        assert!(log.after(0).is_err());
        assert_eq!(log.after(1).unwrap().len(), 2);
    }

    #[test]
    fn events_sent_on_a_resume_no_longer_count_against_the_bound() {
        let now = Instant::now();
        let mut log = log(2, Duration::from_secs(60));
        log.push(Bytes::new(), false, 0, now).unwrap();
        log.push(Bytes::new(), false, 0, now).unwrap();
        log.mark_all_sent();
        assert!(log.push(Bytes::new(), false, 0, now).is_ok(), "the client got them on its resume");
    }

    #[test]
    fn reserved_ids_are_not_gaps() {
        let now = Instant::now();
        let mut log = log(4, Duration::from_secs(60));
        let priming = log.reserve();
        log.push(Bytes::new(), false, 0, now).unwrap();
        assert_eq!(log.after(priming).unwrap().len(), 1);
        assert_eq!(log.after(0).unwrap().len(), 1);
    }

    fn bytes(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn bytes_are_charged_on_push_and_released_on_eviction_and_drop() {
        let now = Instant::now();
        let pool: &'static memory::Pool = Box::leak(Box::default());
        let budget = Budget::with_pool(300, pool, 1000);
        let mut a = EventLog::new(100, Duration::from_secs(60), budget.clone());
        let mut b = EventLog::new(100, Duration::from_secs(60), budget.clone());
        a.push(bytes(100), true, 0, now).unwrap();
        a.push(bytes(100), true, 0, now).unwrap();
        b.push(bytes(50), true, 0, now).unwrap();
        assert_eq!((budget.used(), pool.used()), (250, 250), "both streams' logs count against the session");
        // 100 more bytes: the oldest delivered entry of `a` goes, and only it.
        a.push(bytes(100), false, 0, now).unwrap();
        assert_eq!((a.len(), budget.used(), pool.used()), (2, 250, 250));
        assert_eq!(a.after(0), Err(Gap { after: 0, oldest: 2 }), "the eviction is a gap, not a silent loss");
        // The newest two entries of `a` are still queued for the client: not evictable.
        assert_eq!(a.push(bytes(100), true, 2, now), Err(Overflow::SessionBytes(300)));
        assert_eq!((a.len(), budget.used()), (2, 250), "a refused message is neither logged nor charged");
        // Another stream's delivered entries make room for this one.
        b.make_room(100, 0);
        assert_eq!((b.len(), budget.used()), (0, 200));
        assert!(a.push(bytes(100), true, 2, now).is_ok());
        assert_eq!(budget.used(), 300);
        drop(a);
        assert_eq!((budget.used(), pool.used()), (0, 0), "a dropped log gives all its bytes back");
    }

    #[test]
    fn an_undelivered_event_is_never_evicted_for_bytes() {
        let now = Instant::now();
        let pool: &'static memory::Pool = Box::leak(Box::default());
        let mut log = EventLog::new(100, Duration::from_secs(60), Budget::with_pool(250, pool, 1000));
        log.push(bytes(100), false, 0, now).unwrap();
        log.push(bytes(100), true, 0, now).unwrap();
        assert_eq!(log.push(bytes(100), true, 0, now), Err(Overflow::SessionBytes(250)));
        assert_eq!(log.after(0).unwrap().len(), 2, "both kept");
        log.mark_all_sent();
        assert!(log.push(bytes(100), true, 0, now).is_ok());
        assert_eq!(pool.used(), 200);
    }

    #[test]
    fn the_instance_bound_holds_across_sessions() {
        let now = Instant::now();
        let pool: &'static memory::Pool = Box::leak(Box::default());
        let mut a = EventLog::new(100, Duration::from_secs(60), Budget::with_pool(1000, pool, 300));
        let mut b = EventLog::new(100, Duration::from_secs(60), Budget::with_pool(1000, pool, 300));
        a.push(bytes(200), false, 0, now).unwrap();
        assert_eq!(b.push(bytes(200), false, 0, now), Err(Overflow::InstanceBytes(300)));
        b.push(bytes(100), false, 0, now).unwrap();
        assert_eq!(pool.used(), 300);
        drop(a);
        assert!(b.push(bytes(200), false, 0, now).is_ok(), "a session's end gives its bytes back to the instance");
        assert_eq!(pool.used(), 300);
    }

    #[test]
    fn a_slow_consumers_queued_events_become_unsent_again() {
        let now = Instant::now();
        let mut log = log(3, Duration::from_secs(60));
        for _ in 0..3 {
            log.push(bytes(1), true, 0, now).unwrap();
        }
        log.mark_newest_unsent(2);
        assert!(log.push(bytes(1), false, 0, now).is_ok(), "the oldest was delivered");
        assert_eq!(log.push(bytes(1), false, 0, now), Err(Overflow::Count(3)), "the next was still queued");
    }

    #[test]
    fn a_restored_log_moves_its_charges_to_the_adopting_session() {
        let pool: &'static memory::Pool = Box::leak(Box::default());
        let first = Budget::with_pool(10, pool, 1000);
        let mut log = EventLog::restore(100, Duration::from_secs(60), first.clone(), vec![(1, bytes(40)), (2, bytes(40))], 2, 0);
        assert_eq!((first.used(), pool.used()), (80, 80), "restored entries are charged even past the bound");
        let session = Budget::with_pool(100, pool, 1000);
        log.rebudget(&session);
        assert_eq!((first.used(), session.used(), pool.used()), (0, 80, 80));
        log.push(bytes(40), false, 0, Instant::now()).unwrap();
        assert_eq!((log.len(), session.used()), (2, 80), "the restored entries were sent: one is evicted for room");
    }
}
