//! Children that try to outlive the bridge: a child that ignores stdin EOF and SIGHUP when the
//! bridge is killed with SIGKILL, and a grandchild that left the child's process group with
//! `setsid`, when its session ends and when the bridge shuts down. Included by
//! `tests/security_limits.rs`.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{self, toml_str, Bridge, McpSession};
use crate::procfs;

/// Answers `initialize`; with the argument `grandchild`, first starts `sleep 1000` in a
/// session of its own (`setsid`, so outside the child's process group; it inherits the
/// child's pipes) and names its pid in `serverInfo.name`. Then it ignores SIGHUP, SIGTERM
/// and stdin EOF, and sleeps.
const SERVER: &str = r#"
import json, signal, subprocess, sys, time
for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
    signal.signal(s, signal.SIG_IGN)
m = json.loads(sys.stdin.readline())
name = "none"
if sys.argv[1:] == ["grandchild"]:
    name = str(subprocess.Popen(["sleep", "1000"], start_new_session=True).pid)
r = {"protocolVersion": m["params"]["protocolVersion"], "capabilities": {}, "serverInfo": {"name": name, "version": "0"}}
print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}), flush=True)
while True:
    time.sleep(1)
"#;

fn config() -> String {
    let script = toml_str(SERVER);
    format!(
        "[sessions]\ndrain_grace = \"100ms\"\n\
         [servers.stubborn]\ncommand = \"python3\"\nargs = [\"-c\", {script}]\n\
         [servers.escaper]\ncommand = \"python3\"\nargs = [\"-c\", {script}, \"grandchild\"]\n"
    )
}

/// SIGKILLs the recorded pids when dropped, so a failing test leaves nothing behind.
struct Cleanup(Vec<i32>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
}

/// Opens a session and returns the `serverInfo.name` its child answered with.
async fn open(bridge: &Bridge, server: &str) -> (McpSession, String) {
    let url = bridge.url(&format!("/mcp/{server}"));
    let resp = common::post_initialize(&common::http(), &url).await;
    assert_eq!(resp.status(), 200, "initialize on {server}");
    let id = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).expect("Mcp-Session-Id").to_string();
    let answers: Vec<Value> = common::responses(resp).await;
    let name = answers.iter().find_map(|m| m["result"]["serverInfo"]["name"].as_str()).expect("serverInfo.name").to_string();
    (McpSession { http: common::http(), url, id }, name)
}

/// Waits until every pid in `pids` is gone (or a zombie whose parent is gone with it).
async fn wait_dead(pids: &[i32], timeout: Duration, when: &str) {
    let deadline = Instant::now() + timeout;
    while !pids.iter().all(|p| procfs::is_dead(*p)) {
        let alive: Vec<i32> = pids.iter().copied().filter(|p| !procfs::is_dead(*p)).collect();
        assert!(Instant::now() < deadline, "{when}: still running after {timeout:?}: {alive:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_ignores_stdin_eof_dies_with_a_bridge_killed_by_sigkill() {
    common::require_python();
    let bridge = Bridge::start(&config(), &[]).await;
    let pid = procfs::bridge_pid(bridge.port);
    let (_s, _) = open(&bridge, "stubborn").await;
    let children: Vec<i32> = procfs::children(pid).iter().map(|p| p.pid).collect();
    assert_eq!(children.len(), 1, "one child: {children:?}");
    let _cleanup = Cleanup(children.clone());
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("SIGKILL the bridge");
    // On main the child went on sleeping: nothing tells it the bridge died but stdin EOF.
    wait_dead(&children, Duration::from_secs(5), "after SIGKILL of the bridge").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setsid_grandchild_dies_with_its_session_and_at_shutdown_and_is_reaped() {
    common::require_python();
    let bridge = Bridge::start(&config(), &[]).await;
    let pid = procfs::bridge_pid(bridge.port);

    // The session ends: the child's process group goes, and so does the grandchild that left it.
    let (s, grandchild) = open(&bridge, "escaper").await;
    let grandchild: i32 = grandchild.parse().expect("the grandchild's pid");
    let child: Vec<i32> = procfs::children(pid).iter().map(|p| p.pid).collect();
    let mut cleanup = Cleanup(vec![grandchild]);
    cleanup.0.extend(&child);
    assert!(!procfs::is_dead(grandchild), "the grandchild runs");
    let del = s.http.delete(&s.url).header("mcp-session-id", &s.id).send().await.expect("DELETE");
    assert_eq!(del.status(), 200);
    // On main the grandchild was reparented to init and slept on.
    wait_dead(&[grandchild], Duration::from_secs(10), "after the session ended").await;
    // Killed and reaped: no zombie is left with the bridge.
    procfs::wait_no_children(pid, Duration::from_secs(10), "after the session ended").await;

    // A clean shutdown (SIGTERM) with a session still open.
    let (_s, second) = open(&bridge, "escaper").await;
    let second: i32 = second.parse().expect("the grandchild's pid");
    cleanup.0.push(second);
    cleanup.0.extend(procfs::children(pid).iter().map(|p| p.pid));
    assert!(!procfs::is_dead(second), "the second grandchild runs");
    drop(bridge);
    wait_dead(&[second], Duration::from_secs(5), "after SIGTERM of the bridge").await;
}
