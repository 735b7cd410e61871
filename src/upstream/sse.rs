//! A remote legacy HTTP+SSE server: one upstream SSE stream per client session, and client
//! messages POSTed to the endpoint it announces.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::sync::mpsc;

use super::{cause, redirect, sse_events, with_headers, Context, UpstreamEvent};
use crate::jsonrpc::{self, Kind};
use crate::session::{CloseReason, SessionId};

pub(super) async fn run(
    url: String,
    headers: BTreeMap<String, String>,
    ctx: Context,
    session: SessionId,
    mut rx: mpsc::Receiver<Bytes>,
    events: mpsc::Sender<UpstreamEvent>,
) {
    let closed = |reason, detail: String| UpstreamEvent::Closed { reason, detail };
    let resp = with_headers(ctx.http.get(&url), &headers).header(ACCEPT, "text/event-stream").send().await;
    let resp = match resp {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            let why = redirect(&r).map(|w| format!(": {w}")).unwrap_or_default();
            let _ =
                events.send(closed(CloseReason::UpstreamFailedToStart, format!("GET {url} answered {}{why}", r.status()))).await;
            return;
        }
        Err(e) => {
            let _ = events.send(closed(CloseReason::UpstreamFailedToStart, format!("GET {url}: {}", cause(&e)))).await;
            return;
        }
    };
    let base = resp.url().clone();
    let mut stream = std::pin::pin!(sse_events(resp));
    let endpoint = loop {
        match stream.next().await {
            Some(ev) if ev.event.as_deref() == Some("endpoint") => match base.join(ev.data.trim()) {
                Ok(u) => break u,
                Err(e) => {
                    let _ = events.send(closed(CloseReason::UpstreamFailedToStart, format!("bad endpoint event: {e}"))).await;
                    return;
                }
            },
            Some(_) => continue,
            None => {
                let _ = events
                    .send(closed(CloseReason::UpstreamFailedToStart, format!("{url} closed before its endpoint event")))
                    .await;
                return;
            }
        }
    };
    tracing::info!(session = %session, url = %url, endpoint = %endpoint, "remote SSE upstream connected");
    loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(ev) if matches!(ev.event.as_deref(), None | Some("message")) => {
                    if ev.data.trim().is_empty() {
                        continue;
                    }
                    if events.send(UpstreamEvent::Message(Bytes::from(ev.data))).await.is_err() {
                        return;
                    }
                }
                Some(_) => {}
                None => {
                    let _ = events.send(closed(CloseReason::UpstreamExited, format!("the remote SSE stream {url} ended"))).await;
                    return;
                }
            },
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                let req = with_headers(ctx.http.post(endpoint.clone()), &headers).header(CONTENT_TYPE, "application/json").body(msg.clone());
                let failure = match req.send().await {
                    Ok(r) if r.status().is_success() => None,
                    Ok(r) => Some(format!("POST {endpoint} answered {}{}", r.status(), redirect(&r).map(|w| format!(": {w}")).unwrap_or_default())),
                    Err(e) => Some(format!("POST {endpoint}: {}", cause(&e))),
                };
                if let Some(detail) = failure {
                    tracing::warn!(session = %session, "remote upstream: {detail}");
                    if let Some(id) = jsonrpc::peek(&msg).ok().filter(|p| p.kind == Kind::Request).and_then(|p| p.id) {
                        let err = jsonrpc::error(Some(&id), jsonrpc::code::INTERNAL_ERROR, &format!("mcp-bridge: upstream: {detail}"));
                        let _ = events.send(UpstreamEvent::Message(err)).await;
                    }
                }
            }
        }
    }
}
