//! The `[limits]` settings, and the cap on a session's requests in flight.

use std::time::Duration;

use super::pump;

/// `limits.max_pending_per_session` when unset: far more than a client keeps in flight at once
/// (the SDKs send one request per call), few enough to keep one session's pending map small.
pub(crate) const DEFAULT_MAX_PENDING_PER_SESSION: usize = 1024;

/// Validates `limits.max_pending_per_session`: at least 1.
pub(crate) fn max_pending_per_session(v: Option<usize>) -> Result<usize, String> {
    match v {
        Some(0) => Err("must be at least 1: a session with no room for a request cannot be used".into()),
        Some(n) => Ok(n),
        None => Ok(DEFAULT_MAX_PENDING_PER_SESSION),
    }
}

/// Bounds that keep one client from hurting the rest.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body (413 past it).
    pub max_body: usize,
    /// Sessions this instance holds at once (503 past it).
    pub max_sessions: usize,
    /// Sessions one principal holds on this instance (429 past it).
    pub max_sessions_per_principal: usize,
    /// Child processes running at once; a session past it fails to start its upstream.
    pub max_children: usize,
    /// Requests one session may have in flight (429 past it).
    pub max_pending_per_session: usize,
    /// An upstream request unanswered this long gets a JSON-RPC error (and is cancelled
    /// upstream); the session goes on.
    pub request_timeout: Option<Duration>,
    /// A client must send its request headers within this (slow-loris guard).
    pub header_read_timeout: Duration,
    /// A write to a client blocked this long closes the connection (a client that stopped
    /// reading); its events wait in the session's log for a resume.
    pub write_timeout: Duration,
    /// `upstream_stall`, `max_message` and `upstream_queue_bytes` (see `config/pump.rs`).
    pub pump: pump::PumpLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 8 * 1024 * 1024,
            max_sessions: 100_000,
            max_sessions_per_principal: 10_000,
            max_children: 1024,
            max_pending_per_session: DEFAULT_MAX_PENDING_PER_SESSION,
            request_timeout: Some(Duration::from_secs(600)),
            header_read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            pump: pump::PumpLimits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zero_is_refused_and_unset_is_the_default() {
        assert!(super::max_pending_per_session(Some(0)).is_err());
        assert_eq!(super::max_pending_per_session(Some(3)), Ok(3));
        assert_eq!(super::max_pending_per_session(None), Ok(super::DEFAULT_MAX_PENDING_PER_SESSION));
    }
}
