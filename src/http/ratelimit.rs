//! `[auth.rate_limits]`: token buckets (governor) and caps on requests in flight, per principal, per
//! server and per (principal, tool). Runs inside `[auth]`, so the principal is known. Every
//! request to a server's path takes a token from its principal's bucket and its server's; a
//! `tools/call` (in a JSON-RPC body, or a REST tool path) also from the (principal, tool)
//! bucket. Over a bucket: 429 with `Retry-After` (when a token comes back) and a JSON-RPC error
//! naming the request id. A POST counts as in flight until its answer's body ends; over an
//! in-flight cap: 429 with `Retry-After: 1`. Refusals are counted by principal class and
//! server, never by principal. In cluster mode the per-principal bucket is shared through
//! Redis (`cluster/ratelimit.rs`); should Redis fail, this instance's own bucket stands in.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::auth::{percent_decode, server_of, Principal};
use super::Error;
use crate::cluster::Cluster;
use crate::config::auth::ratelimit::{Bucket, RateLimits};
use crate::protocol::method;

/// Keyed buckets are swept of full (idle) keys once per this many requests.
const SWEEP_EVERY: u64 = 4096;
/// The longest tool name kept as a key.
const MAX_TOOL: usize = 128;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Key {
    Principal(Arc<str>),
    Server(String),
    Tool(Arc<str>, String),
}

impl Key {
    fn limit(&self) -> &'static str {
        match self {
            Key::Principal(_) => "per_principal",
            Key::Server(_) => "per_server",
            Key::Tool(..) => "per_tool",
        }
    }
}

/// The limits, built once at start.
pub(crate) struct Limits {
    settings: RateLimits,
    buckets: HashMap<&'static str, DefaultKeyedRateLimiter<Key>>,
    in_flight: Mutex<HashMap<Key, u32>>,
    servers: HashSet<String>,
    max_body: usize,
    seen: AtomicU64,
    /// In cluster mode: where the per-principal bucket is shared.
    cluster: Option<Arc<Cluster>>,
}

impl Limits {
    /// `None` when no limit is configured.
    pub(crate) fn new(
        settings: RateLimits,
        servers: impl IntoIterator<Item = String>,
        max_body: usize,
        cluster: Option<Arc<Cluster>>,
    ) -> Option<Arc<Limits>> {
        if settings == RateLimits::default() {
            return None;
        }
        let mut buckets = HashMap::new();
        for (name, b) in
            [("per_principal", settings.per_principal), ("per_server", settings.per_server), ("per_tool", settings.per_tool)]
        {
            if let Some(Bucket { rate: Some((rate, burst)), .. }) = b {
                buckets.insert(name, RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)));
            }
        }
        let servers = servers.into_iter().collect();
        let seen = AtomicU64::new(0);
        Some(Arc::new(Limits { settings, buckets, in_flight: Mutex::default(), servers, max_body, seen, cluster }))
    }

    fn bucket(&self, key: &Key) -> Option<Bucket> {
        match key {
            Key::Principal(_) => self.settings.per_principal,
            Key::Server(_) => self.settings.per_server,
            Key::Tool(..) => self.settings.per_tool,
        }
    }

    /// Takes a token for each key; the first empty bucket's key and how long until it refills.
    /// A principal's comes from the cluster's shared bucket when there is one.
    async fn take(&self, keys: &[Key]) -> Result<(), (Key, u64)> {
        let mut local: Vec<&Key> = keys.iter().collect();
        if let (Some(cluster), Some(Bucket { rate: Some((rate, burst)), .. })) = (&self.cluster, self.settings.per_principal) {
            if let Some(k @ Key::Principal(p)) = keys.iter().find(|k| matches!(k, Key::Principal(_))) {
                match cluster.take_shared_token(p, rate, burst).await {
                    Ok(None) => local.retain(|l| !matches!(l, Key::Principal(_))),
                    Ok(Some(wait)) => return Err((k.clone(), ceil_secs(wait))),
                    Err(e) => {
                        tracing::warn!(error = %e, "the shared rate limit is out of reach; this instance's bucket stands in")
                    }
                }
            }
        }
        self.take_local(&local)
    }

    fn take_local(&self, keys: &[&Key]) -> Result<(), (Key, u64)> {
        if self.seen.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for b in self.buckets.values() {
                b.retain_recent();
                b.shrink_to_fit();
            }
        }
        for k in keys {
            if let Some(b) = self.buckets.get(k.limit()) {
                if let Err(not_until) = b.check_key(k) {
                    return Err(((*k).clone(), ceil_secs(not_until.wait_time_from(DefaultClock::default().now()))));
                }
            }
        }
        Ok(())
    }

    /// Counts a request in flight for each key with a cap; the key over its cap, if one is.
    fn enter(self: &Arc<Self>, keys: &[Key]) -> Result<InFlight, Key> {
        let capped: Vec<(Key, NonZeroU32)> =
            keys.iter().filter_map(|k| self.bucket(k).and_then(|b| b.concurrent).map(|c| (k.clone(), c))).collect();
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, _)) = capped.iter().find(|(k, cap)| map.get(k).copied().unwrap_or(0) >= cap.get()) {
            return Err(k.clone());
        }
        for (k, _) in &capped {
            *map.entry(k.clone()).or_insert(0) += 1;
        }
        Ok(InFlight { limits: self.clone(), keys: capped.into_iter().map(|(k, _)| k).collect() })
    }
}

/// A request in flight; leaves the counts when dropped (with its answer's body).
struct InFlight {
    limits: Arc<Limits>,
    keys: Vec<Key>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.limits.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for k in &self.keys {
            if let Some(n) = map.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    map.remove(k);
                }
            }
        }
    }
}

/// `router` behind `[auth.rate_limits]`, if the file sets any.
pub(crate) fn layer(
    router: axum::Router<crate::app::AppState>,
    app: &crate::app::AppState,
) -> axum::Router<crate::app::AppState> {
    let Some(settings) = app.config.auth.as_ref().and_then(|a| a.rate_limits().ok()) else { return router };
    let names = app.config.servers.keys().cloned();
    match Limits::new(settings, names, app.config.limits.max_body, app.locator.cluster.clone()) {
        Some(limits) => router.layer(axum::middleware::from_fn_with_state(limits, check)),
        None => router,
    }
}

/// The middleware.
pub(crate) async fn check(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Result<Response, Error> {
    let path = req.uri().path().to_string();
    let legacy_alias = matches!(path.as_str(), "/message" | "/messages");
    let server = server_of(&path).filter(|s| limits.servers.contains(*s)).map(str::to_string);
    if server.is_none() && !legacy_alias {
        return Ok(next.run(req).await);
    }
    let principal = req.extensions().get::<Principal>().map(|p| p.0.clone());
    let mut keys = Vec::new();
    if let Some(p) = &principal {
        keys.push(Key::Principal(p.clone()));
    }
    if let Some(s) = &server {
        keys.push(Key::Server(s.clone()));
    }
    let (req, id, tools) = match (&principal, limits.settings.per_tool.is_some() && req.method() == Method::POST) {
        (Some(_), true) => tools_called(&limits, &path, req).await?,
        _ => (req, None, Vec::new()),
    };
    if let Some(p) = &principal {
        keys.extend(tools.into_iter().map(|t| Key::Tool(p.clone(), t)));
    }
    let refused = |key: &Key, kind: &'static str, retry_after: u64| {
        let class = match principal.as_deref() {
            Some(p) if p.starts_with(crate::config::auth::JWT_PREFIX) => "jwt",
            Some(_) => "named",
            None => "anonymous",
        };
        let server = server.clone().unwrap_or_else(|| "none".into());
        tracing::warn!(principal = principal.as_deref().unwrap_or(""), %server, limit = key.limit(), kind, "refused a request over a rate limit");
        crate::metrics::get()
            .rate_limited
            .get_or_create(&crate::metrics::RateLimited { class, server, limit: key.limit(), kind })
            .inc();
        Error::RateLimited { id: id.clone().map(Into::into), limit: key.limit(), retry_after }
    };
    if let Err((key, wait)) = limits.take(&keys).await {
        return Err(refused(&key, "rate", wait));
    }
    if req.method() != Method::POST {
        return Ok(next.run(req).await);
    }
    let guard = limits.enter(&keys).map_err(|key| refused(&key, "concurrent", 1))?;
    let (parts, body) = next.run(req).await.into_parts();
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _held = &guard;
        chunk
    }));
    Ok(Response::from_parts(parts, body))
}

/// The tools a POST calls (a REST tool path, or `tools/call`s in a JSON-RPC body), the body's
/// request id when it holds one request, and the request rebuilt.
async fn tools_called(limits: &Limits, path: &str, req: Request) -> Result<(Request, Option<String>, Vec<String>), Error> {
    if let Some((_, tool)) = path.strip_prefix("/rest/").and_then(|r| r.split_once("/tools/")) {
        return Ok((req, None, vec![clip(percent_decode(tool))]));
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, limits.max_body).await.map_err(|_| Error::Rpc {
        status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        id: None,
        code: crate::protocol::jsonrpc::code::INVALID_REQUEST,
        message: "Payload Too Large: the body is longer than limits.max_body".into(),
    })?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let id = v.get("id").map(|id| id.to_string());
    let messages: Vec<&serde_json::Value> = match &v {
        serde_json::Value::Array(a) => a.iter().collect(),
        m => vec![m],
    };
    let mut tools: Vec<String> = Vec::new();
    for m in messages.into_iter().filter(|m| m.get("method").and_then(|x| x.as_str()) == Some(method::TOOLS_CALL)) {
        let tool = clip(m.pointer("/params/name").and_then(|n| n.as_str()).unwrap_or("").to_string());
        if !tools.contains(&tool) {
            tools.push(tool);
        }
    }
    Ok((Request::from_parts(parts, Body::from(bytes)), id, tools))
}

fn ceil_secs(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn clip(mut tool: String) -> String {
    if tool.len() > MAX_TOOL {
        let mut end = MAX_TOOL;
        while !tool.is_char_boundary(end) {
            end -= 1;
        }
        tool.truncate(end);
    }
    tool
}
