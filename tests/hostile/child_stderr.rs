//! A stdio child that writes hostile stderr: bytes that are not UTF-8, a line of hundreds of
//! MiB without a newline, thousands of lines at once. The bridge must keep draining (the child
//! never gets SIGPIPE or `BrokenPipeError`), keep its memory bounded, keep serving the session,
//! and rate-limit what reaches its log. Included by `tests/hostile.rs`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{self, toml_str, Bridge, McpSession};
use crate::procfs;

/// An MCP server in one Python script. `tools/call` arguments: `message` (answered back),
/// `bad` (write one stderr line holding bytes that are not UTF-8, ending with `marker`),
/// `lines` (write that many short stderr lines), `spew_mib` (write that many MiB of `x` to
/// stderr without a newline, then one newline).
const SERVER: &str = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    if m["method"] == "initialize":
        r = {"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {}}, "serverInfo": {"name": "stderr", "version": "0"}}
    elif m["method"] == "tools/call":
        a = m["params"]["arguments"]
        err = sys.stderr.buffer
        if "bad" in a:
            err.write(b"bad \xff\xfe\xc3 bytes " + a["bad"].encode() + b"\n")
        for i in range(a.get("lines", 0)):
            err.write(b"flood line %d\n" % i)
        chunk = b"x" * (1 << 20)
        for _ in range(a.get("spew_mib", 0)):
            err.write(chunk)
        if a.get("spew_mib"):
            err.write(b"\n")
        err.flush()
        r = {"content": [{"type": "text", "text": a.get("message", "")}]}
    else:
        r = {}
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}), flush=True)
"#;

fn config() -> String {
    format!("[servers.noisy]\ncommand = \"python3\"\nargs = [\"-c\", {}]\n", toml_str(SERVER))
}

/// Calls the tool with `args` and returns its text, panicking with the answers otherwise.
async fn call(s: &McpSession, id: u64, args: Value) -> String {
    let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "noisy", "arguments": args}});
    let answers = common::responses(s.post(&msg).await).await;
    let answer = answers.iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("no answer to call {id}: {answers:?}"));
    answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("call {id} failed: {answer}")).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_writing_non_utf8_stderr_keeps_working_and_its_log_is_rate_limited() {
    common::require_python();
    let bridge = Bridge::start(&config(), &[]).await;
    let s = McpSession::open(&bridge.url("/mcp/noisy")).await;
    // Every call writes a line with bytes that are not UTF-8. On main the first one stopped
    // the drain (`lines()` errors out), and the next write to stderr killed the child
    // (`BrokenPipeError`).
    for id in 2..=12 {
        let text = call(&s, id, json!({"message": format!("still here {id}"), "bad": format!("marker-{id}")})).await;
        assert_eq!(text, format!("still here {id}"), "call {id} answered by the same child");
    }
    let last = bridge
        .wait_for_log_line("with the last marker", Duration::from_secs(10), |l| l.contains("marker-12") && l.contains("bad"))
        .await;
    assert!(last.contains("bad \u{fffd}"), "the bytes are shown as lossy UTF-8: {last}");
    assert!(!bridge.log().contains("upstream exited"), "the child did not exit");

    // A flood of lines: the log gets a bounded share, and says how much it left out.
    assert_eq!(call(&s, 20, json!({"message": "flooded", "lines": 5000})).await, "flooded");
    assert_eq!(call(&s, 21, json!({"message": "after the flood"})).await, "after the flood");
    let del = s.http.delete(&s.url).header("mcp-session-id", &s.id).send().await.expect("DELETE");
    assert_eq!(del.status(), 200);
    let summary = bridge
        .wait_for_log_line("counting suppressed stderr lines", Duration::from_secs(10), |l| {
            l.contains("lines were suppressed in all")
        })
        .await;
    let logged = bridge.log().lines().filter(|l| l.contains("flood line")).count();
    eprintln!("stderr flood: 5000 lines written, {logged} logged; {summary}");
    assert!(logged < 1000, "the log got {logged} of 5000 flood lines");
    let suppressed: u64 = summary
        .split("suppressed=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a suppressed count: {summary}"));
    assert_eq!(suppressed + logged as u64, 5000, "every flood line was logged or counted: {summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_writing_200_mib_of_stderr_without_a_newline_leaves_the_bridge_bounded() {
    common::require_python();
    const MIB: u64 = 200;
    let bridge = Bridge::start(&config(), &[]).await;
    let pid = procfs::bridge_pid(bridge.port);
    let s = McpSession::open(&bridge.url("/mcp/noisy")).await;
    assert_eq!(call(&s, 2, json!({"message": "before"})).await, "before");
    let before = procfs::peak_rss_kib(pid);
    assert_eq!(call(&s, 3, json!({"message": "spewed", "spew_mib": MIB})).await, "spewed");
    assert_eq!(call(&s, 4, json!({"message": "after"})).await, "after", "the session keeps working");
    // The child wrote the whole line before it answered, so the bridge has read it.
    let peak = procfs::peak_rss_kib(pid);
    eprintln!(
        "stderr spew: {MIB} MiB without a newline; bridge peak RSS {} MiB before, {} MiB after",
        before / 1024,
        peak / 1024
    );
    // On main, the line was buffered whole: the bridge's peak RSS passed the line's size.
    assert!(peak < 100 * 1024, "the bridge's peak RSS is {} MiB after {MIB} MiB of stderr", peak / 1024);
    let marker = format!("[truncated {} bytes]", MIB * 1024 * 1024 - 4096);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = bridge.log();
        if let Some(line) = log.lines().find(|l| l.contains("[truncated")) {
            assert!(line.contains(&marker), "the cut is marked {marker}: {}", &line[line.len().saturating_sub(200)..]);
            assert!(line.len() < 8192, "the logged line is bounded: {} bytes", line.len());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no truncated stderr line logged ({} bytes of log)", log.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
