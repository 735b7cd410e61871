//! Event ids and the bounded per-stream log that serves `Last-Event-ID` replay.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::SessionId;

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

/// Returned when the log had to drop an event no client has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event log overflow: an event no client received was evicted")]
pub struct Overflow;

/// Returned when a client asks to resume from an event the log no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("events after {after} are no longer held (oldest kept is {oldest})")]
pub struct Gap {
    pub after: u64,
    pub oldest: u64,
}

#[derive(Debug)]
pub struct EventLog {
    entries: VecDeque<Entry>,
    /// The sequence number the next event gets. Sequence numbers start at 1, so
    /// `Last-Event-ID: …-0` means "nothing seen".
    next_seq: u64,
    /// The highest sequence number evicted so far (0: none). Resuming from before it is a gap.
    evicted_upto: u64,
    max_len: usize,
    max_age: Duration,
}

impl EventLog {
    pub fn new(max_len: usize, max_age: Duration) -> Self {
        Self { entries: VecDeque::new(), next_seq: 1, evicted_upto: 0, max_len: max_len.max(1), max_age }
    }

    /// The sequence number of the newest event, 0 if none yet.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Rebuilds a log from entries kept elsewhere (Redis), for a session taken over.
    pub fn restore(max_len: usize, max_age: Duration, entries: Vec<(u64, Bytes)>, last_seq: u64, evicted_upto: u64) -> Self {
        let now = Instant::now();
        let mut log = Self::new(max_len, max_age);
        log.entries = entries.into_iter().map(|(seq, data)| Entry { seq, data, at: now, sent_live: true }).collect();
        log.next_seq = last_seq.max(log.entries.back().map_or(0, |e| e.seq)) + 1;
        log.evicted_upto = evicted_upto;
        log
    }

    /// Marks every logged event as sent (a client attached and is replayed the rest).
    pub fn mark_all_sent(&mut self) {
        self.entries.iter_mut().for_each(|e| e.sent_live = true);
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

    /// Logs a message; returns its sequence number, or [`Overflow`] if the bound forced out
    /// an event that was never sent.
    pub fn push(&mut self, data: Bytes, sent_live: bool, now: Instant) -> Result<u64, Overflow> {
        let seq = self.reserve();
        let mut lost = false;
        while self.entries.len() >= self.max_len {
            let Some(old) = self.entries.pop_front() else { break };
            lost |= !old.sent_live;
            self.evicted_upto = old.seq;
        }
        self.expire(now);
        self.entries.push_back(Entry { seq, data, at: now, sent_live });
        if lost {
            Err(Overflow)
        } else {
            Ok(seq)
        }
    }

    /// Drops sent entries older than the age bound. Entries that were never sent are kept:
    /// age alone must not lose a message.
    fn expire(&mut self, now: Instant) {
        while let Some(front) = self.entries.front() {
            if !(front.sent_live && now.duration_since(front.at) > self.max_age) {
                break;
            }
            self.evicted_upto = front.seq;
            self.entries.pop_front();
        }
    }

    /// Every logged event after `after`, in order, or a [`Gap`] if some were evicted.
    pub fn after(&self, after: u64) -> Result<Vec<Entry>, Gap> {
        if after < self.evicted_upto {
            let oldest = self.entries.front().map_or(self.next_seq, |e| e.seq);
            return Err(Gap { after, oldest });
        }
        Ok(self.entries.iter().filter(|e| e.seq > after).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut log = EventLog::new(10, Duration::from_secs(60));
        for i in 0..5u8 {
            log.push(Bytes::from(vec![i]), false, now).unwrap();
        }
        let seqs: Vec<u64> = log.after(2).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert!(log.after(5).unwrap().is_empty());
        assert_eq!(log.after(0).unwrap().len(), 5);
    }

    #[test]
    fn overflow_only_when_an_unsent_event_is_evicted() {
        let now = Instant::now();
        let mut log = EventLog::new(2, Duration::from_secs(60));
        log.push(Bytes::new(), true, now).unwrap();
        log.push(Bytes::new(), true, now).unwrap();
        assert!(log.push(Bytes::new(), false, now).is_ok(), "evicting a sent event is fine");
        log.push(Bytes::new(), false, now).unwrap();
        assert_eq!(log.push(Bytes::new(), false, now), Err(Overflow));
    }

    #[test]
    fn resuming_from_an_evicted_event_is_a_gap() {
        let now = Instant::now();
        let mut log = EventLog::new(2, Duration::from_secs(60));
        for _ in 0..4 {
            log.push(Bytes::new(), true, now).unwrap();
        }
        assert_eq!(log.after(1), Err(Gap { after: 1, oldest: 3 }));
        assert_eq!(log.after(2).unwrap().len(), 2);
    }

    #[test]
    fn age_expires_sent_events_but_keeps_unsent_ones() {
        let t0 = Instant::now();
        let mut log = EventLog::new(100, Duration::from_secs(10));
        log.push(Bytes::new(), true, t0).unwrap();
        log.push(Bytes::new(), false, t0).unwrap();
        log.push(Bytes::new(), true, t0 + Duration::from_secs(11)).unwrap();
        assert_eq!(log.len(), 2);
        assert!(log.after(0).is_err());
        assert_eq!(log.after(1).unwrap().len(), 2);
    }

    #[test]
    fn events_sent_on_a_resume_no_longer_count_against_the_bound() {
        let now = Instant::now();
        let mut log = EventLog::new(2, Duration::from_secs(60));
        log.push(Bytes::new(), false, now).unwrap();
        log.push(Bytes::new(), false, now).unwrap();
        log.mark_all_sent();
        assert!(log.push(Bytes::new(), false, now).is_ok(), "the client got them on its resume");
    }

    #[test]
    fn reserved_ids_are_not_gaps() {
        let now = Instant::now();
        let mut log = EventLog::new(4, Duration::from_secs(60));
        let priming = log.reserve();
        log.push(Bytes::new(), false, now).unwrap();
        assert_eq!(log.after(priming).unwrap().len(), 1);
        assert_eq!(log.after(0).unwrap().len(), 1);
    }
}
