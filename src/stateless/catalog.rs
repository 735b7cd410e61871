//! The tool lists REST callers see, per (server, principal), kept between calls: a call checks
//! its tool against it and the OpenAPI documents are built from it. A list is dropped as soon
//! as any backing session of that server and principal says its tools changed
//! (`notifications/tools/list_changed`, through `session::changes`), so the next reader fetches
//! it again. A leaf lock: held only to read or replace an entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::protocol::method;
use crate::session::changes::Changes;

type Key = (String, Option<Arc<str>>);

/// One server's tools as one principal's backing sessions listed them.
struct Listing {
    tools: Arc<Vec<serde_json::Value>>,
    /// The server's list changes since the list was fetched.
    changes: broadcast::Receiver<Bytes>,
}

impl Listing {
    /// Whether a `tools/list_changed` arrived since the list was fetched (a lagged or closed
    /// channel may have lost one: stale too).
    fn stale(&mut self) -> bool {
        loop {
            match self.changes.try_recv() {
                Ok(raw) if is_tools_change(&raw) => return true,
                Ok(_) => continue,
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Lagged(_) | TryRecvError::Closed) => return true,
            }
        }
    }
}

fn is_tools_change(raw: &[u8]) -> bool {
    crate::protocol::jsonrpc::peek(raw).is_ok_and(|p| p.method.as_deref() == Some(method::TOOLS_LIST_CHANGED))
}

/// The kept tool lists.
#[derive(Default)]
pub(crate) struct Catalog {
    lists: Mutex<HashMap<Key, Listing>>,
}

/// Watching a server's list changes from before a list is fetched, so that a change during
/// the fetch is not missed.
pub(crate) struct Watch(broadcast::Receiver<Bytes>);

impl Catalog {
    /// The tools of `server` as `principal` last listed them, unless they changed since.
    pub(crate) fn tools(&self, server: &str, principal: Option<&Arc<str>>) -> Option<Arc<Vec<serde_json::Value>>> {
        let key = (server.to_string(), principal.cloned());
        let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        let listing = lists.get_mut(&key)?;
        if listing.stale() {
            lists.remove(&key);
            drop(lists);
            tracing::info!(server, principal = ?principal, "the server's tools changed: its REST tool list and OpenAPI documents are rebuilt");
            return None;
        }
        Some(listing.tools.clone())
    }

    /// Starts watching for changes before a fetch.
    pub(crate) fn watch(changes: &Changes, server: &str, principal: Option<&Arc<str>>) -> Watch {
        Watch(changes.subscribe(server, principal))
    }

    /// Keeps a fetched list (until the watch sees a change).
    pub(crate) fn keep(
        &self,
        server: &str,
        principal: Option<&Arc<str>>,
        tools: Vec<serde_json::Value>,
        watch: Watch,
    ) -> Arc<Vec<serde_json::Value>> {
        let tools = Arc::new(tools);
        let mut listing = Listing { tools: tools.clone(), changes: watch.0 };
        if !listing.stale() {
            let key = (server.to_string(), principal.cloned());
            self.lists.lock().unwrap_or_else(|e| e.into_inner()).insert(key, listing);
        }
        tools
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tools_change_drops_the_list() {
        let changes = Changes::default();
        let catalog = Catalog::default();
        let p: Arc<str> = "alice".into();
        let watch = Catalog::watch(&changes, "s", Some(&p));
        catalog.keep("s", Some(&p), vec![serde_json::json!({"name": "a"})], watch);
        assert_eq!(catalog.tools("s", Some(&p)).map(|t| t.len()), Some(1));
        assert!(catalog.tools("s", None).is_none(), "another principal's list is its own");
        let prompts = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}"#);
        changes.publish("s", Some(&p), &prompts);
        assert!(catalog.tools("s", Some(&p)).is_some(), "a prompts change keeps the tools");
        let tools = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
        changes.publish("s", Some(&p), &tools);
        assert!(catalog.tools("s", Some(&p)).is_none());
    }
}
