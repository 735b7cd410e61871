//! The kinds of upstream (an aggregate's members are upstreams of the other kinds). Each runs as one task that takes client messages from a
//! channel and reports upstream messages and its own end as [`UpstreamEvent`]s (a session's own
//! stdio child without a journal routes its messages through [`Direct`] instead). Dropping the
//! [`Upstream`] aborts the task, which kills a child's whole process group.

pub(crate) mod aggregate;
pub(crate) mod budget;
mod cause;
mod framing;
mod http;
pub(crate) mod modern;
mod oauth;
pub(crate) mod pool;
mod pump;
pub(crate) mod reaper;
mod shared;
mod sse;
pub mod stderr;
mod stdio;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::config::{ServerConfig, UpstreamSpec};
use crate::ids::{CloseReason, SessionId};
use crate::sse::parse::{Event, Item, Parser};
pub(crate) use cause::{cause, redirect};

/// Client messages queued for an upstream before senders wait (and as many upstream
/// messages for the session task); `limits.upstream_queue_bytes` bounds both in bytes too.
pub(crate) const QUEUE: usize = 256;

/// The upstream's side of the session's event channel, and the session task's.
pub(crate) type Events = budget::Sender<UpstreamEvent>;
pub(crate) type EventsRx = budget::Receiver<UpstreamEvent>;

/// A session's event channel: [`QUEUE`] messages and `limits.upstream_queue_bytes` at most.
pub(crate) fn events(limits: &crate::config::pump::PumpLimits) -> (Events, EventsRx) {
    budget::channel(QUEUE, limits.queue_bytes)
}

#[derive(Debug)]
pub(crate) enum UpstreamEvent {
    Message(Bytes),
    /// A remote Streamable HTTP upstream issued its session id.
    Session {
        url: String,
        id: String,
    },
    Closed {
        reason: CloseReason,
        detail: String,
    },
}

/// An upstream session to continue rather than open (a session taken over in cluster mode).
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    pub url: String,
    pub id: String,
    pub protocol_version: Option<String>,
}

/// What every upstream shares: the HTTP client for remote ones, the child slots, the pools
/// and shared children, and the pump limits. (What only sessions read is in `session::Env`.)
#[derive(Clone)]
pub struct Context {
    pub http: reqwest::Client,
    pub children: ChildSlots,
    pub pools: Arc<pool::Pools>,
    pub shared: Arc<shared::SharedChildren>,
    /// Which protocol versions remote upstreams serve (their `server/discover`).
    pub eras: Arc<modern::Eras>,
    /// `limits.upstream_stall` and `limits.max_message`.
    pub pump: crate::config::pump::PumpLimits,
    /// The server's OAuth 2.0 token, set per upstream from `[servers.NAME.oauth2]`.
    pub(crate) oauth: Option<Arc<oauth::TokenSource>>,
    /// Set per upstream by a session that holds nothing back (no journal): a stdio child's
    /// messages are routed by the task that reads them, not sent to the session task.
    pub(crate) direct: Option<Direct>,
}

/// Routes one upstream message in its session; `false` once the session is dropped (one that
/// ended but is still held drops the message, and aborts this upstream anyway).
pub(crate) type Direct = Arc<dyn Fn(Bytes) -> bool + Send + Sync>;

/// Counts running child processes against `limits.max_children`.
#[derive(Clone)]
pub struct ChildSlots {
    running: Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
}

/// One running child's slot, given back when dropped.
pub struct ChildSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for ChildSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl ChildSlots {
    pub fn new(max: usize) -> ChildSlots {
        ChildSlots { running: Arc::default(), max }
    }

    /// A slot, or `None` when `max` children already run.
    pub fn take(&self) -> Option<ChildSlot> {
        use std::sync::atomic::Ordering;
        let taken = self.running.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.max).then_some(n + 1)).is_ok();
        taken.then(|| ChildSlot(self.running.clone()))
    }

    pub fn running(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A running upstream: the sender of client messages, and the task behind it.
pub(crate) struct Upstream {
    pub tx: budget::Sender<Bytes>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the upstream of one session (`principal`: its client, which picks its shared child).
pub(crate) fn start(
    server: &ServerConfig,
    (session, principal): (SessionId, Option<Arc<str>>),
    mut ctx: Context,
    events: Events,
    resume: Option<Resume>,
) -> Upstream {
    // A server with its own TLS or proxy settings reaches its upstream with its own client.
    ctx.http = server.http(&ctx.http).clone();
    ctx.oauth = server.oauth2.as_ref().map(|o| oauth::source(&server.name, o, &ctx.http));
    let (tx, rx) = budget::channel(QUEUE, ctx.pump.queue_bytes);
    let name: Arc<str> = server.name.as_str().into();
    let direct = ctx.direct.take();
    let task = match server.upstream.clone() {
        UpstreamSpec::Stdio { command, args, env, cwd } => {
            // A shared child's messages go to its demultiplexer, not to one session.
            let direct = direct.filter(|_| !server.shared);
            let spec = stdio::Spec { command, args, env, cwd, pump: ctx.pump, direct };
            if server.shared {
                let shared = ctx.shared.get(&server.name, principal, spec, ctx.children.clone());
                tokio::spawn(shared.serve(session, rx, events))
            } else {
                tokio::spawn(stdio::run(spec, name, session, ctx.children.clone(), rx, events))
            }
        }
        UpstreamSpec::StreamableHttp { url, headers } => {
            let pool = server.pool.as_ref().map(|p| ctx.pools.get(&server.name, p, &ctx.http, &headers));
            tokio::spawn(http::run(url, headers, ctx, session, (pool, resume), rx, events))
        }
        UpstreamSpec::Sse { url, headers } => tokio::spawn(sse::run(url, headers, ctx, session, rx, events)),
        UpstreamSpec::Aggregate(agg) => tokio::spawn(aggregate::run(agg, name, (session, principal), ctx, rx, events)),
    };
    Upstream { tx, task }
}

/// The SSE events of a response body, in order; ends at EOF or on a read error.
pub(crate) fn sse_events(resp: reqwest::Response) -> impl futures_util::Stream<Item = Event> + Send {
    sse_events_within(resp, crate::sse::parse::MAX_LINE)
}

/// The event type [`sse_events_within`] ends a stream with when an event was over its bound.
pub(crate) const TOO_LONG_EVENT: &str = "mcp-bridge-too-long";

/// [`sse_events`], with no line or event's data over `max` bytes: a longer one ends the stream
/// with an event of type [`TOO_LONG_EVENT`] (nothing of it is held past `max`).
pub(crate) fn sse_events_within(resp: reqwest::Response, max: usize) -> impl futures_util::Stream<Item = Event> + Send {
    let body = resp.bytes_stream();
    futures_util::stream::unfold((body, Some(Parser::with_limit(max))), move |(mut body, parser)| async move {
        let mut parser = parser?;
        loop {
            match parser.try_next_item() {
                Ok(Some(Item::Event(ev))) => return Some((ev, (body, Some(parser)))),
                Ok(Some(Item::Comment(_))) => continue,
                Ok(None) => {}
                Err(_) => {
                    tracing::warn!(
                        "a remote upstream sent an SSE event over limits.max_message ({max} bytes); its stream is closed"
                    );
                    let ev = Event { event: Some(TOO_LONG_EVENT.to_string()), ..Event::default() };
                    return Some((ev, (body, None)));
                }
            }
            match body.next().await {
                Some(Ok(chunk)) => parser.feed(&chunk),
                _ => return None,
            }
        }
    })
}

/// Applies configured headers to a remote request.
pub(crate) fn with_headers(
    mut req: reqwest::RequestBuilder,
    headers: &std::collections::BTreeMap<String, String>,
) -> reqwest::RequestBuilder {
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req
}
