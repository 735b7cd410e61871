//! The `[limits]` keys of the upstream pumps: `upstream_stall`, `max_message` and
//! `upstream_queue_bytes`.

use std::time::Duration;

/// Bounds on what an upstream may make the bridge wait for or hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PumpLimits {
    /// A child that has not read any of its stdin for this long while a message waits to be
    /// written ends its session (`upstream_stalled`). `None` (`off`): never.
    pub upstream_stall: Option<Duration>,
    /// The most one upstream message may be, in bytes; a larger one is skipped and its request
    /// answered with an error.
    pub max_message: usize,
    /// The most bytes queued between a session and its upstream, in each direction: client
    /// messages waiting for the upstream, and upstream messages waiting for the session task.
    pub queue_bytes: usize,
}

impl Default for PumpLimits {
    fn default() -> Self {
        PumpLimits { upstream_stall: Some(Duration::from_secs(30)), max_message: 8 * 1024 * 1024, queue_bytes: 16 * 1024 * 1024 }
    }
}

/// The smallest `max_message` accepted: an `initialize` answer must fit.
const MIN_MESSAGE: usize = 4096;

impl PumpLimits {
    /// Parses the keys as given in `[limits]`; an error names the key and why.
    pub(super) fn parse(
        upstream_stall: Option<&str>,
        max_message: Option<usize>,
        queue_bytes: Option<usize>,
    ) -> Result<PumpLimits, (&'static str, String)> {
        let d = PumpLimits::default();
        let upstream_stall = match upstream_stall {
            None => d.upstream_stall,
            Some(v) => super::duration::parse_interval(v).map_err(|r| ("limits.upstream_stall", r))?,
        };
        let max_message = max_message.unwrap_or(d.max_message);
        if max_message < MIN_MESSAGE {
            return Err(("limits.max_message", format!("{max_message} bytes is less than the least, {MIN_MESSAGE}")));
        }
        let queue_bytes = queue_bytes.unwrap_or(d.queue_bytes);
        if !(MIN_MESSAGE..=u32::MAX as usize).contains(&queue_bytes) {
            return Err((
                "limits.upstream_queue_bytes",
                format!("{queue_bytes} bytes is not within {MIN_MESSAGE}..={}", u32::MAX),
            ));
        }
        Ok(PumpLimits { upstream_stall, max_message, queue_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_off_and_bounds() {
        assert_eq!(PumpLimits::parse(None, None, None), Ok(PumpLimits::default()));
        assert_eq!(PumpLimits::parse(Some("off"), None, None).map(|p| p.upstream_stall), Ok(None));
        assert_eq!(PumpLimits::parse(Some("2s"), Some(65536), None).map(|p| p.max_message), Ok(65536));
        assert!(PumpLimits::parse(Some("soon"), None, None).is_err_and(|(k, _)| k == "limits.upstream_stall"));
        assert!(PumpLimits::parse(None, Some(10), None).is_err_and(|(k, _)| k == "limits.max_message"));
        assert_eq!(PumpLimits::parse(None, None, Some(1 << 20)).map(|p| p.queue_bytes), Ok(1 << 20));
        assert!(PumpLimits::parse(None, None, Some(10)).is_err_and(|(k, _)| k == "limits.upstream_queue_bytes"));
    }
}
