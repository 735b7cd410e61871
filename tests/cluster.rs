//! Cluster mode against a real redis-server and a real nginx, both started by the tests:
//! SDK clients through round-robin nginx over three instances, and `kill -9` of a session's
//! owner mid-session (legacy SSE and Streamable HTTP). Redis restarts and leases between
//! instances addressed directly are in tests/cluster_leases.rs.
//! Run with `--nocapture` to see the failover figures.

mod cluster_support;
mod common;
mod support_nginx;

use cluster_support::{failover, scenarios, Cluster};
use common::{echo_server, everything_stdio, require_node};

/// Both servers: the fast bundled echo server and server-everything (progress, sampling, a
/// slow tool), each a stdio child per session.
fn config() -> String {
    format!("{}\n{}", echo_server("echo"), everything_stdio("everything"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_sdk_clients_run_the_full_scenario_across_three_instances() {
    require_node();
    let c = Cluster::start(&config(), 3, true).await;
    scenarios::round_robin_sdk_clients(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_owner_mid_session_legacy_sse_clients_resume_through_nginx() {
    require_node();
    let mut c = Cluster::start(&config(), 3, true).await;
    failover::kill_9_of_the_owner_legacy_sse(&mut c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_owner_mid_session_streamable_http_client_resumes_through_nginx() {
    require_node();
    let mut c = Cluster::start(&config(), 3, true).await;
    failover::kill_9_of_the_owner_streamable_http(&mut c).await;
}
