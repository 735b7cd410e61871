//! A shared child that is alive but never answers `initialize` (issues 13/18 review): the
//! client gets an error naming the cause within `limits.upstream_stall`, the child is ended,
//! and the next session starts a fresh one.

mod common;

use std::time::{Duration, Instant};

use common::{root, toml_str, Bridge, TempDir, ACCEPT_BOTH, PROTOCOL};
use serde_json::{json, Value};

/// POSTs an `initialize` and returns its answer; fails, not hangs, if none comes in `within`.
async fn initialize(url: &str, within: Duration) -> Value {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "shared-child", "version": "0"}}});
    let post = reqwest::Client::new()
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(init.to_string())
        .send();
    let answered = tokio::time::timeout(within, async {
        let resp = post.await.expect("POST initialize");
        assert_eq!(resp.status(), 200, "initialize status");
        common::responses(resp).await
    })
    .await
    .unwrap_or_else(|_| panic!("no answer to initialize within {within:?}: the wait for the shared child is unbounded"));
    answered.into_iter().find(|m| m["id"] == 1).expect("an answer to initialize")
}

/// The pids the fixture recorded, one per start.
fn starts(path: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_child_that_never_answers_initialize_is_ended_and_the_next_session_retries() {
    let dir = TempDir::new("mute");
    let counter = dir.path().join("starts");
    let script = root().join("tests/fixtures/mute_server.sh");
    let config = format!(
        "[limits]\nupstream_stall = \"2s\"\n[servers.mute]\ncommand = \"sh\"\nargs = [{}, {}]\nsharing = \"shared\"\n",
        toml_str(&script.display().to_string()),
        toml_str(&counter.display().to_string())
    );
    let bridge = Bridge::start(&config, &[]).await;
    let url = bridge.url("/mcp/mute");

    // Well within request_timeout (600 s by default): the bound is upstream_stall.
    let first = initialize(&url, Duration::from_secs(30)).await;
    let message = first["error"]["message"].as_str().unwrap_or_else(|| panic!("an error answer: {first}"));
    assert!(message.contains("initialize") && message.contains("limits.upstream_stall"), "names the cause: {first}");
    let pids = starts(&counter);
    assert_eq!(pids.len(), 1, "one child so far: {pids:?}");

    // The unresponsive child is ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pids[0]) {
        assert!(Instant::now() < deadline, "the shared child {} still runs\n{}", pids[0], bridge.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Its session ends, saying why.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bridge.log().lines().any(|l| l.contains("session ended") && l.contains("reason=upstream_stalled")) {
        assert!(Instant::now() < deadline, "the session did not end as upstream_stalled\n{}", bridge.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The next session tries again, with a fresh child, and is bounded the same way.
    let second = initialize(&url, Duration::from_secs(30)).await;
    assert!(second["error"]["message"].as_str().is_some_and(|m| m.contains("initialize")), "{second}");
    let pids = starts(&counter);
    assert_eq!(pids.len(), 2, "a second child was started: {pids:?}\n{}", bridge.log());
    assert_ne!(pids[0], pids[1]);
}
