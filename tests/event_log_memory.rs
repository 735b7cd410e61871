//! Event-log memory bounded in bytes, on the real bridge: an upstream floods 1 MB messages at
//! a client that reads them all (the bridge lets delivered events go, so hundreds of MB pass
//! through in flat memory) and at a client that never reads (the session ends with
//! `event_log_overflow`, naming the bound, instead of memory growing); a second session
//! hitting the instance-wide bound ends the same way while the first one lives on.

mod common;
#[path = "fixtures/procfs.rs"]
mod procfs;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{initialize_request, python_fixture, Bridge};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// One flooded notification's payload.
const MB: u64 = 1_000_000;

/// Samples the bridge's RSS every 50 ms until stopped; the peak in KiB.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: i32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(procfs::rss_kib(pid)));
        let (s, p) = (stop.clone(), peak.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(procfs::rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        RssSampler { stop, peak, task }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak.load(Ordering::Relaxed)
    }
}

fn flood(id: u64, count: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "flood", "arguments": {"count": count, "size": MB}}})
}

/// A legacy SSE client that reads its endpoint event and then never reads again, with a tiny
/// receive buffer: the bridge's writes block at once. Returns the socket and the session id.
async fn non_reader(bridge: &Bridge) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = bridge.port;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut conn = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
    let req = format!("GET /sse/flood HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n");
    conn.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(i) = text.find("sessionId=") {
            if text[i..].contains("\n\n") {
                return (conn, text[i + 10..].chars().take(32).collect());
            }
        }
        let n =
            tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await.expect("endpoint in time").expect("read");
        assert!(n > 0, "the stream closed early");
        got.extend_from_slice(&chunk[..n]);
    }
}

/// POSTs initialize, `notifications/initialized` and a flood of `count` 1 MB notifications to
/// legacy session `sid`.
async fn start_flood(bridge: &Bridge, sid: &str, count: u64) {
    let endpoint = bridge.url(&format!("/sse/flood/message?sessionId={sid}"));
    let http = common::http();
    for msg in [initialize_request(1), json!({"jsonrpc": "2.0", "method": "notifications/initialized"}), flood(2, count)] {
        let r = http.post(&endpoint).header("content-type", "application/json").body(msg.to_string()).send().await.expect("POST");
        assert_eq!(r.status(), 202, "{msg}");
    }
}

/// The "session ended" line of `sid`.
async fn session_ended(bridge: &Bridge, sid: &str) -> String {
    bridge
        .wait_for_log_line("the session's end", Duration::from_secs(120), |l| l.contains("session ended") && l.contains(sid))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_gets_a_200_mb_flood_in_flat_memory() {
    common::require_python();
    const COUNT: u64 = 200;
    let config = format!("[sessions]\nevent_log_bytes = \"8MiB\"\n{}", python_fixture("flood", "stall_and_flood.py"));
    let bridge = Bridge::start(&config, &[]).await;
    let pid = procfs::bridge_pid(bridge.port);
    let resp = common::http().get(bridge.url("/sse/flood")).header("accept", "text/event-stream").send().await.expect("GET /sse");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut head = Vec::new();
    let sid = loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next()).await.expect("the endpoint event");
        head.extend_from_slice(&chunk.expect("the stream is open").expect("read"));
        let text = String::from_utf8_lossy(&head).into_owned();
        if let Some(i) = text.find("sessionId=").filter(|i| text[*i..].contains("\n\n")) {
            break text[i + 10..].chars().take(32).collect::<String>();
        }
    };
    start_flood(&bridge, &sid, 1).await;
    let rss_before = procfs::rss_kib(pid);
    let sampler = RssSampler::start(pid);

    // One 1 MB notification per call, the next call once the answer is read: a reader that
    // keeps up. Counted by scanning each new chunk (a block parser would rescan 1 MB events).
    let endpoint = bridge.url(&format!("/sse/flood/message?sessionId={sid}"));
    let http = common::http();
    let needles: [&[u8]; 2] = [b"\"method\":\"notifications/message\"", b"flooded 1\""];
    let keep = needles.iter().map(|n| n.len()).max().unwrap_or(1) - 1;
    let (mut counts, mut bytes, mut tail) = ([0u64; 2], 0u64, Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    for i in 0..COUNT {
        let r = http.post(&endpoint).header("content-type", "application/json").body(flood(10 + i, 1).to_string()).send();
        assert_eq!(r.await.expect("POST").status(), 202);
        while counts[1] < i + 2 {
            let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
                Ok(Some(Ok(c))) => c,
                Ok(_) => panic!("the stream ended after {} notifications; log:\n{}", counts[0], bridge.log()),
                Err(_) => panic!("only {} of {COUNT} notifications within 300 s", counts[0]),
            };
            bytes += chunk.len() as u64;
            // Only matches that end in the new chunk: the kept tail was scanned already.
            let old = tail.len();
            let mut window = std::mem::take(&mut tail);
            window.extend_from_slice(&chunk);
            for (c, n) in counts.iter_mut().zip(needles) {
                *c += window.windows(n.len()).enumerate().filter(|(p, w)| w == &n && p + n.len() > old).count() as u64;
            }
            tail = window[window.len().saturating_sub(keep)..].to_vec();
        }
    }
    let notes = counts[0] - 1;
    let peak = sampler.finish().await;
    eprintln!(
        "reader: {notes} notifications of 1 MB, {} MiB read; bridge RSS {} MiB before, peak {} MiB",
        bytes >> 20,
        rss_before / 1024,
        peak / 1024
    );
    assert_eq!(notes, COUNT, "every notification reached the reader");
    assert!(bytes >= COUNT * MB, "at least {COUNT} MB flowed: {bytes}");
    assert!(
        peak < rss_before + 150 * 1024,
        "RSS stays flat while {COUNT} MB flow (event_log_bytes = 8 MiB): {rss_before} KiB before, peak {peak} KiB"
    );
    assert!(!bridge.log().contains("event_log_overflow"), "no session overflowed: a reader keeps up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_at_a_client_that_never_reads_ends_its_session_instead_of_growing() {
    common::require_python();
    const COUNT: u64 = 300;
    let config = format!("[sessions]\nevent_log_bytes = \"8MiB\"\n{}", python_fixture("flood", "stall_and_flood.py"));
    let bridge = Bridge::start(&config, &[]).await;
    let pid = procfs::bridge_pid(bridge.port);
    let rss_before = procfs::rss_kib(pid);
    let sampler = RssSampler::start(pid);
    let (conn, sid) = non_reader(&bridge).await;
    start_flood(&bridge, &sid, COUNT).await;
    let ended = session_ended(&bridge, &sid).await;
    // Keep sampling a little after the end: nothing may grow later either.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let peak = sampler.finish().await;
    let rss_after = procfs::rss_kib(pid);
    drop(conn);
    eprintln!(
        "non-reader: {COUNT} x 1 MB offered; {ended}; bridge RSS {} MiB before, peak {} MiB, {} MiB after",
        rss_before / 1024,
        peak / 1024,
        rss_after / 1024
    );
    assert!(ended.contains("reason=event_log_overflow"), "the session ends with event_log_overflow: {ended}");
    assert!(ended.contains("sessions.event_log_bytes"), "the close line names the bound: {ended}");
    assert!(
        peak < rss_before + 150 * 1024,
        "RSS stays bounded (event_log_bytes = 8 MiB): {rss_before} KiB before, peak {peak} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_instance_bound_the_session_that_needs_more_ends_and_the_others_live() {
    common::require_python();
    let config = format!(
        "[sessions]\nevent_log_bytes = \"8MiB\"\nmax_event_log_memory = \"12MiB\"\n{}",
        python_fixture("flood", "stall_and_flood.py")
    );
    let bridge = Bridge::start(&config, &[]).await;
    // A holds 6 MB its client never reads: within its share, and the instance's.
    let (conn_a, a) = non_reader(&bridge).await;
    start_flood(&bridge, &a, 6).await;
    let http = common::http();
    let admin = bridge.url(&format!("/admin/api/sessions/{a}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = serde_json::from_str(&http.get(&admin).send().await.expect("admin").text().await.unwrap_or_default())
            .unwrap_or_default();
        if v["session"]["events"].as_u64().is_some_and(|n| n >= 6 + 2) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "A's flood was not routed: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // B wants 20 MB more: past its own 8 MiB too, but the instance's 12 MiB comes first.
    let (conn_b, b) = non_reader(&bridge).await;
    start_flood(&bridge, &b, 20).await;
    let ended = session_ended(&bridge, &b).await;
    eprintln!("instance bound: {ended}");
    assert!(ended.contains("reason=event_log_overflow"), "B ends with event_log_overflow: {ended}");
    assert!(ended.contains("sessions.max_event_log_memory"), "the close line names the instance bound: {ended}");
    let a_state = http.get(&admin).send().await.expect("admin");
    assert_eq!(a_state.status(), 200, "A lives on");
    assert!(!bridge.log().lines().any(|l| l.contains("session ended") && l.contains(&a)), "A was not ended");
    drop((conn_a, conn_b));
}
