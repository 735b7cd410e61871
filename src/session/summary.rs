//! What the admin API shows of a session: its summary and its recent requests.

use tokio::time::Instant;

use super::{Live, Session, UpstreamState};

/// Requests kept per session for the admin timeline.
pub(super) const TIMELINE: usize = 64;

/// One request in a session's recent history (the admin API's timeline).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TimelineEntry {
    pub method: std::borrow::Cow<'static, str>,
    pub id: String,
    /// Unix milliseconds when the request went upstream.
    pub at_ms: u64,
    pub latency_ms: Option<f64>,
    /// `pending`, `ok`, `error` or `timeout`.
    pub outcome: &'static str,
}

/// What the admin API shows of a session.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub id: String,
    pub server: String,
    pub transport: &'static str,
    pub principal: Option<String>,
    pub age_ms: u64,
    pub idle_ms: u64,
    pub protocol_version: Option<String>,
    pub streams: usize,
    pub attached: usize,
    pub events: u64,
    pub bytes: u64,
    pub pending: usize,
    pub upstream: &'static str,
}

impl Session {
    /// What the admin API lists.
    pub fn summary(&self) -> Summary {
        let st = self.state();
        let now = Instant::now();
        Summary {
            id: self.id.to_string(),
            server: self.server.name.clone(),
            transport: self.transport.as_str(),
            principal: self.principal.as_deref().map(str::to_string),
            age_ms: now.duration_since(self.created).as_millis() as u64,
            idle_ms: now.duration_since(st.last_activity).as_millis() as u64,
            protocol_version: st.protocol_version.clone(),
            streams: st.streams.len(),
            attached: st.streams.values().filter(|s| s.live.as_ref().is_some_and(Live::reading)).count(),
            events: st.events,
            bytes: st.bytes,
            pending: st.pending.len(),
            upstream: match st.upstream {
                UpstreamState::NotStarted => "not_started",
                UpstreamState::Running(_) => "running",
                UpstreamState::Ended => "ended",
            },
        }
    }

    /// The session's recent requests, oldest first.
    pub fn timeline(&self) -> Vec<TimelineEntry> {
        self.state().timeline.iter().cloned().collect()
    }
}
