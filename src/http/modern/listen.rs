//! `subscriptions/listen`: a listen stream on a backing session of its own, filtered to what
//! the client opted in to and the upstream can deliver, tagged with the subscription id, and
//! ended with the stream.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::response::Response;

use super::reply::checkout_failed;
use crate::app::AppState;
use crate::config::ServerConfig;
use crate::http::Error;
use crate::locator::OpError;
use crate::protocol::jsonrpc::{self, Kind, Peek};
use crate::protocol::modern::{self as wire, ListenFilter, ModernRequest};
use crate::session::{CloseReason, Frame, FrameRx, Session, Target};
use crate::sse;
use crate::stateless::Backing;

/// `subscriptions/listen`: a backing session of its own whose standalone stream this client
/// reads, filtered to what it opted in to and the upstream can deliver.
pub(super) async fn listen(
    app: &AppState,
    server: Arc<ServerConfig>,
    principal: Option<Arc<str>>,
    req: &ModernRequest,
) -> Result<Response, Error> {
    let wanted = req.notifications.clone().unwrap_or_default();
    let backing = app
        .stateless
        .checkout(&app.locator, server.clone(), principal, &req.meta)
        .await
        .map_err(|e| checkout_failed(&req.id, e))?;
    let honored = backing.init.honored(&wanted);
    let session = backing.session.clone();
    let attached = session.attach(0, None, false).map_err(OpError::from)?;
    let subscribe = subscriptions(&honored);
    session.send(subscribe, Target::Discard).await.map_err(OpError::from)?;
    tracing::info!(session = %session.id, server = %server.name, subscription = %req.id, "subscriptions/listen opened");
    let first = sse::event(None, None, &wire::acknowledged(&req.id, &honored));
    let changes = app.locator.env.changes.subscribe(&server.name, session.principal.as_ref());
    let listener =
        Listener { app: app.clone(), session, rx: attached.rx, changes, filter: honored, id: req.id.clone(), _backing: backing };
    let heartbeat = server.heartbeat.interval.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
    let stream =
        futures_util::stream::unfold((listener, Some(first), heartbeat, false), |(mut l, first, mut hb, done)| async move {
            if let Some(first) = first {
                return Some((Ok::<Bytes, Infallible>(first), (l, None, hb, done)));
            }
            if done {
                return None;
            }
            let (event, last) = l.next(&mut hb).await?;
            Some((Ok(event), (l, None, hb, last)))
        });
    Ok(crate::http::sse_response(stream, &[]))
}

/// The `resources/subscribe` requests that open the honored resource subscriptions on the
/// backing session.
fn subscriptions(honored: &ListenFilter) -> Vec<(Bytes, Peek)> {
    let mut subscribe = Vec::new();
    for (i, uri) in honored.resource_subscriptions.iter().enumerate() {
        let msg = serde_json::json!({"jsonrpc": "2.0", "id": format!("mcp-bridge-subscribe-{i}"), "method": "resources/subscribe", "params": {"uri": uri}});
        let msg = Bytes::from(msg.to_string());
        if let Ok(p) = jsonrpc::peek(&msg) {
            subscribe.push((msg, p));
        }
    }
    subscribe
}

fn is_list_change_msg(data: &[u8]) -> bool {
    jsonrpc::peek(data).ok().and_then(|p| p.method).is_some_and(|m| crate::protocol::is_list_change(&m))
}

/// A listen stream's hold on its backing session: ended with the stream.
struct Listener {
    app: AppState,
    session: Arc<Session>,
    rx: FrameRx,
    changes: tokio::sync::broadcast::Receiver<Bytes>,
    filter: ListenFilter,
    id: Box<str>,
    _backing: Backing,
}

impl Listener {
    /// The stream's next SSE event and whether it is the last; `None` when the stream ends
    /// without one. A heartbeat is due on each tick of `heartbeat`.
    async fn next(&mut self, heartbeat: &mut Option<tokio::time::Interval>) -> Option<(Bytes, bool)> {
        loop {
            let tick = async {
                match heartbeat {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let data = tokio::select! {
                f = self.rx.recv() => match f {
                    // The upstream session ended (bridge shutdown, upstream exit): the listen
                    // request gets its result, which closes the subscription gracefully.
                    None if self.session.ended().is_some() => {
                        let closed = format!(
                            r#"{{"jsonrpc":"2.0","id":{0},"result":{{"resultType":"complete","_meta":{{"io.modelcontextprotocol/subscriptionId":{0}}}}}}}"#,
                            self.id
                        );
                        return Some((sse::event(None, None, closed.as_bytes()), true));
                    }
                    None => return None,
                    Some(Frame::Priming(_)) => continue,
                    // List changes come through `changes`, from every backing session.
                    Some(Frame::Message(_, data)) if is_list_change_msg(&data) => continue,
                    Some(Frame::Message(_, data)) => data,
                },
                c = self.changes.recv() => match c {
                    Ok(data) => data,
                    Err(_) => continue,
                },
                _ = tick => return Some((sse::comment("heartbeat"), false)),
            };
            let Ok(peek) = jsonrpc::peek(&data) else { continue };
            if peek.kind != Kind::Notification {
                continue;
            }
            let method = peek.method.as_deref().unwrap_or("");
            if wire::listen_wants(&self.filter, method, &data) {
                let tagged = wire::with_meta(&data, "io.modelcontextprotocol/subscriptionId", &self.id);
                return Some((sse::event(None, None, &tagged), false));
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.app.stateless.forget(
            &self.app.locator,
            &self.session,
            CloseReason::ClientClosed,
            "the subscriptions/listen stream closed",
        );
    }
}
