//! The 2026-07-28 (stateless) revision served from upstreams that speak the earlier,
//! session-based revisions. A modern request carries its protocol version, client identity and
//! capabilities in `params._meta`; the bridge maps it onto an upstream session it opened
//! itself with exactly those capabilities (a *backing session*), checked out for the one
//! request and returned afterwards. Server-initiated requests (sampling, elicitation, roots)
//! become `InputRequiredResult`s (MRTR), and the client's retry finds the parked backing
//! session again through `requestState`. The HTTP side is `http::modern`; the wire knowledge
//! is `protocol::modern`. Stateless works with a [`crate::locator::Locator`] (floor 5) and
//! knows nothing of the application state above it.
//!
//! - `pool.rs`: checking backing sessions out and in (and the lock order).
//! - `ledger.rs`: which backing sessions exist, for whom, and which are checked out.
//! - `open.rs`: opening a backing session's upstream side.
//! - `passthrough.rs`: which remote upstream (and pool instance) serves 2026-07-28 itself.
//! - `catalog.rs`: the tool lists REST callers see, dropped when a server's tools change.

pub(crate) mod catalog;
mod ledger;
mod open;
mod passthrough;
mod pool;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::locator::OpError;
use crate::protocol::headers::{param_headers, ToolHeaders};
use crate::protocol::modern::{Init, RequestMeta};
use crate::session::registry::Registry;
use crate::session::{CloseReason, Session};
use ledger::Ledger;

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
    /// Set while the checkout is armed: what ending the session takes.
    guard: Option<Armed>,
}

/// What an armed [`Backing`] ends its session with when it is dropped.
struct Armed {
    ledger: Arc<Mutex<Ledger>>,
    registry: Arc<Registry>,
}

impl Backing {
    /// Gives the session up without ending it (returned, or parked between MRTR rounds).
    fn disarm(&mut self) {
        self.guard = None;
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Some(a) = self.guard.take() {
            let detail = "the request that held this backing session ended before it was served";
            pool::end(&a.ledger, &a.registry, &self.session, CloseReason::Cancelled, detail);
        }
    }
}

/// Why a backing session could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckoutError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("the upstream did not initialize: {0}")]
    Init(String),
}

/// The idle backing sessions of this instance, by client identity.
#[derive(Default)]
pub struct Pool {
    /// See `pool.rs` for the lock order: a leaf lock.
    ledger: Arc<Mutex<Ledger>>,
    /// The key `requestState`s are signed with (random, or the cluster's shared one).
    secret: std::sync::OnceLock<[u8; 32]>,
    /// The `x-mcp-header` annotations of each server's tools, from its latest `tools/list`.
    tool_headers: Mutex<HashMap<String, Arc<ToolHeaders>>>,
    /// The tool lists of REST callers, per server and principal (a leaf lock of its own).
    pub(crate) catalog: catalog::Catalog,
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

    /// Remembers a server's `x-mcp-header` annotations from a `tools/list` answer.
    pub fn learn_tools(&self, server: &str, answer: &[u8]) {
        let map = Arc::new(param_headers(answer));
        self.tool_headers.lock().unwrap_or_else(|e| e.into_inner()).insert(server.to_string(), map);
    }

    /// A server's `x-mcp-header` annotations, asking the backing session for `tools/list`
    /// the first time.
    pub async fn tool_headers(&self, b: &Backing, timeout: Option<Duration>) -> Arc<ToolHeaders> {
        let server = b.session.server.name.as_str();
        if let Some(known) = self.tool_headers.lock().unwrap_or_else(|e| e.into_inner()).get(server) {
            return known.clone();
        }
        let list = Bytes::from_static(br#"{"jsonrpc":"2.0","id":"mcp-bridge-tools","method":"tools/list","params":{}}"#);
        match open::internal_request(&b.session, list, timeout).await {
            Ok(answer) => self.learn_tools(server, &answer),
            Err(e) => tracing::warn!(server, error = %e, "could not list the upstream's tools to check Mcp-Param headers"),
        }
        self.tool_headers.lock().unwrap_or_else(|e| e.into_inner()).get(server).cloned().unwrap_or_default()
    }
}
