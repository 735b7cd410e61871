//! Which remote upstream a 2026-07-28 request is passed through to: one that serves a modern
//! revision itself (its `server/discover` says so). A pooled server's instance is chosen as a
//! session's is, by the pool's balance and circuit breaker (`upstream::pool`): an instance the
//! probe cannot reach counts as a failure and the next one is tried, and an instance whose
//! breaker is open is skipped. What the passed-through request itself meets is reported to the
//! breaker by the caller ([`Target::report`]).

use std::collections::BTreeMap;

use super::Pool;
use crate::config::ServerConfig;
use crate::locator::Locator;
use crate::protocol::MODERN_VERSIONS;
use crate::upstream::pool::Lease;

/// Where one passed-through request goes: the URL, and with a pool the instance's lease (held
/// while the request runs, so that `least-sessions` counts it).
pub(crate) struct Target {
    url: String,
    lease: Option<Lease>,
}

impl Target {
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Feeds the instance's circuit breaker: `ok` is false when the instance could not be
    /// reached or failed (a 5xx); an answer the client caused (a 4xx with its JSON-RPC error)
    /// is a healthy instance's.
    pub(crate) fn report(&self, ok: bool) {
        if let Some(l) = &self.lease {
            l.report(ok);
        }
    }
}

fn modern(versions: Option<Vec<String>>) -> bool {
    versions.is_some_and(|v| v.iter().any(|s| MODERN_VERSIONS.contains(&s.as_str())))
}

impl Pool {
    /// The remote upstream at `url` (or, for a pooled server, the instance the pool picks) if it
    /// serves a modern revision itself; `None` sends the request through a backing session.
    pub(crate) async fn passthrough_target(
        &self,
        locator: &Locator,
        server: &ServerConfig,
        http: &reqwest::Client,
        url: &str,
        headers: &BTreeMap<String, String>,
    ) -> Option<Target> {
        let Some(spec) = &server.pool else {
            let versions = locator.env.upstream.eras.supported(http, url, headers).await;
            return modern(versions).then(|| Target { url: url.to_string(), lease: None });
        };
        let pool = locator.env.upstream.pools.get(&server.name, spec, http, headers);
        let mut tried = Vec::new();
        while let Some(lease) = pool.pick(&tried) {
            match locator.env.upstream.eras.probe(http, lease.url(), headers).await {
                Ok(versions) => {
                    let url = lease.url().to_string();
                    return modern(versions).then_some(Target { url, lease: Some(lease) });
                }
                Err(detail) => {
                    lease.report(false);
                    tracing::warn!(server = %server.name, url = %lease.url(), "pool instance unreachable for a 2026-07-28 request, trying the next: {detail}");
                    tried.push(lease.index());
                }
            }
        }
        None
    }
}
