//! Queueing client messages to a session's upstream with a bounded wait. A queue full in
//! messages or in bytes (`limits.upstream_queue_bytes`) makes the sender wait at most
//! [`QUEUE_WAIT`], then fail with [`SendError::Busy`] (503 for the HTTP client):
//! backpressure from a slow upstream reaches the client, never the pump.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{journal, SendError, Session, Target};
use crate::protocol::jsonrpc::{self, Kind, Peek};
use crate::upstream::QUEUE;

/// Longest wait for room in an upstream's queue. Shorter than the cluster's RPC timeout, so
/// that a forwarded send is answered (503) before the forwarding instance gives up on the owner.
pub(super) const QUEUE_WAIT: Duration = Duration::from_secs(3);

impl Session {
    /// Registers and queues `messages` (see [`Session::send`]). A batch waits for room for all
    /// of its messages (and bytes) at once, so it is queued whole or, after [`QUEUE_WAIT`], not at all.
    /// Only a batch longer than the queue itself goes in parts; a part that finds no room is
    /// answered with errors, as the earlier parts are already upstream.
    pub(super) async fn enqueue(&self, mut messages: Vec<(Bytes, Peek)>, stream: Target) -> Result<(), SendError> {
        let tx = self.upstream_tx()?;
        let again = self.take_lost(&mut messages, stream);
        if !again.is_empty() {
            let again = self.register(again, stream)?;
            self.refuse(&again, "the instance that was serving this request died; it was not completed");
        }
        if messages.is_empty() {
            return self.register(Vec::new(), stream).map(drop);
        }
        let deadline = Instant::now() + QUEUE_WAIT;
        let mut first = true;
        while !messages.is_empty() {
            let rest = messages.split_off(messages.len().min(QUEUE));
            let part = std::mem::replace(&mut messages, rest);
            let sizes: Vec<usize> = part.iter().map(|(raw, _)| raw.len()).collect();
            match tokio::time::timeout_at(deadline, tx.reserve(&sizes)).await {
                Ok(Ok(room)) => {
                    let part = self.register(part, stream)?;
                    room.send(part.into_iter().map(|(raw, _)| {
                        let n = raw.len();
                        (raw, n)
                    }));
                }
                Ok(Err(_)) => {
                    // The upstream is gone: the session task is ending the session, which
                    // answers every registered request with an error.
                    self.register(part, stream)?;
                    return self.register(messages, stream).map(drop);
                }
                Err(_) if first => return Err(SendError::Busy(QUEUE_WAIT)),
                Err(_) => {
                    messages.splice(0..0, part);
                    let messages = self.register(messages, stream)?;
                    let why = format!("the upstream's queue stayed full for {QUEUE_WAIT:?}; this request was not sent");
                    self.refuse(&messages, &why);
                    return Ok(());
                }
            }
            first = false;
        }
        Ok(())
    }

    /// Takes out of `messages` the requests this session already answered as lost when it
    /// took over (sent again by an instance that forwarded them to the dead owner and could not
    /// tell they arrived): none reaches the upstream again. One sent to the stream the lost
    /// answer went to is dropped (that stream has its answer); the others are returned, to be
    /// answered on their own stream.
    fn take_lost(&self, messages: &mut Vec<(Bytes, Peek)>, stream: Target) -> Vec<(Bytes, Peek)> {
        let st = self.state();
        if st.lost.is_empty() {
            return Vec::new();
        }
        let mut again = Vec::new();
        messages.retain(|m| {
            let Some(answered_on) = m.1.id.as_ref().filter(|_| m.1.kind == Kind::Request).and_then(|id| st.lost.get(id)) else {
                return true;
            };
            tracing::info!(session = %self.id, request = m.1.id.as_deref().unwrap_or(""), "a request the dead owner had taken came again; it was answered as lost");
            if stream != Target::Stream(*answered_on) {
                again.push(m.clone());
            }
            false
        });
        again
    }

    /// Answers registered requests that never reached the upstream with an error.
    fn refuse(&self, messages: &[(Bytes, Peek)], why: &str) {
        let mut st = self.state();
        for (_, peek) in messages.iter().filter(|(_, p)| p.kind == Kind::Request) {
            let Some(id) = &peek.id else { continue };
            let Some(p) = st.pending.remove(id) else { continue };
            if let Some(t) = &p.progress_token {
                st.progress.remove(t);
            }
            let msg = format!("mcp-bridge: {why}");
            let _ = st.push(p.stream, jsonrpc::error(Some(id), jsonrpc::code::INTERNAL_ERROR, &msg), true);
            let id = id.clone();
            st.persist(|| journal::Entry::Answered { id });
        }
    }
}
