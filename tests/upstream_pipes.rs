//! The stdio pump against a server that reads one line and writes its whole answer before it
//! reads the next (`mcp-echo-server --serial`, blocking writes like most simple servers): many
//! large calls at once must all be answered, on both inbound transports, also while the client
//! reads slowly. On a bridge that writes stdin while not reading stdout, two 300 KB calls are
//! enough to deadlock it with the child.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::Value;

/// Concurrent calls per test.
const CALLS: usize = 8;
/// Bytes of each call's argument (and of its answer).
const SIZE: usize = 1024 * 1024;
/// Generous: on this machine all of them take well under a second once the pump works.
const BOUND: Duration = Duration::from_secs(60);

fn serial_echo(name: &str) -> String {
    format!("{}args = [\"--serial\"]\n", echo_server(name))
}

/// A distinct payload per call, so that a mixed-up answer is seen.
fn payload(i: usize) -> String {
    let head = format!("call-{i}:");
    let fill: String = std::iter::repeat_n(char::from(b'a' + (i % 26) as u8), SIZE - head.len()).collect();
    head + &fill
}

/// Reads an SSE POST answer, sleeping after every chunk when `slow`; returns its messages.
async fn read_answer(resp: reqwest::Response, slow: bool) -> Vec<Value> {
    if !slow {
        return responses(resp).await;
    }
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("read the answer")));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    text.split("\n\n")
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")).and_then(|d| serde_json::from_str(d).ok()))
        .collect()
}

fn check(answer: &Value, i: usize) {
    let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("call {i}: not an echo answer"));
    assert_eq!(text.len(), SIZE, "call {i}: answer size");
    assert!(text == payload(i), "call {i}: the answer is another call's payload or corrupted");
}

async fn streamable_calls(slow: bool) {
    streamable_calls_to(&serial_echo("echo"), slow).await;
}

async fn streamable_calls_to(config: &str, slow: bool) {
    let bridge = Bridge::start(config, &[]).await;
    let session = std::sync::Arc::new(McpSession::open(&bridge.url("/mcp/echo")).await);
    let started = Instant::now();
    let calls = (0..CALLS).map(|i| {
        let session = session.clone();
        tokio::spawn(async move {
            let id = 100 + i as u64;
            let resp = session.post(&echo_call(id, &payload(i))).await;
            assert_eq!(resp.status(), 200, "call {i}: status");
            let answers = read_answer(resp, slow).await;
            let answer = answers.iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("call {i}: no answer"));
            check(answer, i);
        })
    });
    let all = futures_util::future::join_all(calls);
    let results = tokio::time::timeout(BOUND, all)
        .await
        .unwrap_or_else(|_| panic!("{CALLS} concurrent {SIZE}-byte calls were not all answered within {BOUND:?} (deadlock)"));
    for r in results {
        r.expect("call task");
    }
    eprintln!(
        "streamable{}: {CALLS} concurrent calls of {SIZE} bytes answered in {} ms",
        if slow { " (slow reader)" } else { "" },
        started.elapsed().as_millis()
    );
}

async fn legacy_calls(slow: bool) {
    let bridge = Bridge::start(&serial_echo("echo"), &[]).await;
    let mut session = Legacy::open(&bridge.base(), "echo").await;
    let started = Instant::now();
    let (http, endpoint) = (session.http.clone(), session.endpoint_url());
    let posts: Vec<_> = (0..CALLS)
        .map(|i| {
            let (http, endpoint) = (http.clone(), endpoint.clone());
            tokio::spawn(async move {
                let body = echo_call(100 + i as u64, &payload(i)).to_string();
                let r = http.post(&endpoint).header("content-type", "application/json").body(body).send().await.expect("POST");
                assert_eq!(r.status(), 202, "call {i} is accepted");
            })
        })
        .collect();
    let read = async {
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < CALLS {
            let m = session.next_message(BOUND).await.expect("the stream ends only with the session");
            let Some(i) = m["id"].as_u64().and_then(|id| id.checked_sub(100)).map(|i| i as usize) else { continue };
            check(&m, i);
            seen.insert(i);
            if slow {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    let (posted, ()) = tokio::time::timeout(BOUND, futures_util::future::join(futures_util::future::join_all(posts), read))
        .await
        .unwrap_or_else(|_| panic!("{CALLS} concurrent {SIZE}-byte calls were not all answered within {BOUND:?} (deadlock)"));
    for p in posted {
        p.expect("POST task");
    }
    eprintln!(
        "sse{}: {CALLS} concurrent calls of {SIZE} bytes answered in {} ms",
        if slow { " (slow reader)" } else { "" },
        started.elapsed().as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_concurrent_calls_are_all_answered_on_streamable_http() {
    streamable_calls(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_concurrent_calls_are_all_answered_on_streamable_http_to_a_slow_reader() {
    streamable_calls(true).await;
}

/// The same through one child shared by every session (its pump is the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_concurrent_calls_are_all_answered_through_a_shared_child() {
    streamable_calls_to(&format!("{}sharing = \"shared\"\n", serial_echo("echo")), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_concurrent_calls_are_all_answered_on_legacy_sse() {
    legacy_calls(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_concurrent_calls_are_all_answered_on_legacy_sse_to_a_slow_reader() {
    legacy_calls(true).await;
}

#[test]
fn payloads_differ_per_call() {
    assert_ne!(payload(0), payload(1));
    assert_eq!(payload(7).len(), SIZE);
}

/// A child that stopped reading: once its pipe and the bridge's queue for it are full, a POST
/// waits a bounded time and is answered 503 with a JSON-RPC error, instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_upstream_queue_answers_503_after_a_bounded_wait() {
    let config = format!("[limits]\nupstream_stall = \"off\"\n{}args = [\"--stop-reading-after\", \"2\"]\n", echo_server("hung"));
    let bridge = Bridge::start(&config, &[]).await;
    let session = McpSession::open(&bridge.url("/mcp/hung")).await;
    let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/padding", "params": {"pad": "p".repeat(16 * 1024)}});
    // The pipe holds 64 KiB, the bridge's queue 256 messages: well under 400 notifications.
    for n in 0..400 {
        let resp = tokio::time::timeout(Duration::from_secs(30), session.post(&note))
            .await
            .unwrap_or_else(|_| panic!("POST {n} hung on a full upstream queue"));
        match resp.status().as_u16() {
            202 => continue,
            503 => {
                assert!(resp.headers().contains_key("retry-after"), "503 says when to retry");
                let body = resp.text().await.unwrap_or_default();
                assert!(rpc_error_code(&body).is_some(), "503 carries a JSON-RPC error: {body}");
                assert!(body.contains("queue"), "the error says why: {body}");
                eprintln!("503 after {n} accepted notifications of 16 KiB: {body}");
                return;
            }
            s => panic!("POST {n}: unexpected status {s}: {}", resp.text().await.unwrap_or_default()),
        }
    }
    panic!("400 notifications were all accepted by a child that reads nothing");
}

/// A child that reads nothing more while a request waits to be written ends its session as
/// `upstream_stalled` after `limits.upstream_stall`: it is killed, and the waiting request is
/// answered with an error at once rather than after `request_timeout` (10 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_stops_reading_ends_as_upstream_stalled() {
    let config = format!("[limits]\nupstream_stall = \"1s\"\n{}args = [\"--stop-reading-after\", \"2\"]\n", echo_server("hung"));
    let bridge = Bridge::start(&config, &[]).await;
    let session = McpSession::open(&bridge.url("/mcp/hung")).await;
    let started = Instant::now();
    // Bigger than the pipe, so the bridge is left waiting to write it.
    let resp = session.post(&echo_call(7, &payload(0))).await;
    assert_eq!(resp.status(), 200, "the call opens its stream");
    let answers = tokio::time::timeout(Duration::from_secs(30), responses(resp))
        .await
        .expect("the waiting request is answered long before request_timeout");
    let answer = answers.iter().find(|m| m["id"] == 7).unwrap_or_else(|| panic!("an answer to call 7: {answers:?}"));
    let message = answer["error"]["message"].as_str().unwrap_or_else(|| panic!("an error answer: {answer}"));
    assert!(message.contains("upstream_stalled"), "the error names the reason: {message}");
    eprintln!("stalled child: the request was answered in {} ms: {message}", started.elapsed().as_millis());
    let line = bridge
        .wait_for_log_line("session ended (upstream_stalled)", Duration::from_secs(10), |l| {
            l.contains("session ended") && l.contains("reason=upstream_stalled")
        })
        .await;
    assert!(line.contains(&session.id), "the line names the session: {line}");
    let pid: u32 = bridge
        .log()
        .lines()
        .find(|l| l.contains("upstream started"))
        .and_then(|l| l.split("pid=").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the child's pid in the log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "the stalled child {pid} was killed and reaped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An answer over `limits.max_message` is skipped as it streams past: its request gets an error
/// that says why, and the next answer on the same session arrives intact (the pump stays in
/// step with the child's lines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_max_message_becomes_an_error_and_the_pump_stays_in_step() {
    let config = format!("[limits]\nmax_message = 65536\n{}", serial_echo("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let session = McpSession::open(&bridge.url("/mcp/echo")).await;
    let resp = session.post(&echo_call(9, &"z".repeat(100_000))).await;
    assert_eq!(resp.status(), 200, "the call opens its stream");
    let answers = tokio::time::timeout(Duration::from_secs(30), responses(resp)).await.expect("an answer");
    let answer = answers.iter().find(|m| m["id"] == 9).unwrap_or_else(|| panic!("an answer to call 9: {answers:?}"));
    let message = answer["error"]["message"].as_str().unwrap_or_else(|| panic!("an error answer: {answer}"));
    assert!(message.contains("limits.max_message") && message.contains("65536"), "the error says why: {message}");
    assert_eq!(session.echo(10, "still in step").await, "still in step");
    let big_but_allowed = "y".repeat(60_000);
    assert_eq!(session.echo(11, &big_but_allowed).await, big_but_allowed);
    bridge
        .wait_for_log_line("about the dropped answer", Duration::from_secs(5), |l| l.contains("dropped an upstream answer"))
        .await;
}

/// The same bound on a remote Streamable HTTP upstream (server-everything): an answer over
/// `limits.max_message` is refused without being held, its request gets an error that says
/// why, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_answer_over_max_message_becomes_an_error() {
    let remote = Everything::start("streamableHttp").await;
    let config = format!(
        "[limits]\nmax_message = 65536\n[servers.remote]\nurl = \"{}\"\ntype = \"streamable-http\"\n",
        remote.url("/mcp")
    );
    let bridge = Bridge::start(&config, &[]).await;
    let session = McpSession::open(&bridge.url("/mcp/remote")).await;
    let resp = session.post(&echo_call(9, &"z".repeat(100_000))).await;
    assert_eq!(resp.status(), 200, "the call opens its stream");
    let answers = tokio::time::timeout(Duration::from_secs(30), responses(resp)).await.expect("an answer");
    let answer = answers.iter().find(|m| m["id"] == 9).unwrap_or_else(|| panic!("an answer to call 9: {answers:?}"));
    let message = answer["error"]["message"].as_str().unwrap_or_else(|| panic!("an error answer: {answer}"));
    assert!(message.contains("limits.max_message") && message.contains("65536"), "the error says why: {message}");
    assert!(session.echo(10, "still here").await.contains("still here"));
}
