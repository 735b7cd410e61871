//! List changes seen on any backing session of a server, for the 2026-07-28 listen streams
//! (`subscriptions/listen`) of the same principal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

type ChangeSender = tokio::sync::broadcast::Sender<Bytes>;
/// A server and the principal whose listen streams hear its list changes.
type ChangeKey = (String, Option<Arc<str>>);

/// List changes seen on any backing session of a server, for the listen streams of the same
/// principal: with a child per backing session, the `tools/call` that changes the tools runs on
/// another session than the listen stream's.
#[derive(Default)]
pub(crate) struct Changes {
    channels: Mutex<HashMap<ChangeKey, ChangeSender>>,
}

impl Changes {
    fn channel(&self, server: &str, principal: Option<&Arc<str>>) -> tokio::sync::broadcast::Sender<Bytes> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, tx| tx.receiver_count() > 0);
        map.entry((server.to_string(), principal.cloned())).or_insert_with(|| tokio::sync::broadcast::channel(64).0).clone()
    }

    /// A `notifications/*/list_changed` from a backing session.
    pub(crate) fn publish(&self, server: &str, principal: Option<&Arc<str>>, raw: &Bytes) {
        let key = (server.to_string(), principal.cloned());
        if let Some(tx) = self.channels.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            let _ = tx.send(raw.clone());
        }
    }

    pub(crate) fn subscribe(&self, server: &str, principal: Option<&Arc<str>>) -> tokio::sync::broadcast::Receiver<Bytes> {
        self.channel(server, principal).subscribe()
    }
}
