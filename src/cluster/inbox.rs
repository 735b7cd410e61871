//! This instance's channel: envelopes from the other instances. Requests for sessions owned
//! here are served, replies wake the callers waiting for them, frames go to the client streams
//! held here, and a holder's client going away detaches it from the session.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use redis::PushKind;
use tokio::sync::mpsc;

use super::wire::{Envelope, Failure, Reply, Request};
use super::Cluster;
use crate::ids::{CloseReason, SessionId};
use crate::protocol::jsonrpc;
use crate::session::{AttachError, CloseCell, Frame, RemoteSink, Sink, Target};

/// A client stream held on `instance` under `token`, as the owning session sees it.
struct RemoteStream {
    cluster: Arc<Cluster>,
    instance: Arc<str>,
    token: u64,
}

impl RemoteSink for RemoteStream {
    fn send(&self, frame: &Frame) -> bool {
        self.cluster.send_frame(&self.instance, self.token, frame)
    }

    fn close(&self, reason: CloseReason) {
        self.cluster.send_close(&self.instance, self.token, reason);
    }

    fn token(&self) -> u64 {
        self.token
    }
}

/// Reads this instance's channel.
pub(super) async fn inbox(cluster: Weak<Cluster>, mut rx: mpsc::UnboundedReceiver<redis::PushInfo>) {
    while let Some(push) = rx.recv().await {
        let Some(c) = cluster.upgrade() else { return };
        if matches!(push.kind, PushKind::SUnsubscribe | PushKind::Unsubscribe) {
            // Redis dropped the subscription (a sharded channel's slot moved).
            tracing::info!(kind = ?push.kind, "the inbox subscription was dropped by Redis; subscribing again");
            if let Some(c) = cluster.upgrade() {
                c.inbox_lost("the inbox subscription was dropped");
            }
            continue;
        }
        if push.kind == PushKind::Disconnection {
            // The client subscribes again by itself; what was published meanwhile is lost.
            c.inbox_gap();
            continue;
        }
        if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
            continue;
        }
        let Some(redis::Value::BulkString(payload)) = push.data.get(1) else { continue };
        match serde_json::from_slice::<Envelope>(payload) {
            Ok(env) => c.on_envelope(env),
            Err(e) => tracing::warn!(error = %e, "unreadable cluster message"),
        }
    }
}

impl Cluster {
    pub(super) fn on_envelope(self: &Arc<Self>, env: Envelope) {
        match env {
            Envelope::Request { from, req, sid, body, until } => {
                // The same request again (its sender did not get the reply in time): answer it
                // again, or let the one in progress answer; never serve it twice.
                match self.served.lock().unwrap_or_else(|e| e.into_inner()).begin(&from, req) {
                    Begin::Serve => {}
                    Begin::InProgress => return,
                    Begin::Done(result) => {
                        self.publish(&from, Envelope::Reply { req, result });
                        return;
                    }
                }
                let me = self.clone();
                tokio::spawn(async move {
                    let result = me.serve(&from, &sid, body, until).await;
                    me.served.lock().unwrap_or_else(|e| e.into_inner()).done(&from, req, result.clone());
                    me.publish(&from, Envelope::Reply { req, result });
                });
            }
            Envelope::Reply { req, result } => {
                if let Some(tx) = self.rpc.lock().unwrap_or_else(|e| e.into_inner()).remove(&req) {
                    let _ = tx.send(result);
                }
            }
            Envelope::Frame { token, seq, data } => self.on_frame(token, seq, data),
            Envelope::Close { token, reason } => self.on_close(token, CloseReason::parse(&reason).unwrap_or(CloseReason::Error)),
            Envelope::Probe { nonce } => self.probe_back(nonce),
            Envelope::Detached { sid, stream, token } => {
                let session = SessionId::parse(&sid).and_then(|id| self.registry()?.get(id));
                if let Some(s) = session {
                    s.detached_remote(stream, token);
                }
            }
        }
    }

    /// Serves a request forwarded by `from` for a session owned here.
    async fn serve(self: &Arc<Self>, from: &str, sid: &str, body: Request, until: u64) -> Result<Reply, Failure> {
        // Served only while this instance surely still owns what it holds (see `lease`).
        if let Err(e) = self.fence().await {
            return Err(Failure { busy: true, ..Failure::new(e) });
        }
        if until != 0 && crate::ids::unix_ms() > until {
            return Err(Failure {
                busy: true,
                ..Failure::new("the forwarded request came after its sender's deadline; not served")
            });
        }
        let session = SessionId::parse(sid).and_then(|id| self.registry()?.get(id));
        let Some(s) = session else {
            return Err(Failure { moved: true, ..Failure::new(format!("session {sid} is not owned by {}", self.instance)) });
        };
        let peeked = |messages: Vec<String>| -> Result<Vec<(Bytes, jsonrpc::Peek)>, Failure> {
            messages
                .into_iter()
                .map(|m| {
                    let raw = Bytes::from(m);
                    jsonrpc::peek(&raw).map(|p| (raw, p)).map_err(|e| Failure { unreadable: true, ..Failure::new(e) })
                })
                .collect()
        };
        let sink = |token| Sink::Remote(Box::new(RemoteStream { cluster: self.clone(), instance: from.into(), token }));
        match body {
            Request::Send { stream, messages } => {
                s.send(peeked(messages)?, Target::from_wire(stream)).await.map_err(Failure::send)?;
                Ok(Reply::Sent)
            }
            Request::Open { requests, json, token, messages } => {
                let messages = peeked(messages)?;
                let opened = s.open_stream_with(requests, json, sink(token), CloseCell::default()).map_err(Failure::new)?;
                s.send(messages, opened.stream).await.map_err(Failure::send)?;
                Ok(Reply::Opened { stream: opened.stream, priming: opened.priming, polling: opened.polling })
            }
            Request::Attach { stream, after, replace, token } => {
                let a = s
                    .attach_with(stream, after, replace, sink(token), CloseCell::default())
                    .map_err(|e| Failure { conflict: matches!(e, AttachError::Conflict), ..Failure::new(e) })?;
                let replay = a.replay.into_iter().map(|e| (e.seq, String::from_utf8_lossy(&e.data).into_owned())).collect();
                Ok(Reply::Attached { stream, replay, done: a.done, polling: s.negotiated_polling() })
            }
            Request::End { reason } => {
                let reason = CloseReason::parse(&reason).unwrap_or(CloseReason::Deleted);
                if let Some(r) = self.registry() {
                    r.remove(s.id);
                }
                s.end(reason, "ended by a forwarded request");
                Ok(Reply::Ended)
            }
        }
    }
}

/// How long a served request's reply is kept for a sender that asks again.
const SERVED_FOR: std::time::Duration = std::time::Duration::from_secs(30);
/// The most replies kept.
const SERVED_MAX: usize = 16_384;

/// What serving a forwarded request came to.
type Outcome = Result<Reply, Failure>;

/// The forwarded requests served lately, by (sender, request number): a sender that did not
/// get the reply sends the same request again and gets the same reply.
#[derive(Default)]
pub(super) struct Served {
    /// `None` while the request is being served.
    replies: std::collections::HashMap<(Arc<str>, u64), Option<Outcome>>,
    order: std::collections::VecDeque<(std::time::Instant, Arc<str>, u64)>,
}

pub(super) enum Begin {
    Serve,
    InProgress,
    Done(Outcome),
}

impl Served {
    fn begin(&mut self, from: &str, req: u64) -> Begin {
        let now = std::time::Instant::now();
        while let Some((at, f, r)) = self.order.front() {
            if now.duration_since(*at) < SERVED_FOR && self.order.len() < SERVED_MAX {
                break;
            }
            self.replies.remove(&(f.clone(), *r));
            self.order.pop_front();
        }
        let key = (Arc::<str>::from(from), req);
        match self.replies.get(&key) {
            Some(Some(done)) => Begin::Done(done.clone()),
            Some(None) => Begin::InProgress,
            None => {
                self.order.push_back((now, key.0.clone(), req));
                self.replies.insert(key, None);
                Begin::Serve
            }
        }
    }

    fn done(&mut self, from: &str, req: u64, result: Outcome) {
        if let Some(slot) = self.replies.get_mut(&(Arc::<str>::from(from), req)) {
            *slot = Some(result);
        }
    }
}
