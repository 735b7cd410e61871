//! Routing upstream messages: a response goes to the stream of its request, progress to the
//! stream of the request it reports on, anything else to a stream a client reads; an answer
//! to a request of the bridge's own goes nowhere ([`Target::Discard`]).

use bytes::Bytes;
use tokio::time::Instant;

use super::{journal, Live, Session, State, Stream, UpstreamState};
use crate::ids::{CloseReason, Transport};
use crate::metrics;
use crate::protocol::jsonrpc::{self, Kind, Peek};
use crate::protocol::method;
use crate::upstream::UpstreamEvent;

/// Where the answers to a request go: a stream of the session, or nowhere (a request the
/// bridge itself sent, such as a replayed initialize).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Stream(u32),
    Discard,
}

impl From<u32> for Target {
    fn from(n: u32) -> Target {
        Target::Stream(n)
    }
}

impl Target {
    /// On the cluster wire a target is a stream number, and `u32::MAX` is nowhere (stream
    /// numbers never get that far).
    pub(crate) fn to_wire(self) -> u32 {
        match self {
            Target::Stream(n) => n,
            Target::Discard => u32::MAX,
        }
    }

    pub(crate) fn from_wire(n: u32) -> Target {
        if n == u32::MAX {
            Target::Discard
        } else {
            Target::Stream(n)
        }
    }
}

/// Where an upstream message goes.
struct Route {
    target: Target,
    /// It answers the client's initialize (its protocol version is the session's).
    answers_initialize: bool,
    /// It answers a client request: the request's method label and its latency in seconds,
    /// for the histogram.
    latency: Option<(&'static str, f64)>,
}

impl Session {
    /// Handles an upstream event that is not a message; `false` when the session ended.
    pub(super) fn on_upstream_event(&self, ev: UpstreamEvent) -> bool {
        match ev {
            UpstreamEvent::Message(raw) => self.on_upstream_message(raw),
            UpstreamEvent::Session { url, id } => {
                let mut st = self.state();
                st.persist(|| journal::Entry::UpstreamSession { url: url.clone(), id: id.clone() });
                st.upstream_session = Some(Box::new((url, id)));
            }
            UpstreamEvent::Closed { reason, detail } => {
                self.end(reason, &detail);
                return false;
            }
        }
        true
    }

    /// Routes an upstream message from the task that read it: one task hand-off fewer per
    /// answer. Only without a journal: in cluster mode the session task batches messages
    /// under a hold until the journal has them (`hold.rs`). Memory stays bounded without the
    /// event channel between them: a routed message is in a stream's log (bounded in bytes,
    /// `event_log_overflow` past it) or in a client's bounded queue.
    pub(super) fn direct_route(&self) -> crate::upstream::Direct {
        let me = self.me.clone();
        std::sync::Arc::new(move |raw| me.upgrade().map(|s| s.on_upstream_message(raw)).is_some())
    }

    /// Routes one upstream message to its stream.
    pub(super) fn on_upstream_message(&self, raw: Bytes) {
        let peek = match jsonrpc::peek(&raw) {
            Ok(p) => p,
            Err(_) if raw.first() == Some(&b'[') => {
                if let Ok((items, _)) = jsonrpc::split(&raw) {
                    items.into_iter().for_each(|m| self.on_upstream_message(m));
                }
                return;
            }
            Err(e) => {
                tracing::warn!(session = %self.id, server = %self.server.name, error = %e, "dropped an invalid message from the upstream");
                return;
            }
        };
        if self.transport == Transport::Stateless
            && peek.kind == Kind::Notification
            && peek.method.as_deref().is_some_and(crate::protocol::is_list_change)
        {
            self.env.changes.publish(&self.server.name, self.principal.as_ref(), &raw);
        }
        // Health and metrics are updated after the session lock is let go (see the lock order
        // in session.rs).
        let (initialized, latency, overflow) = {
            let mut st = self.state();
            if st.ended.is_some() {
                return;
            }
            let route = st.route(&peek, self.transport);
            if route.target == Target::Discard && peek.kind == Kind::Request && self.transport == Transport::Stateless {
                // No request of a client is open on this backing session to carry it.
                if let (UpstreamState::Running(up), Some(id)) = (&st.upstream, peek.id.as_deref()) {
                    let msg = "mcp-bridge: no client request is open on this session to carry a server request";
                    let _ = up.tx.try_send(jsonrpc::error(Some(id), jsonrpc::code::INTERNAL_ERROR, msg));
                }
                return;
            }
            let initialized = match (&peek.protocol_version, peek.kind) {
                (Some(v), Kind::Response) if route.answers_initialize => {
                    st.protocol_version = Some(v.clone());
                    st.persist(|| journal::Entry::ProtocolVersion(v.clone()));
                    true
                }
                _ => false,
            };
            let overflow = st.push(route.target, raw, peek.kind == Kind::Response).err();
            (initialized, route.latency, overflow)
        };
        if initialized {
            self.env.health.succeeded(&self.server.name);
        }
        if let Some((method, seconds)) = latency {
            let labels = metrics::Method { server: self.server.name.clone(), method };
            metrics::get().upstream_latency.get_or_create(&labels).observe(seconds);
        }
        if let Some(bound) = overflow {
            self.end(CloseReason::EventLogOverflow, &bound.to_string());
        }
    }
}

impl State {
    /// Picks the stream for an upstream message.
    fn route(&mut self, peek: &Peek, transport: Transport) -> Route {
        let mut initialize = false;
        let mut latency = None;
        let target = match peek.kind {
            Kind::Response => match peek.id.as_ref().and_then(|id| self.pending.remove(id)) {
                Some(p) => {
                    if p.stream != Target::Discard {
                        self.last_activity = Instant::now();
                        let id = peek.id.clone().unwrap_or_default();
                        match p.stream {
                            Target::Stream(stream) => {
                                self.answered.record(&id, p.stream, Some(p.digest));
                                self.persist(|| journal::Entry::Done { id, stream })
                            }
                            Target::Discard => self.persist(|| journal::Entry::Answered { id }),
                        }
                    }
                    if let Some(t) = &p.progress_token {
                        self.progress.remove(t);
                    }
                    initialize = p.initialize;
                    if let Some(entry) = self
                        .timeline
                        .iter_mut()
                        .rev()
                        .find(|e| peek.id.as_deref().is_some_and(|id| metrics::is_clip_of(&e.id, id)))
                    {
                        entry.latency_ms = Some(p.since.elapsed().as_secs_f64() * 1000.0);
                        entry.outcome = if peek.error { "error" } else { "ok" };
                    }
                    latency = p.method.map(|method| (method, p.since.elapsed().as_secs_f64()));
                    p.stream
                }
                None => Target::Stream(0),
            },
            Kind::Notification if peek.method.as_deref() == Some(method::PROGRESS) => peek
                .progress_token
                .as_ref()
                .and_then(|t| match self.progress.get(t) {
                    Some(Target::Stream(n)) => Some(*n),
                    _ => None,
                })
                .filter(|n| self.streams.get(n).is_some_and(|s| !s.done && !s.json))
                .map_or_else(|| self.server_initiated_target(), Target::Stream),
            _ if transport == Transport::Stateless => self.stateless_target(),
            _ => self.server_initiated_target(),
        };
        // The HTTP+SSE transport has one stream: everything routed goes there.
        let target = if transport == Transport::Sse && target != Target::Discard { Target::Stream(0) } else { target };
        Route { target, answers_initialize: initialize, latency }
    }

    /// Server-initiated messages go to the standalone stream when a client reads it, else to
    /// the newest open POST stream a client reads, else into the standalone stream's log.
    fn server_initiated_target(&self) -> Target {
        let reading = |s: &Stream| s.live.as_ref().is_some_and(Live::reading);
        if self.streams.get(&0).is_some_and(reading) {
            return Target::Stream(0);
        }
        let newest = self.streams.iter().rev().find(|(n, s)| **n != 0 && !s.done && !s.json && reading(s));
        Target::Stream(newest.map_or(0, |(n, _)| *n))
    }

    /// A stateless backing session has no client of its own: a listener on stream 0 gets
    /// server-initiated messages, else the request in flight (read or parked between MRTR
    /// rounds, when its log keeps them for the retry), else nobody.
    fn stateless_target(&self) -> Target {
        if self.streams.get(&0).is_some_and(|s| s.live.as_ref().is_some_and(Live::reading)) {
            return Target::Stream(0);
        }
        self.streams.iter().rev().find(|(n, s)| **n != 0 && !s.done).map_or(Target::Discard, |(n, _)| Target::Stream(*n))
    }
}
