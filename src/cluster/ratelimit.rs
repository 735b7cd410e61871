//! The per-principal rate shared by the instances of a cluster (`[auth.rate_limits] per_principal`):
//! one GCRA bucket per principal in Redis, so that three instances allow the configured rate,
//! not three times it. The bucket is one key, `mcpb:{rl:HASH}` (HASH: the first 16 bytes of the
//! principal's SHA-256, so no client string becomes a key), holding the theoretical arrival time
//! in microseconds of Redis's own clock, updated by one script per request and expiring once the
//! bucket is full again. Self-contained: only `http::ratelimit` asks, through
//! [`Cluster::take_shared_token`]; in-flight caps stay per instance.

use std::num::NonZeroU32;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Cluster, ClusterError};

/// GCRA: refuse while the theoretical arrival time is more than the burst's tolerance ahead of
/// now (answering how many microseconds to wait), else move it one interval on. ARGV: the
/// interval and the tolerance, in microseconds.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then return math.ceil(wait) end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return 0
";

/// The bucket's key for `principal`.
fn key(principal: &str) -> String {
    let hash = Sha256::digest(principal.as_bytes());
    format!("mcpb:{{rl:{}}}", hex::encode(&hash[..16]))
}

impl Cluster {
    /// Takes one token from `principal`'s shared bucket (`rate` per second, `burst` at once):
    /// `None` when taken, else how long until one is back.
    pub(crate) async fn take_shared_token(
        &self,
        principal: &str,
        rate: NonZeroU32,
        burst: NonZeroU32,
    ) -> Result<Option<Duration>, ClusterError> {
        let interval = 1_000_000 / u64::from(rate.get()).max(1);
        let tolerance = interval * u64::from(burst.get() - 1);
        let mut conn = self.conn();
        let wait: u64 = redis::Script::new(TAKE).key(key(principal)).arg(interval).arg(tolerance).invoke_async(&mut conn).await?;
        Ok((wait > 0).then(|| Duration::from_micros(wait)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_hash_the_principal_and_keep_one_slot() {
        let k = super::key("jwt:https://idp#alice");
        assert!(k.starts_with("mcpb:{rl:") && k.ends_with('}') && k.len() == "mcpb:{rl:}".len() + 32, "{k}");
        assert_ne!(k, super::key("bob"));
    }
}
