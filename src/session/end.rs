//! How requests and sessions end: a request unanswered past the request timeout, requests
//! lost with a dead owner, and the session itself (once, answering what is still pending).

use bytes::Bytes;
use tokio::time::Instant;

use super::{journal, Pending, Session, Target, Transport, UpstreamState};
use crate::ids::CloseReason;
use crate::metrics;
use crate::protocol::jsonrpc;

impl Session {
    /// Ends the session once: pending requests get a JSON-RPC error on their streams, every
    /// attached stream closes with `reason`, and the upstream (with its child) is dropped.
    pub fn end(&self, reason: CloseReason, detail: &str) {
        let upstream = {
            let mut st = self.state();
            if st.ended.is_some() {
                return;
            }
            // A session another instance took over (moved) is answered there: its pending
            // requests are the new owner's to fail, and its records are no longer this one's.
            // Otherwise what its task holds for the journal goes out before the streams close.
            let moved = reason == CloseReason::Moved;
            if moved {
                let (held, answers) = std::mem::take(&mut st.hold).counts();
                if held > 0 {
                    // Not silent: the new owner answers (with errors) only the requests it
                    // read as pending; one whose pending entry never reached Redis is lost.
                    tracing::warn!(
                        session = %self.id, held, answers,
                        "dropped upstream messages held for the client: another instance took the session over meanwhile"
                    );
                }
            } else {
                st.release();
            }
            let pending: Vec<(Box<str>, Pending)> = st.pending.drain().collect();
            for (id, p) in pending.into_iter().filter(|_| !moved) {
                let msg = format!("mcp-bridge: session ended ({reason}): {detail}");
                let _ = st.push(p.stream, jsonrpc::error(Some(&id), jsonrpc::code::INTERNAL_ERROR, &msg), true);
                st.persist(|| journal::Entry::Answered { id });
            }
            st.ended = Some(reason);
            for s in st.streams.values_mut() {
                if let Some(live) = s.live.take() {
                    live.close(reason);
                }
            }
            // A session handed over (shutdown) or taken by another instance (moved) lives on
            // there: its records in Redis are the new owner's now.
            if !matches!(reason, CloseReason::Shutdown | CloseReason::Moved) {
                st.persist(|| journal::Entry::Forget);
            }
            // The events receiver too, if the task had not taken it yet.
            st.started = None;
            std::mem::replace(&mut st.upstream, UpstreamState::Ended)
        };
        drop(upstream);
        let labels = metrics::Session { server: self.server.name.clone(), transport: self.transport.as_str() };
        metrics::get().sessions_open.get_or_create(&labels).dec();
        if matches!(reason, CloseReason::UpstreamExited | CloseReason::UpstreamFailedToStart) {
            self.env.health.crashed(&self.server.name, detail);
        }
        tracing::info!(session = %self.id, server = %self.server.name, transport = self.transport.as_str(), reason = %reason, detail, "session ended");
        self.wake.notify_one();
        // The task takes the session out of the registry.
        self.needs_task();
    }

    /// Answers requests unanswered past the request timeout with an error, and cancels them
    /// upstream; returns the time until the next one is due.
    pub(super) fn expire_requests(&self) -> Option<std::time::Duration> {
        let timeout = self.settings.request_timeout?;
        let now = Instant::now();
        // One pass under one lock: this runs after every upstream message, and nearly always
        // finds nothing due and only the next deadline to compute.
        let mut st = self.state();
        let mut next: Option<std::time::Duration> = None;
        let mut due: Vec<Box<str>> = Vec::new();
        for (id, p) in st.pending.iter().filter(|(_, p)| p.stream != Target::Discard) {
            match (p.since + timeout).checked_duration_since(now).filter(|d| !d.is_zero()) {
                Some(left) => next = Some(next.map_or(left, |n| n.min(left))),
                None => due.push(id.clone()),
            }
        }
        let expired = !due.is_empty();
        for id in due {
            let Some(p) = st.pending.remove(&id) else { continue };
            if let Some(t) = &p.progress_token {
                st.progress.remove(t);
            }
            let msg = format!("mcp-bridge: the upstream did not answer within {timeout:?} (limits.request_timeout)");
            let _ = st.push(p.stream, jsonrpc::error(Some(&id), jsonrpc::code::REQUEST_TIMEOUT, &msg), true);
            if let Some(entry) = st.timeline.iter_mut().rev().find(|e| metrics::is_clip_of(&e.id, &id)) {
                entry.outcome = "timeout";
            }
            tracing::warn!(session = %self.id, server = %self.server.name, request = %id, "upstream request timed out");
            if let UpstreamState::Running(up) = &st.upstream {
                let cancel = format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id},"reason":"timed out in mcp-bridge"}}}}"#
                );
                let _ = up.tx.try_send(Bytes::from(cancel));
            }
            st.persist(|| journal::Entry::Answered { id });
        }
        drop(st);
        // `notifications/cancelled` is advisory: the upstream may still be working on the
        // request, and a backing session must not serve the next client while it does.
        if expired && self.transport == Transport::Stateless {
            self.end(CloseReason::Cancelled, "a request timed out and the upstream may still work on it");
        }
        next
    }

    /// The requests the dead owner answered (on these streams): one sent again on its stream is
    /// not delivered again (see `State::admit`).
    pub fn answered_before(&self, done: Vec<(Box<str>, u32)>) {
        let mut st = self.state();
        for (id, stream) in done {
            st.answered.record(&id, Target::Stream(stream), None);
        }
    }

    /// Answers requests that were in flight on a dead owner with a JSON-RPC error.
    pub fn fail_lost(&self, lost: Vec<(Box<str>, u32)>) {
        let msg = "mcp-bridge: the instance that was serving this request died; it was not completed";
        let errors: Vec<_> = lost
            .into_iter()
            .map(|(id, stream)| (jsonrpc::error(Some(&id), jsonrpc::code::INTERNAL_ERROR, msg), id, stream))
            .collect();
        let mut st = self.state();
        for (error, id, stream) in errors {
            let _ = st.push(Target::Stream(stream), error, true);
            st.answered.record(&id, Target::Stream(stream), None);
            st.persist(|| journal::Entry::Answered { id });
        }
    }
}
