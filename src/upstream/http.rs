//! A remote Streamable HTTP server. Each client session is one upstream session: the bridge
//! POSTs the client's messages, reads JSON or SSE answers, holds the upstream GET stream for
//! server-initiated messages, and DELETEs the upstream session when the client's ends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::sync::oneshot;

use super::pool::{Lease, Pool};
use super::{sse_events_within, with_headers, Context, Resume, UpstreamEvent, TOO_LONG_EVENT};
use crate::ids::{CloseReason, SessionId};
use crate::protocol::jsonrpc::{self, Kind};
use crate::protocol::method;

/// Resumptions in a row that bring no event before a request is given up.
const MAX_IDLE_RESUMES: u32 = 10;
/// Cap on the `retry:` delay honoured before a resumption.
const MAX_RETRY_MS: u64 = 10_000;
/// How long the relay holds a session's next message while the upstream's standalone GET
/// stream opens (see `Remote::listen`); past it the message goes out anyway.
const LISTEN_OPEN_WAIT: Duration = Duration::from_secs(5);
/// Failed attempts in a row after which the standalone GET stream is given up.
const MAX_LISTEN_FAILURES: u32 = 5;
/// Longest wait between two attempts at the standalone GET stream after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A GET stream open at least this long was healthy, even if it brought no event (an idle
/// stream cut by a proxy's timeout).
const HEALTHY_STREAM: Duration = Duration::from_secs(10);
/// Shortest wait before reconnecting the standalone GET stream, whatever `retry:` says: a server
/// that answers every GET with `retry: 0` and a close does not make the bridge spin.
const MIN_RECONNECT: Duration = Duration::from_millis(100);

/// How an SSE response from the remote server ended.
#[derive(Default)]
struct StreamEnd {
    /// Events seen, priming events included.
    events: usize,
    answered: bool,
    last_id: Option<String>,
    retry: Option<u64>,
    /// An event was over `limits.max_message`; the stream was closed there.
    too_long: bool,
}

/// Upstream session state shared by the request tasks.
#[derive(Default)]
struct Shared {
    session_id: Option<String>,
    protocol_version: Option<String>,
}

struct Remote {
    url: String,
    headers: BTreeMap<String, String>,
    ctx: Context,
    shared: Mutex<Shared>,
    events: super::Events,
    /// The pool instance this session sticks to, told of each request's outcome.
    lease: Option<Lease>,
}

pub(super) async fn run(
    url: String,
    headers: BTreeMap<String, String>,
    ctx: Context,
    session: SessionId,
    (pool, resume): (Option<Arc<Pool>>, Option<Resume>),
    mut rx: super::budget::Receiver<Bytes>,
    events: super::Events,
) {
    if let Some(resume) = resume {
        // A session taken over: continue the upstream session its first owner opened.
        let lease = pool.as_ref().and_then(|p| p.lease_url(&resume.url));
        let shared = Shared { session_id: Some(resume.id), protocol_version: resume.protocol_version };
        let remote = Arc::new(Remote { url: resume.url, headers, ctx, shared: Mutex::new(shared), events, lease });
        tracing::info!(session = %session, url = %remote.url, "continuing the remote upstream session");
        return serve(remote, session, None, true, true, rx).await;
    }
    let Some(first) = rx.recv().await else { return };
    let first_peek = jsonrpc::peek(&first).ok();
    let is_init = first_peek.as_ref().is_some_and(|p| p.method.as_deref() == Some(method::INITIALIZE));
    // A server that serves only the stateless revision cannot be initialized: the bridge
    // adapts the session to it instead.
    if is_init && pool.is_none() {
        // The probe carries the server's OAuth 2.0 token too.
        let token = match &ctx.oauth {
            Some(o) => o.token().await.ok().map(|t| ("authorization".to_string(), format!("Bearer {t}"))),
            None => None,
        };
        let probe_headers: BTreeMap<String, String> = headers.clone().into_iter().chain(token).collect();
        if let Some(versions) = ctx.eras.supported(&ctx.http, &url, &probe_headers).await {
            let modern = |v: &String| crate::protocol::MODERN_VERSIONS.contains(&v.as_str());
            if !versions.is_empty() && versions.iter().all(modern) {
                return super::modern::run(url, headers, ctx, session, first, versions, rx, events).await;
            }
        }
    }
    // Choose the instance: with a pool, the initialize moves on to the next instance until
    // one answers; the session then sticks to it.
    let mut tried = Vec::new();
    let remote = loop {
        let lease = pool.as_ref().and_then(|p| p.pick(&tried));
        let more = pool.as_ref().is_some_and(|p| tried.len() + 1 < p.len());
        let url = lease.as_ref().map_or(url.clone(), |l| l.url().to_string());
        let remote = Arc::new(Remote {
            url,
            headers: headers.clone(),
            ctx: ctx.clone(),
            shared: Mutex::default(),
            events: events.clone(),
            lease,
        });
        if !is_init {
            break remote;
        }
        // The handshake is awaited: everything after it needs the upstream session id.
        match remote.post(first.clone(), first_peek.clone(), !more).await {
            Ok(()) => break remote,
            Err(detail) if more => {
                tracing::warn!(session = %session, url = %remote.url, "pool instance failed the handshake, trying the next: {detail}");
                if let Some(l) = &remote.lease {
                    tried.push(l.index());
                }
            }
            Err(detail) => {
                let _ = events.send(UpstreamEvent::Closed { reason: CloseReason::UpstreamFailedToStart, detail }).await;
                return;
            }
        }
    };
    let pending_first = (!is_init).then_some(first);
    serve(remote, session, pending_first, is_init, false, rx).await;
}

/// Relays a session's messages once its upstream session is open (or being opened).
/// `listen_now`: the session is continued, so its standalone stream is reopened at once.
async fn serve(
    remote: Arc<Remote>,
    session: SessionId,
    mut pending_first: Option<Bytes>,
    mut initialized: bool,
    listen_now: bool,
    mut rx: super::budget::Receiver<Bytes>,
) {
    let _delete = DeleteOnDrop(remote.clone());
    // Request and listener tasks; dropping the set (the session ended) aborts them.
    let mut tasks = tokio::task::JoinSet::new();
    if listen_now {
        start_listening(&remote, &mut tasks, session).await;
    }
    loop {
        let msg = match pending_first.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => break,
            },
        };
        let peek = jsonrpc::peek(&msg).ok();
        let is_init = peek.as_ref().is_some_and(|p| p.method.as_deref() == Some(method::INITIALIZE));
        if is_init && !initialized {
            if let Err(detail) = remote.post(msg, peek, true).await {
                let _ = remote.events.send(UpstreamEvent::Closed { reason: CloseReason::UpstreamFailedToStart, detail }).await;
                return;
            }
            initialized = true;
            continue;
        }
        while tasks.try_join_next().is_some() {}
        let starts_get = peek.as_ref().is_some_and(|p| p.method.as_deref() == Some(method::INITIALIZED));
        let is_request = peek.as_ref().is_some_and(|p| p.kind == Kind::Request);
        if !is_request {
            // Notifications and answers are acknowledged at once (202): sending them in line
            // keeps their order, so `initialized` is there before the next request. A server
            // that holds one longer than `limits.upstream_stall` is not waited for further.
            let posted = remote.post(msg, peek, true);
            let posted = match remote.ctx.pump.upstream_stall {
                Some(bound) => {
                    tokio::time::timeout(bound, posted).await.unwrap_or_else(|_| Err(format!("no answer within {bound:?}")))
                }
                None => posted.await,
            };
            if let Err(detail) = posted {
                tracing::warn!(session = %session, "remote upstream: {detail}");
            }
            if starts_get {
                start_listening(&remote, &mut tasks, session).await;
            }
            continue;
        }
        // A request may take long, and may need the client's answer to a server request
        // meanwhile: it runs on its own, in a set that dies with the session.
        let r = remote.clone();
        tasks.spawn(async move {
            if let Err(detail) = r.post(msg, peek, true).await {
                tracing::warn!(session = %session, "remote upstream: {detail}");
            }
        });
    }
}

/// Opens the upstream's standalone GET stream in its own task, and returns once the upstream
/// has answered the GET (or refused it, or `LISTEN_OPEN_WAIT` passed). Nothing else of the
/// session is relayed meanwhile, and that is the point: a server writes a request that belongs
/// to no client request (sampling or elicitation sent without a related request id, as the
/// official TypeScript SDK's `server.request` does, or server-everything's `roots/list` 350 ms
/// after `initialized`) on the GET stream, and if that stream is not open yet it only stores
/// the message for a `Last-Event-ID` replay that a first GET never asks for. Relaying the
/// client's next request while the GET was still on its way let the request overtake it
/// (another connection, another task); the tool's question was then lost and the call hung
/// until a timeout.
async fn start_listening(remote: &Arc<Remote>, tasks: &mut tokio::task::JoinSet<()>, session: SessionId) {
    let (opened_tx, opened) = oneshot::channel();
    let r = remote.clone();
    tasks.spawn(async move { r.listen(opened_tx).await });
    // An error means the listener ended before it could say so: nothing to wait for.
    if tokio::time::timeout(LISTEN_OPEN_WAIT, opened).await.is_err() {
        tracing::warn!(session = %session, url = %remote.url, "the remote upstream's GET stream did not open within {LISTEN_OPEN_WAIT:?}; relaying on without it");
    }
}

impl Remote {
    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut req = with_headers(self.ctx.http.request(method, &self.url), &self.headers);
        if let Some(token) = self.ctx.oauth.as_ref().and_then(|o| o.current()) {
            req = req.bearer_auth(token);
        }
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = &shared.session_id {
            req = req.header("mcp-session-id", id);
        }
        if let Some(v) = &shared.protocol_version {
            req = req.header("mcp-protocol-version", v);
        }
        req
    }

    /// POSTs one message and forwards what comes back. A request that fails gets a JSON-RPC
    /// error, so the client never waits for an answer that cannot come.
    /// With `answer_failures`, a request that fails gets a JSON-RPC error from the bridge.
    async fn post(&self, msg: Bytes, peek: Option<jsonrpc::Peek>, answer_failures: bool) -> Result<(), String> {
        let r = self.post_once(msg, peek, answer_failures).await;
        if let Some(l) = &self.lease {
            l.report(r.is_ok());
        }
        r
    }

    async fn post_once(&self, msg: Bytes, peek: Option<jsonrpc::Peek>, answer_failures: bool) -> Result<(), String> {
        let request_id = peek.as_ref().filter(|p| p.kind == Kind::Request && answer_failures).and_then(|p| p.id.clone());
        let request_id = request_id.as_deref();
        let send = |msg: Bytes| {
            self.request(reqwest::Method::POST)
                .header(ACCEPT, "application/json, text/event-stream")
                .header(CONTENT_TYPE, "application/json")
                .body(msg)
                .send()
        };
        let mut resp = match &self.ctx.oauth {
            Some(o) => match o.token().await {
                Ok(_) => send(msg.clone()).await,
                Err(e) => return self.fail(request_id, e).await,
            },
            None => send(msg.clone()).await,
        };
        if let (Some(o), Ok(r)) = (&self.ctx.oauth, &resp) {
            if r.status() == reqwest::StatusCode::UNAUTHORIZED {
                // The token was revoked or expired early: one fresh token, one retry.
                if let Err(e) = o.refresh(o.current().as_deref()).await {
                    return self.fail(request_id, e).await;
                }
                tracing::info!(url = %self.url, "the remote upstream answered 401; retrying once with a fresh oauth2 token");
                resp = send(msg).await;
            }
        }
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return self.fail(request_id, format!("POST {}: {}", self.url, super::cause(&e))).await,
        };
        self.note_session(&resp).await;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND && self.shared.lock().unwrap_or_else(|e| e.into_inner()).session_id.is_some()
        {
            let detail = "the remote server no longer knows this session".to_string();
            let _ = self.events.send(UpstreamEvent::Closed { reason: CloseReason::UpstreamExited, detail: detail.clone() }).await;
            return Err(detail);
        }
        if let Some(redirect) = super::redirect(&resp) {
            return self.fail(request_id, format!("POST {} answered {status}: {redirect}", self.url)).await;
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let detail = format!("POST {} answered {status}: {}", self.url, body.chars().take(200).collect::<String>());
            return self.fail(request_id, detail).await;
        }
        let is_sse =
            resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
        if is_sse {
            let end = self.forward_stream(resp, request_id).await;
            return self.resume_until_answered(end, request_id).await;
        } else if status != reqwest::StatusCode::ACCEPTED {
            let body = match read_within(resp, self.ctx.pump.max_message).await {
                Ok(b) => b,
                Err(e) => return self.fail(request_id, format!("reading the answer: {e}")).await,
            };
            if !body.is_empty() {
                self.forward(body).await;
            }
        }
        Ok(())
    }

    /// A failed POST: the request it carried (when it is to be answered) gets a JSON-RPC error
    /// from the bridge, and the failure is returned.
    async fn fail(&self, request_id: Option<&str>, detail: String) -> Result<(), String> {
        if let Some(id) = request_id {
            let err = jsonrpc::error(Some(id), jsonrpc::code::INTERNAL_ERROR, &format!("mcp-bridge: upstream: {detail}"));
            let _ = self.events.send(UpstreamEvent::Message(err)).await;
        }
        Err(detail)
    }

    /// Keeps the upstream session id an answer carries, and reports it when it is new.
    async fn note_session(&self, resp: &reqwest::Response) {
        if let Some(id) = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            let new =
                self.shared.lock().unwrap_or_else(|e| e.into_inner()).session_id.replace(id.to_string()).as_deref() != Some(id);
            if new {
                // Recorded, so that a successor in the cluster continues this upstream session.
                let _ = self.events.send(UpstreamEvent::Session { url: self.url.clone(), id: id.to_string() }).await;
            }
        }
    }

    /// SEP-1699 (2025-11-25): the server may close a POST stream before it answers; the answer
    /// then comes on a GET that resumes after the last event id. Resumes until the request is
    /// answered, or fails it.
    async fn resume_until_answered(&self, mut end: StreamEnd, request_id: Option<&str>) -> Result<(), String> {
        let mut idle_resumes = 0;
        while let Some(id) = request_id.filter(|_| !end.answered) {
            if end.too_long {
                let max = self.ctx.pump.max_message;
                let detail = format!("an event of the answer to request {id} was over limits.max_message ({max} bytes)");
                return self.fail(request_id, detail).await;
            }
            let Some(last) = end.last_id.clone() else {
                let detail = format!(
                    "the remote server closed the stream of request {id} before answering, without an event id to resume from"
                );
                return self.fail(request_id, detail).await;
            };
            if idle_resumes >= MAX_IDLE_RESUMES || self.events.is_closed() {
                let detail = format!("the remote server did not answer request {id} after {idle_resumes} resumptions");
                return self.fail(request_id, detail).await;
            }
            tokio::time::sleep(Duration::from_millis(end.retry.unwrap_or(1000).min(MAX_RETRY_MS))).await;
            let resumed = self
                .request(reqwest::Method::GET)
                .header(ACCEPT, "text/event-stream")
                .header("last-event-id", &last)
                .send()
                .await;
            let resp = match resumed {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => {
                    let detail = format!("resuming after event {last}: GET {} answered {}", self.url, r.status());
                    return self.fail(request_id, detail).await;
                }
                Err(e) => {
                    let detail = format!("resuming after event {last}: GET {}: {}", self.url, super::cause(&e));
                    return self.fail(request_id, detail).await;
                }
            };
            let next = self.forward_stream(resp, Some(id)).await;
            idle_resumes = if next.events > 0 { 0 } else { idle_resumes + 1 };
            end = StreamEnd { last_id: next.last_id.or(Some(last)), retry: next.retry.or(end.retry), ..next };
        }
        Ok(())
    }

    /// Forwards every message of an SSE response, and says how it ended: whether it carried
    /// the response to `request` and the last event id and `retry:` it gave.
    async fn forward_stream(&self, resp: reqwest::Response, request: Option<&str>) -> StreamEnd {
        let mut end = StreamEnd::default();
        let mut events = std::pin::pin!(sse_events_within(resp, self.ctx.pump.max_message));
        while let Some(ev) = events.next().await {
            if ev.event.as_deref() == Some(TOO_LONG_EVENT) {
                end.too_long = true;
                break;
            }
            end.events += 1;
            if let Some(id) = ev.id.filter(|id| !id.is_empty()) {
                end.last_id = Some(id);
            }
            end.retry = ev.retry.or(end.retry);
            if matches!(ev.event.as_deref(), None | Some("message")) && !ev.data.trim().is_empty() {
                let data = Bytes::from(ev.data);
                if let Some(r) = request {
                    let answers = |p: jsonrpc::Peek| p.kind == Kind::Response && p.id.as_deref() == Some(r);
                    end.answered |=
                        jsonrpc::split(&data).is_ok_and(|(items, _)| items.iter().any(|m| jsonrpc::peek(m).is_ok_and(answers)));
                }
                self.forward(data).await;
            }
        }
        end
    }

    async fn forward(&self, body: Bytes) {
        let Ok((items, batch)) = jsonrpc::split(&body) else {
            tracing::warn!(url = %self.url, "remote upstream sent a body that is not JSON");
            return;
        };
        for item in items {
            if let Some(v) = jsonrpc::peek(&item).ok().and_then(|p| p.protocol_version) {
                self.shared.lock().unwrap_or_else(|e| e.into_inner()).protocol_version = Some(v);
            }
            // The event log keeps it: a copy of its own size, not a slice of the read buffer (a
            // batch's elements are copies already).
            let item = if batch { item } else { Bytes::copy_from_slice(&item) };
            if self.events.send(UpstreamEvent::Message(item)).await.is_err() {
                return;
            }
        }
    }

    /// Holds the upstream's standalone GET stream for server-initiated messages, reconnecting
    /// when the upstream closes it. A reconnect carries `Last-Event-ID` once the stream gave an
    /// event id, so that what the upstream stored while no stream was open (a server that polls
    /// closes the stream after an event; its requests and notifications wait in its event store)
    /// is replayed, and waits as its `retry:` asks (see [`reconnect_delay`]). 405 ends the
    /// attempts, and so do `MAX_LISTEN_FAILURES` failures in a row. `opened` is told once the
    /// first GET has its answer's headers (the upstream has then registered the stream), or
    /// failed. The task dies with the session; the relay never waits on a reconnect.
    async fn listen(&self, opened: oneshot::Sender<()>) {
        let mut opened = Some(opened);
        let mut last_id: Option<String> = None;
        let mut retry: Option<u64> = None;
        let mut failures = 0;
        loop {
            let mut req = self.request(reqwest::Method::GET).header(ACCEPT, "text/event-stream");
            if let Some(id) = &last_id {
                req = req.header("last-event-id", id);
            }
            let started = tokio::time::Instant::now();
            let resp = req.send().await;
            if let Some(tx) = opened.take() {
                let _ = tx.send(());
            }
            match resp {
                Ok(r) if r.status().is_success() => {
                    let end = self.forward_stream(r, None).await;
                    last_id = end.last_id.or(last_id);
                    retry = end.retry.or(retry);
                    // A stream that brought nothing and ended at once counts as a failure, so
                    // that a server that closes every GET is not asked again and again.
                    let healthy = end.events > 0 || started.elapsed() >= HEALTHY_STREAM;
                    failures = if healthy { 0 } else { failures + 1 };
                }
                Ok(r) if r.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED => return,
                Ok(r) => {
                    failures += 1;
                    if let Some(id) = last_id.take() {
                        // The server no longer has the events after `id` (or never kept them):
                        // the next attempt opens a fresh stream.
                        tracing::warn!(url = %self.url, status = %r.status(), "remote upstream refused to resume its GET stream after event {id}; opening a new one, messages it sent meanwhile may be lost");
                    } else {
                        tracing::debug!(url = %self.url, status = %r.status(), "remote upstream refused the GET stream");
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(url = %self.url, error = %e, "remote upstream GET stream failed");
                }
            }
            if failures >= MAX_LISTEN_FAILURES || self.events.is_closed() {
                if failures > 0 {
                    tracing::warn!(url = %self.url, "remote upstream's GET stream failed {failures} times in a row; server-initiated messages outside requests are no longer received");
                }
                return;
            }
            tokio::time::sleep(reconnect_delay(retry, failures)).await;
        }
    }
}

/// How long to wait before reconnecting the standalone GET stream: the server's `retry:` (1 s
/// without one), within [`MIN_RECONNECT`, `MAX_RETRY_MS`]; after failures in a row, at least a backoff that
/// doubles from 1 s up to `MAX_BACKOFF`.
fn reconnect_delay(retry_ms: Option<u64>, failures: u32) -> Duration {
    let hinted = Duration::from_millis(retry_ms.unwrap_or(1000).min(MAX_RETRY_MS)).max(MIN_RECONNECT);
    if failures == 0 {
        return hinted;
    }
    let backoff = Duration::from_secs(1u64 << (failures - 1).min(16)).min(MAX_BACKOFF);
    hinted.max(backoff)
}

/// A response body of at most `max` bytes (`limits.max_message`); a longer one is refused
/// without being held.
async fn read_within(resp: reqwest::Response, max: usize) -> Result<Bytes, String> {
    let over = |n: u64| format!("the answer is {n} bytes or more, over limits.max_message ({max} bytes)");
    if let Some(n) = resp.content_length().filter(|n| *n > max as u64) {
        return Err(over(n));
    }
    let mut body = bytes::BytesMut::new();
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if body.len() + chunk.len() > max {
            return Err(over((body.len() + chunk.len()) as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Ends the upstream session when the client's session ends.
struct DeleteOnDrop(Arc<Remote>);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let has_session = self.0.shared.lock().unwrap_or_else(|e| e.into_inner()).session_id.is_some();
        if !has_session {
            return;
        }
        let req = self.0.request(reqwest::Method::DELETE);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), req.send()).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_follows_retry_within_bounds_and_backs_off() {
        assert_eq!(reconnect_delay(None, 0), Duration::from_secs(1));
        assert_eq!(reconnect_delay(Some(200), 0), Duration::from_millis(200));
        assert_eq!(reconnect_delay(Some(0), 0), MIN_RECONNECT);
        assert_eq!(reconnect_delay(Some(u64::MAX), 0), Duration::from_millis(MAX_RETRY_MS));
        assert_eq!(reconnect_delay(Some(200), 1), Duration::from_secs(1));
        assert_eq!(reconnect_delay(Some(200), 3), Duration::from_secs(4));
        assert_eq!(reconnect_delay(Some(5000), 2), Duration::from_secs(5));
        assert_eq!(reconnect_delay(None, 40), MAX_BACKOFF);
    }
}
