//! Opening a backing session's upstream side: `initialize` with the modern client's identity
//! and capabilities, then `notifications/initialized`; and the bridge's own requests on a
//! backing session (`initialize`, `tools/list`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::protocol::jsonrpc::{self, Kind};
use crate::protocol::modern::{Init, RequestMeta, UPSTREAM_VERSION};
use crate::session::registry::Registry;
use crate::session::{CloseReason, Frame, Session};

/// A backing session being initialized: ended if the checkout is dropped meanwhile.
pub(super) struct Starting<'a> {
    pub(super) registry: &'a Registry,
    pub(super) session: Option<Arc<Session>>,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.registry.remove(s.id);
            s.end(CloseReason::Cancelled, "the request was dropped while its backing session started");
        }
    }
}

/// Opens the upstream side of a backing session: `initialize` with the modern client's
/// identity and capabilities, then `notifications/initialized`.
pub(super) async fn initialize(session: &Arc<Session>, meta: &RequestMeta, timeout: Option<Duration>) -> Result<Init, String> {
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
pub(super) async fn internal_request(session: &Arc<Session>, msg: Bytes, timeout: Option<Duration>) -> Result<Bytes, String> {
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
