//! Pools of remote server instances: new sessions are spread over the healthy instances
//! (round-robin or least-sessions) and stick to theirs. A circuit breaker takes an instance
//! out after consecutive failures (passive checks: failed requests; active checks: a periodic
//! MCP initialize probe) and lets one session try it again after a cool-down that doubles
//! while it keeps failing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Balance, PoolSpec};

/// Consecutive failures that open an instance's breaker.
const FAILURES_TO_OPEN: u32 = 3;
const FIRST_COOLDOWN: Duration = Duration::from_secs(5);
const MAX_COOLDOWN: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    cooldown: Option<Duration>,
}

struct Member {
    url: String,
    sessions: AtomicUsize,
    breaker: Mutex<Breaker>,
}

pub struct Pool {
    members: Vec<Member>,
    balance: Balance,
    next: AtomicUsize,
}

/// A session's place on one instance; gives it back when dropped.
pub struct Lease {
    pool: Arc<Pool>,
    index: usize,
}

impl Lease {
    pub fn url(&self) -> &str {
        &self.pool.members[self.index].url
    }

    pub fn report(&self, ok: bool) {
        self.pool.report(self.index, ok);
    }

    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.members[self.index].sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the admin API shows of one instance.
#[derive(Debug, serde::Serialize)]
pub struct MemberStatus {
    pub url: String,
    pub sessions: usize,
    pub healthy: bool,
    pub failures: u32,
}

impl Pool {
    pub fn new(spec: &PoolSpec) -> Arc<Pool> {
        let members = spec
            .urls
            .iter()
            .map(|u| Member { url: u.clone(), sessions: AtomicUsize::new(0), breaker: Mutex::default() })
            .collect();
        Arc::new(Pool { members, balance: spec.balance, next: AtomicUsize::new(0) })
    }

    /// The lease of the instance at `url` (a session continued on the instance it began on).
    pub fn lease_url(self: &Arc<Self>, url: &str) -> Option<Lease> {
        let index = self.members.iter().position(|m| m.url == url)?;
        self.members[index].sessions.fetch_add(1, Ordering::Relaxed);
        Some(Lease { pool: self.clone(), index })
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn available(&self, i: usize, now: Instant) -> bool {
        self.members[i].breaker.lock().unwrap_or_else(|e| e.into_inner()).open_until.is_none_or(|t| t <= now)
    }

    /// Picks an instance for a new session, skipping `tried`. With every breaker open, the
    /// instance whose cool-down ends first is tried anyway: better a chance than a refusal.
    pub fn pick(self: &Arc<Self>, tried: &[usize]) -> Option<Lease> {
        let now = Instant::now();
        let n = self.members.len();
        let candidates: Vec<usize> = (0..n).filter(|i| !tried.contains(i)).collect();
        if candidates.is_empty() {
            return None;
        }
        let healthy: Vec<usize> = candidates.iter().copied().filter(|&i| self.available(i, now)).collect();
        let pool = if healthy.is_empty() { &candidates } else { &healthy };
        let index = match self.balance {
            Balance::RoundRobin => pool[self.next.fetch_add(1, Ordering::Relaxed) % pool.len()],
            Balance::LeastSessions => *pool.iter().min_by_key(|&&i| self.members[i].sessions.load(Ordering::Relaxed))?,
        };
        let index = if healthy.is_empty() {
            *candidates.iter().min_by_key(|&&i| self.members[i].breaker.lock().unwrap_or_else(|e| e.into_inner()).open_until)?
        } else {
            index
        };
        self.members[index].sessions.fetch_add(1, Ordering::Relaxed);
        Some(Lease { pool: self.clone(), index })
    }

    pub fn report(&self, index: usize, ok: bool) {
        let member = &self.members[index];
        let mut b = member.breaker.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            if b.open_until.is_some() || b.failures > 0 {
                tracing::info!(url = %member.url, "pool instance healthy again");
            }
            *b = Breaker::default();
            return;
        }
        b.failures += 1;
        if b.failures >= FAILURES_TO_OPEN {
            let cooldown = b.cooldown.map_or(FIRST_COOLDOWN, |c| (c * 2).min(MAX_COOLDOWN));
            b.cooldown = Some(cooldown);
            b.open_until = Some(Instant::now() + cooldown);
            b.failures = 0;
            tracing::warn!(url = %member.url, cooldown_ms = cooldown.as_millis() as u64, "pool instance taken out (circuit open)");
        }
    }

    pub fn status(&self) -> Vec<MemberStatus> {
        let now = Instant::now();
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| MemberStatus {
                url: m.url.clone(),
                sessions: m.sessions.load(Ordering::Relaxed),
                healthy: self.available(i, now),
                failures: m.breaker.lock().unwrap_or_else(|e| e.into_inner()).failures,
            })
            .collect()
    }
}

/// The pools of every pooled server, made on first use; probing starts with each.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<String, (PoolSpec, Arc<Pool>)>>,
}

impl Pools {
    /// The pool of `server`, new if its spec changed (a reload).
    pub fn get(
        &self,
        server: &str,
        spec: &PoolSpec,
        http: &reqwest::Client,
        headers: &std::collections::BTreeMap<String, String>,
    ) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, p)) = pools.get(server) {
            if s == spec {
                return p.clone();
            }
        }
        let pool = Pool::new(spec);
        if let Some(every) = spec.health_check_interval {
            tokio::spawn(probe(Arc::downgrade(&pool), every, http.clone(), headers.clone()));
        }
        pools.insert(server.to_string(), (spec.clone(), pool.clone()));
        pool
    }

    pub fn status(&self, server: &str) -> Option<Vec<MemberStatus>> {
        self.pools.lock().unwrap_or_else(|e| e.into_inner()).get(server).map(|(_, p)| p.status())
    }
}

/// Active health checks: an MCP initialize to every instance, then DELETE of the probe session.
async fn probe(pool: Weak<Pool>, every: Duration, http: reqwest::Client, headers: std::collections::BTreeMap<String, String>) {
    let init = serde_json::json!({"jsonrpc": "2.0", "id": "mcp-bridge-probe", "method": "initialize", "params": {
        "protocolVersion": crate::protocol::V2025_11_25, "capabilities": {},
        "clientInfo": {"name": "mcp-bridge-health-check", "version": "1"}}})
    .to_string();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        for (i, m) in pool.members.iter().enumerate() {
            let req = super::with_headers(http.post(&m.url), &headers)
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .timeout(Duration::from_secs(5))
                .body(init.clone());
            let ok = match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    if let Some(sid) = resp.headers().get("mcp-session-id").cloned() {
                        let _ = super::with_headers(http.delete(&m.url), &headers).header("mcp-session-id", sid).send().await;
                    }
                    true
                }
                _ => false,
            };
            pool.report(i, ok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(balance: Balance) -> PoolSpec {
        PoolSpec { urls: vec!["a".into(), "b".into(), "c".into()], balance, health_check_interval: None }
    }

    #[tokio::test(start_paused = true)]
    async fn round_robin_skips_an_open_breaker_and_retries_it_after_the_cooldown() {
        let pool = Pool::new(&spec(Balance::RoundRobin));
        for _ in 0..FAILURES_TO_OPEN {
            pool.report(1, false);
        }
        let picked: Vec<String> = (0..4).map(|_| pool.pick(&[]).unwrap().url().to_string()).collect();
        assert!(!picked.contains(&"b".to_string()), "{picked:?}");
        tokio::time::advance(FIRST_COOLDOWN).await;
        let picked: Vec<String> = (0..3).map(|_| pool.pick(&[]).unwrap().url().to_string()).collect();
        assert!(picked.contains(&"b".to_string()), "half-open after the cool-down: {picked:?}");
    }

    #[tokio::test]
    async fn least_sessions_and_stickiness_accounting() {
        let pool = Pool::new(&spec(Balance::LeastSessions));
        let a = pool.pick(&[]).unwrap();
        let b = pool.pick(&[]).unwrap();
        let c = pool.pick(&[]).unwrap();
        let urls = [a.url(), b.url(), c.url()];
        assert_eq!(urls.iter().collect::<std::collections::HashSet<_>>().len(), 3, "spread: {urls:?}");
        let freed = b.url().to_string();
        drop(b);
        assert_eq!(pool.pick(&[]).unwrap().url(), freed, "the instance with fewest sessions");
        assert!(pool.pick(&[0, 1, 2]).is_none());
    }
}
