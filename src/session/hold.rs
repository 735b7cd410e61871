//! Write before answer. In cluster mode a session hands a client an upstream's answer only
//! after what a successor needs of it (the logged event, and that its request is done) has
//! reached the journal's store, and only while this instance still owns the session. An owner
//! that answered and then died, or lost its lease while its store failed over, would otherwise
//! leave its request pending in the store, and the next owner would answer it again, as lost.
//!
//! The session task takes an upstream message and the ones queued behind it (at most
//! [`BATCH`]), routes and logs them under a *hold*: logged and journalled, but not sent to a
//! client and, for answers, not yet counted as answered on their streams. When one of them is
//! an answer it waits for the journal ([`Journal::durable`]) and for ownership
//! ([`journal::settle`]), then releases them in order. A session that ends meanwhile sends
//! them before it closes its streams (a shutdown hands the session over with its clients
//! answered), unless another instance took it over (`moved`): then it sends none. Messages that answer nothing wait only for one another.

use bytes::Bytes;

use super::{journal, Frame, Live, Overflow, SendFailed, Session, State, Target};
use crate::ids::CloseReason;
use crate::upstream::{EventsRx, UpstreamEvent};

/// Upstream messages taken per hold.
pub(super) const BATCH: usize = 64;

/// Messages logged and not yet sent while a hold is on.
#[derive(Default)]
pub(super) struct Hold {
    on: bool,
    items: Vec<Held>,
    /// Whether one of `items` answers a request (the hold then waits for the journal).
    answers: bool,
}

struct Held {
    stream: u32,
    /// Its sequence number in the stream's log, if it was logged.
    seq: Option<u64>,
    raw: Bytes,
    is_response: bool,
    /// Whether a client was attached when it was logged (the log counted it as sent).
    sent_live: bool,
}

impl Hold {
    /// How many held messages wait for stream `n`: they are the newest entries of its log and
    /// are not delivered yet, so the log must not evict them.
    pub(super) fn waiting(&self, n: u32) -> usize {
        self.items.iter().filter(|h| h.stream == n && h.seq.is_some()).count()
    }

    /// How many messages are held, and how many of them answer a request.
    pub(super) fn counts(&self) -> (usize, usize) {
        (self.items.len(), self.items.iter().filter(|h| h.is_response).count())
    }

    /// The oldest held sequence number of stream `n`: a replay stops before it (release sends
    /// it and what follows to the client attached then).
    pub(super) fn first(&self, n: u32) -> Option<u64> {
        self.items.iter().filter(|h| h.stream == n).find_map(|h| h.seq)
    }
}

/// What ended a hold: the session ended meanwhile, or an event that is not a message was
/// taken from the queue behind the messages (the caller handles it).
pub(super) enum Released {
    Ended,
    Next(Option<UpstreamEvent>),
}

impl Session {
    /// Routes `raw` and the upstream messages queued behind it; in cluster mode, under a hold
    /// (see the module's doc).
    pub(super) async fn on_upstream_messages(&self, raw: Bytes, events: &mut EventsRx) -> Released {
        let Some(journal) = self.env.journal.as_deref() else {
            self.on_upstream_message(raw);
            return Released::Next(None);
        };
        if !journal.trusted() {
            journal::settle(journal).await;
            if self.state().ended.is_some() {
                return Released::Ended;
            }
        }
        let mark = journal.mark();
        self.state().hold.on = true;
        self.on_upstream_message(raw);
        let mut next = None;
        for _ in 1..BATCH {
            match events.try_recv() {
                Some(UpstreamEvent::Message(raw)) => self.on_upstream_message(raw),
                other => {
                    next = other;
                    break;
                }
            }
        }
        if self.state().hold.answers {
            // Delivered anyway when the store stays out of reach: `settle` bounds the wait, and
            // with no store there is no successor to answer twice.
            if !journal.durable(mark).await || !journal.trusted() {
                journal::settle(journal).await;
            }
        }
        let mut st = self.state();
        if st.ended.is_some() {
            // `end` released or dropped what was held.
            return Released::Ended;
        }
        st.release();
        Released::Next(next)
    }
}

impl State {
    /// Ends the hold: what it held is sent, in order.
    pub(super) fn release(&mut self) {
        let held = std::mem::take(&mut self.hold);
        held.items.into_iter().for_each(|h| self.deliver(h.stream, (h.seq, h.sent_live), h.raw, h.is_response));
    }

    /// Logs an upstream message in stream `to` and sends it to the client attached there
    /// (held instead while a hold is on).
    pub(super) fn push(&mut self, to: Target, raw: Bytes, is_response: bool) -> Result<(), Overflow> {
        let Target::Stream(n) = to else { return Ok(()) };
        let now = tokio::time::Instant::now();
        let held = self.hold.waiting(n);
        let Some(s) = self.streams.get_mut(&n) else {
            return Ok(());
        };
        let live = s.live.as_ref().is_some_and(Live::reading);
        let in_flight = s.live.as_ref().map_or(0, Live::queued) + held;
        super::log_memory::make_room(&mut self.streams, n, raw.len());
        let Some(s) = self.streams.get_mut(&n) else { return Ok(()) };
        let pushed = s.log.push(raw.clone(), live, in_flight, now);
        self.events += 1;
        self.bytes += raw.len() as u64;
        if let Ok(seq) = pushed {
            if let Some((journal, sid)) = self.persist.as_deref() {
                let entry = journal::Entry::Event { stream: n, seq, data: raw.clone(), evicted_upto: s.log.evicted_upto() };
                journal.write(*sid, entry);
            }
        }
        let seq = pushed.as_ref().ok().copied();
        if self.hold.on {
            self.hold.answers |= is_response;
            self.hold.items.push(Held { stream: n, seq, raw, is_response, sent_live: live });
        } else {
            self.deliver(n, (seq, live), raw, is_response);
        }
        pushed.map(|_| ())
    }

    /// Sends a logged message (`seq`, and whether its log counted it as sent) to the client
    /// attached to stream `n`; an answer may finish the stream.
    fn deliver(&mut self, n: u32, (seq, sent_live): (Option<u64>, bool), raw: Bytes, is_response: bool) {
        let Some(s) = self.streams.get_mut(&n) else { return };
        if let Some(seq) = seq {
            let newer = (s.log.last_seq() + 1).saturating_sub(seq) as usize;
            match &s.live {
                Some(l) => match l.try_send(Frame::Message(seq, raw)) {
                    Ok(()) => {}
                    Err(SendFailed::Full) => {
                        s.log.mark_newest_unsent(l.queued() + newer);
                        if let Some(l) = s.live.take() {
                            l.close(CloseReason::SlowConsumer);
                        }
                    }
                    Err(SendFailed::Closed) => {
                        s.live = None;
                        s.log.mark_newest_unsent(newer);
                    }
                },
                // Its client went away while it was held: it is still to be delivered.
                None if sent_live => s.log.mark_newest_unsent(newer),
                None => {}
            }
        }
        if is_response {
            self.request_done(n);
        }
    }
}
