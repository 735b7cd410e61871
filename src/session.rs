//! Sessions: one client's conversation with one upstream. A session owns its upstream, its
//! streams (each with a bounded event log for `Last-Event-ID` replay) and the map that routes
//! each upstream message to the stream the client expects it on (`route.rs`). Requests in
//! flight are in `pending.rs`, the upstream's queue in `queue.rs`, endings in `end.rs`; what a
//! successor needs goes to a [`journal::Journal`], live events to a [`Sink`]. This floor knows
//! nothing of Redis or the cluster.
//!
//! # Lock order
//! - `Registry::sessions` (a `RwLock`) is held only for its map operations: nothing is taken
//!   under it, and it is never taken under a session's lock.
//! - A session's `state` (its one `Mutex`, [`Session::state`]) is never held across an await,
//!   and never while taking the registry, another session's lock, `Health`, `Changes` or a
//!   metrics family: health calls and metric updates happen after it is let go. Under it a
//!   session only works on its own state and event logs (whose memory `Budget` is atomics) and
//!   sends without waiting: `try_send` to a local client's channel, to the upstream's queue,
//!   and through a [`RemoteSink`] or the [`journal::Journal`] (the cluster queues an `Op`; its
//!   writer encodes and writes it later). The one encoding under it is of the JSON-RPC errors
//!   a request's end logs in the same step as the request leaves `pending` (ending the session,
//!   timeouts, refusals), which must be one step.
//! - The cluster's `rpc` and `held` maps are leaves: no session lock is taken under them.
//! - `Cluster::takeover` (an async mutex per session id, `cluster/locks.rs`) is held across a takeover; under it the registry and
//!   then the new session's lock are taken, one at a time.

pub(crate) mod changes;
mod end;
mod env;
pub(crate) mod event_log;
mod hold;
pub(crate) mod journal;
mod log_memory;
pub(crate) mod pending;
mod queue;
pub(crate) mod registry;
mod route;
mod sink;
mod stream_map;
mod summary;
mod task;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::{ServerConfig, SessionSettings};
pub(crate) use crate::ids::{CloseReason, SessionId, Transport};
use crate::metrics;
use crate::protocol::jsonrpc::{self, Peek};
use crate::upstream::{self, Upstream};
pub(crate) use env::Env;
use event_log::{memory::Budget, Entry, EventLog, Gap, Overflow};
use journal::Journal;
pub(crate) use route::Target;
pub(crate) use sink::{frames, CloseCell, Frame, FrameRx, FrameTx, RemoteSink, Sink, STREAM_QUEUE};
use sink::{Live, SendFailed};
pub(crate) use summary::TimelineEntry;

/// Finished POST streams kept for replay, per session.
const DONE_STREAMS_KEPT: usize = 64;

/// A POST stream just opened: its number, the priming event's sequence number (for clients
/// that negotiated 2025-11-25), and whether such a client may be asked to poll.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    pub stream: u32,
    pub priming: Option<u64>,
    pub polling: bool,
}

/// What an attach found: events to replay, and whether the stream already finished.
pub(crate) struct AttachInfo {
    pub replay: Vec<Entry>,
    pub done: bool,
}

/// The receiving end of an attachment, handed to the HTTP body.
pub struct Attached {
    pub stream: u32,
    /// Logged events the client missed, sent before anything live.
    pub replay: Vec<Entry>,
    pub rx: FrameRx,
    pub reason: CloseCell,
}

struct Stream {
    log: EventLog,
    live: Option<Live>,
    /// Requests still waiting for their responses; a POST stream ends when this reaches 0.
    open_requests: usize,
    done: bool,
    /// The stream is a JSON response, which can carry only responses.
    json: bool,
}

struct Pending {
    stream: Target,
    since: Instant,
    progress_token: Option<Box<str>>,
    initialize: bool,
    /// For the latency histogram: a label from `metrics::method_label`.
    method: Option<&'static str>,
    /// The request's bytes, hashed: the same request sent again is told from an id reused.
    digest: u64,
}

enum UpstreamState {
    NotStarted,
    /// Boxed, as are the other fields a session may never use (`State::upstream_session`,
    /// `State::persist`): an idle session's state then fits a smaller allocation.
    Running(Box<Upstream>),
    Ended,
}

struct State {
    streams: stream_map::StreamMap<Stream>,
    next_stream: u32,
    done_streams: VecDeque<u32>,
    pending: HashMap<Box<str>, Pending>,
    /// The requests a dead owner had taken and this session answered as lost on taking over,
    /// and the stream each answer went to: one sent again (by a forwarding instance that could
    /// not tell the dead owner had it) is not delivered twice (see `State::admit`).
    answered: pending::Answered,
    progress: HashMap<Box<str>, Target>,
    upstream: UpstreamState,
    protocol_version: Option<String>,
    /// The client's own initialize request, kept so the upstream side can be re-created.
    initialize: Option<Bytes>,
    /// A remote Streamable HTTP upstream's session (`url`, `id`): a successor reuses it.
    upstream_session: Option<Box<(String, String)>>,
    last_activity: Instant,
    ended: Option<CloseReason>,
    /// In cluster mode, where writes go so another instance can take the session over.
    persist: Option<Box<(Arc<dyn Journal>, SessionId)>>,
    timeline: VecDeque<TimelineEntry>,
    /// Messages and their bytes routed to the client.
    events: u64,
    bytes: u64,
    /// Upstream messages logged but not sent yet (cluster mode; see `hold.rs`).
    hold: hold::Hold,
    /// The upstream's events, made when it starts, until the session task takes them.
    started: Option<upstream::EventsRx>,
    /// Whether the session task was spawned (see [`Session::needs_task`]).
    task: bool,
}

/// What a taken-over session starts from (see `cluster::restore`).
pub struct Restored {
    pub protocol_version: Option<String>,
    pub initialize: Option<Bytes>,
    /// A remote Streamable HTTP upstream's session (`url`, `id`), to be reused as it is.
    pub upstream_session: Option<(String, String)>,
    pub next_stream: u32,
    pub streams: Vec<(u32, EventLog)>,
}

/// Why an attach was refused.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("only one standalone SSE stream is allowed per session")]
    Conflict,
    #[error("no stream {0} in this session")]
    NoStream(u32),
    #[error(transparent)]
    Gap(#[from] Gap),
    #[error("session ended: {0}")]
    Ended(CloseReason),
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("session ended: {0}")]
    Ended(CloseReason),
    /// The upstream's queue stayed full (see `session/queue.rs`): nothing was sent.
    #[error("the upstream is not taking messages: its queue stayed full for {0:?}")]
    Busy(std::time::Duration),
}

pub struct Session {
    pub id: SessionId,
    pub created: Instant,
    pub server: Arc<ServerConfig>,
    pub transport: Transport,
    pub settings: Arc<SessionSettings>,
    /// The authenticated client that opened the session; only it may use the session.
    pub principal: Option<Arc<str>>,
    state: Mutex<State>,
    /// Wakes the session task when the session ends, or when its upstream starts and
    /// leaves the receiver of its events in `State::started`.
    wake: Notify,
    env: Arc<Env>,
    /// The bytes its streams' logs may hold, drawn from the instance's pool.
    budget: Budget,
    /// Itself, for the upstream's direct route (see [`Session::direct_route`]).
    me: Weak<Session>,
}

impl Session {
    /// Creates a session and the receiver its task drives (see [`registry::Registry`]).
    pub fn new(
        id: SessionId,
        server: Arc<ServerConfig>,
        transport: Transport,
        settings: Arc<SessionSettings>,
        env: Arc<Env>,
        principal: Option<Arc<str>>,
        restored: Option<Restored>,
    ) -> Arc<Session> {
        let budget = Budget::new(settings.event_log_bytes, settings.max_event_log_memory);
        let mut streams = stream_map::StreamMap::new();
        streams.insert(0, Stream::new(&settings, false, &budget));
        let persist = env.journal.clone().map(|c| Box::new((c, id)));
        let mut next_stream = 1;
        let (mut protocol_version, mut initialize, mut upstream_session) = (None, None, None);
        if let Some(r) = restored {
            next_stream = r.next_stream.max(1);
            protocol_version = r.protocol_version;
            initialize = r.initialize;
            upstream_session = r.upstream_session.map(Box::new);
            for (n, mut log) in r.streams {
                let mut stream = Stream::new(&settings, false, &budget);
                log.rebudget(&budget);
                stream.log = log;
                stream.done = n != 0;
                streams.insert(n, stream);
            }
        }
        let labels = metrics::Session { server: server.name.clone(), transport: transport.as_str() };
        metrics::get().sessions_open.get_or_create(&labels).inc();
        let session = |me| Session {
            created: Instant::now(),
            id,
            principal,
            server,
            transport,
            settings,
            state: Mutex::new(State {
                streams,
                next_stream,
                done_streams: VecDeque::new(),
                pending: HashMap::new(),
                answered: Default::default(),
                progress: HashMap::new(),
                upstream: UpstreamState::NotStarted,
                protocol_version,
                initialize,
                upstream_session,
                last_activity: Instant::now(),
                ended: None,
                persist,
                timeline: VecDeque::new(),
                events: 0,
                bytes: 0,
                hold: Default::default(),
                started: None,
                task: false,
            }),
            wake: Notify::new(),
            env,
            budget,
            me,
        };
        Arc::new_cyclic(|me| session(me.clone()))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn protocol_version(&self) -> Option<String> {
        self.state().protocol_version.clone()
    }

    /// Whether no client request is waiting for an upstream answer (the bridge's own
    /// requests, answered into nowhere, do not count).
    pub fn quiet(&self) -> bool {
        let st = self.state();
        st.ended.is_none() && st.pending.values().all(|p| p.stream == Target::Discard)
    }

    pub fn ended(&self) -> Option<CloseReason> {
        self.state().ended
    }

    /// Whether SSE streams of this session get priming events and may be closed for polling.
    pub fn negotiated_polling(&self) -> bool {
        self.state().polling()
    }

    /// Reserves the next sequence number of a stream, for an event without a message.
    pub fn reserve_seq(&self, stream: u32) -> Option<u64> {
        self.state().reserve(stream)
    }

    /// Re-creates the upstream side after a takeover: the client's recorded initialize is
    /// replayed (its answer discarded, the client had it already), then `initialized`.
    /// A remote Streamable HTTP upstream keeps its session: it is reused, not re-initialized.
    pub async fn replay_initialize(&self) {
        let init = {
            let st = self.state();
            if st.upstream_session.is_some() {
                return;
            }
            st.initialize.clone()
        };
        let Some(init) = init else { return };
        let Ok(peek) = jsonrpc::peek(&init) else { return };
        let initialized = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let Ok(initialized_peek) = jsonrpc::peek(&initialized) else { return };
        let _ = self.send(vec![(init, peek)], Target::Discard).await;
        let _ = self.send(vec![(initialized, initialized_peek)], 0).await;
    }

    /// Sends client messages upstream. Requests are registered first, so that their
    /// responses route to `stream`; the upstream starts on the first message.
    pub(crate) async fn send(&self, messages: Vec<(Bytes, Peek)>, stream: impl Into<Target>) -> Result<(), SendError> {
        self.enqueue(messages, stream.into()).await
    }

    /// The upstream's queue, starting the upstream (and the session task, which takes its
    /// events) on the session's first message.
    fn upstream_tx(&self) -> Result<upstream::budget::Sender<Bytes>, SendError> {
        let mut started = false;
        let (tx, spawn) = {
            let mut st = self.state();
            if let Some(reason) = st.ended {
                return Err(SendError::Ended(reason));
            }
            if matches!(st.upstream, UpstreamState::NotStarted) {
                let resume = st.upstream_session.as_deref().cloned().map(|(url, id)| upstream::Resume {
                    url,
                    id,
                    protocol_version: st.protocol_version.clone(),
                });
                let who = (self.id, self.principal.clone());
                let mut ctx = self.env.upstream.clone();
                ctx.direct = self.env.journal.is_none().then(|| self.direct_route());
                // The events channel is made here, not with the session: an idle session (a
                // legacy SSE stream that has sent nothing yet) holds no channel.
                let (events_tx, events_rx) = upstream::events(&self.env.upstream.pump);
                let up = upstream::start(&self.server, who, ctx, events_tx, resume);
                st.upstream = UpstreamState::Running(Box::new(up));
                st.started = Some(events_rx);
                started = true;
            }
            match &st.upstream {
                UpstreamState::Running(up) => (up.tx.clone(), st.task_to_spawn()),
                _ => return Err(SendError::Ended(st.ended.unwrap_or(CloseReason::UpstreamExited))),
            }
        };
        if started {
            self.wake.notify_one();
        }
        self.spawn_task_if(spawn);
        Ok(tx)
    }

    /// Opens a POST stream for `requests` requests, read by a client connected here.
    pub fn open_stream(&self, requests: usize, json: bool) -> Result<(Opened, Attached), SendError> {
        let reason = CloseCell::default();
        let (tx, rx) = frames();
        let opened = self.open_stream_with(requests, json, Sink::Local(tx), reason.clone())?;
        Ok((opened, Attached { stream: opened.stream, replay: Vec::new(), rx, reason }))
    }

    /// Opens a POST stream whose events go to `sink`.
    pub(crate) fn open_stream_with(
        &self,
        requests: usize,
        json: bool,
        sink: Sink,
        reason: CloseCell,
    ) -> Result<Opened, SendError> {
        let mut st = self.state();
        if let Some(reason) = st.ended {
            return Err(SendError::Ended(reason));
        }
        let n = st.next_stream;
        st.next_stream += 1;
        st.persist(|| journal::Entry::NextStream(n + 1));
        let mut stream = Stream::new(&self.settings, json, &self.budget);
        stream.open_requests = requests;
        stream.live = Some(Live { sink, reason });
        st.streams.insert(n, stream);
        let polling = st.polling();
        let priming = if polling && !json { st.reserve(n) } else { None };
        Ok(Opened { stream: n, priming, polling })
    }

    /// Attaches a client connected here to stream `stream`, replaying what it missed after
    /// `after`. `replace` lets a reconnecting client take the place of a stream the server
    /// still thinks is alive; otherwise a second live standalone stream is a conflict.
    pub fn attach(&self, stream: u32, after: Option<u64>, replace: bool) -> Result<Attached, AttachError> {
        let reason = CloseCell::default();
        let (tx, rx) = frames();
        let info = self.attach_with(stream, after, replace, Sink::Local(tx), reason.clone())?;
        Ok(Attached { stream, replay: info.replay, rx, reason })
    }

    /// Attaches `sink` to stream `stream`; a finished stream only replays.
    pub(crate) fn attach_with(
        &self,
        stream: u32,
        after: Option<u64>,
        replace: bool,
        sink: Sink,
        reason: CloseCell,
    ) -> Result<AttachInfo, AttachError> {
        let mut st = self.state();
        if let Some(reason) = st.ended {
            return Err(AttachError::Ended(reason));
        }
        st.last_activity = Instant::now();
        let held_from = st.hold.first(stream);
        let s = st.streams.get_mut(&stream).ok_or(AttachError::NoStream(stream))?;
        if s.live.as_ref().is_some_and(Live::reading) && !replace {
            return Err(AttachError::Conflict);
        }
        let mut replay = match after {
            Some(after) => s.log.after(after)?,
            None => Vec::new(),
        };
        // What is held is sent to this client when the hold is released.
        if let Some(first) = held_from {
            replay.retain(|e| e.seq < first);
        }
        // The client has what it acknowledged and is about to get the rest: nothing logged is
        // unsent any more, so it no longer counts against the overflow bound.
        s.log.mark_all_sent();
        if s.done {
            let _ = reason.set(CloseReason::Completed);
        } else {
            // The same holder asking again for what it missed (see `cluster/resync.rs`) keeps
            // its stream: nothing is closed.
            let same = matches!(&sink, Sink::Remote(r) if s.live.as_ref().is_some_and(|l| l.is_remote(r.token())));
            if let Some(old) = s.live.replace(Live { sink, reason }).filter(|_| !same) {
                old.close(CloseReason::Replaced);
            }
        }
        Ok(AttachInfo { replay, done: s.done })
    }

    /// A remote holder's client went away from stream `stream`.
    pub fn detached_remote(&self, stream: u32, token: u64) {
        self.detach_if(stream, |l| l.is_remote(token));
    }

    /// Called by a stream body when the client went away.
    pub fn detached(&self, stream: u32, rx_reason: &CloseCell) {
        self.detach_if(stream, |l| Arc::ptr_eq(&l.reason, rx_reason));
    }

    /// Lets go of stream `stream`'s client if it is the one `is_it` names: the idle countdown
    /// starts (and with it the session task, if it has none yet).
    fn detach_if(&self, stream: u32, is_it: impl Fn(&Live) -> bool) {
        let spawn = {
            let mut st = self.state();
            st.last_activity = Instant::now();
            if let Some(s) = st.streams.get_mut(&stream) {
                if s.live.as_ref().is_some_and(&is_it) {
                    s.live = None;
                }
            }
            st.task_to_spawn()
        };
        self.spawn_task_if(spawn);
    }
}

impl Stream {
    fn new(settings: &SessionSettings, json: bool, budget: &Budget) -> Stream {
        Stream {
            log: EventLog::new(settings.event_log_size, settings.event_log_age, budget.clone()),
            live: None,
            open_requests: 0,
            done: false,
            json,
        }
    }
}

impl State {
    /// The client cancelled one of its requests: no answer will come (the server SHOULD NOT
    /// send one), so the request no longer holds its stream open.
    fn cancelled(&mut self, raw: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Cancel<'a> {
            #[serde(borrow)]
            params: Option<CancelParams<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct CancelParams<'a> {
            #[serde(borrow, rename = "requestId")]
            request_id: Option<&'a serde_json::value::RawValue>,
        }
        let Ok(c) = serde_json::from_slice::<Cancel>(raw) else { return };
        let Some(id) = c.params.and_then(|p| p.request_id).map(|r| r.get()) else { return };
        let Some(p) = self.pending.remove(id) else { return };
        if let Some(t) = &p.progress_token {
            self.progress.remove(t);
        }
        if let Some(entry) = self.timeline.iter_mut().rev().find(|e| e.id == metrics::clip(id)) {
            entry.outcome = "cancelled";
        }
        let id: Box<str> = id.into();
        self.persist(|| journal::Entry::Answered { id });
        if let Target::Stream(n) = p.stream {
            self.request_done(n);
        }
    }

    /// One request of stream `n` is over; a POST stream with none left is complete.
    fn request_done(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        let Some(s) = self.streams.get_mut(&n) else { return };
        s.open_requests = s.open_requests.saturating_sub(1);
        if s.open_requests == 0 && !s.done {
            s.done = true;
            if let Some(l) = s.live.take() {
                l.close(CloseReason::Completed);
            }
            self.done_streams.push_back(n);
            while self.done_streams.len() > DONE_STREAMS_KEPT {
                if let Some(old) = self.done_streams.pop_front() {
                    self.streams.remove(&old);
                }
            }
        }
    }

    /// Writes an entry to the session's journal, if it has one (cluster mode).
    fn persist(&self, entry: impl FnOnce() -> journal::Entry) {
        if let Some((journal, sid)) = self.persist.as_deref() {
            journal.write(*sid, entry());
        }
    }

    fn polling(&self) -> bool {
        self.protocol_version.as_deref().is_some_and(|v| crate::protocol::at_least(v, crate::protocol::V2025_11_25))
    }

    fn reserve(&mut self, stream: u32) -> Option<u64> {
        let seq = self.streams.get_mut(&stream)?.log.reserve();
        self.persist(|| journal::Entry::Reserve { stream, seq });
        Some(seq)
    }
}

#[cfg(test)]
mod size {
    /// An idle legacy SSE stream holds one `Arc<Session>`. With the `Arc`'s two counts it fits
    /// jemalloc's 512-byte class, because the fields a session may never use are boxed (issue
    /// 16). A field that crosses the class costs every idle stream 128 bytes more.
    #[test]
    fn an_idle_session_fits_the_512_byte_class() {
        let arc = std::mem::size_of::<super::Session>() + 2 * std::mem::size_of::<usize>();
        assert!(arc <= 512, "Arc<Session> is {arc} bytes: box a field an idle session does not use (docs/perf/idle-streams.md)");
    }
}
