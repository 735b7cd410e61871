//! A remote legacy HTTP+SSE server: one upstream SSE stream per client session, and client
//! messages POSTed to the endpoint it announces.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::{cause, redirect, sse_events_within, with_headers, Context, UpstreamEvent, TOO_LONG_EVENT};
use crate::ids::{CloseReason, SessionId};
use crate::protocol::jsonrpc::{self, Kind};

/// The upstream's SSE stream, with the server's OAuth 2.0 token if it has one (a 401: one
/// fresh token, one retry).
async fn get_stream(
    ctx: &Context,
    url: &str,
    headers: &BTreeMap<String, String>,
) -> Result<reqwest::Result<reqwest::Response>, String> {
    let get = |token: Option<String>| {
        let mut req = with_headers(ctx.http.get(url), headers).header(ACCEPT, "text/event-stream");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let Some(o) = &ctx.oauth else { return Ok(get(None).await) };
    let token = o.token().await?;
    let resp = get(Some(token.clone())).await;
    if resp.as_ref().is_ok_and(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED) {
        tracing::info!(url, "the remote upstream answered 401; retrying once with a fresh oauth2 token");
        return Ok(get(Some(o.refresh(Some(&token)).await?)).await);
    }
    Ok(resp)
}

pub(super) async fn run(
    url: String,
    headers: BTreeMap<String, String>,
    ctx: Context,
    session: SessionId,
    rx: super::budget::Receiver<Bytes>,
    events: super::Events,
) {
    let closed = |reason, detail: String| UpstreamEvent::Closed { reason, detail };
    let resp = match get_stream(&ctx, &url, &headers).await {
        Ok(r) => r,
        Err(detail) => {
            let _ = events.send(closed(CloseReason::UpstreamFailedToStart, detail)).await;
            return;
        }
    };
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
    let max = ctx.pump.max_message;
    let mut stream = std::pin::pin!(sse_events_within(resp, max));
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
    // POSTs go out from their own task: a server may hold a POST until the bridge has read
    // what it wrote on the stream, so the stream is read whatever the POSTs are doing.
    let post = Posting { ctx, headers, endpoint, session, events: events.clone() };
    let _poster = Poster(tokio::spawn(post.run(rx)));
    loop {
        match stream.next().await {
            Some(ev) if ev.event.as_deref() == Some(TOO_LONG_EVENT) => {
                let detail = format!("the remote SSE stream {url} sent an event over limits.max_message ({max} bytes)");
                let _ = events.send(closed(CloseReason::UpstreamExited, detail)).await;
                return;
            }
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
        }
    }
}

/// Aborts the posting task when the upstream task ends or is aborted.
struct Poster(tokio::task::JoinHandle<()>);

impl Drop for Poster {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the posting task needs: where client messages go, and where failures are reported.
struct Posting {
    ctx: Context,
    headers: BTreeMap<String, String>,
    endpoint: reqwest::Url,
    session: SessionId,
    events: super::Events,
}

impl Posting {
    /// POSTs the session's messages in order, each bounded by `limits.upstream_stall`; a
    /// request whose POST fails gets a JSON-RPC error.
    async fn run(self, mut rx: super::budget::Receiver<Bytes>) {
        let endpoint = &self.endpoint;
        while let Some(msg) = rx.recv().await {
            let post = |token: Option<String>| {
                let mut req = with_headers(self.ctx.http.post(endpoint.clone()), &self.headers)
                    .header(CONTENT_TYPE, "application/json")
                    .body(msg.clone());
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                if let Some(bound) = self.ctx.pump.upstream_stall {
                    req = req.timeout(bound);
                }
                req.send()
            };
            let sent = match &self.ctx.oauth {
                None => post(None).await,
                Some(o) => match o.token().await {
                    Ok(t) => match post(Some(t.clone())).await {
                        // One fresh token, one retry.
                        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => match o.refresh(Some(&t)).await {
                            Ok(fresh) => post(Some(fresh)).await,
                            Err(_) => Ok(r),
                        },
                        other => other,
                    },
                    Err(e) => {
                        self.report(&msg, &e).await;
                        continue;
                    }
                },
            };
            let failure = match sent {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!(
                    "POST {endpoint} answered {}{}",
                    r.status(),
                    redirect(&r).map(|w| format!(": {w}")).unwrap_or_default()
                )),
                Err(e) => Some(format!("POST {endpoint}: {}", cause(&e))),
            };
            if let Some(detail) = failure {
                self.report(&msg, &detail).await;
            }
        }
    }

    /// A failed POST: logged, and a request it carried gets a JSON-RPC error.
    async fn report(&self, msg: &Bytes, detail: &str) {
        tracing::warn!(session = %self.session, "remote upstream: {detail}");
        if let Some(id) = jsonrpc::peek(msg).ok().filter(|p| p.kind == Kind::Request).and_then(|p| p.id) {
            let err = jsonrpc::error(Some(&id), jsonrpc::code::INTERNAL_ERROR, &format!("mcp-bridge: upstream: {detail}"));
            let _ = self.events.send(UpstreamEvent::Message(err)).await;
        }
    }
}
