//! A remote upstream that speaks only the 2026-07-28 (stateless) revision, in front of a
//! client that opened a session with `initialize`. The bridge plays the modern client: it
//! answers `initialize` from the upstream's `server/discover`, sends every request with the
//! session's identity and capabilities in `_meta` and the mirrored `Mcp-*` headers, turns an
//! `InputRequiredResult` into server-to-client requests on the session and retries with the
//! answers, keeps a `subscriptions/listen` stream for change notifications and resource
//! subscriptions, and cancels a request by closing its response.
//!
//! [`Eras`] (`modern/eras.rs`) is the probe both directions share: which versions a remote URL
//! serves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::{sse_events, with_headers, Context, UpstreamEvent};
use crate::ids::{CloseReason, SessionId};
use crate::protocol::headers::{header_value, param_headers, ToolHeaders};
use crate::protocol::jsonrpc::{self, Kind};
use crate::protocol::method;
use crate::protocol::modern::{code, final_response, UPSTREAM_VERSION};
use crate::protocol::rewrite::{self, raw, Members};
use crate::protocol::MODERN_VERSIONS;
use eras::first_json;
pub(crate) use eras::Eras;

mod eras;

/// MRTR rounds one request may take before the bridge gives up on it.
const MAX_ROUNDS: usize = 16;

/// Who the session's client said it is in `initialize`.
struct Identity {
    version: &'static str,
    client_info: String,
    capabilities: String,
}

struct Adapter {
    url: String,
    headers: BTreeMap<String, String>,
    ctx: Context,
    session: SessionId,
    events: super::Events,
    id: Identity,
    log_level: Mutex<Option<String>>,
    /// Server-to-client requests the bridge sent on the session, by id, awaiting the answer.
    waiting: Mutex<HashMap<String, oneshot::Sender<Bytes>>>,
    next: std::sync::atomic::AtomicU64,
    /// `x-mcp-header` names per tool and argument, learned from `tools/list` answers.
    param_headers: Mutex<Option<Arc<ToolHeaders>>>,
    /// Whether the upstream acknowledged the listen stream: requests wait for it (a little),
    /// so that a change they cause is heard, as a session-based client expects.
    listening: tokio::sync::watch::Sender<Listening>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listening {
    NotStarted,
    Opening,
    Open,
    Failed,
}

/// Serves a session whose remote upstream speaks only `versions` (modern ones).
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    url: String,
    headers: BTreeMap<String, String>,
    ctx: Context,
    session: SessionId,
    initialize: Bytes,
    versions: Vec<String>,
    mut rx: super::budget::Receiver<Bytes>,
    events: super::Events,
) {
    let Ok(init) = serde_json::from_slice::<Initialize>(&initialize) else {
        let detail =
            "the client's initialize could not be read (an `id`, and params with a string `protocolVersion`)".to_string();
        let _ = events.send(UpstreamEvent::Closed { reason: CloseReason::UpstreamFailedToStart, detail }).await;
        return;
    };
    let Some(version) = MODERN_VERSIONS.iter().copied().find(|v| versions.iter().any(|s| s == v)) else {
        let detail = format!("the upstream serves only {versions:?}, none of which the bridge speaks");
        let _ = events.send(UpstreamEvent::Closed { reason: CloseReason::UpstreamFailedToStart, detail }).await;
        return;
    };
    let asked = init.params.as_ref().and_then(|p| p.protocol_version.clone()).unwrap_or_default();
    let id = init.identity(version);
    let adapter = Arc::new(Adapter {
        url,
        headers,
        ctx,
        session,
        events,
        id,
        log_level: Mutex::new(None),
        waiting: Mutex::default(),
        next: Default::default(),
        param_headers: Mutex::default(),
        listening: tokio::sync::watch::channel(Listening::NotStarted).0,
    });
    tracing::info!(session = %session, url = %adapter.url, version, "the upstream speaks only {versions:?}: the bridge adapts this session to it");
    let Some(caps) = adapter.answer_initialize(init.id.get(), asked).await else { return };
    let mut dispatch = Dispatch {
        adapter,
        caps,
        tasks: tokio::task::JoinSet::new(),
        in_flight: HashMap::new(),
        subscriptions: BTreeSet::new(),
        listener: None,
    };
    while let Some(msg) = rx.recv().await {
        dispatch.handle(msg).await;
    }
}

/// What the session's client sent in `initialize`.
#[derive(Deserialize)]
struct Initialize {
    id: Box<RawValue>,
    params: Option<InitParams>,
}

#[derive(Deserialize)]
struct InitParams {
    #[serde(rename = "protocolVersion")]
    protocol_version: Option<String>,
    capabilities: Option<Box<RawValue>>,
    #[serde(rename = "clientInfo")]
    client_info: Option<Box<RawValue>>,
}

impl Initialize {
    /// Who the client said it is, to be shown to an upstream that speaks `version`.
    fn identity(&self, version: &'static str) -> Identity {
        let p = self.params.as_ref();
        Identity {
            version,
            client_info: p
                .and_then(|p| p.client_info.as_ref())
                .map_or(r#"{"name":"unknown","version":"0"}"#.into(), |c| c.get().into()),
            capabilities: p.and_then(|p| p.capabilities.as_ref()).map_or("{}".into(), |c| c.get().into()),
        }
    }
}

/// The adapter's half of the session's message loop: what it keeps between client messages.
struct Dispatch {
    adapter: Arc<Adapter>,
    /// The upstream's capabilities, from `server/discover`.
    caps: serde_json::Value,
    tasks: tokio::task::JoinSet<()>,
    /// Client requests being served, by id: a `notifications/cancelled` aborts one.
    in_flight: HashMap<String, tokio::task::AbortHandle>,
    /// Resource URIs the client subscribed to, heard on the listen stream.
    subscriptions: BTreeSet<String>,
    listener: Option<tokio::task::AbortHandle>,
}

impl Dispatch {
    /// One message from the session's client.
    async fn handle(&mut self, msg: Bytes) {
        while self.tasks.try_join_next().is_some() {}
        let Ok(peek) = jsonrpc::peek(&msg) else { return };
        let method = peek.method.as_deref().unwrap_or("");
        match peek.kind {
            Kind::Response => {
                let waiter =
                    peek.id.as_deref().and_then(|id| self.adapter.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(id));
                if let Some(w) = waiter {
                    let _ = w.send(msg);
                }
            }
            Kind::Notification => self.notification(method, &msg),
            Kind::Request => self.request(peek.id.as_deref().unwrap_or(""), method, msg).await,
        }
    }

    fn notification(&mut self, method: &str, msg: &[u8]) {
        match method {
            method::INITIALIZED => {
                self.listener = Some(self.adapter.clone().listen(&mut self.tasks, &self.caps, &self.subscriptions));
            }
            method::CANCELLED => {
                // Closing the request's response is the modern cancellation.
                if let Some(task) = cancelled_id(msg).and_then(|id| self.in_flight.remove(&id)) {
                    task.abort();
                }
            }
            _ => {}
        }
    }

    /// A client request: answered here when the bridge keeps its state (ping, log level,
    /// subscriptions), otherwise served by the upstream in a task of its own.
    async fn request(&mut self, id: &str, method: &str, msg: Bytes) {
        let local = |result: &str| Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#));
        match method {
            method::PING => self.adapter.emit(local("{}")).await,
            method::LOGGING_SET_LEVEL => {
                *self.adapter.log_level.lock().unwrap_or_else(|e| e.into_inner()) = level_of(&msg);
                self.adapter.emit(local("{}")).await;
            }
            method::RESOURCES_SUBSCRIBE | method::RESOURCES_UNSUBSCRIBE => {
                if let Some(uri) = uri_of(&msg) {
                    if method == method::RESOURCES_SUBSCRIBE {
                        self.subscriptions.insert(uri);
                    } else {
                        self.subscriptions.remove(&uri);
                    }
                }
                // The listen stream is reopened with the new set of subscriptions.
                if let Some(l) = self.listener.take() {
                    l.abort();
                }
                self.listener = Some(self.adapter.clone().listen(&mut self.tasks, &self.caps, &self.subscriptions));
                self.adapter.emit(local("{}")).await;
            }
            _ => {
                self.in_flight.retain(|_, t| !t.is_finished());
                let a = self.adapter.clone();
                let method = method.to_string();
                let client_id = id.to_string();
                let task = self.tasks.spawn(async move { a.call(msg, client_id, method).await });
                self.in_flight.insert(id.to_string(), task);
            }
        }
    }
}

fn cancelled_id(msg: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(msg).ok()?;
    Some(v["params"]["requestId"].to_string())
}

fn level_of(msg: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(msg).ok()?;
    v["params"]["level"].as_str().map(str::to_string)
}

fn uri_of(msg: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(msg).ok()?;
    v["params"]["uri"].as_str().map(str::to_string)
}

impl Adapter {
    /// Answers the client's `initialize` (id `init_id`, asking for version `asked`) from the
    /// upstream's `server/discover`, in the client's own (legacy) version, and returns the
    /// upstream's capabilities; `None` when the upstream did not answer (the session is told
    /// it closed).
    async fn answer_initialize(&self, init_id: &str, asked: String) -> Option<serde_json::Value> {
        let discover =
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":"mcp-bridge-discover","method":"server/discover","params":{}}"#);
        let answer = match self.exchange(discover, "server/discover").await {
            Ok(body) => body,
            Err(detail) => {
                let _ = self.events.send(UpstreamEvent::Closed { reason: CloseReason::UpstreamFailedToStart, detail }).await;
                return None;
            }
        };
        let legacy_version =
            if crate::protocol::SUPPORTED_VERSIONS.contains(&asked.as_str()) { asked } else { UPSTREAM_VERSION.into() };
        let v = first_json(&String::from_utf8_lossy(&answer));
        let r = &v["result"];
        let mut result = serde_json::json!({
            "protocolVersion": legacy_version,
            "capabilities": r["capabilities"],
            "serverInfo": r["_meta"]["io.modelcontextprotocol/serverInfo"].as_object().map_or(serde_json::json!({"name": "upstream", "version": "0"}), |o| serde_json::Value::Object(o.clone())),
            "instructions": r["instructions"],
        });
        if result["instructions"].is_null() {
            result.as_object_mut().map(|o| o.remove("instructions"));
        }
        let reply = format!(r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#, init_id, result);
        let _ = self.events.send(UpstreamEvent::Message(Bytes::from(reply))).await;
        Some(r["capabilities"].clone())
    }

    async fn emit(&self, msg: Bytes) {
        let _ = self.events.send(UpstreamEvent::Message(msg)).await;
    }

    /// The request as the modern upstream wants it: `_meta` with the session's identity, and
    /// the id given.
    fn modern_body(&self, msg: &[u8], id: &str, extra: Option<(&Members, Option<&str>)>) -> Bytes {
        let edited = rewrite::edit_params(msg, |params, meta| {
            meta.insert("io.modelcontextprotocol/protocolVersion".into(), raw(format!("\"{}\"", self.id.version)));
            meta.insert("io.modelcontextprotocol/clientInfo".into(), raw(self.id.client_info.clone()));
            meta.insert("io.modelcontextprotocol/clientCapabilities".into(), raw(self.id.capabilities.clone()));
            if let Some(level) = self.log_level.lock().unwrap_or_else(|e| e.into_inner()).as_deref() {
                meta.insert("io.modelcontextprotocol/logLevel".into(), raw(serde_json::to_string(level).unwrap_or_default()));
            }
            if let Some((responses, state)) = extra {
                params.insert("inputResponses".into(), rewrite::nested(responses));
                match state {
                    Some(s) => params.insert("requestState".into(), raw(serde_json::to_string(s).unwrap_or_default())),
                    None => params.remove("requestState"),
                };
            }
        });
        let Some(mut m) = edited else { return Bytes::copy_from_slice(msg) };
        m.insert("id".into(), raw(id.to_string()));
        rewrite::to_bytes(&m)
    }

    /// The POST of one modern request, with its mirrored headers.
    fn post(&self, body: Bytes, method: &str) -> reqwest::RequestBuilder {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut req = with_headers(self.ctx.http.post(&self.url), &self.headers)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", self.id.version)
            .header("mcp-method", method);
        let name = match method {
            method::TOOLS_CALL | method::PROMPTS_GET => v["params"]["name"].as_str(),
            method::RESOURCES_READ => v["params"]["uri"].as_str(),
            _ => None,
        };
        if let Some(name) = name {
            req = req.header("mcp-name", header_value(name));
        }
        if method == method::TOOLS_CALL {
            let table = self.param_headers.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let wanted = table.as_ref().and_then(|t| t.get(name.unwrap_or(""))).cloned().unwrap_or_default();
            for p in wanted {
                let value = p.path.iter().try_fold(&v["params"]["arguments"], |v, k| v.get(k));
                let value = match value {
                    Some(serde_json::Value::String(s)) => Some(header_value(s)),
                    Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
                    Some(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
                    _ => None,
                };
                if let Some(value) = value {
                    req = req.header(format!("mcp-param-{}", p.header), value);
                }
            }
        }
        req.body(body)
    }

    /// Sends one modern request and returns its final message; notifications on the way go
    /// to the session.
    async fn exchange(&self, body: Bytes, method: &str) -> Result<Bytes, String> {
        let body = self.modern_body(
            &body,
            &serde_json::from_slice::<serde_json::Value>(&body).map(|v| v["id"].to_string()).unwrap_or_default(),
            None,
        );
        self.send(body, method).await
    }

    async fn send(&self, body: Bytes, method: &str) -> Result<Bytes, String> {
        let resp = self.post(body, method).send().await.map_err(|e| format!("POST {}: {e}", self.url))?;
        let status = resp.status();
        let sse =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
        if !sse {
            let text = resp.bytes().await.map_err(|e| format!("reading the answer: {e}"))?;
            if !status.is_success() && jsonrpc::peek(&text).is_err() {
                return Err(format!(
                    "POST {} answered {status}: {}",
                    self.url,
                    String::from_utf8_lossy(&text).chars().take(200).collect::<String>()
                ));
            }
            return Ok(text);
        }
        let mut events = std::pin::pin!(sse_events(resp));
        while let Some(ev) = events.next().await {
            if !matches!(ev.event.as_deref(), None | Some("message")) || ev.data.trim().is_empty() {
                continue;
            }
            let data = Bytes::from(ev.data);
            match jsonrpc::peek(&data) {
                Ok(p) if p.kind == Kind::Response => return Ok(data),
                Ok(p) if p.kind == Kind::Notification => self.emit(data).await,
                _ => {}
            }
        }
        Err(format!("the upstream closed the stream of {method} before answering"))
    }

    /// A client request, served through MRTR rounds until the upstream completes it.
    async fn call(&self, msg: Bytes, client_id: String, method: String) {
        let mut listening = self.listening.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), listening.wait_for(|l| *l != Listening::Opening)).await;
        if method == method::TOOLS_CALL && self.param_headers.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            self.list_tools().await;
        }
        let mut extra: Option<(Members, Option<String>)> = None;
        let mut final_msg = None;
        let mut relisted = false;
        for round in 0..MAX_ROUNDS {
            // The retry of a request is a new request: it needs its own id.
            // (The client's session id is a credential: it is not shown to the upstream.)
            let id = if round == 0 {
                client_id.clone()
            } else {
                format!("\"mcp-bridge-retry-{}\"", self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            };
            let body = self.modern_body(&msg, &id, extra.as_ref().map(|(r, s)| (r, s.as_deref())));
            let answer = match self.send(body, &method).await {
                Ok(a) => a,
                Err(detail) => {
                    let err = jsonrpc::error(
                        Some(&client_id),
                        jsonrpc::code::INTERNAL_ERROR,
                        &format!("mcp-bridge: upstream: {detail}"),
                    );
                    return self.emit(err).await;
                }
            };
            let v: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
            // A HeaderMismatch on a tools/call: the tool's x-mcp-header annotations may have
            // changed; list the tools again and retry once, as a client SHOULD.
            if method == method::TOOLS_CALL && v["error"]["code"] == code::HEADER_MISMATCH && !relisted {
                relisted = true;
                self.list_tools().await;
                continue;
            }
            if v["result"]["resultType"] != "input_required" {
                final_msg = Some(answer);
                break;
            }
            let state = v["result"]["requestState"].as_str().map(str::to_string);
            let mut responses = Members::new();
            if let Some(requests) = v["result"]["inputRequests"].as_object() {
                for (key, request) in requests {
                    match self.ask(request).await {
                        Ok(result) => {
                            responses.insert(key.clone(), result);
                        }
                        Err(detail) => {
                            let msg = format!("mcp-bridge: the client did not answer {}: {detail}", request["method"]);
                            let err = jsonrpc::error(Some(&client_id), jsonrpc::code::INTERNAL_ERROR, &msg);
                            return self.emit(err).await;
                        }
                    }
                }
            }
            extra = Some((responses, state));
        }
        let Some(answer) = final_msg else {
            let msg = format!("mcp-bridge: the upstream asked for input more than {MAX_ROUNDS} times");
            return self.emit(jsonrpc::error(Some(&client_id), jsonrpc::code::INTERNAL_ERROR, &msg)).await;
        };
        if method == method::TOOLS_LIST {
            self.learn_param_headers(&answer);
        }
        self.emit(final_response(&answer, &client_id, false)).await;
    }

    /// Sends one server-to-client request on the session and waits for the client's result.
    async fn ask(&self, request: &serde_json::Value) -> Result<Box<RawValue>, String> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("\"mcp-bridge-input-{n}\"");
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), tx);
        // Forgotten however this ends (answered, or the call aborted by a cancellation).
        struct Waiting<'a>(&'a Adapter, String);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.1);
            }
        }
        let _waiting = Waiting(self, id.clone());
        let msg = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":{},"params":{}}}"#,
            request["method"],
            request.get("params").cloned().unwrap_or_default()
        );
        self.emit(Bytes::from(msg)).await;
        let answer = rx.await.map_err(|_| "the session ended".to_string())?;
        #[derive(Deserialize)]
        struct A {
            result: Option<Box<RawValue>>,
            error: Option<Box<RawValue>>,
        }
        let a: A = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
        match (a.result, a.error) {
            (Some(r), _) => Ok(r),
            (None, Some(e)) => Err(e.get().to_string()),
            _ => Err("an empty answer".into()),
        }
    }

    /// Remembers which tool arguments the upstream wants mirrored into `Mcp-Param-*` headers
    /// (`x-mcp-header`, through nested `properties` too).
    fn learn_param_headers(&self, answer: &[u8]) {
        *self.param_headers.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(param_headers(answer)));
    }

    /// Lists the upstream's tools for their `x-mcp-header` annotations (a client that never
    /// listed them this session still gets its headers mirrored).
    async fn list_tools(&self) {
        let list = Bytes::from_static(br#"{"jsonrpc":"2.0","id":"mcp-bridge-tools","method":"tools/list","params":{}}"#);
        match self.exchange(list, "tools/list").await {
            Ok(answer) => self.learn_param_headers(&answer),
            Err(e) => {
                tracing::warn!(session = %self.session, error = %e, "could not list the upstream's tools for Mcp-Param headers")
            }
        }
    }

    /// Keeps a `subscriptions/listen` stream open for what the upstream can notify, and
    /// forwards its notifications to the session.
    fn listen(
        self: Arc<Self>,
        tasks: &mut tokio::task::JoinSet<()>,
        caps: &serde_json::Value,
        subscriptions: &BTreeSet<String>,
    ) -> tokio::task::AbortHandle {
        let flag = |area: &str| caps[area]["listChanged"].as_bool().unwrap_or(false);
        let filter = serde_json::json!({
            "toolsListChanged": flag("tools"),
            "promptsListChanged": flag("prompts"),
            "resourcesListChanged": flag("resources"),
            "resourceSubscriptions": subscriptions,
        });
        self.listening.send_replace(Listening::Opening);
        tasks.spawn(async move {
            let mut failures = 0;
            while failures < 5 {
                let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let req = format!(r#"{{"jsonrpc":"2.0","id":"mcp-bridge-listen-{n}","method":"subscriptions/listen","params":{{"notifications":{filter}}}}}"#);
                let body = self.modern_body(req.as_bytes(), &format!("\"mcp-bridge-listen-{n}\""), None);
                match self.post(body, "subscriptions/listen").send().await {
                    Ok(resp)
                        if resp.status().is_success()
                            && resp
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .is_some_and(|v| v.starts_with("text/event-stream")) =>
                    {
                        failures = 0;
                        let mut events = std::pin::pin!(sse_events(resp));
                        while let Some(ev) = events.next().await {
                            let data = Bytes::from(ev.data);
                            self.listening.send_replace(Listening::Open);
                            let wanted = jsonrpc::peek(&data).is_ok_and(|p| {
                                p.kind == Kind::Notification && p.method.as_deref() != Some(method::SUBSCRIPTIONS_ACKNOWLEDGED)
                            });
                            if wanted {
                                self.emit(data).await;
                            }
                        }
                    }
                    _ => failures += 1,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            self.listening.send_replace(Listening::Failed);
            tracing::debug!(session = %self.session, "the upstream's subscriptions/listen stream could not be held");
        })
    }
}
