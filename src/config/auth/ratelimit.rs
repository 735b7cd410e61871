//! The `[auth.rate_limits]` table: token buckets (requests per second, with a burst) and caps on
//! requests in flight, per principal, per server and per (principal, tool). Validated here into
//! [`RateLimits`]; `http::ratelimit` applies them.

use std::num::NonZeroU32;

use serde::Deserialize;

/// One limit as written: `{ rate = 10, burst = 20, concurrent = 4 }`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BucketModel {
    /// Requests per second, refilled evenly.
    pub rate: Option<u32>,
    /// Requests that may come at once on a full bucket (default: `rate`).
    pub burst: Option<u32>,
    /// Requests in flight at once (a POST until its answer is complete).
    pub concurrent: Option<u32>,
}

/// The `[auth.rate_limits]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitsModel {
    /// Each principal (named client or JWT subject); requests without one are not counted here.
    pub per_principal: Option<BucketModel>,
    /// Each server, over all its clients.
    pub per_server: Option<BucketModel>,
    /// Each (principal, tool): `tools/call`s only.
    pub per_tool: Option<BucketModel>,
}

/// One limit after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// `(rate per second, burst)`, if requests per second are limited.
    pub rate: Option<(NonZeroU32, NonZeroU32)>,
    pub concurrent: Option<NonZeroU32>,
}

/// `[auth.rate_limits]` after validation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub per_principal: Option<Bucket>,
    pub per_server: Option<Bucket>,
    pub per_tool: Option<Bucket>,
}

impl RateLimitsModel {
    /// `Err((key, reason))` names what is wrong.
    pub(crate) fn validate(&self) -> Result<RateLimits, (String, String)> {
        let one = |key: &str, b: &Option<BucketModel>| -> Result<Option<Bucket>, (String, String)> {
            let Some(b) = b else { return Ok(None) };
            let nz =
                |k: &str, v: u32| NonZeroU32::new(v).ok_or((format!("auth.rate_limits.{key}.{k}"), "must be at least 1".into()));
            let rate = match (b.rate, b.burst) {
                (Some(r), burst) => Some((nz("rate", r)?, nz("burst", burst.unwrap_or(r))?)),
                (None, Some(_)) => return Err((format!("auth.rate_limits.{key}.burst"), "needs `rate`".into())),
                (None, None) => None,
            };
            let concurrent = b.concurrent.map(|c| nz("concurrent", c)).transpose()?;
            if rate.is_none() && concurrent.is_none() {
                return Err((format!("auth.rate_limits.{key}"), "needs `rate` or `concurrent`".into()));
            }
            Ok(Some(Bucket { rate, concurrent }))
        };
        Ok(RateLimits {
            per_principal: one("per_principal", &self.per_principal)?,
            per_server: one("per_server", &self.per_server)?,
            per_tool: one("per_tool", &self.per_tool)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_validated() {
        let m: RateLimitsModel = toml::from_str("per_principal = { rate = 5 }\nper_tool = { concurrent = 2 }").unwrap();
        let r = m.validate().unwrap();
        let five = NonZeroU32::new(5).unwrap();
        assert_eq!(r.per_principal, Some(Bucket { rate: Some((five, five)), concurrent: None }));
        assert_eq!(r.per_tool.and_then(|b| b.concurrent).map(NonZeroU32::get), Some(2));
        assert!(r.per_server.is_none());
        for (text, key) in [
            ("per_server = { rate = 0 }", "auth.rate_limits.per_server.rate"),
            ("per_server = { burst = 3 }", "auth.rate_limits.per_server.burst"),
            ("per_server = {}", "auth.rate_limits.per_server"),
            ("per_tool = { rate = 1, concurrent = 0 }", "auth.rate_limits.per_tool.concurrent"),
        ] {
            let m: RateLimitsModel = toml::from_str(text).unwrap();
            assert_eq!(m.validate().err().map(|e| e.0), Some(key.to_string()), "{text}");
        }
    }
}
