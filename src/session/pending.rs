//! The requests of a session waiting for their answers: an id is in flight at most once, a
//! request the session cannot take is answered at once on its own stream, never sent upstream,
//! and a request in flight keeps its session from idle expiry.

use std::collections::HashSet;

use bytes::Bytes;

use super::{State, DISCARD};
use crate::jsonrpc::{self, code, Kind, Peek};

impl State {
    /// Client requests waiting for their answers (the bridge's own do not count). One keeps
    /// its session from idle expiry.
    pub(super) fn in_flight(&self) -> usize {
        self.pending.values().filter(|p| p.stream != DISCARD).count()
    }

    /// Drops from `messages` each request the session cannot take, answering it at once on
    /// `stream`: an id already in flight, or twice in the batch, gets -32600 (the request
    /// holding it is unaffected). What is left goes upstream.
    pub(super) fn admit(&mut self, messages: Vec<(Bytes, Peek)>, stream: u32) -> Vec<(Bytes, Peek)> {
        if stream == DISCARD {
            return messages;
        }
        let mut seen: HashSet<Box<str>> = HashSet::new();
        let mut out = Vec::with_capacity(messages.len());
        for (raw, peek) in messages {
            let id = peek.id.clone().filter(|_| peek.kind == Kind::Request);
            let Some(id) = id else {
                out.push((raw, peek));
                continue;
            };
            if self.pending.contains_key(&id) || !seen.insert(id.clone()) {
                let msg = "Invalid Request: id already in use by a request in flight";
                let _ = self.push(stream, jsonrpc::error(Some(&id), code::INVALID_REQUEST, msg), true);
                continue;
            }
            out.push((raw, peek));
        }
        out
    }
}
