//! The 2026-07-28 (stateless) revision at `/mcp/{name}`, beside the session-based ones: a
//! request that carries its protocol version in `params._meta` (or names a modern version in
//! `MCP-Protocol-Version`) is validated here and served through a backing session from
//! [`crate::stateless`]. Status codes and error codes follow the revision's transport page:
//! header mismatches are 400 with -32020, unsupported versions 400 with -32022, unknown
//! methods 404 with -32601, GET and DELETE 405.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::config::ServerConfig;
use crate::locator::{self, Detach, Handle, OpError};
use crate::protocol::jsonrpc::{self, Kind};
use crate::protocol::{MODERN_VERSIONS, SUPPORTED_VERSIONS};
use crate::session::event_log::Entry;
use crate::session::{Attached, CloseReason, Frame, Session, SessionId, Target, Transport};
use crate::stateless::{self, code, Backing, CheckoutError, ClientCaps, ListenFilter, ModernRequest, RequestState};
use crate::{metrics, sse};

const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// Upstream requests for the client that arrive within this long of each other go out in one
/// `InputRequiredResult` (a server that asks for several inputs at once sends them together).
const GATHER: Duration = Duration::from_millis(25);
/// Methods of the session-based revisions that a stateless request may not use.
const LEGACY_ONLY: &[&str] = &["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"];

/// Whether a POST is a modern one: it names a modern version, carries per-request metadata
/// in `params._meta`, or names a version the bridge does not know without naming a session (a
/// modern server's answer, with the supported versions, serves that client best).
pub(crate) fn is_modern(headers: &HeaderMap, body: &[u8]) -> bool {
    let version = headers.get("mcp-protocol-version").map(|v| v.to_str().unwrap_or("?"));
    if version.is_some_and(|v| MODERN_VERSIONS.contains(&v)) {
        return true;
    }
    // The cheap test first; the text may also just be in a legacy request's arguments.
    if body.windows(META_VERSION.len()).any(|w| w == META_VERSION.as_bytes()) && carries_modern_meta(body) {
        return true;
    }
    version.is_some_and(|v| !SUPPORTED_VERSIONS.contains(&v)) && headers.get("mcp-session-id").is_none()
}

/// Whether a body is one request with `params._meta["io.modelcontextprotocol/protocolVersion"]`.
fn carries_modern_meta(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Msg<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<Meta<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Meta<'a> {
        #[serde(borrow, rename = "io.modelcontextprotocol/protocolVersion")]
        version: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<Msg>(body).ok().and_then(|m| m.params).and_then(|p| p.meta).is_some_and(|m| m.version.is_some())
}

/// GET and DELETE from a modern client: the revision has no standalone stream and no session.
pub(crate) fn refuse(headers: &HeaderMap) -> Option<Response> {
    let v = headers.get("mcp-protocol-version")?.to_str().ok()?;
    MODERN_VERSIONS.contains(&v).then(|| {
        let mut resp = super::rpc_error(
            StatusCode::METHOD_NOT_ALLOWED,
            jsonrpc::code::CONNECTION_CLOSED,
            &format!("Method Not Allowed: protocol version {v} has no standalone stream and no sessions; POST each request"),
        );
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        resp
    })
}

/// Every version the endpoint speaks, newest first.
fn all_versions() -> Vec<&'static str> {
    let mut v: Vec<&str> = MODERN_VERSIONS.iter().chain(SUPPORTED_VERSIONS).copied().collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

fn answer(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, id: Option<&str>, code: i64, message: &str) -> Response {
    answer(status, jsonrpc::error(id, code, message))
}

fn mismatch(id: &str, message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, Some(id), code::HEADER_MISMATCH, &format!("Header mismatch: {message}"))
}

/// A header value for an error message: short, and only if it is printable.
fn shown(v: &HeaderValue) -> String {
    match v.to_str() {
        Ok(s) if s.bytes().all(|b| (0x20..0x7f).contains(&b)) => s.chars().take(128).collect(),
        _ => "(invalid characters)".into(),
    }
}

/// Checks the mirrored headers against the body, as a server that reads the body must.
fn validate(headers: &HeaderMap, req: &ModernRequest) -> Result<(), Response> {
    let id = &*req.id;
    let Some(hv) = headers.get("mcp-protocol-version") else {
        return Err(mismatch(id, "the MCP-Protocol-Version header is required"));
    };
    let hv = shown(hv);
    let mut missing = Vec::new();
    if req.meta.version.is_none() {
        missing.push(META_VERSION);
    }
    if req.meta.capabilities.is_none() {
        missing.push("io.modelcontextprotocol/clientCapabilities");
    }
    if !missing.is_empty() {
        let msg = format!("Invalid params: missing _meta keys: {} (every 2026-07-28 request carries them)", missing.join(", "));
        return Err(error(StatusCode::BAD_REQUEST, Some(id), code::INVALID_PARAMS, &msg));
    }
    // What the bridge hands an upstream in `initialize` must be plain objects, and shallow (a
    // legitimate one is; a 10,000-deep one would stall the upstream's parser).
    for (key, value) in [
        ("io.modelcontextprotocol/clientCapabilities", &req.meta.capabilities),
        ("io.modelcontextprotocol/clientInfo", &req.meta.client_info),
    ] {
        if value.as_ref().is_some_and(|v| !stateless::shallow_object(v.get(), 32)) {
            let msg = format!("Invalid params: _meta[\"{key}\"] must be a JSON object (nested at most 32 deep)");
            return Err(error(StatusCode::BAD_REQUEST, Some(id), code::INVALID_PARAMS, &msg));
        }
    }
    let bv = req.meta.version.as_deref().unwrap_or_default();
    if hv != bv {
        return Err(mismatch(id, &format!("MCP-Protocol-Version header value '{hv}' does not match body value '{bv}'")));
    }
    let method = match headers.get("mcp-method") {
        None => return Err(mismatch(id, "the Mcp-Method header is required")),
        Some(m) => shown(m),
    };
    if method != req.method {
        return Err(mismatch(id, &format!("Mcp-Method header value '{method}' does not match body value '{}'", req.method)));
    }
    if let Some(name) = &req.name {
        let Some(h) = headers.get("mcp-name") else {
            return Err(mismatch(id, &format!("the Mcp-Name header is required for {}", req.method)));
        };
        let Some(decoded) = stateless::decode_header_value(h.as_bytes()) else {
            return Err(mismatch(id, "the Mcp-Name header value has invalid characters or a malformed =?base64?…?= encoding"));
        };
        if &decoded != name {
            let d: String = decoded.chars().take(128).collect();
            return Err(mismatch(id, &format!("Mcp-Name header value '{d}' does not match body value '{name}'")));
        }
    }
    Ok(())
}

/// The -32022 answer for a version the bridge does not serve statelessly.
fn unsupported(req: &ModernRequest) -> Option<Response> {
    let id = &*req.id;
    let bv = req.meta.version.as_deref().unwrap_or_default();
    if !MODERN_VERSIONS.contains(&bv) {
        let supported = all_versions();
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": serde_json::from_str::<serde_json::Value>(id).unwrap_or_default(),
            "error": {
                "code": code::UNSUPPORTED_PROTOCOL_VERSION,
                "message": format!("Unsupported protocol version: {bv} (mcp-bridge serves {} statelessly and {} with initialize)",
                    MODERN_VERSIONS.join(", "), SUPPORTED_VERSIONS.join(", ")),
                "data": { "supported": supported, "requested": bv },
            }
        });
        return Some(answer(StatusCode::BAD_REQUEST, Bytes::from(body.to_string())));
    }
    None
}

/// A modern POST: one request, checked, then served by a backing session.
pub(crate) async fn post(
    app: AppState,
    server: Arc<ServerConfig>,
    principal: Option<Arc<str>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (items, batch) = match jsonrpc::split(&body) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, None, e.code(), &format!("Parse error: {e}")),
    };
    let Some(raw) = items.into_iter().next().filter(|_| !batch) else {
        let msg = "Invalid Request: a 2026-07-28 POST carries one JSON-RPC request; batches are not part of this revision";
        return error(StatusCode::BAD_REQUEST, None, jsonrpc::code::INVALID_REQUEST, msg);
    };
    let peek = match jsonrpc::peek(&raw) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, None, e.code(), &format!("Invalid Request: {e}")),
    };
    match peek.kind {
        Kind::Response => {
            let msg = "Invalid Request: clients send no JSON-RPC responses in 2026-07-28 (answers to server requests go in inputResponses)";
            return error(StatusCode::BAD_REQUEST, None, jsonrpc::code::INVALID_REQUEST, msg);
        }
        // The revision defines no client notifications over HTTP; a listen stream is cancelled
        // by closing it (the TypeScript client also posts notifications/cancelled): accepted.
        Kind::Notification => return StatusCode::ACCEPTED.into_response(),
        Kind::Request => {}
    }
    let req = match stateless::parse_request(&raw) {
        Ok(r) => r,
        Err(msg) => return error(StatusCode::BAD_REQUEST, peek.id.as_deref(), code::INVALID_PARAMS, &msg),
    };
    if let Err(resp) = super::mirrored::once(&headers).map_err(|m| mismatch(&req.id, &m)).and_then(|()| validate(&headers, &req))
    {
        return resp;
    }
    // A modern upstream judges the version itself: its list of versions is the one that counts.
    if let Some(resp) = passthrough(&app, &server, &headers, &body, &req).await {
        return resp;
    }
    if let Some(resp) = unsupported(&req) {
        return resp;
    }
    match req.method.as_str() {
        "server/discover" => discover(&app, server, principal, &req).await,
        "subscriptions/listen" => listen(&app, server, principal, &req).await,
        m if LEGACY_ONLY.contains(&m) => error(
            StatusCode::NOT_FOUND,
            Some(&req.id),
            code::METHOD_NOT_FOUND,
            &format!(
                "Method not found: {m} is not part of protocol version 2026-07-28 (no initialize or ping; subscriptions/listen replaces \
                 resources/subscribe; the logLevel in _meta replaces logging/setLevel)"
            ),
        ),
        _ if req.request_state.is_some() => resume(&app, &server, principal, req).await,
        _ => call(&app, server, principal, &headers, raw, peek, req).await,
    }
}

/// Request headers a modern request carries on to a modern upstream.
fn forwarded(name: &str) -> bool {
    matches!(name, "content-type" | "accept" | "mcp-protocol-version" | "mcp-method" | "mcp-name")
        || name.starts_with("mcp-param-")
}

/// A remote upstream that serves 2026-07-28 itself gets modern requests as they came (body
/// and `Mcp-*` headers, which the bridge has validated), and its answer streams back. Closing
/// the response closes the upstream request too, which is the upstream's cancellation.
async fn passthrough(
    app: &AppState,
    server: &ServerConfig,
    headers: &HeaderMap,
    body: &Bytes,
    req: &ModernRequest,
) -> Option<Response> {
    let crate::config::UpstreamSpec::StreamableHttp { url, headers: extra } = &server.upstream else { return None };
    let urls = server.pool.as_ref().map_or_else(|| std::slice::from_ref(url), |p| p.urls.as_slice());
    let url = app.stateless.pick(urls);
    let http = server.http(&app.locator.env.upstream.http);
    if !app.stateless.modern_upstream(app, http, url, extra).await {
        return None;
    }
    let mut out = crate::upstream::with_headers(http.post(url), extra);
    for (k, v) in headers {
        if forwarded(k.as_str()) {
            out = out.header(k, v);
        }
    }
    let resp = match out.body(body.clone()).send().await {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("mcp-bridge: the upstream could not be reached: {}", crate::upstream::cause(&e));
            return Some(error(StatusCode::BAD_GATEWAY, Some(&req.id), jsonrpc::code::INTERNAL_ERROR, &msg));
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    let streaming = content_type.as_ref().is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let mut response = if streaming {
        super::sse_response(resp.bytes_stream(), &[])
    } else {
        Response::new(axum::body::Body::from_stream(resp.bytes_stream()))
    };
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Some(response)
}

fn checkout_failed(id: &str, e: CheckoutError) -> Response {
    match e {
        CheckoutError::Op(e) => super::op_error(e),
        CheckoutError::Init(detail) => error(
            StatusCode::BAD_GATEWAY,
            Some(id),
            jsonrpc::code::INTERNAL_ERROR,
            &format!("mcp-bridge: could not open an upstream session for this request: {detail}"),
        ),
    }
}

/// `server/discover`, answered from the upstream's initialize result.
async fn discover(app: &AppState, server: Arc<ServerConfig>, principal: Option<Arc<str>>, req: &ModernRequest) -> Response {
    let scope = if principal.is_some() { "private" } else { "public" };
    let backing = match app.stateless.checkout(app, server, principal, &req.meta).await {
        Ok(b) => b,
        Err(e) => return checkout_failed(&req.id, e),
    };
    let init = backing.init.clone();
    app.stateless.checkin(app, backing);
    let versions = serde_json::to_string(&all_versions()).unwrap_or_default();
    let caps = init.capabilities.as_ref().map_or("{}", |c| c.get());
    let info = init.server_info.as_ref().map_or("null", |c| c.get());
    let instructions = init
        .instructions
        .as_ref()
        .map(|i| format!(r#","instructions":{}"#, serde_json::to_string(i).unwrap_or_default()))
        .unwrap_or_default();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{{"resultType":"complete","supportedVersions":{versions},"capabilities":{caps}{instructions},"_meta":{{"io.modelcontextprotocol/serverInfo":{info}}},"ttlMs":60000,"cacheScope":"{scope}"}}}}"#,
        req.id
    );
    answer(StatusCode::OK, Bytes::from(body))
}

/// A request served by a backing session checked out for it.
async fn call(
    app: &AppState,
    server: Arc<ServerConfig>,
    principal: Option<Arc<str>>,
    headers: &HeaderMap,
    raw: Bytes,
    peek: jsonrpc::Peek,
    req: ModernRequest,
) -> Response {
    let backing = match app.stateless.checkout(app, server.clone(), principal.clone(), &req.meta).await {
        Ok(b) => b,
        Err(e) => return checkout_failed(&req.id, e),
    };
    if req.method == "tools/call" {
        let tools = app.stateless.tool_headers(&backing, app.config.limits.request_timeout).await;
        if let Some(wanted) = req.name.as_ref().and_then(|n| tools.get(n)) {
            let arguments: serde_json::Value =
                req.arguments.as_ref().and_then(|a| serde_json::from_str(a.get()).ok()).unwrap_or_default();
            if let Err(msg) = stateless::check_param_headers(headers, &arguments, wanted) {
                app.stateless.checkin(app, backing);
                return mismatch(&req.id, &msg);
            }
        }
    }
    let session = backing.session.clone();
    let (opened, attached) = match session.open_stream(1, false) {
        Ok(o) => o,
        Err(e) => return super::op_error(e.into()),
    };
    if let Err(e) = session.send(vec![(raw, peek)], opened.stream).await {
        return super::op_error(e.into());
    }
    let ex = Exchange::new(app, Handle::Local(session), Some(backing), attached, Held(None), &req, None, principal);
    respond(ex, &server).await
}

/// The retry of a request that got an `InputRequiredResult`: the answers go to the upstream's
/// waiting requests, and the original request's stream carries on from where it asked.
async fn resume(app: &AppState, server: &ServerConfig, principal: Option<Arc<str>>, req: ModernRequest) -> Response {
    let expired = |why: &str| {
        let msg = format!("Invalid params: requestState {why}; send the request again without requestState and inputResponses");
        error(StatusCode::OK, Some(&req.id), code::INVALID_PARAMS, &msg)
    };
    let secret = app.stateless.secret();
    let Some(state) = req.request_state.as_deref().and_then(|s| RequestState::verify(s, principal.as_deref(), secret)) else {
        return expired("was not issued by this bridge for this client (or was altered)");
    };
    if state.request != RequestState::digest(&req.method, req.name.as_deref()) {
        return expired("belongs to another request (a different method or target)");
    }
    let handle = match locator::find_for(&app.locator, state.session, principal.as_deref()).await {
        Ok(Some(h)) if h.transport() == Transport::Stateless && h.server_name() == server.name => h,
        Ok(_) => return expired("belongs to an upstream session that has ended"),
        Err(e) => return super::op_error(OpError::Unavailable(e)),
    };
    let (attached, _, detach) = match handle.attach(&app.locator, state.stream, Some(state.asked - 1), true).await {
        Ok(a) => a,
        Err(OpError::Gap(_)) => return expired("refers to events no longer kept"),
        Err(OpError::NotFound(_)) => return expired("belongs to an upstream session that has ended"),
        Err(e) => return super::op_error(e),
    };
    // The state is spent once its request was answered; and answers count only for the
    // questions this state's request asked (the upstream requests logged on its stream from the
    // asking event on). Anything else in inputResponses is ignored.
    let detach = Held(Some(detach));
    if attached.reason.get() == Some(&CloseReason::Completed) {
        return expired("belongs to a request that has completed");
    }
    let asked: HashSet<Box<str>> = attached
        .replay
        .iter()
        .filter_map(|e| jsonrpc::peek(&e.data).ok().filter(|p| p.kind == Kind::Request).and_then(|p| p.id))
        .collect();
    let mut answers = Vec::new();
    let mut answered = HashSet::new();
    for (key, value) in &req.input_responses {
        if !asked.contains(key.as_str()) {
            continue;
        }
        let msg = Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{key},"result":{}}}"#, value.get()));
        if let Ok(p) = jsonrpc::peek(&msg) {
            answered.insert(key.clone());
            answers.push((msg, p));
        }
    }
    // Checked out before the answers go: once they do, the request may complete at once and
    // the session look idle to another checkout.
    let backing = match &handle {
        Handle::Local(s) => app.stateless.local(app, s.id),
        Handle::Remote(_) => None,
    };
    if let Err(e) = handle.send(&app.locator, answers, 0).await {
        return super::op_error(e);
    }
    let ex = Exchange::new(app, handle, backing, attached, detach, &req, Some((state.asked, answered)), principal);
    respond(ex, server).await
}

/// A client stream held here for a session owned by another instance: released when dropped,
/// however the request ends.
struct Held(Option<Detach>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(Detach::Remote(cluster, token)) = self.0.take() {
            cluster.release_held(token);
        }
    }
}

/// What an exchange yields to the client.
enum Out {
    /// A notification about the request (progress, a log message it asked for).
    Notify(Bytes),
    /// The answer: the upstream's final response, or an `InputRequiredResult`.
    Final { body: Bytes, status: StatusCode },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Answered with an `InputRequiredResult`; the upstream request waits for the retry.
    Parked,
    Done,
}

/// One modern request in flight on a backing session's stream, read as the client should
/// see it. Dropped before its answer (the client closed the response), it cancels.
struct Exchange {
    app: AppState,
    server: String,
    /// The client, whose `requestState`s are signed for it alone.
    principal: Option<Arc<str>>,
    handle: Option<Handle>,
    session_id: SessionId,
    backing: Option<Backing>,
    /// Released when the exchange goes.
    _held: Held,
    stream: u32,
    replay: std::vec::IntoIter<Entry>,
    rx: mpsc::Receiver<Frame>,
    /// The id of the HTTP request being answered (a retry's own id).
    reply_id: Box<str>,
    method: String,
    caps: ClientCaps,
    log_level: Option<String>,
    /// The request's method and target, as its `requestState` names them.
    digest: u32,
    /// On a retry: the upstream requests the client answered now, by id text.
    answered: HashSet<String>,
    /// Upstream requests for the client gathered so far (id text, message), the event of the
    /// first, and when the gathering ends.
    asks: Vec<(String, Bytes)>,
    first_ask: u64,
    gather_until: Option<tokio::time::Instant>,
    phase: Phase,
    started: Instant,
}

impl Exchange {
    #[allow(clippy::too_many_arguments)]
    fn new(
        app: &AppState,
        handle: Handle,
        backing: Option<Backing>,
        attached: Attached,
        detach: Held,
        req: &ModernRequest,
        retry: Option<(u64, HashSet<String>)>,
        principal: Option<Arc<str>>,
    ) -> Exchange {
        let Attached { stream, replay, rx, .. } = attached;
        Exchange {
            app: app.clone(),
            server: handle.server_name().to_string(),
            principal,
            session_id: handle.id(),
            handle: Some(handle),
            backing,
            _held: detach,
            stream,
            replay: replay.into_iter(),
            rx,
            reply_id: req.id.clone(),
            method: req.method.clone(),
            caps: ClientCaps::of(&req.meta),
            log_level: req.meta.log_level.clone(),
            digest: RequestState::digest(&req.method, req.name.as_deref()),
            answered: retry.map(|(_, a)| a).unwrap_or_default(),
            asks: Vec::new(),
            first_ask: 0,
            gather_until: None,
            phase: Phase::Running,
            started: Instant::now(),
        }
    }

    /// Sends a message to the upstream without making the caller wait (the caller may be
    /// a `select!` that drops this future at any await).
    fn to_upstream(&self, msg: Bytes) {
        let (Some(handle), Ok(peek)) = (self.handle.clone(), jsonrpc::peek(&msg)) else { return };
        let app = self.app.clone();
        tokio::spawn(async move {
            let _ = handle.send(&app.locator, vec![(msg, peek)], Target::Discard).await;
        });
    }

    fn refuse_upstream(&self, id: &str, message: &str) {
        self.to_upstream(jsonrpc::error(Some(id), code::METHOD_NOT_FOUND, message));
    }

    /// The next thing the client gets. Cancel-safe (it runs under `select!` and `timeout`):
    /// what it has taken from the stream is kept in `self` until it is answered.
    async fn next(&mut self) -> Option<Out> {
        while self.phase == Phase::Running {
            let item = match self.replay.next() {
                Some(e) => Some((e.seq, e.data)),
                None => match self.gather_until {
                    Some(until) => match tokio::time::timeout_at(until, self.rx.recv()).await {
                        Ok(Some(Frame::Message(seq, data))) => Some((seq, data)),
                        Ok(Some(Frame::Priming(_))) => continue,
                        Ok(None) => return None,
                        Err(_) => None,
                    },
                    None => match self.rx.recv().await? {
                        Frame::Message(seq, data) => Some((seq, data)),
                        Frame::Priming(_) => continue,
                    },
                },
            };
            let Some((seq, data)) = item else {
                // The upstream's requests that came together are all asked at once.
                self.phase = Phase::Parked;
                let state =
                    RequestState { session: self.session_id, stream: self.stream, asked: self.first_ask, request: self.digest };
                let state = state.sign(self.principal.as_deref(), self.app.stateless.secret());
                let body = stateless::input_required(&self.reply_id, &self.asks, &state);
                return Some(Out::Final { body, status: StatusCode::OK });
            };
            let Ok(peek) = jsonrpc::peek(&data) else { continue };
            match peek.kind {
                Kind::Response => {
                    self.phase = Phase::Done;
                    if let Some(b) = self.backing.take() {
                        self.app.stateless.checkin(&self.app, b);
                    }
                    if self.method == "tools/list" && !peek.error {
                        if let Some(h) = &self.handle {
                            self.app.stateless.learn_tools(h.server_name(), &data);
                        }
                    }
                    let status = if peek.error { status_for(error_code(&data)) } else { StatusCode::OK };
                    let cacheable = stateless::CACHEABLE.contains(&self.method.as_str());
                    return Some(Out::Final { body: stateless::final_response(&data, &self.reply_id, cacheable), status });
                }
                Kind::Request => {
                    let Some(uid) = peek.id.as_deref() else { continue };
                    if self.answered.contains(uid) {
                        continue;
                    }
                    let method = peek.method.as_deref().unwrap_or("");
                    if method == "ping" {
                        self.to_upstream(Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{uid},"result":{{}}}}"#)));
                        continue;
                    }
                    match self.caps.allows(method) {
                        Some((_, true)) if stateless::MRTR_METHODS.contains(&self.method.as_str()) => {
                            if self.asks.is_empty() {
                                self.first_ask = seq;
                                self.gather_until = Some(tokio::time::Instant::now() + GATHER);
                            }
                            self.asks.push((uid.to_string(), data));
                        }
                        Some((_, true)) => self.refuse_upstream(
                            uid,
                            &format!("mcp-bridge: a 2026-07-28 client answers {method} only within tools/call, prompts/get or resources/read, not {}", self.method),
                        ),
                        Some((cap, false)) => {
                            // The request cannot complete as the client asked for it: the
                            // client hears -32021 naming the capability, and the upstream
                            // session (its request still waiting) is ended.
                            self.refuse_upstream(uid, &format!("mcp-bridge: the client did not declare the `{cap}` capability"));
                            self.phase = Phase::Done;
                            if let Some(b) = self.backing.take() {
                                let detail = "the upstream needed a client capability the request did not declare";
                                self.app.stateless.forget(&self.app, &b.session, CloseReason::Completed, detail);
                            }
                            let body = stateless::missing_capability(&self.reply_id, cap, method);
                            return Some(Out::Final { body, status: StatusCode::BAD_REQUEST });
                        }
                        None => self.refuse_upstream(
                            uid,
                            &format!("mcp-bridge: a 2026-07-28 client cannot receive server requests of method {method}"),
                        ),
                    }
                }
                // While requests are being gathered, notifications wait: the retry replays
                // everything from the first of them on.
                Kind::Notification if !self.asks.is_empty() => continue,
                Kind::Notification => match peek.method.as_deref() {
                    Some("notifications/progress") => return Some(Out::Notify(data)),
                    Some("notifications/message") if stateless::log_wanted(self.log_level.as_deref(), &data) => {
                        return Some(Out::Notify(data))
                    }
                    // Change notifications belong on subscriptions/listen streams.
                    _ => continue,
                },
            }
        }
        None
    }
}

/// The HTTP status of a JSON-RPC error answer, as the revision assigns them.
fn status_for(code: Option<i64>) -> StatusCode {
    match code {
        Some(code::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(code::HEADER_MISMATCH | code::MISSING_CLIENT_CAPABILITY | code::UNSUPPORTED_PROTOCOL_VERSION) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::OK,
    }
}

fn error_code(raw: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct E {
        error: Option<C>,
    }
    #[derive(serde::Deserialize)]
    struct C {
        code: i64,
    }
    serde_json::from_slice::<E>(raw).ok()?.error.map(|c| c.code)
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let outcome = match self.phase {
            Phase::Done => "answered",
            Phase::Parked => "input_required",
            Phase::Running => "cancelled",
        };
        if self.phase == Phase::Running {
            // Closing the response is how a 2026-07-28 client cancels: the upstream session
            // serving the request ends, which stops the work (a child is killed; a remote
            // upstream session is deleted).
            let detail = "the client closed the response before the answer (2026-07-28 cancellation)";
            match (self.backing.take(), self.handle.take()) {
                (Some(b), _) => self.app.stateless.forget(&self.app, &b.session, CloseReason::Cancelled, detail),
                (None, Some(h)) => {
                    let app = self.app.clone();
                    tokio::spawn(async move {
                        let _ = h.end(&app.locator, CloseReason::Cancelled, detail).await;
                    });
                }
                (None, None) => {}
            }
        }
        if let (Phase::Parked, Some(b)) = (self.phase, self.backing.take()) {
            self.app.stateless.release(b);
        }
        let labels = metrics::Stateless { server: self.server.clone(), outcome };
        metrics::get().stateless_requests.get_or_create(&labels).inc();
        // An answered request is the common case (the metric counts it); one that was cancelled
        // or is waiting for the client's input is worth a line.
        let duration_ms = self.started.elapsed().as_millis() as u64;
        if self.phase == Phase::Done {
            tracing::debug!(session = %self.session_id, method = %self.method, outcome, duration_ms, "stateless request ended");
        } else {
            tracing::info!(session = %self.session_id, method = %self.method, outcome, duration_ms, "stateless request ended");
        }
    }
}

/// Answers with JSON when the answer comes before the first heartbeat is due (an unknown
/// method can then still be a 404), and otherwise with an SSE stream that carries the
/// notifications, heartbeats, and the answer.
async fn respond(mut ex: Exchange, server: &ServerConfig) -> Response {
    let every = server.heartbeat.interval;
    let wait = every.unwrap_or(Duration::from_secs(10)).min(Duration::from_secs(10));
    let first = match tokio::time::timeout(wait, ex.next()).await {
        Ok(Some(Out::Final { body, status })) => return answer(status, body),
        Ok(None) => {
            let msg = "mcp-bridge: the upstream session ended before it answered";
            return error(StatusCode::OK, Some(&ex.reply_id.clone()), jsonrpc::code::INTERNAL_ERROR, msg);
        }
        Ok(Some(Out::Notify(b))) => sse::event(None, None, &b),
        Err(_) => sse::comment("heartbeat"),
    };
    struct Body {
        ex: Exchange,
        first: Option<Bytes>,
        heartbeat: Option<tokio::time::Interval>,
        done: bool,
    }
    let heartbeat = every.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
    let body = Body { ex, first: Some(first), heartbeat, done: false };
    let stream = futures_util::stream::unfold(body, |mut b| async move {
        if let Some(first) = b.first.take() {
            return Some((Ok::<Bytes, Infallible>(first), b));
        }
        if b.done {
            return None;
        }
        let out = match &mut b.heartbeat {
            Some(hb) => tokio::select! {
                out = b.ex.next() => Some(out),
                _ = hb.tick() => None,
            },
            None => Some(b.ex.next().await),
        };
        match out {
            None => Some((Ok(sse::comment("heartbeat")), b)),
            Some(None) => None,
            Some(Some(Out::Notify(m))) => Some((Ok(sse::event(None, None, &m)), b)),
            Some(Some(Out::Final { body, .. })) => {
                b.done = true;
                Some((Ok(sse::event(None, None, &body)), b))
            }
        }
    });
    super::sse_response(stream, &[])
}

/// `subscriptions/listen`: a backing session of its own whose standalone stream this client
/// reads, filtered to what it opted in to and the upstream can deliver.
async fn listen(app: &AppState, server: Arc<ServerConfig>, principal: Option<Arc<str>>, req: &ModernRequest) -> Response {
    let wanted = req.notifications.clone().unwrap_or_default();
    let backing = match app.stateless.checkout(app, server.clone(), principal, &req.meta).await {
        Ok(b) => b,
        Err(e) => return checkout_failed(&req.id, e),
    };
    let honored = backing.init.honored(&wanted);
    let session = backing.session.clone();
    let attached = match session.attach(0, None, false) {
        Ok(a) => a,
        Err(e) => return super::op_error(e.into()),
    };
    let mut subscribe = Vec::new();
    for (i, uri) in honored.resource_subscriptions.iter().enumerate() {
        let msg = serde_json::json!({"jsonrpc": "2.0", "id": format!("mcp-bridge-subscribe-{i}"), "method": "resources/subscribe", "params": {"uri": uri}});
        let msg = Bytes::from(msg.to_string());
        if let Ok(p) = jsonrpc::peek(&msg) {
            subscribe.push((msg, p));
        }
    }
    if let Err(e) = session.send(subscribe, Target::Discard).await {
        return super::op_error(e.into());
    }
    tracing::info!(session = %session.id, server = %server.name, subscription = %req.id, "subscriptions/listen opened");
    let first = sse::event(None, None, &stateless::acknowledged(&req.id, &honored));
    let changes = app.locator.env.changes.subscribe(&server.name, session.principal.as_ref());
    let listener =
        Listener { app: app.clone(), session, rx: attached.rx, changes, filter: honored, id: req.id.clone(), _backing: backing };
    let heartbeat = server.heartbeat.interval.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
    let stream = futures_util::stream::unfold(
        (listener, Some(first), heartbeat, false),
        |(mut l, first, mut hb, done)| async move {
            if let Some(first) = first {
                return Some((Ok::<Bytes, Infallible>(first), (l, None, hb, done)));
            }
            if done {
                return None;
            }
            loop {
                let tick = async {
                    match &mut hb {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                let data = tokio::select! {
                    f = l.rx.recv() => match f {
                        // The upstream session ended (bridge shutdown, upstream exit): the listen
                        // request gets its result, which closes the subscription gracefully.
                        None if l.session.ended().is_some() => {
                            let closed = format!(
                                r#"{{"jsonrpc":"2.0","id":{0},"result":{{"resultType":"complete","_meta":{{"io.modelcontextprotocol/subscriptionId":{0}}}}}}}"#,
                                l.id
                            );
                            return Some((Ok(sse::event(None, None, closed.as_bytes())), (l, None, hb, true)));
                        }
                        None => return None,
                        Some(Frame::Priming(_)) => continue,
                        // List changes come through `changes`, from every backing session.
                        Some(Frame::Message(_, data)) if is_list_change_msg(&data) => continue,
                        Some(Frame::Message(_, data)) => data,
                    },
                    c = l.changes.recv() => match c {
                        Ok(data) => data,
                        Err(_) => continue,
                    },
                    _ = tick => return Some((Ok(sse::comment("heartbeat")), (l, None, hb, false))),
                };
                let Ok(peek) = jsonrpc::peek(&data) else { continue };
                if peek.kind != Kind::Notification {
                    continue;
                }
                let method = peek.method.as_deref().unwrap_or("");
                if stateless::listen_wants(&l.filter, method, &data) {
                    let tagged = stateless::with_meta(&data, "io.modelcontextprotocol/subscriptionId", &l.id);
                    return Some((Ok(sse::event(None, None, &tagged)), (l, None, hb, false)));
                }
            }
        },
    );
    super::sse_response(stream, &[])
}

fn is_list_change_msg(data: &[u8]) -> bool {
    jsonrpc::peek(data).ok().and_then(|p| p.method).is_some_and(|m| crate::protocol::is_list_change(&m))
}

/// A listen stream's hold on its backing session: ended with the stream.
struct Listener {
    app: AppState,
    session: Arc<Session>,
    rx: mpsc::Receiver<Frame>,
    changes: tokio::sync::broadcast::Receiver<Bytes>,
    filter: ListenFilter,
    id: Box<str>,
    _backing: Backing,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.app.stateless.forget(&self.app, &self.session, CloseReason::ClientClosed, "the subscriptions/listen stream closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn which_posts_are_modern() {
        let meta = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert!(is_modern(&h(&[("mcp-protocol-version", "2026-07-28")]), b"{}"));
        assert!(is_modern(&HeaderMap::new(), meta), "per-request _meta without the header: modern (and then a -32020)");
        let legacy_args = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"io.modelcontextprotocol/protocolVersion"}}}"#;
        assert!(!is_modern(&h(&[("mcp-session-id", "ab"), ("mcp-protocol-version", "2025-11-25")]), legacy_args));
        assert!(!is_modern(&HeaderMap::new(), br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#));
        assert!(is_modern(&h(&[("mcp-protocol-version", "2099-01-01")]), b"{}"), "unknown version, no session");
        assert!(!is_modern(&h(&[("mcp-protocol-version", "2099-01-01"), ("mcp-session-id", "ab")]), b"{}"));
    }
}
