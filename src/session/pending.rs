//! The requests of a session waiting for their answers: an id is in flight at most once, a
//! request the session cannot take is answered at once on its own stream, never sent upstream,
//! at most `limits.max_pending_per_session` are in flight, and a request in flight keeps its
//! session from idle expiry.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use tokio::time::Instant;

use super::summary::{TimelineEntry, TIMELINE};
use super::{journal, Pending, SendError, Session, State, Target};
use crate::ids::unix_ms;
use crate::metrics;
use crate::protocol::jsonrpc::{self, code, Kind, Peek};
use crate::protocol::method;

/// Why a session refused requests.
#[derive(Debug, thiserror::Error)]
pub enum PendingError {
    #[error("the session has {pending} requests in flight and may have {max} (limits.max_pending_per_session); wait for answers before sending more")]
    Full { pending: usize, max: usize },
}

impl Session {
    /// Whether the session has room for the requests among `messages`; checked before a POST
    /// opens its stream, so a refusal is a plain 429. ([`State::admit`] holds the cap under
    /// the lock when two POSTs race past this.)
    pub fn check_room(&self, messages: &[(Bytes, Peek)]) -> Result<(), PendingError> {
        let new = messages.iter().filter(|(_, p)| p.kind == Kind::Request && p.id.is_some()).count();
        if new == 0 {
            return Ok(());
        }
        let (pending, max) = (self.state().in_flight(), self.settings.max_pending);
        if pending + new > max {
            return Err(PendingError::Full { pending, max });
        }
        Ok(())
    }

    /// Registers the requests among `messages` against `stream` (see [`Session::send`]) and
    /// returns those the session admits (see `State::admit`); the rest are answered already.
    pub(super) fn register(&self, messages: Vec<(Bytes, Peek)>, stream: Target) -> Result<Vec<(Bytes, Peek)>, SendError> {
        // The request counters are bumped after the session lock is let go.
        let mut counted: Vec<&'static str> = Vec::new();
        let messages = {
            let mut st = self.state();
            if let Some(reason) = st.ended {
                return Err(SendError::Ended(reason));
            }
            st.last_activity = Instant::now();
            let messages = st.admit(messages, stream, self.settings.max_pending);
            for (raw, peek) in &messages {
                if peek.kind == Kind::Notification && peek.method.as_deref() == Some(method::CANCELLED) {
                    st.cancelled(raw);
                }
                if peek.kind != Kind::Request {
                    continue;
                }
                if let Some(method) = &peek.method {
                    let label = metrics::method_label(method);
                    counted.push(label);
                    if stream != Target::Discard {
                        if st.timeline.len() == TIMELINE {
                            st.timeline.pop_front();
                        }
                        let id = metrics::clip(peek.id.as_deref().unwrap_or("null"));
                        st.timeline.push_back(TimelineEntry {
                            // An MCP method is its own label: kept without a copy.
                            method: if label == method { label.into() } else { metrics::clip(method).into() },
                            id,
                            at_ms: unix_ms(),
                            latency_ms: None,
                            outcome: "pending",
                        });
                    }
                }
                let initialize = peek.method.as_deref() == Some(method::INITIALIZE);
                if initialize && stream != Target::Discard {
                    // Kept for the session's life: a copy of its own, not a slice that would
                    // hold the whole request buffer it came in.
                    let kept = Bytes::copy_from_slice(raw);
                    st.persist(|| journal::Entry::Initialize(kept.clone()));
                    st.initialize = Some(kept);
                }
                if let Some(token) = &peek.progress_token {
                    st.progress.insert(token.clone(), stream);
                }
                if let Some(id) = &peek.id {
                    let pending = Pending {
                        stream,
                        since: Instant::now(),
                        progress_token: peek.progress_token.clone(),
                        initialize,
                        method: peek.method.as_deref().map(metrics::method_label),
                        digest: digest(raw),
                    };
                    st.pending.insert(id.clone(), pending);
                    if let Target::Stream(stream) = stream {
                        st.persist(|| journal::Entry::Pending { id: id.clone(), stream });
                    }
                }
            }
            messages
        };
        for method in counted {
            let labels = metrics::Method { server: self.server.name.clone(), method };
            metrics::get().requests.get_or_create(&labels).inc();
        }
        Ok(messages)
    }
}

impl State {
    /// Client requests waiting for their answers (the bridge's own do not count). One keeps
    /// its session from idle expiry.
    pub(super) fn in_flight(&self) -> usize {
        self.pending.values().filter(|p| p.stream != Target::Discard).count()
    }

    /// Drops from `messages` each request the session cannot take, answering it at once on
    /// `stream`: an id already in flight, or twice in the batch, gets -32600 (the request
    /// holding it is unaffected); a request past `max` in flight gets -32000. What is left
    /// goes upstream.
    pub(super) fn admit(&mut self, messages: Vec<(Bytes, Peek)>, stream: Target, max: usize) -> Vec<(Bytes, Peek)> {
        if stream == Target::Discard {
            return messages;
        }
        let pending = self.in_flight();
        let mut room = max.saturating_sub(pending);
        let mut seen: HashSet<Box<str>> = HashSet::new();
        let mut out = Vec::with_capacity(messages.len());
        for (raw, peek) in messages {
            let id = peek.id.clone().filter(|_| peek.kind == Kind::Request);
            let Some(id) = id else {
                out.push((raw, peek));
                continue;
            };
            // The same request sent again on the stream its answer goes to, while it is in
            // flight or once it was answered (here, by a dead owner, or as lost when this
            // session took over): by a forwarding instance that could not tell whether the
            // owner had it, or by a client told to try again by one. Its one answer is on that
            // stream. (An id reused for another request is not this: it is refused in flight,
            // and served once the first is answered.)
            // (Hashed only when the id is in flight or answered on this stream.)
            let again = match self.pending.get(&id) {
                Some(p) => p.stream == stream && p.digest == digest(&raw),
                None => self.answered.again(&id, stream, || digest(&raw)),
            };
            if again {
                tracing::info!(request = %id, "a request came again on its stream; it is delivered once");
                continue;
            }
            if self.pending.contains_key(&id) || !seen.insert(id.clone()) {
                let msg = "Invalid Request: id already in use by a request in flight";
                let _ = self.push(stream, jsonrpc::error(Some(&id), code::INVALID_REQUEST, msg), true);
                continue;
            }
            if room == 0 {
                let msg = format!("Too Many Requests: {}", PendingError::Full { pending, max });
                let _ = self.push(stream, jsonrpc::error(Some(&id), code::CONNECTION_CLOSED, &msg), true);
                continue;
            }
            room -= 1;
            out.push((raw, peek));
        }
        out
    }
}

/// How many answered requests a session remembers.
const ANSWERED: usize = 256;

/// A request's bytes, hashed (see `Pending::digest`).
pub(super) fn digest(raw: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(raw)
}

/// The latest [`ANSWERED`] requests answered: by this session (with their digests), or before
/// it took over (by the dead owner, or as lost: their bytes are not known), and the stream
/// each answer went to. Boxed, and made on the first answer: a session that was never
/// answered (an idle stream) holds a pointer, not the maps (80 bytes).
#[derive(Default)]
pub(super) struct Answered(Option<Box<Recorded>>);

#[derive(Default)]
struct Recorded {
    streams: HashMap<Box<str>, (Target, Option<u64>)>,
    order: std::collections::VecDeque<Box<str>>,
}

impl Answered {
    pub(super) fn record(&mut self, id: &str, stream: Target, digest: Option<u64>) {
        let r = self.0.get_or_insert_default();
        if r.streams.insert(id.into(), (stream, digest)).is_none() {
            r.order.push_back(id.into());
            if r.order.len() > ANSWERED {
                if let Some(old) = r.order.pop_front() {
                    r.streams.remove(&old);
                }
            }
        }
    }

    /// Whether request `id` with `digest`, sent on `stream`, is one answered there already.
    pub(super) fn again(&self, id: &str, stream: Target, digest: impl FnOnce() -> u64) -> bool {
        let Some(r) = &self.0 else { return false };
        r.streams.get(id).is_some_and(|(s, d)| *s == stream && d.is_none_or(|d| d == digest()))
    }
}
