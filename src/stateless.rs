//! The 2026-07-28 (stateless) revision served from upstreams that speak the earlier,
//! session-based revisions. A modern request carries its protocol version, client identity and
//! capabilities in `params._meta`; the bridge maps it onto an upstream session it opened
//! itself with exactly those capabilities (a *backing session*), checked out for the one
//! request and returned afterwards. Server-initiated requests (sampling, elicitation, roots)
//! become `InputRequiredResult`s (MRTR), and the client's retry finds the parked backing
//! session again through `requestState`. The HTTP side is `transport::modern`.

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
use crate::protocol::jsonrpc::{self, Kind};
use crate::protocol::MODERN_VERSIONS;
use crate::session::{CloseReason, Frame, Session, SessionId, Transport};

/// What the bridge asks a legacy upstream for when it opens a backing session.
pub(crate) const UPSTREAM_VERSION: &str = crate::protocol::V2025_11_25;
/// The requests that may answer with an `InputRequiredResult` (MRTR).
pub(crate) const MRTR_METHODS: &[&str] = &["tools/call", "prompts/get", "resources/read"];
/// Results that say how long they may be cached (`ttlMs`, `cacheScope`).
pub(crate) const CACHEABLE: &[&str] =
    &["server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"];
/// Idle backing sessions kept per client identity at least; up to the most that identity ever
/// had busy at once are kept (a steady load of N concurrent requests reuses N sessions instead
/// of starting children), and every idle one still ends after `sessions.idle_timeout`.
const IDLE_PER_KEY: usize = 4;

/// JSON-RPC error codes of the 2026-07-28 revision.
pub(crate) mod code {
    pub(crate) const HEADER_MISMATCH: i64 = -32020;
    pub(crate) const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    pub(crate) const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
    pub(crate) const INVALID_PARAMS: i64 = -32602;
}

/// What a modern request says about itself in `params._meta`.
#[derive(Debug, Default, Deserialize)]
pub struct RequestMeta {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    pub version: Option<String>,
    #[serde(rename = "io.modelcontextprotocol/clientInfo")]
    pub client_info: Option<Box<RawValue>>,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
    pub capabilities: Option<Box<RawValue>>,
    #[serde(rename = "io.modelcontextprotocol/logLevel")]
    pub log_level: Option<String>,
}

/// The parts of a modern request the bridge reads; the request itself travels as sent.
#[derive(Debug)]
pub struct ModernRequest {
    /// The id's JSON text.
    pub id: Box<str>,
    pub method: String,
    /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/read).
    pub name: Option<String>,
    pub meta: RequestMeta,
    pub request_state: Option<String>,
    pub input_responses: BTreeMap<String, Box<RawValue>>,
    /// `tools/call`'s arguments (for the `Mcp-Param-*` checks), as they came.
    pub arguments: Option<Box<RawValue>>,
    /// `subscriptions/listen`'s filter.
    pub notifications: Option<ListenFilter>,
}

#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenFilter {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tools_list_changed: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prompts_list_changed: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resources_list_changed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_subscriptions: Vec<String>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<String>,
    #[serde(default)]
    params: Option<WireParams>,
}

#[derive(Deserialize)]
struct WireParams {
    name: Option<serde_json::Value>,
    uri: Option<serde_json::Value>,
    #[serde(rename = "_meta")]
    meta: Option<RequestMeta>,
    #[serde(rename = "requestState")]
    request_state: Option<String>,
    #[serde(rename = "inputResponses")]
    input_responses: Option<BTreeMap<String, Box<RawValue>>>,
    notifications: Option<ListenFilter>,
    arguments: Option<Box<RawValue>>,
}

/// Reads a modern request; the error is the message of an `Invalid params` answer.
pub fn parse_request(raw: &[u8]) -> Result<ModernRequest, String> {
    let w: Wire = serde_json::from_slice(raw).map_err(|e| format!("Invalid params: {e}"))?;
    let id = w.id.map(|i| i.get()).ok_or("Invalid Request: a request needs an id")?;
    let method = w.method.ok_or("Invalid Request: a request needs a method")?;
    let p = w.params;
    let field = |v: &Option<serde_json::Value>| v.as_ref().and_then(|v| v.as_str()).map(str::to_string);
    let name = match (method.as_str(), &p) {
        ("tools/call" | "prompts/get", Some(p)) => field(&p.name),
        ("resources/read", Some(p)) => field(&p.uri),
        _ => None,
    };
    let p = p.unwrap_or(WireParams {
        name: None,
        uri: None,
        meta: None,
        request_state: None,
        input_responses: None,
        notifications: None,
        arguments: None,
    });
    Ok(ModernRequest {
        id: id.into(),
        method,
        name,
        meta: p.meta.unwrap_or_default(),
        request_state: p.request_state,
        input_responses: p.input_responses.unwrap_or_default(),
        notifications: p.notifications,
        arguments: p.arguments,
    })
}

/// Which server-to-client requests a modern client declared it can answer.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientCaps {
    pub sampling: bool,
    pub elicitation: bool,
    pub roots: bool,
}

impl ClientCaps {
    pub fn of(meta: &RequestMeta) -> ClientCaps {
        #[derive(Deserialize)]
        struct Caps<'a> {
            #[serde(borrow)]
            sampling: Option<&'a RawValue>,
            #[serde(borrow)]
            elicitation: Option<&'a RawValue>,
            #[serde(borrow)]
            roots: Option<&'a RawValue>,
        }
        let Some(raw) = &meta.capabilities else { return ClientCaps::default() };
        match serde_json::from_str::<Caps>(raw.get()) {
            Ok(c) => {
                ClientCaps { sampling: c.sampling.is_some(), elicitation: c.elicitation.is_some(), roots: c.roots.is_some() }
            }
            Err(_) => ClientCaps::default(),
        }
    }

    /// The capability a server-to-client request needs, and whether the client has it.
    pub fn allows(&self, method: &str) -> Option<(&'static str, bool)> {
        match method {
            "sampling/createMessage" => Some(("sampling", self.sampling)),
            "elicitation/create" => Some(("elicitation", self.elicitation)),
            "roots/list" => Some(("roots", self.roots)),
            _ => None,
        }
    }
}

/// Whether valid JSON text is an object nested no deeper than `max_depth` (a byte scan, no
/// allocation: it runs on every request's `_meta`).
pub(crate) fn shallow_object(json: &str, max_depth: usize) -> bool {
    let json = json.trim_start();
    if !json.starts_with('{') {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Log levels in order (RFC 5424 as MCP names them).
const LEVELS: &[&str] = &["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// Whether a `notifications/message` at `level` reaches a client that asked for `wanted`:
/// without a requested level, none does.
pub(crate) fn log_wanted(wanted: Option<&str>, message: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct M {
        params: Option<P>,
    }
    #[derive(Deserialize)]
    struct P {
        level: Option<String>,
    }
    let Some(wanted) = wanted.and_then(|w| LEVELS.iter().position(|l| *l == w)) else { return false };
    let level = serde_json::from_slice::<M>(message).ok().and_then(|m| m.params).and_then(|p| p.level);
    level.and_then(|l| LEVELS.iter().position(|x| *x == l)).is_some_and(|l| l >= wanted)
}

/// A JSON object's members, each kept as the bytes it came with.
type Members = BTreeMap<String, Box<RawValue>>;

fn raw(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

/// The upstream's final response as the modern client gets it: its id is the id of the
/// request being answered (a retry's, after MRTR rounds), and a result says `resultType`
/// and, for a `cacheable` method, that it may not be cached (the bridge cannot know for how
/// long a legacy upstream's answer holds). Only the top-level members of the message and of
/// its result are re-written; everything inside them passes as it came.
pub fn final_response(upstream: &[u8], id: &str, cacheable: bool) -> Bytes {
    let Ok(mut m) = serde_json::from_slice::<Members>(upstream) else { return Bytes::copy_from_slice(upstream) };
    m.insert("id".into(), raw(id.to_string()));
    // A missing resource is -32602 since 2026-07-28 (it was -32002).
    if let Some(error) = m.get("error") {
        if let Ok(mut e) = serde_json::from_str::<Members>(error.get()) {
            if e.get("code").is_some_and(|c| c.get() == "-32002") {
                e.insert("code".into(), raw(code::INVALID_PARAMS.to_string()));
                m.insert("error".into(), raw(serde_json::to_string(&e).unwrap_or_default()));
            }
        }
    }
    if let Some(result) = m.get("result") {
        if let Ok(mut r) = serde_json::from_str::<Members>(result.get()) {
            let mut add = vec![("resultType", "\"complete\"")];
            if cacheable {
                add.extend([("ttlMs", "0"), ("cacheScope", "\"private\"")]);
            }
            let before = r.len();
            for (k, v) in add {
                r.entry(k.to_string()).or_insert_with(|| raw(v.to_string()));
            }
            if r.len() != before {
                m.insert("result".into(), raw(serde_json::to_string(&r).unwrap_or_default()));
            }
        }
    }
    Bytes::from(serde_json::to_vec(&m).unwrap_or_default())
}

/// The -32021 answer for a request whose upstream needed a capability the client lacks.
pub(crate) fn missing_capability(id: &str, capability: &str, method: &str) -> Bytes {
    let message = format!(
        "Missing required client capability: the server sent {method}, which needs `{capability}` in io.modelcontextprotocol/clientCapabilities"
    );
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{},"message":{},"data":{{"requiredCapabilities":{{{}:{{}}}}}}}}}}"#,
        code::MISSING_CLIENT_CAPABILITY,
        serde_json::to_string(&message).unwrap_or_default(),
        serde_json::to_string(capability).unwrap_or_default()
    ))
}

/// A notification with `params._meta[key] = value` added (a listen stream's subscription id).
pub fn with_meta(notification: &[u8], key: &str, value: &str) -> Bytes {
    let Ok(mut m) = serde_json::from_slice::<Members>(notification) else { return Bytes::copy_from_slice(notification) };
    let mut params: Members = m.get("params").and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or_default();
    let mut meta: Members = params.get("_meta").and_then(|p| serde_json::from_str(p.get()).ok()).unwrap_or_default();
    meta.insert(key.into(), raw(value.to_string()));
    params.insert("_meta".into(), raw(serde_json::to_string(&meta).unwrap_or_default()));
    m.insert("params".into(), raw(serde_json::to_string(&params).unwrap_or_default()));
    Bytes::from(serde_json::to_vec(&m).unwrap_or_default())
}

/// An `InputRequiredResult` answering request `id`: the upstream's server-to-client requests
/// (each keyed by its id's JSON text), and the state the retry brings back.
pub(crate) fn input_required(id: &str, asks: &[(String, Bytes)], state: &str) -> Bytes {
    #[derive(Deserialize)]
    struct Req<'a> {
        method: &'a str,
        #[serde(borrow)]
        params: Option<&'a RawValue>,
    }
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let requests: Vec<String> = asks
        .iter()
        .filter_map(|(key, msg)| {
            let r = serde_json::from_slice::<Req>(msg).ok()?;
            let params = r.params.map_or("{}", |p| p.get());
            Some(format!(r#"{}:{{"method":{},"params":{params}}}"#, q(key), q(r.method)))
        })
        .collect();
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"resultType":"input_required","inputRequests":{{{}}},"requestState":{}}}}}"#,
        requests.join(","),
        q(state)
    ))
}

/// Where a parked request waits between MRTR rounds: its backing session, the stream of the
/// original request, the event that asked the client, and which request it was. The client
/// may not change any of it: a backing session serves other requests of the same identity
/// later, so a forged stream would reach someone else's question. The state is signed with the
/// instance's (in a cluster: the cluster's) secret and the caller's principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestState {
    pub session: SessionId,
    pub stream: u32,
    pub asked: u64,
    /// A digest of the method and its target name, so that one request's state does not
    /// continue another.
    pub request: u32,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl RequestState {
    fn body(&self) -> String {
        format!("mcpb1.{}.{}.{}.{:08x}", self.session, self.stream, self.asked, self.request)
    }

    fn mac(body: &str, principal: Option<&str>, secret: &[u8; 32]) -> HmacSha256 {
        use hmac::Mac;
        let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(body.as_bytes());
        mac.update(b"\0");
        mac.update(principal.unwrap_or("").as_bytes());
        mac
    }

    /// The state as the client gets it: the fields and their signature.
    pub fn sign(&self, principal: Option<&str>, secret: &[u8; 32]) -> String {
        use hmac::Mac;
        let body = self.body();
        let tag = Self::mac(&body, principal, secret).finalize().into_bytes();
        let hex: String = tag.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{body}.{hex}")
    }

    /// A state this bridge signed for `principal`, or `None`.
    pub fn verify(s: &str, principal: Option<&str>, secret: &[u8; 32]) -> Option<RequestState> {
        use hmac::Mac;
        let (body, hex) = s.rsplit_once('.')?;
        let tag: Vec<u8> =
            (0..hex.len() / 2).map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect::<Option<_>>()?;
        if hex.len() != 32 || Self::mac(body, principal, secret).verify_truncated_left(&tag).is_err() {
            return None;
        }
        let mut it = body.strip_prefix("mcpb1.")?.split('.');
        let session = SessionId::parse(it.next()?)?;
        let stream = it.next()?.parse().ok()?;
        let asked = it.next()?.parse().ok().filter(|a| *a > 0)?;
        let request = u32::from_str_radix(it.next()?, 16).ok()?;
        it.next().is_none().then_some(RequestState { session, stream, asked, request })
    }

    /// The digest of a request's method and target for [`RequestState::request`].
    pub fn digest(method: &str, name: Option<&str>) -> u32 {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(method.as_bytes());
        h.update([0]);
        h.update(name.unwrap_or("").as_bytes());
        let d = h.finalize();
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }
}

/// The upstream's initialize result, for `server/discover` and listen filters.
#[derive(Debug, Deserialize)]
pub struct Init {
    #[serde(rename = "protocolVersion")]
    pub protocol_version: Option<String>,
    pub capabilities: Option<Box<RawValue>>,
    #[serde(rename = "serverInfo")]
    pub server_info: Option<Box<RawValue>>,
    pub instructions: Option<String>,
}

impl Init {
    /// The subset of `wanted` this upstream can deliver.
    pub fn honored(&self, wanted: &ListenFilter) -> ListenFilter {
        let caps: serde_json::Value =
            self.capabilities.as_ref().and_then(|c| serde_json::from_str(c.get()).ok()).unwrap_or_default();
        let flag = |area: &str, f: &str| caps.get(area).and_then(|a| a.get(f)).and_then(|v| v.as_bool()).unwrap_or(false);
        ListenFilter {
            tools_list_changed: wanted.tools_list_changed && flag("tools", "listChanged"),
            prompts_list_changed: wanted.prompts_list_changed && flag("prompts", "listChanged"),
            resources_list_changed: wanted.resources_list_changed && flag("resources", "listChanged"),
            resource_subscriptions: if flag("resources", "subscribe") {
                wanted.resource_subscriptions.clone()
            } else {
                Vec::new()
            },
        }
    }
}

/// Each tool's `x-mcp-header` annotations, by tool name.
pub(crate) type ToolHeaders = HashMap<String, Vec<ParamHeader>>;

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
        let versions = app.locator.env.upstream.eras.supported(http, url, headers).await;
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

/// Where a tool wants an argument mirrored into a header (`x-mcp-header`): the argument's
/// path through `properties`, and the header's name part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    pub path: Vec<String>,
    pub header: String,
}

/// The `x-mcp-header` annotations of every tool in a `tools/list` answer, by tool name.
pub fn param_headers(tools_list: &[u8]) -> ToolHeaders {
    fn walk(schema: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<ParamHeader>) {
        let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else { return };
        for (name, prop) in props {
            path.push(name.clone());
            if let Some(h) = prop.get("x-mcp-header").and_then(|h| h.as_str()) {
                out.push(ParamHeader { path: path.clone(), header: h.to_string() });
            }
            walk(prop, path, out);
            path.pop();
        }
    }
    let v: serde_json::Value = serde_json::from_slice(tools_list).unwrap_or_default();
    let mut map = HashMap::new();
    for tool in v["result"]["tools"].as_array().into_iter().flatten() {
        let Some(name) = tool["name"].as_str() else { continue };
        let mut out = Vec::new();
        walk(&tool["inputSchema"], &mut Vec::new(), &mut out);
        if !out.is_empty() {
            map.insert(name.to_string(), out);
        }
    }
    map
}

/// Checks a `tools/call`'s `Mcp-Param-*` headers against its arguments: a mirrored argument
/// needs its header with the same value (numbers compared as numbers), an absent one none.
pub fn check_param_headers(
    headers: &axum::http::HeaderMap,
    arguments: &serde_json::Value,
    wanted: &[ParamHeader],
) -> Result<(), String> {
    for p in wanted {
        let name = format!("mcp-param-{}", p.header.to_ascii_lowercase());
        let value = p.path.iter().try_fold(arguments, |v, k| v.get(k)).filter(|v| !v.is_null());
        let header = headers.get(&name);
        let (value, header) = match (value, header) {
            (None, None) => continue,
            (Some(_), None) => {
                return Err(format!(
                    "the Mcp-Param-{} header is required: the body has argument `{}`",
                    p.header,
                    p.path.join(".")
                ))
            }
            (None, Some(_)) => {
                return Err(format!("Mcp-Param-{} is set but the body has no argument `{}`", p.header, p.path.join(".")))
            }
            (Some(v), Some(h)) => (v, h),
        };
        let Some(decoded) = decode_header_value(header.as_bytes()) else {
            return Err(format!(
                "the Mcp-Param-{} header value has invalid characters or a malformed =?base64?…?= encoding",
                p.header
            ));
        };
        let same = match value {
            serde_json::Value::String(s) => *s == decoded,
            serde_json::Value::Bool(b) => decoded == if *b { "true" } else { "false" },
            serde_json::Value::Number(n) => decoded.trim().parse::<f64>().ok().zip(n.as_f64()).is_some_and(|(a, b)| a == b),
            _ => false,
        };
        if !same {
            let d: String = decoded.chars().take(128).collect();
            return Err(format!("Mcp-Param-{} header value '{d}' does not match body value {value}", p.header));
        }
    }
    Ok(())
}

/// The `notifications/subscriptions/acknowledged` that opens a listen stream.
pub(crate) fn acknowledged(subscription: &str, honored: &ListenFilter) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{{"notifications":{},"_meta":{{"io.modelcontextprotocol/subscriptionId":{subscription}}}}}}}"#,
        serde_json::to_string(honored).unwrap_or_else(|_| "{}".into())
    ))
}

/// Whether a listen stream with filter `f` wants this upstream notification.
pub(crate) fn listen_wants(f: &ListenFilter, method: &str, raw: &[u8]) -> bool {
    match method {
        "notifications/tools/list_changed" => f.tools_list_changed,
        "notifications/prompts/list_changed" => f.prompts_list_changed,
        "notifications/resources/list_changed" => f.resources_list_changed,
        "notifications/resources/updated" => {
            #[derive(Deserialize)]
            struct U {
                params: Option<P>,
            }
            #[derive(Deserialize)]
            struct P {
                uri: Option<String>,
            }
            let uri = serde_json::from_slice::<U>(raw).ok().and_then(|u| u.params).and_then(|p| p.uri);
            uri.is_some_and(|u| f.resource_subscriptions.iter().any(|s| u.starts_with(s.as_str())))
        }
        _ => false,
    }
}

/// Decodes an `Mcp-Name` / `Mcp-Param-*` value: plain visible ASCII as it is, or the
/// `=?base64?…?=` sentinel form. `None` if the value is malformed.
pub fn decode_header_value(v: &[u8]) -> Option<String> {
    use base64::Engine;
    if !v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        return None;
    }
    let s = std::str::from_utf8(v).ok()?;
    match s.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        Some(enc) => String::from_utf8(base64::engine::general_purpose::STANDARD.decode(enc).ok()?).ok(),
        None => Some(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_modern_request() {
        let r = parse_request(
            br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{},"requestState":"s",
            "inputResponses":{"0":{"action":"accept"}},
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}},"io.modelcontextprotocol/logLevel":"info"}}}"#,
        )
        .unwrap();
        assert_eq!((&*r.id, r.method.as_str(), r.name.as_deref()), ("\"a\"", "tools/call", Some("echo")));
        assert_eq!(r.meta.version.as_deref(), Some("2026-07-28"));
        assert_eq!(r.request_state.as_deref(), Some("s"));
        assert_eq!(r.input_responses.get("0").map(|v| v.get()), Some(r#"{"action":"accept"}"#));
        let caps = ClientCaps::of(&r.meta);
        assert!(caps.sampling && !caps.elicitation && !caps.roots);
        let r = parse_request(br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://a"}}"#).unwrap();
        assert_eq!(r.name.as_deref(), Some("demo://a"));
        assert!(parse_request(br#"{"jsonrpc":"2.0","method":"tools/list"}"#).is_err());
    }

    #[test]
    fn final_response_gets_the_callers_id_and_a_result_type() {
        let up = br#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"hi \u00e9"}]}}"#;
        let v: serde_json::Value = serde_json::from_slice(&final_response(up, "\"r2\"", false)).unwrap();
        assert_eq!(v["id"], "r2");
        assert_eq!(v["result"]["resultType"], "complete");
        assert!(v["result"].get("ttlMs").is_none());
        assert_eq!(v["result"]["content"][0]["text"], "hi é");
        let list = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"ttlMs":5000}}"#;
        let v: serde_json::Value = serde_json::from_slice(&final_response(list, "1", true)).unwrap();
        assert_eq!((v["result"]["ttlMs"].as_i64(), v["result"]["cacheScope"].as_str()), (Some(5000), Some("private")));
        let v: serde_json::Value =
            serde_json::from_slice(&missing_capability("4", "sampling", "sampling/createMessage")).unwrap();
        assert_eq!((v["id"].as_i64(), v["error"]["code"].as_i64()), (Some(4), Some(-32021)));
        assert!(v["error"]["data"]["requiredCapabilities"]["sampling"].is_object());
        let gone = br#"{"jsonrpc":"2.0","id":5,"error":{"code":-32002,"message":"no such resource","data":{"uri":"x"}}}"#;
        let v: serde_json::Value = serde_json::from_slice(&final_response(gone, "5", true)).unwrap();
        assert_eq!((v["error"]["code"].as_i64(), v["error"]["data"]["uri"].as_str()), (Some(-32602), Some("x")));
        let err = br#"{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"no"}}"#;
        let v: serde_json::Value = serde_json::from_slice(&final_response(err, "9", true)).unwrap();
        assert_eq!((v["id"].as_i64(), v["error"]["code"].as_i64()), (Some(9), Some(-32601)));
    }

    #[test]
    fn input_required_and_request_state_round_trip() {
        let st = RequestState {
            session: SessionId::random(),
            stream: 3,
            asked: 7,
            request: RequestState::digest("tools/call", Some("a")),
        };
        let key = [7u8; 32];
        let signed = st.sign(Some("alice"), &key);
        assert_eq!(RequestState::verify(&signed, Some("alice"), &key), Some(st));
        assert_eq!(RequestState::verify(&signed, Some("bob"), &key), None, "bound to the principal");
        assert_eq!(RequestState::verify(&signed, Some("alice"), &[8u8; 32]), None, "bound to the key");
        let forged = signed.replacen(".3.7.", ".4.7.", 1);
        assert_eq!(RequestState::verify(&forged, Some("alice"), &key), None, "another stream is a forgery");
        assert_eq!(RequestState::verify("mcpb1.zz.3.7.0.00", None, &key), None);
        assert_ne!(RequestState::digest("tools/call", Some("a")), RequestState::digest("tools/call", Some("b")));
        let ask = Bytes::from_static(br#"{"jsonrpc":"2.0","id":0,"method":"sampling/createMessage","params":{"maxTokens":5}}"#);
        let roots = Bytes::from_static(br#"{"jsonrpc":"2.0","id":"r","method":"roots/list"}"#);
        let asks = [("0".to_string(), ask), ("\"r\"".to_string(), roots)];
        let v: serde_json::Value = serde_json::from_slice(&input_required("1", &asks, &signed)).unwrap();
        assert_eq!(v["result"]["resultType"], "input_required");
        assert_eq!(v["result"]["inputRequests"]["0"]["method"], "sampling/createMessage");
        assert_eq!(v["result"]["inputRequests"]["0"]["params"]["maxTokens"], 5);
        assert_eq!(v["result"]["inputRequests"]["\"r\""]["method"], "roots/list");
        assert_eq!(v["result"]["requestState"], signed);
    }

    #[test]
    fn param_headers_are_learned_and_checked() {
        let list = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"sql","inputSchema":{"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},"n":{"type":"integer","x-mcp-header":"N"},
            "opt":{"type":"object","properties":{"flag":{"type":"boolean","x-mcp-header":"Flag"}}},"q":{"type":"string"}}}},
            {"name":"plain","inputSchema":{"type":"object"}}]}}"#;
        let map = param_headers(list);
        assert_eq!(map.len(), 1);
        let wanted = &map["sql"];
        assert!(wanted.contains(&ParamHeader { path: vec!["opt".into(), "flag".into()], header: "Flag".into() }));
        let mut h = axum::http::HeaderMap::new();
        let args = serde_json::json!({"region": "us-west1", "n": 42, "q": "x"});
        assert!(check_param_headers(&h, &args, wanted).unwrap_err().contains("header is required"));
        h.insert("mcp-param-region", "us-west1".parse().unwrap());
        h.insert("mcp-param-n", "42.0".parse().unwrap());
        assert_eq!(check_param_headers(&h, &args, wanted), Ok(()), "integers compare as numbers");
        h.insert("mcp-param-region", "=?base64?dXMtd2VzdDE=?=".parse().unwrap());
        assert_eq!(check_param_headers(&h, &args, wanted), Ok(()), "the Base64 form decodes first");
        h.insert("mcp-param-region", "=?base64?dXMtd2VzdDE?=".parse().unwrap());
        assert!(check_param_headers(&h, &args, wanted).is_err(), "bad padding");
        h.insert("mcp-param-region", "eu-west1".parse().unwrap());
        assert!(check_param_headers(&h, &args, wanted).unwrap_err().contains("does not match"));
        h.insert("mcp-param-region", "us-west1".parse().unwrap());
        h.insert("mcp-param-flag", "true".parse().unwrap());
        assert!(check_param_headers(&h, &args, wanted).unwrap_err().contains("no argument `opt.flag`"));
    }

    #[test]
    fn header_values_decode() {
        assert_eq!(decode_header_value(b"get_weather").as_deref(), Some("get_weather"));
        assert_eq!(decode_header_value(b"=?base64?SGVsbG8sIOS4lueVjA==?=").as_deref(), Some("Hello, 世界"));
        assert_eq!(decode_header_value(b"=?base64?!!?="), None);
        assert_eq!(decode_header_value("é".as_bytes()), None);
    }

    #[test]
    fn shallow_objects() {
        assert!(shallow_object(r#"{"sampling":{},"elicitation":{"form":{}}}"#, 32));
        assert!(shallow_object(r#" {"a":"}}}{{{[[[","b":"\\\"{"}"#, 2), "brackets in strings do not count");
        assert!(!shallow_object("[]", 32));
        assert!(!shallow_object("\"x\"", 32));
        let deep = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
        assert!(!shallow_object(&deep, 32));
        assert!(shallow_object(&deep, 40));
    }

    #[test]
    fn log_levels_filter() {
        let m = br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"warning","data":"x"}}"#;
        assert!(log_wanted(Some("info"), m));
        assert!(!log_wanted(Some("error"), m));
        assert!(!log_wanted(None, m), "no requested level: no log messages");
    }

    #[test]
    fn listen_filters_and_meta() {
        let f =
            ListenFilter { tools_list_changed: true, resource_subscriptions: vec!["demo://r/1".into()], ..Default::default() };
        assert!(listen_wants(&f, "notifications/tools/list_changed", b"{}"));
        assert!(!listen_wants(&f, "notifications/prompts/list_changed", b"{}"));
        let upd = br#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"demo://r/1"}}"#;
        assert!(listen_wants(&f, "notifications/resources/updated", upd));
        let v: serde_json::Value =
            serde_json::from_slice(&with_meta(upd, "io.modelcontextprotocol/subscriptionId", "7")).unwrap();
        assert_eq!(v["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 7);
        assert_eq!(v["params"]["uri"], "demo://r/1");
    }
}
