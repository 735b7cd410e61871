//! Durations in the file (`15s`, `5m`, `off`): humantime's grammar, bounded so a deadline
//! computed from one cannot overflow.

use std::time::Duration;

/// A heartbeat interval: a duration, or `off`/`0s` for none.
pub fn parse_interval(v: &str) -> Result<Option<Duration>, String> {
    if v == "off" {
        return Ok(None);
    }
    duration(v).map(|d| Some(d).filter(|d| !d.is_zero()))
}

/// The longest duration accepted: ample for any setting, and short enough that a deadline
/// computed from it (`Instant::now() + d`) cannot overflow and panic a session task.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `v` parsed as a duration (`key` names it in the error), or `default` when absent.
pub(super) fn duration_or<E>(
    key: &str,
    v: &Option<String>,
    default: Duration,
    invalid: &dyn Fn(&str, String) -> E,
) -> Result<Duration, E> {
    v.as_deref().map(|v| duration(v).map_err(|r| invalid(key, r))).transpose().map(|o| o.unwrap_or(default))
}

pub(super) fn duration(v: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(v).map_err(|e| format!("`{v}` is not a duration like `15s` or `5m` ({e})"))?;
    if d > MAX_DURATION {
        return Err(format!("`{v}` is longer than 100 years"));
    }
    Ok(d)
}
