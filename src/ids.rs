//! The ground's names: a session's id, its transport, and why a stream or session ended; and
//! the wall clock as records, heartbeats and the cluster wire carry it. Every floor above uses
//! them; they use nothing of the crate.

use std::fmt;

/// The wall clock in Unix milliseconds (0 before 1970).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// 128 random bits, printed as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    pub fn random() -> SessionId {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).expect("the OS random source is available");
        SessionId(b)
    }

    /// Parses 32 hex digits; anything else is `None`.
    pub fn parse(s: &str) -> Option<SessionId> {
        let mut b = [0u8; 16];
        // Only the form `Display` prints: lower-case digits, exactly 32 of them.
        if s.bytes().any(|c| c.is_ascii_uppercase()) {
            return None;
        }
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(SessionId(b))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; 32];
        hex::encode_to_slice(self.0, &mut text).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The 2024-11-05 HTTP+SSE transport: `GET /sse/{name}` plus a message endpoint.
    Sse,
    /// Streamable HTTP: `/mcp/{name}`.
    Streamable,
    /// An upstream session the bridge opened itself to serve 2026-07-28 (stateless) requests
    /// (see the stateless module); no client knows its id.
    Stateless,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Streamable => "streamable_http",
            Transport::Stateless => "stateless",
        }
    }

    pub fn parse(s: &str) -> Option<Transport> {
        [Transport::Sse, Transport::Streamable, Transport::Stateless].into_iter().find(|t| t.as_str() == s)
    }
}

/// Declares `CloseReason` from one list: each variant with the name the logs, metrics and the
/// cluster wire use, so that `as_str` and `parse` cannot drift apart.
macro_rules! close_reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a stream or a session ended. Every lifecycle log line carries one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum CloseReason {
            $($(#[$doc])* $variant,)*
        }

        impl CloseReason {
            pub const ALL: &'static [CloseReason] = &[$(CloseReason::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(CloseReason::$variant => $name,)*
                }
            }

            pub fn parse(s: &str) -> Option<CloseReason> {
                Self::ALL.iter().copied().find(|r| r.as_str() == s)
            }
        }
    };
}

close_reasons! {
    ClientClosed => "client_closed",
    /// A POST stream delivered every response it was opened for.
    Completed => "completed",
    UpstreamExited => "upstream_exited",
    UpstreamFailedToStart => "upstream_failed_to_start",
    /// The child read none of its stdin for `limits.upstream_stall` while messages waited.
    UpstreamStalled => "upstream_stalled",
    Shutdown => "shutdown",
    /// The client read too slowly; its queue filled. The events stay in the log.
    SlowConsumer => "slow_consumer",
    IdleTimeout => "idle_timeout",
    /// The client sent DELETE.
    Deleted => "deleted",
    /// Events a client never received had to be evicted from the log.
    EventLogOverflow => "event_log_overflow",
    /// The configured maximum stream lifetime passed; the client polls back.
    StreamLifetime => "stream_lifetime",
    /// The client opened a new stream in place of this one.
    Replaced => "replaced",
    /// Another instance of the cluster owns the session now.
    Moved => "moved",
    /// A 2026-07-28 request was cancelled (its client closed the response, or the bridge timed
    /// it out): the backing session serving it is ended.
    Cancelled => "cancelled",
    Error => "error",
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_round_trip_by_name() {
        for r in CloseReason::ALL {
            assert_eq!(CloseReason::parse(r.as_str()), Some(*r));
        }
        assert_eq!(CloseReason::parse("nope"), None);
    }

    #[test]
    fn session_ids_are_random_hex_and_parse_strictly() {
        let a = SessionId::random();
        assert_ne!(a, SessionId::random());
        let s = a.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(SessionId::parse(&s), Some(a));
        assert_eq!(SessionId::parse(&s.to_uppercase()).filter(|_| s.chars().any(|c| c.is_ascii_alphabetic())), None);
        assert_eq!(SessionId::parse("../../etc/passwd"), None);
        assert_eq!(SessionId::parse("0123456789abcdef0123456789abcdeg"), None);
    }
}
