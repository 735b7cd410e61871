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

use crate::config::ServerConfig;
use crate::jsonrpc::{self, Kind};
use crate::server::AppState;
use crate::session::store::{self, OpError};
use crate::session::{CloseReason, Frame, Session, SessionId, Transport};

/// Protocol revisions served statelessly.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
/// What the bridge asks a legacy upstream for when it opens a backing session.
pub const UPSTREAM_VERSION: &str = "2025-11-25";
/// The requests that may answer with an `InputRequiredResult` (MRTR).
pub const MRTR_METHODS: &[&str] = &["tools/call", "prompts/get", "resources/read"];
/// Results that say how long they may be cached (`ttlMs`, `cacheScope`).
pub const CACHEABLE: &[&str] =
    &["server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"];
/// Idle backing sessions kept per client identity; more are ended when returned.
const IDLE_PER_KEY: usize = 4;

/// JSON-RPC error codes of the 2026-07-28 revision.
pub mod code {
    pub const HEADER_MISMATCH: i64 = -32020;
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
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
    });
    Ok(ModernRequest {
        id: id.into(),
        method,
        name,
        meta: p.meta.unwrap_or_default(),
        request_state: p.request_state,
        input_responses: p.input_responses.unwrap_or_default(),
        notifications: p.notifications,
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

/// Log levels in order (RFC 5424 as MCP names them).
const LEVELS: &[&str] = &["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// Whether a `notifications/message` at `level` reaches a client that asked for `wanted`:
/// without a requested level, none does.
pub fn log_wanted(wanted: Option<&str>, message: &[u8]) -> bool {
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
pub fn missing_capability(id: &str, capability: &str, method: &str) -> Bytes {
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

/// An `InputRequiredResult` answering request `id`: the upstream's server-to-client request
/// (`key` is its id's JSON text), and the state the retry brings back.
pub fn input_required(id: &str, key: &str, upstream_request: &[u8], state: &str) -> Bytes {
    #[derive(Deserialize)]
    struct Req<'a> {
        method: &'a str,
        #[serde(borrow)]
        params: Option<&'a RawValue>,
    }
    let (method, params) = match serde_json::from_slice::<Req>(upstream_request) {
        Ok(r) => (r.method.to_string(), r.params.map_or("{}".to_string(), |p| p.get().to_string())),
        Err(_) => (String::new(), "{}".into()),
    };
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"resultType":"input_required","inputRequests":{{{}:{{"method":{},"params":{params}}}}},"requestState":{}}}}}"#,
        q(key),
        q(&method),
        q(state)
    ))
}

/// Where a parked request waits between MRTR rounds: its backing session, the stream of the
/// original request, and the event that asked the client. Tampering gets nothing: the session
/// id is 128 random bits bound to the principal, and a wrong stream or event only fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestState {
    pub session: SessionId,
    pub stream: u32,
    pub asked: u64,
}

impl RequestState {
    pub fn parse(s: &str) -> Option<RequestState> {
        let mut it = s.strip_prefix("mcpb1.")?.split('.');
        let session = SessionId::parse(it.next()?)?;
        let stream = it.next()?.parse().ok()?;
        let asked = it.next()?.parse().ok().filter(|a| *a > 0)?;
        it.next().is_none().then_some(RequestState { session, stream, asked })
    }
}

impl std::fmt::Display for RequestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mcpb1.{}.{}.{}", self.session, self.stream, self.asked)
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

/// A backing session checked out for one request (or one listen stream).
pub struct Backing {
    pub session: Arc<Session>,
    pub init: Arc<Init>,
    key: Key,
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
}

#[derive(Default)]
struct Inner {
    idle: HashMap<Key, Vec<Arc<Session>>>,
    /// Every backing session opened here that may still live: its key and initialize result.
    known: HashMap<SessionId, (Key, Arc<Init>)>,
}

impl Pool {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle backing session for this client, or a new one initialized with its identity
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
            let Inner { idle, known } = &mut *inner;
            if let Some(list) = idle.get_mut(&key) {
                while let Some(session) = list.pop() {
                    if session.ended().is_some() {
                        known.remove(&session.id);
                        continue;
                    }
                    if let Some((_, init)) = known.get(&session.id) {
                        return Ok(Backing { init: init.clone(), session, key });
                    }
                }
            }
        }
        self.prune(app);
        let session = store::create(app, server, Transport::Stateless, principal).await?;
        match initialize(&session, meta, app.config.limits.request_timeout).await {
            Ok(init) => {
                let init = Arc::new(init);
                self.inner().known.insert(session.id, (key.clone(), init.clone()));
                Ok(Backing { session, init, key })
            }
            Err(e) => {
                app.registry.remove(session.id);
                session.end(CloseReason::Error, &e);
                Err(CheckoutError::Init(e))
            }
        }
    }

    /// Drops what the pool remembers of sessions that ended (idle expiry, upstream exit).
    fn prune(&self, app: &AppState) {
        let mut inner = self.inner();
        inner.known.retain(|id, _| app.registry.get(*id).is_some_and(|s| s.ended().is_none()));
        let Inner { idle, known } = &mut *inner;
        idle.retain(|_, list| {
            list.retain(|s| known.contains_key(&s.id));
            !list.is_empty()
        });
    }

    /// The backing session `id` if this instance opened it and it lives.
    pub fn local(&self, app: &AppState, id: SessionId) -> Option<Backing> {
        let session = app.registry.get(id).filter(|s| s.ended().is_none())?;
        let (key, init) = self.inner().known.get(&id).cloned()?;
        Some(Backing { session, init, key })
    }

    /// Returns a backing session whose request is over, for the next request of its client.
    pub fn checkin(&self, app: &AppState, b: Backing) {
        let surplus = {
            let mut inner = self.inner();
            if b.session.ended().is_some() {
                inner.known.remove(&b.session.id);
                return;
            }
            let list = inner.idle.entry(b.key).or_default();
            if list.iter().any(|s| Arc::ptr_eq(s, &b.session)) {
                return;
            }
            list.push(b.session);
            if list.len() > IDLE_PER_KEY {
                Some(list.remove(0))
            } else {
                None
            }
        };
        if let Some(s) = surplus {
            self.forget(app, &s, CloseReason::Completed, "more idle backing sessions than kept for this client");
        }
    }

    /// Ends a backing session (a cancelled request's, or a closed listen stream's).
    pub fn forget(&self, app: &AppState, s: &Arc<Session>, reason: CloseReason, detail: &str) {
        {
            let mut inner = self.inner();
            inner.known.remove(&s.id);
            for list in inner.idle.values_mut() {
                list.retain(|x| !Arc::ptr_eq(x, s));
            }
        }
        app.registry.remove(s.id);
        s.end(reason, detail);
    }

    /// Whether the remote upstream at `url` serves `version` itself (its `server/discover`).
    pub async fn serves_modern(&self, app: &AppState, url: &str, headers: &BTreeMap<String, String>, version: &str) -> bool {
        let versions = app.ctx.eras.supported(&app.ctx.http, url, headers).await;
        versions.is_some_and(|v| v.iter().any(|s| s == version))
    }

    /// The next URL of a pool for a passed-through request.
    pub fn pick<'a>(&self, urls: &'a [String]) -> &'a str {
        let n = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &urls[n % urls.len()]
    }

    /// Idle backing sessions held now (for tests and the admin view).
    pub fn idle(&self) -> usize {
        self.inner().idle.values().map(|l| l.iter().filter(|s| s.ended().is_none()).count()).sum()
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
    let peek = jsonrpc::peek(&init).map_err(|e| format!("the client's _meta is not valid JSON: {e}"))?;
    let (opened, mut attached) = session.open_stream(1, true).map_err(|e| e.to_string())?;
    session.send(vec![(init, peek)], opened.stream).await.map_err(|e| e.to_string())?;
    let wait = timeout.unwrap_or(Duration::from_secs(60)).min(Duration::from_secs(60));
    let answer = loop {
        match tokio::time::timeout(wait, attached.rx.recv()).await {
            Err(_) => return Err(format!("no answer to initialize within {wait:?}")),
            Ok(None) => return Err(format!("the upstream session ended ({})", session.ended().unwrap_or(CloseReason::Error))),
            Ok(Some(Frame::Message(_, data))) if jsonrpc::peek(&data).is_ok_and(|p| p.kind == Kind::Response) => break data,
            Ok(Some(_)) => continue,
        }
    };
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

/// The `notifications/subscriptions/acknowledged` that opens a listen stream.
pub fn acknowledged(subscription: &str, honored: &ListenFilter) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{{"notifications":{},"_meta":{{"io.modelcontextprotocol/subscriptionId":{subscription}}}}}}}"#,
        serde_json::to_string(honored).unwrap_or_else(|_| "{}".into())
    ))
}

/// Whether a listen stream with filter `f` wants this upstream notification.
pub fn listen_wants(f: &ListenFilter, method: &str, raw: &[u8]) -> bool {
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
        let err = br#"{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"no"}}"#;
        let v: serde_json::Value = serde_json::from_slice(&final_response(err, "9", true)).unwrap();
        assert_eq!((v["id"].as_i64(), v["error"]["code"].as_i64()), (Some(9), Some(-32601)));
    }

    #[test]
    fn input_required_and_request_state_round_trip() {
        let st = RequestState { session: SessionId::random(), stream: 3, asked: 7 };
        assert_eq!(RequestState::parse(&st.to_string()), Some(st));
        assert_eq!(RequestState::parse("mcpb1.zz.3.7"), None);
        assert_eq!(RequestState::parse(&format!("mcpb1.{}.3.0", st.session)), None);
        let ask = br#"{"jsonrpc":"2.0","id":0,"method":"sampling/createMessage","params":{"maxTokens":5}}"#;
        let v: serde_json::Value = serde_json::from_slice(&input_required("1", "0", ask, &st.to_string())).unwrap();
        assert_eq!(v["result"]["resultType"], "input_required");
        assert_eq!(v["result"]["inputRequests"]["0"]["method"], "sampling/createMessage");
        assert_eq!(v["result"]["inputRequests"]["0"]["params"]["maxTokens"], 5);
        assert_eq!(v["result"]["requestState"], st.to_string());
    }

    #[test]
    fn header_values_decode() {
        assert_eq!(decode_header_value(b"get_weather").as_deref(), Some("get_weather"));
        assert_eq!(decode_header_value(b"=?base64?SGVsbG8sIOS4lueVjA==?=").as_deref(), Some("Hello, 世界"));
        assert_eq!(decode_header_value(b"=?base64?!!?="), None);
        assert_eq!(decode_header_value("é".as_bytes()), None);
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
