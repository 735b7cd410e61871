//! The 2026-07-28 (stateless) revision served from upstreams that speak the earlier,
//! session-based revisions. A modern request carries its protocol version, client identity and
//! capabilities in `params._meta`; the bridge maps it onto an upstream session it opened
//! itself with exactly those capabilities (a *backing session*), checked out for the one
//! request and returned afterwards. Server-initiated requests (sampling, elicitation, roots)
//! become `InputRequiredResult`s (MRTR), and the client's retry finds the parked backing
//! session again through `requestState`. The HTTP side is `http::modern`; the wire knowledge
//! is `protocol::modern`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::app::AppState;
use crate::config::ServerConfig;
use crate::locator::{self, OpError};
use crate::protocol::headers::{param_headers, ToolHeaders};
use crate::protocol::jsonrpc::{self, Kind};
use crate::protocol::modern::{Init, RequestMeta, UPSTREAM_VERSION};
use crate::protocol::MODERN_VERSIONS;
use crate::session::{CloseReason, Frame, Session, SessionId, Transport};

/// Idle backing sessions kept per client identity at least; up to the most that identity ever
/// had busy at once are kept (a steady load of N concurrent requests reuses N sessions instead
/// of starting children), and every idle one still ends after `sessions.idle_timeout`.
const IDLE_PER_KEY: usize = 4;

/// Backing sessions are shared only by requests of one principal that declare the same
/// client identity and capabilities: the upstream was initialized with exactly those.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    server: String,
    principal: Option<Arc<str>>,
    client: u64,
}

impl Key {
    fn of(server: &str, principal: Option<&Arc<str>>, meta: &RequestMeta) -> Key {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        meta.capabilities.as_ref().map(|c| c.get()).hash(&mut h);
        meta.client_info.as_ref().map(|c| c.get()).hash(&mut h);
        Key { server: server.to_string(), principal: principal.cloned(), client: h.finish() }
    }
}

/// A backing session checked out for one request (or one listen stream). Dropped without
/// being returned (the request's future was dropped, an error cut it short), it ends the
/// session: what state the upstream is in is unknown.
pub struct Backing {
    pub session: Arc<Session>,
    pub init: Arc<Init>,
    key: Key,
    /// This checkout's number: only its own checkin or release frees the session.
    generation: u64,
    /// Set while the checkout is armed.
    guard: Option<AppState>,
}

impl Backing {
    /// Gives the session up without ending it (returned, or parked between MRTR rounds).
    fn disarm(&mut self) {
        self.guard = None;
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Some(app) = self.guard.take() {
            let detail = "the request that held this backing session ended before it was served";
            app.stateless.forget(&app, &self.session, CloseReason::Cancelled, detail);
        }
    }
}

/// A backing session being initialized: ended if the checkout is dropped meanwhile.
struct Starting<'a> {
    app: &'a AppState,
    session: Option<Arc<Session>>,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.app.locator.registry.remove(s.id);
            s.end(CloseReason::Cancelled, "the request was dropped while its backing session started");
        }
    }
}

/// Why a backing session could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("the upstream did not initialize: {0}")]
    Init(String),
}

/// The idle backing sessions of this instance, by client identity.
#[derive(Default)]
pub struct Pool {
    inner: Mutex<Inner>,
    /// Spreads passed-through requests over a pool's URLs.
    turn: std::sync::atomic::AtomicUsize,
    /// The key `requestState`s are signed with (random, or the cluster's shared one).
    secret: std::sync::OnceLock<[u8; 32]>,
    /// The `x-mcp-header` annotations of each server's tools, from its latest `tools/list`.
    tool_headers: Mutex<HashMap<String, Arc<ToolHeaders>>>,
}

#[derive(Default)]
struct Inner {
    /// Every backing session opened here that may still live: its key and initialize result.
    known: HashMap<SessionId, (Key, Arc<Init>)>,
    /// The same sessions by client identity, so a checkout looks only at its own.
    by_key: HashMap<Key, Vec<SessionId>>,
    /// Those checked out now (serving a request, or a listen stream), by checkout number.
    busy: HashMap<SessionId, u64>,
    /// The most backing sessions each client identity had busy at once.
    peak: HashMap<Key, usize>,
    checkouts: u64,
}

impl Inner {
    fn insert(&mut self, id: SessionId, key: Key, init: Arc<Init>) {
        self.by_key.entry(key.clone()).or_default().push(id);
        self.known.insert(id, (key, init));
    }

    /// Forgets a session; an identity left with none is forgotten too.
    fn remove(&mut self, id: SessionId) {
        self.busy.remove(&id);
        let Some((key, _)) = self.known.remove(&id) else { return };
        if let Some(ids) = self.by_key.get_mut(&key) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_key.remove(&key);
                self.peak.remove(&key);
            }
        }
    }

    /// Marks a session checked out, and remembers how many its identity has out now.
    fn take(&mut self, id: SessionId, key: &Key) -> u64 {
        self.checkouts += 1;
        self.busy.insert(id, self.checkouts);
        let out = self.by_key.get(key).map_or(0, |ids| ids.iter().filter(|i| self.busy.contains_key(*i)).count());
        let peak = self.peak.entry(key.clone()).or_default();
        *peak = (*peak).max(out);
        self.checkouts
    }

    /// Frees a session if checkout `generation` still holds it.
    fn free(&mut self, id: SessionId, generation: u64) {
        if self.busy.get(&id) == Some(&generation) {
            self.busy.remove(&id);
        }
    }

    /// The live sessions of `key` (forgetting the ones that ended: idle expiry, upstream exit).
    fn live(&mut self, app: &AppState, key: &Key) -> Vec<(Arc<Session>, bool)> {
        let ids = self.by_key.get(key).cloned().unwrap_or_default();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match app.locator.registry.get(id).filter(|s| s.ended().is_none()) {
                Some(s) => out.push((s, self.busy.contains_key(&id))),
                None => self.remove(id),
            }
        }
        out
    }

    /// An idle backing session of `key`: quiet and not checked out.
    fn idle_of(&mut self, app: &AppState, key: &Key) -> Option<(Arc<Session>, Arc<Init>)> {
        let session = self.live(app, key).into_iter().find(|(s, busy)| !busy && s.quiet()).map(|(s, _)| s)?;
        let init = self.known.get(&session.id)?.1.clone();
        Some((session, init))
    }

    /// Forgets every session that ended, of any identity (run when a session is created, which
    /// costs a child start anyway, so the pool's memory follows the live sessions).
    fn prune(&mut self, app: &AppState) {
        let dead: Vec<SessionId> =
            self.known.keys().filter(|id| app.locator.registry.get(**id).is_none_or(|s| s.ended().is_some())).copied().collect();
        for id in dead {
            self.remove(id);
        }
    }

    /// An idle backing session of anyone (to make room at the session cap).
    fn idle_any(&self, app: &AppState) -> Option<Arc<Session>> {
        self.known
            .keys()
            .filter(|id| !self.busy.contains_key(*id))
            .find_map(|id| app.locator.registry.get(*id).filter(|s| s.ended().is_none() && s.quiet()))
    }
}

impl Pool {
    /// The `requestState` signing key; a random one unless the cluster's was set first.
    pub fn secret(&self) -> &[u8; 32] {
        self.secret.get_or_init(|| {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).expect("the OS provides randomness");
            k
        })
    }

    /// Uses the cluster's shared signing key, so any instance verifies any retry.
    pub fn set_secret(&self, key: [u8; 32]) {
        let _ = self.secret.set(key);
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle backing session for this client (one that serves no request: none checked
    /// out here, none parked between MRTR rounds), or a new one initialized with its identity
    /// and capabilities.
    pub async fn checkout(
        &self,
        app: &AppState,
        server: Arc<ServerConfig>,
        principal: Option<Arc<str>>,
        meta: &RequestMeta,
    ) -> Result<Backing, CheckoutError> {
        let key = Key::of(&server.name, principal.as_ref(), meta);
        {
            let mut inner = self.inner();
            if let Some((session, init)) = inner.idle_of(app, &key) {
                let generation = inner.take(session.id, &key);
                return Ok(Backing { session, init, key, generation, guard: Some(app.clone()) });
            }
        }
        self.inner().prune(app);
        let session = match locator::create(&app.locator, server.clone(), Transport::Stateless, principal.clone()).await {
            // At the instance's cap, an idle backing session of another client makes room.
            Err(OpError::Limit { per_principal: false, .. }) if self.evict_one(app) => {
                locator::create(&app.locator, server, Transport::Stateless, principal).await?
            }
            other => other?,
        };
        let mut starting = Starting { app, session: Some(session.clone()) };
        match initialize(&session, meta, app.config.limits.request_timeout).await {
            Ok(init) => {
                starting.session = None;
                let init = Arc::new(init);
                let mut inner = self.inner();
                inner.insert(session.id, key.clone(), init.clone());
                let generation = inner.take(session.id, &key);
                Ok(Backing { session, init, key, generation, guard: Some(app.clone()) })
            }
            Err(e) => {
                starting.session = None;
                app.locator.registry.remove(session.id);
                session.end(CloseReason::Error, &e);
                Err(CheckoutError::Init(e))
            }
        }
    }

    /// Ends one idle backing session of any client; says whether there was one.
    fn evict_one(&self, app: &AppState) -> bool {
        let victim = {
            let mut inner = self.inner();
            let victim = inner.idle_any(app);
            if let Some(s) = &victim {
                inner.remove(s.id);
            }
            victim
        };
        let Some(s) = victim else { return false };
        app.locator.registry.remove(s.id);
        s.end(CloseReason::Completed, "an idle backing session made room for a new session (limits.max_sessions)");
        true
    }

    /// The backing session `id`, checked out for the retry of a request parked on it, if this
    /// instance opened it and it lives.
    pub fn local(&self, app: &AppState, id: SessionId) -> Option<Backing> {
        let session = app.locator.registry.get(id).filter(|s| s.ended().is_none())?;
        let mut inner = self.inner();
        let (key, init) = inner.known.get(&id).cloned()?;
        let generation = inner.take(id, &key);
        Some(Backing { session, init, key, generation, guard: Some(app.clone()) })
    }

    /// A request parked between MRTR rounds holds its backing session no longer; the session
    /// is idle again once the request completes, wherever its retry lands.
    pub fn release(&self, mut b: Backing) {
        b.disarm();
        self.inner().free(b.session.id, b.generation);
    }

    /// Returns a backing session whose request is over, for the next request of its client.
    pub fn checkin(&self, app: &AppState, mut b: Backing) {
        b.disarm();
        let surplus = {
            let mut inner = self.inner();
            inner.free(b.session.id, b.generation);
            if b.session.ended().is_some() {
                inner.remove(b.session.id);
                return;
            }
            let idle = inner.live(app, &b.key).iter().filter(|(s, busy)| !busy && s.quiet()).count();
            let keep = inner.peak.get(&b.key).copied().unwrap_or(0).max(IDLE_PER_KEY);
            // Decided and taken out of the pool under one lock: no checkout can pick it now.
            let surplus = idle > keep;
            if surplus {
                inner.remove(b.session.id);
            }
            surplus
        };
        if surplus {
            app.locator.registry.remove(b.session.id);
            b.session.end(CloseReason::Completed, "more idle backing sessions than this client ever used at once");
        }
    }

    /// Ends a backing session (a cancelled request's, or a closed listen stream's).
    pub fn forget(&self, app: &AppState, s: &Arc<Session>, reason: CloseReason, detail: &str) {
        self.inner().remove(s.id);
        app.locator.registry.remove(s.id);
        s.end(reason, detail);
    }

    /// Idle backing sessions held now (for tests and the admin view).
    pub fn idle(&self, app: &AppState) -> usize {
        let inner = self.inner();
        inner
            .known
            .keys()
            .filter(|id| !inner.busy.contains_key(*id) && app.locator.registry.get(**id).is_some_and(|s| s.quiet()))
            .count()
    }

    /// Whether the remote upstream at `url` serves a modern revision itself (its
    /// `server/discover` says so).
    pub async fn modern_upstream(
        &self,
        app: &AppState,
        http: &reqwest::Client,
        url: &str,
        headers: &BTreeMap<String, String>,
    ) -> bool {
        let versions = app.locator.ctx.eras.supported(http, url, headers).await;
        versions.is_some_and(|v| v.iter().any(|s| MODERN_VERSIONS.contains(&s.as_str())))
    }

    /// Remembers a server's `x-mcp-header` annotations from a `tools/list` answer.
    pub fn learn_tools(&self, server: &str, answer: &[u8]) {
        let map = Arc::new(param_headers(answer));
        self.tool_headers.lock().unwrap_or_else(|e| e.into_inner()).insert(server.to_string(), map);
    }

    /// A server's `x-mcp-header` annotations, asking the backing session for `tools/list`
    /// the first time.
    pub async fn tool_headers(&self, b: &Backing, timeout: Option<Duration>) -> Arc<ToolHeaders> {
        let server = b.session.server.name.clone();
        if let Some(known) = self.tool_headers.lock().unwrap_or_else(|e| e.into_inner()).get(&server) {
            return known.clone();
        }
        let list = Bytes::from_static(br#"{"jsonrpc":"2.0","id":"mcp-bridge-tools","method":"tools/list","params":{}}"#);
        match internal_request(&b.session, list, timeout).await {
            Ok(answer) => self.learn_tools(&server, &answer),
            Err(e) => tracing::warn!(server, error = %e, "could not list the upstream's tools to check Mcp-Param headers"),
        }
        self.tool_headers.lock().unwrap_or_else(|e| e.into_inner()).get(&server).cloned().unwrap_or_default()
    }

    /// The next URL of a pool for a passed-through request.
    pub fn pick<'a>(&self, urls: &'a [String]) -> &'a str {
        let n = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &urls[n % urls.len()]
    }
}

/// Opens the upstream side of a backing session: `initialize` with the modern client's
/// identity and capabilities, then `notifications/initialized`.
async fn initialize(session: &Arc<Session>, meta: &RequestMeta, timeout: Option<Duration>) -> Result<Init, String> {
    let caps = meta.capabilities.as_ref().map_or("{}", |c| c.get());
    let info = meta
        .client_info
        .as_ref()
        .map_or_else(|| format!(r#"{{"name":"mcp-bridge","version":"{}"}}"#, env!("CARGO_PKG_VERSION")), |c| c.get().to_string());
    let init = Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":"mcp-bridge-initialize","method":"initialize","params":{{"protocolVersion":"{UPSTREAM_VERSION}","capabilities":{caps},"clientInfo":{info}}}}}"#
    ));
    let answer = internal_request(session, init, timeout).await.map_err(|e| format!("initialize: {e}"))?;
    #[derive(Deserialize)]
    struct Answer {
        result: Option<Init>,
        error: Option<Box<RawValue>>,
    }
    let answer: Answer = serde_json::from_slice(&answer).map_err(|e| format!("unreadable initialize answer: {e}"))?;
    let init = match (answer.result, answer.error) {
        (Some(init), _) => init,
        (None, Some(e)) => return Err(format!("initialize failed: {}", e.get())),
        (None, None) => return Err("empty initialize answer".into()),
    };
    let initialized = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let peek = jsonrpc::peek(&initialized).map_err(|e| e.to_string())?;
    session.send(vec![(initialized, peek)], 0).await.map_err(|e| e.to_string())?;
    Ok(init)
}

/// A request of the bridge's own on a backing session, and its answer.
async fn internal_request(session: &Arc<Session>, msg: Bytes, timeout: Option<Duration>) -> Result<Bytes, String> {
    let peek = jsonrpc::peek(&msg).map_err(|e| format!("not a valid request (is the client's _meta JSON?): {e}"))?;
    let (opened, mut attached) = session.open_stream(1, true).map_err(|e| e.to_string())?;
    session.send(vec![(msg, peek)], opened.stream).await.map_err(|e| e.to_string())?;
    let wait = timeout.unwrap_or(Duration::from_secs(60)).min(Duration::from_secs(60));
    loop {
        match tokio::time::timeout(wait, attached.rx.recv()).await {
            Err(_) => return Err(format!("no answer within {wait:?}")),
            Ok(None) => return Err(format!("the upstream session ended ({})", session.ended().unwrap_or(CloseReason::Error))),
            Ok(Some(Frame::Message(_, data))) if jsonrpc::peek(&data).is_ok_and(|p| p.kind == Kind::Response) => return Ok(data),
            Ok(Some(_)) => continue,
        }
    }
}
