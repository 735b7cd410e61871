//! One MCP request of a REST caller ([`Call`]), on a warm backing session of its principal
//! checked out of the stateless pool (`crate::stateless`): sent on a stream of its own, read
//! until its answer, with progress and log messages on the way. A question from the server
//! (sampling, elicitation, roots) is declined or ends the call with 409, as the server's
//! `rest.on_input` says. A call dropped before its answer (the caller went away, or the call
//! needed input) is cancelled upstream with `notifications/cancelled`, and its backing session
//! is ended rather than returned with work still running.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::app::AppState;
use crate::config::rest::OnInput;
use crate::config::ServerConfig;
use crate::http::{Error, Failure};
use crate::protocol::jsonrpc::{self, code, Kind, Peek};
use crate::protocol::method;
use crate::protocol::modern::RequestMeta;
use crate::session::{CloseReason, Frame, FrameRx, Session, Target};
use crate::stateless::{Backing, CheckoutError};

/// How long a cancelled call's backing session lives on after `notifications/cancelled` was
/// queued, so that the upstream's writer delivers it before the session (and a child) ends.
const CANCEL_GRACE: Duration = Duration::from_millis(250);

/// Numbers the bridge's own request ids on backing sessions (`"rest-N"`).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What a running call yields.
pub(crate) enum Event {
    /// A `notifications/progress` for the call, as the upstream sent it.
    Progress(Bytes),
    /// A `notifications/message` (a log message), as the upstream sent it.
    Log(Bytes),
    /// The call's result: the JSON-RPC `result` member, as the upstream wrote it.
    Result(Bytes),
}

/// One request in flight on a backing session.
pub(crate) struct Call {
    app: AppState,
    /// Held while the call runs; checked in once it is answered.
    backing: Option<Backing>,
    session: Arc<Session>,
    rx: FrameRx,
    /// The request's id as JSON text.
    id: String,
    on_input: OnInput,
    /// Set once the answer is in (or the session ended): nothing to cancel.
    done: bool,
}

/// The identity REST callers' backing sessions are initialized with. They declare sampling
/// and elicitation so that tools which ask appear and can be refused clearly (409) or
/// declined; roots only when they are declined (an empty list), because a server asks for
/// roots on its own, outside any call.
fn meta(on_input: OnInput) -> RequestMeta {
    let caps = match on_input {
        OnInput::Error => r#"{"sampling":{},"elicitation":{}}"#,
        OnInput::Decline => r#"{"sampling":{},"elicitation":{},"roots":{"listChanged":false}}"#,
    };
    let info = format!(r#"{{"name":"mcp-bridge-rest","version":"{}"}}"#, env!("CARGO_PKG_VERSION"));
    RequestMeta {
        client_info: RawValue::from_string(info).ok(),
        capabilities: RawValue::from_string(caps.to_string()).ok(),
        ..RequestMeta::default()
    }
}

/// The members of a request's `params` (each value as JSON text), without `_meta`.
pub(crate) type Params = Vec<(String, String)>;

impl Call {
    /// Checks a backing session out for `principal` and sends the request; `progress` asks the
    /// upstream for progress notifications.
    pub(crate) async fn start(
        app: &AppState,
        server: &Arc<ServerConfig>,
        principal: Option<Arc<str>>,
        method: &'static str,
        params: Params,
        progress: bool,
    ) -> Result<Call, Error> {
        if let Err(left) = app.locator.env.health.admit(&server.name) {
            let detail = format!("server `{}` keeps crashing; calls are refused for {} more s", server.name, left.as_secs() + 1);
            return Err(Error::rest(Failure::Unavailable { retry_after: left.as_secs() + 1 }, detail));
        }
        let backing = app
            .stateless
            .checkout(&app.locator, server.clone(), principal, &meta(server.rest.on_input))
            .await
            .map_err(checkout_failed)?;
        let id = format!(r#""rest-{}""#, NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let mut body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{"#);
        for (name, value) in &params {
            body.push_str(&format!("{}:{value},", serde_json::Value::from(name.as_str())));
        }
        if progress {
            body.push_str(&format!(r#""_meta":{{"progressToken":{id}}}"#));
        }
        let body = Bytes::from(format!("{}}}}}", body.trim_end_matches(',')));
        let peek = jsonrpc::peek(&body).map_err(|e| Error::rest(Failure::BadRequest, format!("not valid JSON: {e}")))?;
        let session = backing.session.clone();
        let (opened, attached) = session.open_stream(1, false).map_err(|e| Error::rest_op(e.into()))?;
        session.send(vec![(body, peek)], opened.stream).await.map_err(|e| Error::rest_op(e.into()))?;
        let on_input = server.rest.on_input;
        Ok(Call { app: app.clone(), backing: Some(backing), session, rx: attached.rx, id, on_input, done: false })
    }

    /// The next thing the call yields. Cancel-safe: nothing taken from the stream is lost
    /// when the future is dropped between messages.
    pub(crate) async fn next(&mut self) -> Result<Event, Error> {
        loop {
            let Some(frame) = self.rx.recv().await else {
                self.done = true;
                let reason = self.session.ended().unwrap_or(CloseReason::Error);
                return Err(Error::rest(
                    Failure::BadGateway,
                    format!("the upstream session ended before it answered ({reason})"),
                ));
            };
            let Frame::Message(_, data) = frame else { continue };
            let Ok(peek) = jsonrpc::peek(&data) else { continue };
            match peek.kind {
                Kind::Response if peek.id.as_deref() == Some(self.id.as_str()) => return self.finish(&data),
                Kind::Response => continue,
                Kind::Request => self.asked(&peek)?,
                Kind::Notification => match peek.method.as_deref() {
                    Some(method::PROGRESS) => return Ok(Event::Progress(data)),
                    Some(method::MESSAGE) => return Ok(Event::Log(data)),
                    _ => continue,
                },
            }
        }
    }

    /// Runs the call to its result, passing over progress and log messages.
    pub(crate) async fn result(mut self) -> Result<Bytes, Error> {
        loop {
            if let Event::Result(r) = self.next().await? {
                return Ok(r);
            }
        }
    }

    /// The upstream's answer: the backing session goes back to the pool, and an error answer
    /// becomes the failure the caller should read.
    fn finish(&mut self, data: &[u8]) -> Result<Event, Error> {
        self.done = true;
        let ended = self.session.ended();
        if let Some(b) = self.backing.take() {
            self.app.stateless.checkin(&self.app.locator, b);
        }
        #[derive(Deserialize)]
        struct Answer<'a> {
            #[serde(borrow)]
            result: Option<&'a RawValue>,
            error: Option<serde_json::Value>,
        }
        let answer: Answer = serde_json::from_slice(data)
            .map_err(|e| Error::rest(Failure::BadGateway, format!("the upstream's answer is not JSON-RPC: {e}")))?;
        if let Some(result) = answer.result {
            return Ok(Event::Result(Bytes::copy_from_slice(result.get().as_bytes())));
        }
        let error = answer.error.unwrap_or(serde_json::Value::Null);
        let code = error.get("code").and_then(serde_json::Value::as_i64);
        let message = error.get("message").and_then(serde_json::Value::as_str).unwrap_or("").to_string();
        let failure = match code {
            Some(code::REQUEST_TIMEOUT) if message.starts_with("mcp-bridge:") => Failure::Timeout,
            _ if ended.is_some() => Failure::BadGateway,
            Some(code::INVALID_PARAMS) => Failure::InvalidParams,
            Some(code::METHOD_NOT_FOUND) => Failure::NotFound,
            Some(code::URL_ELICITATION_REQUIRED) => Failure::NeedsInput,
            _ => Failure::BadGateway,
        };
        Err(Error::Rest { failure, detail: message, error: Some(Box::new(error)) })
    }

    /// A request from the upstream: ping is answered; a question for the caller is declined,
    /// or ends the call (409) when the server's `rest.on_input` is `error`; anything else is
    /// refused.
    fn asked(&mut self, peek: &Peek) -> Result<(), Error> {
        let Some(uid) = peek.id.as_deref() else { return Ok(()) };
        let asked = peek.method.as_deref().unwrap_or("");
        let question = matches!(asked, method::SAMPLING_CREATE_MESSAGE | method::ELICITATION_CREATE | method::ROOTS_LIST);
        let reply = match (asked, self.on_input) {
            (method::PING, _) => format!(r#"{{"jsonrpc":"2.0","id":{uid},"result":{{}}}}"#),
            (method::ELICITATION_CREATE, OnInput::Decline) => {
                format!(r#"{{"jsonrpc":"2.0","id":{uid},"result":{{"action":"decline"}}}}"#)
            }
            (method::ROOTS_LIST, OnInput::Decline) => format!(r#"{{"jsonrpc":"2.0","id":{uid},"result":{{"roots":[]}}}}"#),
            (method::SAMPLING_CREATE_MESSAGE, OnInput::Decline) => {
                String::from_utf8_lossy(&jsonrpc::error(Some(uid), -1, "mcp-bridge: sampling declined (REST caller)"))
                    .into_owned()
            }
            _ if question => {
                let msg = format!("mcp-bridge: a REST caller cannot answer {asked}");
                self.to_upstream(jsonrpc::error(Some(uid), code::METHOD_NOT_FOUND, &msg));
                let detail = format!(
                    "the tool asked the caller a question ({asked}), which a REST call cannot answer; the call was cancelled \
                     (the server's `rest.on_input = \"decline\"` declines such questions instead)"
                );
                let error =
                    serde_json::json!({ "code": code::CONNECTION_CLOSED, "message": detail, "data": { "method": asked } });
                return Err(Error::Rest { failure: Failure::NeedsInput, detail, error: Some(Box::new(error)) });
            }
            _ => String::from_utf8_lossy(&jsonrpc::error(
                Some(uid),
                code::METHOD_NOT_FOUND,
                &format!("mcp-bridge: a REST caller cannot receive {asked}"),
            ))
            .into_owned(),
        };
        self.to_upstream(Bytes::from(reply));
        Ok(())
    }

    /// Sends a message upstream without making the caller wait.
    fn to_upstream(&self, msg: Bytes) {
        let Ok(peek) = jsonrpc::peek(&msg) else { return };
        let session = self.session.clone();
        tokio::spawn(async move {
            let _ = session.send(vec![(msg, peek)], Target::Discard).await;
        });
    }
}

impl Drop for Call {
    /// A call dropped before its answer is cancelled upstream, and its backing session ends
    /// once the cancellation had a moment to be written.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(backing) = self.backing.take() else { return };
        let cancel = format!(
            r#"{{"jsonrpc":"2.0","method":"{}","params":{{"requestId":{},"reason":"the REST caller went away"}}}}"#,
            method::CANCELLED,
            self.id
        );
        let cancel = Bytes::from(cancel);
        let app = self.app.clone();
        tracing::info!(session = %backing.session.id, request = %self.id, "REST call cancelled before its answer");
        tokio::spawn(async move {
            if let Ok(peek) = jsonrpc::peek(&cancel) {
                let _ = backing.session.send(vec![(cancel, peek)], Target::Discard).await;
            }
            tokio::time::sleep(CANCEL_GRACE).await;
            let detail = "a REST call was cancelled before its answer; the upstream may still work on it";
            app.stateless.forget(&app.locator, &backing.session, CloseReason::Cancelled, detail);
        });
    }
}

/// The failure when no backing session could be had.
fn checkout_failed(e: CheckoutError) -> Error {
    match e {
        CheckoutError::Op(e) => Error::rest_op(e),
        CheckoutError::Init(detail) => Error::rest(
            Failure::Unavailable { retry_after: 1 },
            format!("the upstream is unavailable: could not open a session on it: {detail}"),
        ),
    }
}
