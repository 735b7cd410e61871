//! The scenarios the cluster tests run on every Redis deployment (one Redis in tests/cluster.rs,
//! a Redis Cluster in tests/redis_cluster.rs): what they need of a deployment ([`Deployment`]:
//! instances, nginx in front, and a view of the sessions in Redis), and the SDK clients'
//! full scenario through round-robin nginx.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Balancer, Cluster, Redis};
use crate::common::{run_client, Bridge, ClientRun, Sdk};

/// What the tests read of a session in Redis, whichever deployment holds it.
pub(crate) trait Store {
    /// The instance that owns the session.
    fn owner(&self, sid: &str) -> Option<String>;
    /// The messages of one of its stream logs, in order (the data of each entry).
    fn stream_log(&self, sid: &str, stream: u32) -> Vec<Value>;
}

impl Store for Redis {
    fn owner(&self, sid: &str) -> Option<String> {
        self.lease_owner(sid)
    }

    fn stream_log(&self, sid: &str, stream: u32) -> Vec<Value> {
        Redis::stream_log(self, sid, stream)
    }
}

/// Bridge instances in cluster mode behind nginx, sharing sessions through some Redis.
pub(crate) trait Deployment {
    fn instances(&self) -> &[Bridge];
    fn instances_mut(&mut self) -> &mut [Bridge];
    fn balancer(&self) -> &Balancer;
    fn store(&self) -> &dyn Store;

    fn index_of(&self, id: &str) -> usize {
        self.instances().iter().position(|i| i.name == id).unwrap_or_else(|| panic!("no instance {id}"))
    }

    /// The instance listening on `addr` (`127.0.0.1:PORT`, as nginx logs it).
    fn id_at(&self, addr: &str) -> Option<&str> {
        let port: u16 = addr.rsplit(':').next()?.parse().ok()?;
        self.instances().iter().find(|i| i.port == port).map(|i| i.name.as_str())
    }
}

impl Deployment for Cluster {
    fn instances(&self) -> &[Bridge] {
        &self.instances
    }
    fn instances_mut(&mut self) -> &mut [Bridge] {
        &mut self.instances
    }
    fn balancer(&self) -> &Balancer {
        self.nginx()
    }
    fn store(&self) -> &dyn Store {
        &self.redis
    }
}

fn assert_full(run: &ClientRun, repeat: u64) {
    let v = run.ok();
    let l = &run.label;
    let tools: Vec<&str> = v["tools"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    for t in ["echo", "get-sum", "trigger-long-running-operation", "trigger-sampling-request"] {
        assert!(tools.contains(&t), "{l}: tools/list has {t}: {tools:?}");
    }
    assert_eq!(v["echoCount"], repeat, "{l}: every tagged echo came back once: {v}");
    assert_eq!(v["sum"].as_f64(), Some(5.0), "{l}");
    assert!(v["progress"].as_u64().unwrap_or(0) >= 3, "{l}: progress notifications: {v}");
    assert_eq!(v["samplingRequests"], 1, "{l}: exactly one sampling request reached the client: {v}");
    assert!(v["sampling"].as_str().is_some_and(|s| s.contains("ping")), "{l}: sampling round trip: {v}");
}

/// The TypeScript and Python SDK clients run the full scenario over legacy SSE and Streamable
/// HTTP through round-robin nginx (server `everything`); every session's requests reach several
/// instances, and none fails.
pub(crate) async fn round_robin_sdk_clients(d: &impl Deployment) {
    let sse = d.balancer().url("/sse/everything");
    let mcp = d.balancer().url("/mcp/everything");
    let repeat = 5;
    let r = repeat.to_string();
    let runs = futures_util::future::join_all([
        run_client(Sdk::Ts, "sse", &sse, &["--id-tag", "ts-sse", "--repeat", &r]),
        run_client(Sdk::Ts, "streamable", &mcp, &["--id-tag", "ts-http", "--repeat", &r]),
        run_client(Sdk::Py, "sse", &sse, &["--id-tag", "py-sse", "--repeat", &r]),
        run_client(Sdk::Py, "streamable", &mcp, &["--id-tag", "py-http", "--repeat", &r]),
    ])
    .await;
    for run in &runs {
        assert_full(run, repeat);
    }

    // Where nginx sent each session's requests: round-robin spreads them, so most sessions
    // see several instances, and the ones that did not own the session forwarded.
    let requests = d.balancer().requests();
    let mut spread = Vec::new();
    for run in &runs {
        let sid = run.json["sessionId"].as_str().expect("the client reports its session id");
        let hits: Vec<_> = requests.iter().filter(|r| r.session == sid).collect();
        let instances: BTreeSet<&str> = hits.iter().filter_map(|r| d.id_at(&r.upstream)).collect();
        assert!(hits.len() >= 5, "{}: nginx logged the session's requests ({sid}): {hits:?}", run.label);
        // nginx logs 499 when the client itself gives up on a request: the Python SDK's
        // sse_client tears its task group down at exit, which can abort its last POST in flight
        // (the teardown race `common::run_client` describes). That is the client leaving, not a
        // failure, and only ever the session's last request.
        let (last, earlier) = hits.split_last().expect("at least one request");
        assert!(earlier.iter().all(|r| r.status < 400), "{}: no request of the session failed: {hits:?}", run.label);
        assert!(last.status < 400 || last.status == 499, "{}: the last request did not fail: {hits:?}", run.label);
        eprintln!("{}: {} requests over {:?} (owner {:?})", run.label, hits.len(), instances, d.store().owner(sid));
        spread.push(instances.len());
    }
    assert!(
        spread.iter().all(|&n| n >= 2),
        "every session's requests reached at least two instances under round-robin: {spread:?}"
    );
    let all: BTreeSet<&str> = requests.iter().filter_map(|r| d.id_at(&r.upstream)).collect();
    assert_eq!(all.len(), 3, "requests reached all three instances: {all:?}");
    // Counted by the metric: a POST's answer stream logs its lifecycle lines only at debug.
    let mut opened = Vec::new();
    for i in d.instances() {
        let m = i.metrics().await;
        opened.push(m.find("mcp_bridge_streams_opened_total", &[]).iter().map(|s| s.value).sum::<f64>() as usize);
    }
    assert!(opened.iter().filter(|&&n| n > 0).count() >= 2, "streams opened on several instances: {opened:?}");
    eprintln!("SSE connections opened per instance: {opened:?}");
    for i in d.instances() {
        let log = i.log();
        assert!(!log.contains("panicked"), "instance {} panicked:\n{log}", i.name);
        let (_, ready) = i.readyz().await;
        assert_eq!((ready["mode"].as_str(), ready["status"].as_str()), (Some("cluster"), Some("ready")), "{ready}");
    }
}
