//! The `[sessions]` keys that bound event-log memory in bytes (`event_log_bytes`,
//! `max_event_log_memory`), and the byte sizes they take: `16777216`, `"16MiB"`, `"512 KiB"`.

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Each session's logs hold at most this many bytes, across its streams.
pub(super) const EVENT_LOG_BYTES: u64 = 16 << 20;
/// All sessions' logs hold at most this many bytes together.
pub(super) const MAX_EVENT_LOG_MEMORY: u64 = 1 << 30;

/// A count of bytes, written as an integer or as a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ByteSize(pub(super) u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => byte_size(&s).map(ByteSize).map_err(de::Error::custom),
        }
    }
}

/// Parses `123`, `123B`, `64KiB`, `16MiB`, `1GiB` (powers of 1024) or `8KB`, `8MB`, `1GB`
/// (powers of 1000); the unit is case-insensitive and may follow a space.
pub(super) fn byte_size(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{v}` is not a size like `16MiB` or `1048576`"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("`{v}`: unknown unit `{other}` (use B, KiB, MiB, GiB, KB, MB or GB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{v}` is too large"))
}

/// `event_log_bytes` and `max_event_log_memory` with their defaults, or the key at fault and why.
pub(super) fn log_memory(bytes: Option<ByteSize>, max: Option<ByteSize>) -> Result<(u64, u64), (&'static str, String)> {
    let bytes = bytes.map_or(EVENT_LOG_BYTES, |b| b.0);
    let max = max.map_or(MAX_EVENT_LOG_MEMORY, |b| b.0);
    if bytes == 0 {
        return Err(("sessions.event_log_bytes", "must be at least 1 byte: a session must be able to log a message".into()));
    }
    if max < bytes {
        return Err((
            "sessions.max_event_log_memory",
            format!("{max} bytes is less than sessions.event_log_bytes ({bytes}): one session could not use its share"),
        ));
    }
    Ok((bytes, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_units() {
        for (v, n) in
            [("0", 0), ("123", 123), ("10B", 10), ("64KiB", 65536), ("16 MiB", 16 << 20), ("1gib", 1 << 30), ("8MB", 8_000_000)]
        {
            assert_eq!(byte_size(v), Ok(n), "{v}");
        }
        for bad in ["", "MiB", "-1", "1.5MiB", "12 parsecs", "99999999999999999999GiB"] {
            assert!(byte_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_checks() {
        assert_eq!(log_memory(None, None), Ok((16 << 20, 1 << 30)));
        assert_eq!(log_memory(Some(ByteSize(0)), None).unwrap_err().0, "sessions.event_log_bytes");
        assert_eq!(log_memory(Some(ByteSize(100)), Some(ByteSize(99))).unwrap_err().0, "sessions.max_event_log_memory");
    }
}
