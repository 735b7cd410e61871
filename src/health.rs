//! Per-server health: a server whose upstream keeps ending (`upstream_exited`) or failing to
//! start (`upstream_failed_to_start`) is marked unhealthy for a backoff period that doubles
//! while the failures go on, and new sessions on it are refused with 503 until then. Both kinds
//! of upstream count: a stdio child that exits or cannot be spawned, and a remote server whose
//! stream ends or that cannot be reached. A successful initialize clears it. `/readyz` shows it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Crashes within [`WINDOW`] that make a crash loop.
const CRASHES: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Default)]
struct State {
    crashes: VecDeque<Instant>,
    unhealthy_until: Option<Instant>,
    backoff: Option<Duration>,
    last_error: Option<String>,
}

/// Health of every configured server.
#[derive(Default)]
pub struct Health {
    servers: Mutex<HashMap<String, State>>,
}

/// What `/readyz` says of one server.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub healthy: bool,
    pub recent_crashes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Health {
    fn with<T>(&self, server: &str, f: impl FnOnce(&mut State) -> T) -> T {
        let mut map = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(server.to_string()).or_default())
    }

    /// Records an upstream crash or failed start.
    pub fn crashed(&self, server: &str, detail: &str) {
        let now = Instant::now();
        self.with(server, |s| {
            s.crashes.push_back(now);
            while s.crashes.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
                s.crashes.pop_front();
            }
            s.last_error = Some(detail.chars().take(300).collect());
            crate::metrics::get().upstream_crashes.get_or_create(&crate::metrics::Server { server: server.to_string() }).inc();
            if s.crashes.len() >= CRASHES {
                let backoff = s.backoff.map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF));
                s.backoff = Some(backoff);
                s.unhealthy_until = Some(now + backoff);
                s.crashes.clear();
                tracing::warn!(
                    server,
                    backoff_ms = backoff.as_millis() as u64,
                    "server is crash-looping: new sessions refused for a while"
                );
            }
        });
    }

    /// Records a successful initialize: the server works.
    pub fn succeeded(&self, server: &str) {
        self.with(server, |s| {
            s.crashes.clear();
            s.backoff = None;
            s.unhealthy_until = None;
        });
    }

    /// `Err(time left)` while the server is in its backoff.
    pub fn admit(&self, server: &str) -> Result<(), Duration> {
        let now = Instant::now();
        self.with(server, |s| match s.unhealthy_until {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        })
    }

    pub fn status(&self, server: &str) -> Status {
        let now = Instant::now();
        self.with(server, |s| {
            let left = s.unhealthy_until.filter(|u| *u > now).map(|u| u - now);
            Status {
                healthy: left.is_none(),
                recent_crashes: s.crashes.len(),
                retry_in_ms: left.map(|d| d.as_millis() as u64),
                last_error: s.last_error.clone(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn crash_loop_backs_off_and_recovers() {
        let h = Health::default();
        for _ in 0..CRASHES - 1 {
            h.crashed("s", "boom");
        }
        assert!(h.admit("s").is_ok(), "a few crashes are not a loop");
        h.crashed("s", "boom");
        assert_eq!(h.admit("s"), Err(FIRST_BACKOFF));
        assert!(!h.status("s").healthy);
        tokio::time::advance(FIRST_BACKOFF).await;
        assert!(h.admit("s").is_ok());
        for _ in 0..CRASHES {
            h.crashed("s", "boom");
        }
        assert_eq!(h.admit("s"), Err(FIRST_BACKOFF * 2), "the backoff doubles");
        h.succeeded("s");
        assert!(h.admit("s").is_ok() && h.status("s").healthy);
    }
}
