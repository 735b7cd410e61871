//! What every session shares: the upstream context it starts its upstream with, and what only
//! sessions read (server health, the list changes of backing sessions, the journal).

use std::sync::{Arc, Weak};

use crate::health::Health;
use crate::upstream;

use super::changes::Changes;
use super::journal::Journal;
use super::registry::Registry;

/// The environment a session lives in; cloned into each.
#[derive(Clone)]
pub struct Env {
    /// What the session's upstream is started with.
    pub upstream: upstream::Context,
    /// Crashes and successful initializes of each server (the crash-loop backoff).
    pub health: Arc<Health>,
    /// List changes on 2026-07-28 backing sessions, for listen streams.
    pub(crate) changes: Arc<Changes>,
    /// Set in cluster mode: sessions write down what another instance needs to take them
    /// over (the cluster implements it).
    pub(crate) journal: Option<Arc<dyn Journal>>,
    /// The registry the sessions are held in, which spawns their tasks (set by `Locator::new`).
    pub(crate) registry: Weak<Registry>,
}
