//! Security controls of the real bridge binary, part two: body and session limits, the upstream
//! request timeout, the child-process cap, the slow-loris header timeout, and child processes
//! that are always reaped (however their session ends, and when they try to outlive the bridge)
//! and get only their configured environment.

mod common;
#[path = "security/outliving.rs"]
mod outliving;
#[path = "security/principals.rs"]
mod principals;
#[path = "fixtures/procfs.rs"]
mod procfs;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{
    echo_server, initialize_request, python_fixture, raw, responses, toml_str, Bridge, Legacy, McpSession, ACCEPT_BOTH,
};
use principals::*;
use serde_json::{json, Value};

// ---- limits -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_body_gets_413_and_one_under_it_passes() {
    let config = format!("[limits]\nmax_body = 65536\n{}", echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let port = bridge.port;
    let s = McpSession::open(&bridge.url("/mcp/echo")).await;
    let l = Legacy::open(&bridge.base(), "echo").await;

    let under = "u".repeat(60_000);
    assert_eq!(s.echo(2, &under).await, under, "a 60 KB message passes");
    let over = common::echo_call(3, &"o".repeat(70_000)).to_string();
    let h = [("accept", ACCEPT_BOTH), ("content-type", "application/json"), ("mcp-session-id", s.id.as_str())];
    let r = raw(port, "POST", "/mcp/echo", &h, &over).await;
    assert_eq!(r.status, 413, "streamable: {r:?}");
    let r = raw(port, "POST", &format!("/sse/echo/message?sessionId={}", l.sid), &h[1..2], &over).await;
    assert_eq!(r.status, 413, "legacy: {r:?}");
    let mut init_over = initialize_request(1);
    init_over["params"]["pad"] = json!("p".repeat(70_000));
    assert_eq!(raw(port, "POST", "/mcp/echo", &h[..2], &init_over.to_string()).await.status, 413, "an oversized initialize");

    // A body that claims 10 GB is cut once it passes the limit: it is never buffered whole.
    let claimed = tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let head = format!(
            "POST /mcp/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
        );
        c.write_all(head.as_bytes()).expect("write");
        let _ = c.write_all(&[b' '; 70_000]);
        let mut out = vec![0u8; 1024];
        let n = c.read(&mut out).unwrap_or(0);
        String::from_utf8_lossy(&out[..n]).to_string()
    })
    .await
    .expect("task");
    assert!(claimed.starts_with("HTTP/1.1 413"), "a 10 GB Content-Length: {claimed}");

    // Chunked without a length: cut at the limit too.
    let chunked = tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let head = format!(
            "POST /mcp/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        c.write_all(head.as_bytes()).expect("write");
        let chunk = format!("{:x}\r\n{}\r\n", 16384, "c".repeat(16384));
        for _ in 0..5 {
            if c.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
        let mut out = vec![0u8; 1024];
        let n = c.read(&mut out).unwrap_or(0);
        String::from_utf8_lossy(&out[..n]).to_string()
    })
    .await
    .expect("task");
    assert!(chunked.starts_with("HTTP/1.1 413"), "80 KB chunked: {chunked}");
    assert_eq!(s.echo(4, "after").await, "after", "the session survives the refused bodies");
    healthz(&bridge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_caps_answer_429_per_principal_and_503_in_total() {
    let config = format!("{}[limits]\nmax_sessions = 3\nmax_sessions_per_principal = 2\n{}", auth_table(), echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let port = bridge.port;
    let url = bridge.url("/mcp/echo");
    let (alice, bob) = (client(ALICE), client(BOB));
    let a1 = McpSession::open_with(alice.clone(), &url).await;
    let _a2 = open_legacy(&alice, &bridge.base(), "echo").await;

    let r = raw_init(port, "/mcp/echo", &[("authorization", &bearer(ALICE))]).await;
    assert_eq!(r.status, 429, "alice's third session: {r:?}");
    assert!(r.body.contains("alice") && r.body.contains("maximum of 2"), "a clear body: {}", r.body);
    let r = raw(port, "GET", "/sse/echo", &[("authorization", &bearer(ALICE)), ("accept", "text/event-stream")], "").await;
    assert_eq!(r.status, 429, "alice's third session, legacy: {r:?}");

    let _b1 = McpSession::open_with(bob.clone(), &url).await;
    let r = raw_init(port, "/mcp/echo", &[("authorization", &bearer(BOB))]).await;
    assert_eq!(r.status, 503, "the fourth session on the instance: {r:?}");
    assert!(r.body.contains("maximum of 3 sessions"), "a clear body: {}", r.body);

    // The sessions held keep working, and a freed place can be taken again.
    assert_eq!(a1.echo(2, "held").await, "held");
    let del = alice.delete(&url).header("mcp-session-id", &a1.id).send().await.expect("DELETE");
    assert_eq!(del.status(), 200);
    let again = McpSession::open_with(alice.clone(), &url).await;
    assert_eq!(again.echo(2, "again").await, "again");
    healthz(&bridge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_gets_32001_after_request_timeout_and_the_session_survives() {
    let config = format!("[limits]\nrequest_timeout = \"2s\"\n{}", python_fixture("stall", "stall_and_flood.py"));
    let bridge = Bridge::start(&config, &[]).await;
    let s = McpSession::open(&bridge.url("/mcp/stall")).await;

    let t0 = Instant::now();
    let answers = responses(s.post(&tool_call(5, "hang", json!({}))).await).await;
    let err = answers.iter().find(|m| m["id"] == 5).unwrap_or_else(|| panic!("an answer for the hung call: {answers:?}"));
    assert_eq!(err["error"]["code"], -32001, "{err}");
    assert!(err["error"]["message"].as_str().unwrap_or("").contains("request_timeout"), "{err}");
    assert!(t0.elapsed() >= Duration::from_secs(2), "not before the timeout: {:?}", t0.elapsed());
    assert_eq!(s.echo(6, "alive").await, "alive", "the same session answers afterwards");
    bridge
        .wait_for_log_line("the child got notifications/cancelled", Duration::from_secs(10), |l| l.contains("cancelled 5"))
        .await;

    // Legacy: the error comes on the stream, and the session goes on.
    let mut l = Legacy::open(&bridge.base(), "stall").await;
    assert_eq!(l.post(&tool_call(7, "hang", json!({}))).await, 202);
    let m = l.next_message(Duration::from_secs(30)).await.expect("an answer for the hung call");
    assert_eq!((m["id"].clone(), m["error"]["code"].clone()), (json!(7), json!(-32001)), "{m}");
    assert_eq!(l.echo(8, "alive").await, "alive");
    healthz(&bridge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_children_initialize_gets_an_error_naming_the_limit() {
    let config = format!("[limits]\nmax_children = 1\n{}", echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let url = bridge.url("/mcp/echo");
    let first = McpSession::open(&url).await;

    let http = common::http();
    let resp = common::post_initialize(&http, &url).await;
    let answers = responses(resp).await;
    let err = answers.iter().find(|m| m["id"] == 1).unwrap_or_else(|| panic!("an answer to initialize: {answers:?}"));
    let msg = err["error"]["message"].as_str().unwrap_or_else(|| panic!("a JSON-RPC error: {err}"));
    assert!(msg.contains("max_children") && msg.contains("maximum of 1"), "the error names the limit: {msg}");

    let mut l = Legacy::connect(&bridge.base(), "echo").await;
    assert_eq!(l.post(&initialize_request(1)).await, 202);
    let m = l.next_message(Duration::from_secs(20)).await.expect("an answer to initialize");
    assert!(m["error"]["message"].as_str().unwrap_or("").contains("max_children"), "{m}");

    // More refusals than the crash-loop guard tolerates: being at the cap is not a crash, so
    // the server must not be marked unhealthy for everyone.
    for _ in 0..6 {
        let resp = common::post_initialize(&http, &url).await;
        assert_eq!(resp.status(), 200, "refused at the cap, not as an unhealthy server");
        let answers = responses(resp).await;
        assert!(answers.iter().any(|m| m["error"]["message"].as_str().unwrap_or("").contains("max_children")), "{answers:?}");
    }
    assert_eq!(first.echo(2, "first").await, "first", "the running session is untouched");
    let del = http.delete(&url).header("mcp-session-id", &first.id).send().await.expect("DELETE");
    assert_eq!(del.status(), 200);
    // The slot is given back when the child is gone, and the server is still healthy.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = common::post_initialize(&http, &url).await;
        let status = resp.status();
        let answers = responses(resp).await;
        assert_eq!(status, 200, "a server that never crashed was refused: {answers:?}");
        if answers.iter().any(|m| m["id"] == 1 && m["result"].is_object()) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot is never given back: {answers:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = common::http().get(bridge.url("/readyz")).send().await.expect("readyz").text().await.unwrap_or_default();
    let ready: Value = serde_json::from_str(&ready).expect("readyz JSON");
    assert_eq!(ready["servers"]["echo"]["healthy"], true, "{ready}");
    healthz(&bridge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_connections_are_closed_after_header_read_timeout() {
    let config = format!("[limits]\nheader_read_timeout = \"1s\"\n{}", echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let port = bridge.port;
    const LORIS: usize = 20;
    let t0 = Instant::now();
    let stalls: Vec<_> = (0..LORIS)
        .map(|i| {
            tokio::task::spawn_blocking(move || {
                let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
                c.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
                // Half a request line (or half the headers), then silence.
                let partial: &[u8] =
                    if i % 2 == 0 { b"GET /heal" } else { b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1" };
                c.write_all(partial).expect("write");
                let started = Instant::now();
                let mut out = Vec::new();
                let r = c.read_to_end(&mut out);
                (started.elapsed(), r.is_ok(), String::from_utf8_lossy(&out).to_string())
            })
        })
        .collect();
    // Meanwhile a normal request is served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    healthz(&bridge).await;
    for s in stalls {
        let (took, _clean, got) = s.await.expect("task");
        assert!(took < Duration::from_secs(30), "a stalled connection was held {took:?}");
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "a stalled connection gets nothing or 408: {got:?}");
    }
    eprintln!("{LORIS} slow-loris connections closed within {:?} (header_read_timeout 1s)", t0.elapsed());

    // A client that connects and sends nothing at all is not held forever either.
    let idle = tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let started = Instant::now();
        let mut out = Vec::new();
        let closed = c.read_to_end(&mut out).is_ok();
        (started.elapsed(), closed)
    })
    .await
    .expect("task");
    assert!(idle.1 && idle.0 < Duration::from_secs(30), "a silent connection was held {:?}", idle.0);
    healthz(&bridge).await;
}

// ---- child processes --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_processes_are_reaped_however_their_session_ends() {
    let config =
        format!("[sessions]\nidle_timeout = \"2s\"\n{}{}", echo_server("echo"), python_fixture("crash", "crash_on_call.py"));
    let bridge = Bridge::start(&config, &[]).await;
    let pid = procfs::bridge_pid(bridge.port);
    let url = bridge.url("/mcp/echo");

    // DELETE.
    let sessions = futures_util::future::join_all((0..4).map(|_| McpSession::open(&url))).await;
    let running = procfs::children(pid);
    assert!(running.len() >= 4, "one child per session: {running:?}");
    for s in &sessions {
        let del = s.http.delete(&s.url).header("mcp-session-id", &s.id).send().await.expect("DELETE");
        assert_eq!(del.status(), 200);
    }
    procfs::wait_no_children(pid, Duration::from_secs(20), "after DELETE").await;

    // The client goes away and the session expires.
    let legacy = Legacy::open(&bridge.base(), "echo").await;
    let streamable = McpSession::open(&url).await;
    assert_eq!(procfs::children(pid).len(), 2, "two children: {:?}", procfs::children(pid));
    drop(legacy);
    drop(streamable);
    procfs::wait_no_children(pid, Duration::from_secs(30), "after idle expiry").await;
    bridge
        .wait_for_log_line("session ended reason=idle_timeout", Duration::from_secs(5), |l| {
            l.contains("session ended") && l.contains("reason=idle_timeout")
        })
        .await;

    // The child crashes with a request in flight.
    let s = McpSession::open(&bridge.url("/mcp/crash")).await;
    let crashed = procfs::children(pid);
    assert_eq!(crashed.len(), 1, "{crashed:?}");
    let answers = responses(s.post(&tool_call(5, "crash", json!({}))).await).await;
    assert!(answers.iter().any(|m| m["id"] == 5 && m["error"].is_object()), "{answers:?}");
    procfs::wait_no_children(pid, Duration::from_secs(20), "after a crash").await;

    // Shutdown: SIGTERM to the bridge kills the children it still has.
    let _a = McpSession::open(&url).await;
    let _b = Legacy::open(&bridge.base(), "echo").await;
    let last: Vec<i32> = procfs::children(pid).iter().map(|p| p.pid).collect();
    assert_eq!(last.len(), 2, "two children before shutdown");
    drop(bridge);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !last.iter().all(|p| procfs::is_dead(*p)) {
        assert!(Instant::now() < deadline, "children outlived the bridge: {last:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_child_gets_only_its_configured_env_and_no_shell() {
    let dir = common::TempDir::new("noshell");
    let marker = dir.path().join("shell-ran");
    // A one-line MCP server that reports its environment and argv in serverInfo.
    let script = r#"
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "initialize":
        info = {"env": dict(os.environ), "argv": sys.argv[1:]}
        r = {"protocolVersion": m["params"]["protocolVersion"], "capabilities": {}, "serverInfo": {"name": json.dumps(info), "version": "0"}}
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}), flush=True)
"#;
    let hostile_arg = format!("$(touch {0}); `touch {0}` | touch {0}", marker.display());
    let config = format!(
        // An absolute interpreter: a bare `python3` is found on the bridge's PATH, maybe a
        // pyenv shim, which adds variables of its own.
        "[servers.env]\ncommand = \"/usr/bin/python3\"\nargs = [\"-c\", {}, {}]\nenv = {{ CONFIGURED = \"yes\" }}\n",
        toml_str(script),
        toml_str(&hostile_arg)
    );
    let bridge = Bridge::start(&config, &[]).await;
    let resp = common::post_initialize(&common::http(), &bridge.url("/mcp/env")).await;
    let answers = responses(resp).await;
    let init = answers.iter().find(|m| m["id"] == 1).unwrap_or_else(|| panic!("{answers:?}"));
    let info: Value =
        serde_json::from_str(init["result"]["serverInfo"]["name"].as_str().expect("serverInfo.name")).expect("JSON");
    let env = info["env"].as_object().expect("env");
    let mut names: Vec<&str> = env.keys().map(String::as_str).filter(|k| *k != "LC_CTYPE").collect();
    names.sort();
    assert_eq!(names, ["CONFIGURED", "PATH"], "only PATH and the configured env: {env:?}");
    assert_eq!(env["CONFIGURED"], "yes");
    assert_eq!(info["argv"], json!([hostile_arg]), "the argument arrives verbatim");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.exists(), "a shell ran the argument");
    healthz(&bridge).await;
}
