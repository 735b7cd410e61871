//! The official TypeScript and Python SDK clients through the bridge, on both transports:
//! the full scenario (initialize, tools, echo, get-sum, progress, sampling) against
//! server-everything over stdio and as a remote Streamable HTTP or SSE upstream, and 16
//! concurrent tagged sessions per transport that must each get only their own answers.

mod common;

use std::collections::HashSet;

use common::scenario::assert_full;
use common::{everything_stdio, run_client, Bridge, ClientRun, Everything, Sdk};
use futures_util::future::join_all;

/// Both SDKs on both transports against `/sse/{server}` and `/mcp/{server}`, concurrently.
async fn full_scenario_everywhere(bridge: &Bridge, server: &str) -> Vec<ClientRun> {
    let sse = bridge.url(&format!("/sse/{server}"));
    let mcp = bridge.url(&format!("/mcp/{server}"));
    join_all([
        run_client(Sdk::Ts, "sse", &sse, &[]),
        run_client(Sdk::Ts, "streamable", &mcp, &[]),
        run_client(Sdk::Py, "sse", &sse, &[]),
        run_client(Sdk::Py, "streamable", &mcp, &[]),
    ])
    .await
}

fn assert_clean_log(bridge: &Bridge) {
    let log = bridge.log();
    for bad in ["panicked", "reason=slow_consumer", "reason=event_log_overflow", "reason=error"] {
        assert!(!log.contains(bad), "the bridge log has {bad:?}:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sdks_full_scenario_with_a_stdio_upstream() {
    let bridge = Bridge::start(&everything_stdio("everything"), &[]).await;
    for run in full_scenario_everywhere(&bridge, "everything").await {
        assert_full(&run);
    }
    assert_clean_log(&bridge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sdks_full_scenario_with_a_remote_streamable_http_upstream() {
    let remote = Everything::start("streamableHttp").await;
    let config = format!("[servers.remote]\nurl = \"{}\"\ntype = \"streamable-http\"\n", remote.url("/mcp"));
    let bridge = Bridge::start(&config, &[]).await;
    for run in full_scenario_everywhere(&bridge, "remote").await {
        assert_full(&run);
    }
    assert_clean_log(&bridge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sdks_full_scenario_with_a_remote_sse_upstream() {
    let remote = Everything::start("sse").await;
    let config = format!("[servers.remote]\nurl = \"{}\"\ntype = \"sse\"\n", remote.url("/sse"));
    let bridge = Bridge::start(&config, &[]).await;
    for run in full_scenario_everywhere(&bridge, "remote").await {
        assert_full(&run);
    }
    assert_clean_log(&bridge);
}

/// 16 sessions at once on one server, half TypeScript and half Python, each echoing its own
/// tag 5 times: every answer must carry the asking session's tag.
async fn sixteen_sessions_without_crosstalk(transport: &str) {
    const SESSIONS: usize = 16;
    const REPEAT: usize = 5;
    let bridge = Bridge::start(&everything_stdio("everything"), &[]).await;
    let url = bridge.url(if transport == "sse" { "/sse/everything" } else { "/mcp/everything" });
    let tags: Vec<String> = (0..SESSIONS).map(|i| format!("{transport}{i}")).collect();
    let repeat = REPEAT.to_string();
    let runs = join_all(tags.iter().enumerate().map(|(i, tag)| {
        let sdk = if i % 2 == 0 { Sdk::Ts } else { Sdk::Py };
        let args = ["--scenario", "basic", "--id-tag", tag.as_str(), "--repeat", repeat.as_str()];
        let url = url.clone();
        async move { run_client(sdk, transport, &url, &args).await }
    }))
    .await;
    let mut failures = Vec::new();
    let mut sessions = HashSet::new();
    for (run, tag) in runs.iter().zip(&tags) {
        if run.json["ok"] != true {
            failures.push(format!("{}: {}\n{}", run.label, run.json, run.stderr));
            continue;
        }
        // The client checked every one of its echoes; the last must be its own.
        assert_eq!(run.json["echo"], format!("Echo: hello-{tag}-{}", REPEAT - 1), "{}", run.label);
        assert_eq!(run.json["echoCount"], REPEAT, "{}", run.label);
        sessions.insert(run.json["sessionId"].as_str().unwrap_or("").to_string());
    }
    assert!(failures.is_empty(), "{} of {SESSIONS} sessions failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(sessions.len(), SESSIONS, "every client had its own session: {sessions:?}");
    let peak = peak_open_session_streams(&bridge.log());
    assert!(peak >= 4, "the sessions overlapped in time (peak of {peak} session streams open at once)");
    assert_clean_log(&bridge);
}

/// The most session streams (stream 0: the legacy stream, or the standalone GET) open at once,
/// from the lifecycle lines in log order.
fn peak_open_session_streams(log: &str) -> usize {
    let (mut open, mut peak) = (0usize, 0usize);
    for line in log.lines().filter(|l| l.contains(" stream=0 ")) {
        if line.contains("SSE connection opened") {
            open += 1;
            peak = peak.max(open);
        } else if line.contains("SSE connection closed") {
            open = open.saturating_sub(1);
        }
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_legacy_sse_sessions_get_only_their_own_answers() {
    sixteen_sessions_without_crosstalk("sse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_streamable_sessions_get_only_their_own_answers() {
    sixteen_sessions_without_crosstalk("streamable").await;
}
