//! Prometheus metrics, served at `GET /metrics`. One process-wide set, so the hot paths
//! record without plumbing; every series carries the instance as a label.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

mod labels;
pub(crate) use labels::{clip, is_clip_of, method_label};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Session {
    pub server: String,
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Closed {
    pub server: String,
    pub transport: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Server {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Method {
    pub server: String,
    /// From [`method_label`]: a closed set, never the string a client sent.
    pub method: &'static str,
}

/// How a 2026-07-28 (stateless) request ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Stateless {
    pub server: String,
    /// `answered`, `input_required` or `cancelled`.
    pub outcome: &'static str,
}

/// A request refused by `[auth.rate_limits]`. No principal label: principals are unbounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RateLimited {
    /// `named` (a named client), `jwt`, or `anonymous`.
    pub class: &'static str,
    /// A configured server's name, or `none` for a path that names none.
    pub server: String,
    /// `per_principal`, `per_server` or `per_tool`.
    pub limit: &'static str,
    /// `rate` or `concurrent`.
    pub kind: &'static str,
}

/// A member of an aggregate (both names from the configuration).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AggregateMember {
    pub aggregate: String,
    pub member: String,
}

fn latency() -> Histogram {
    // 50 µs .. ~100 s
    Histogram::new(exponential_buckets(0.000_05, 2.5, 16))
}

pub(crate) struct Metrics {
    pub sessions_open: Family<Session, Gauge>,
    pub streams_opened: Family<Session, Counter>,
    pub streams_closed: Family<Closed, Counter>,
    pub heartbeats: Family<Server, Counter>,
    pub events_replayed: Family<Server, Counter>,
    pub requests: Family<Method, Counter>,
    pub upstream_latency: Family<Method, Histogram, fn() -> Histogram>,
    pub forwarded: Counter,
    pub forward_latency: Histogram,
    /// Sessions this instance took over from an owner whose lease lapsed.
    pub takeovers: Counter,
    /// Times this instance found its own lease lapsed and rejoined with a new epoch.
    pub fenced: Counter,
    pub upstream_crashes: Family<Server, Counter>,
    pub upstream_healthy: Family<Server, Gauge>,
    pub stateless_requests: Family<Stateless, Counter>,
    pub rate_limited: Family<RateLimited, Counter>,
    /// Aggregate members left out of an initialize or a list (down, failed, or too slow).
    pub aggregate_members_left_out: Family<AggregateMember, Counter>,
    registry: Registry,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics; `instance` labels them (the first call names it).
pub(crate) fn init(instance: &str) -> &'static Metrics {
    METRICS.get_or_init(|| Metrics::new(instance))
}

pub(crate) fn get() -> &'static Metrics {
    METRICS.get_or_init(|| Metrics::new("unnamed"))
}

impl Metrics {
    fn new(instance: &str) -> Metrics {
        let mut registry =
            Registry::with_prefix_and_labels("mcp_bridge", [("instance".into(), instance.to_string().into())].into_iter());
        let m = Metrics {
            sessions_open: Family::default(),
            streams_opened: Family::default(),
            streams_closed: Family::default(),
            heartbeats: Family::default(),
            events_replayed: Family::default(),
            requests: Family::default(),
            upstream_latency: Family::new_with_constructor(latency),
            forwarded: Counter::default(),
            forward_latency: latency(),
            takeovers: Counter::default(),
            fenced: Counter::default(),
            upstream_crashes: Family::default(),
            upstream_healthy: Family::default(),
            stateless_requests: Family::default(),
            rate_limited: Family::default(),
            aggregate_members_left_out: Family::default(),
            registry: Registry::default(),
        };
        registry.register("sessions_open", "Sessions held by this instance", m.sessions_open.clone());
        registry.register("streams_opened", "SSE streams opened", m.streams_opened.clone());
        registry.register("streams_closed", "SSE streams closed, by close reason", m.streams_closed.clone());
        registry.register("heartbeats_sent", "Heartbeats written to SSE streams", m.heartbeats.clone());
        registry.register("events_replayed", "Events replayed after Last-Event-ID", m.events_replayed.clone());
        registry.register("requests", "Client requests sent upstream, by method", m.requests.clone());
        registry.register("upstream_latency_seconds", "Time from a request to its upstream response", m.upstream_latency.clone());
        registry.register("forwarded_requests", "Requests forwarded to the owning instance", m.forwarded.clone());
        registry.register("forward_latency_seconds", "Time for a forwarded request's answer", m.forward_latency.clone());
        registry.register("cluster_takeovers", "Sessions taken over from an instance whose lease lapsed", m.takeovers.clone());
        registry.register("cluster_fenced", "Times this instance found its lease lapsed and rejoined", m.fenced.clone());
        registry.register("upstream_crashes", "Upstreams that exited or failed to start", m.upstream_crashes.clone());
        registry.register(
            "stateless_requests",
            "2026-07-28 requests served on backing sessions, by outcome",
            m.stateless_requests.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by [auth.rate_limits], by principal class, server and limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "upstream_healthy",
            "1 if the server takes new sessions, 0 while it backs off",
            m.upstream_healthy.clone(),
        );
        registry.register(
            "aggregate_members_left_out",
            "Aggregate members left out of an initialize or a list: down, failed or slower than member_timeout",
            m.aggregate_members_left_out.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition format.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_series() {
        let m = Metrics::new("t1");
        m.streams_closed.get_or_create(&Closed { server: "echo".into(), transport: "sse", reason: "client_closed" }).inc();
        m.upstream_latency.get_or_create(&Method { server: "echo".into(), method: "tools/call" }).observe(0.001);
        let text = m.render();
        assert!(
            text.contains(
                r#"mcp_bridge_streams_closed_total{instance="t1",server="echo",transport="sse",reason="client_closed"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("mcp_bridge_upstream_latency_seconds_bucket"), "{text}");
    }
}
