//! The sessions this instance holds, by id. Creating a session spawns the task that drives
//! it; the task removes the session when it ends.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{Session, SessionId};

#[derive(Default)]
pub(crate) struct Registry {
    sessions: RwLock<HashMap<SessionId, Arc<Session>>>,
}

impl Registry {
    /// Registers a session made by `Session::new` and starts the task that drives it.
    pub(crate) fn start(self: &Arc<Self>, session: Arc<Session>) -> Arc<Session> {
        let session = self.start_idle(session);
        session.needs_task();
        session
    }

    /// Registers a session whose client stream attaches at once (a legacy SSE GET): its task
    /// starts when it is first needed (see [`Session::needs_task`]). Until then the session
    /// costs no task: an idle stream's session has nothing to do.
    pub(crate) fn start_idle(self: &Arc<Self>, session: Arc<Session>) -> Arc<Session> {
        self.sessions.write().unwrap_or_else(|e| e.into_inner()).insert(session.id, session.clone());
        session
    }

    /// Spawns the task that drives `session`; the task removes the session when it ends.
    pub(super) fn spawn_task(self: &Arc<Self>, session: Arc<Session>) {
        let registry = Arc::downgrade(self);
        let task = session;
        tokio::spawn(async move {
            let id = task.id;
            task.run().await;
            if let Some(registry) = registry.upgrade() {
                registry.sessions.write().unwrap_or_else(|e| e.into_inner()).remove(&id);
            }
        });
    }

    pub(crate) fn contains(&self, id: SessionId) -> bool {
        self.sessions.read().unwrap_or_else(|e| e.into_inner()).contains_key(&id)
    }

    pub(crate) fn get(&self, id: SessionId) -> Option<Arc<Session>> {
        self.sessions.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    /// Sessions held here for `principal`.
    pub(crate) fn count_for(&self, principal: &str) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| s.principal.as_deref() == Some(principal))
            .count()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Session>> {
        self.sessions.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Removes a session that ended through a request (DELETE).
    pub(crate) fn remove(&self, id: SessionId) -> Option<Arc<Session>> {
        self.sessions.write().unwrap_or_else(|e| e.into_inner()).remove(&id)
    }
}
