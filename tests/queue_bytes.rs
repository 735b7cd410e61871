//! The client→upstream queue bounded in bytes, on the real bridge: a child that stopped
//! reading its stdin, and a client POSTing 4 MiB notifications to it. The queue counts 256
//! messages, so on a bridge bounded only in messages every one of them is accepted and held
//! (up to 1 GiB for one session); with `limits.upstream_queue_bytes` (16 MiB by default) a
//! few are accepted, then POSTs wait their bounded time and get 503, and RSS stays flat. A
//! smaller configured bound holds as few 256 KiB notifications.

mod common;
#[path = "fixtures/procfs.rs"]
mod procfs;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Notifications POSTed at most: 64 × 4 MiB = 256 MiB, all accepted on a bridge bounded
/// only in messages.
const POSTS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_reads_nothing_holds_a_bounded_number_of_bytes() {
    // 16 MiB of queue, one message being written, 64 KiB of pipe: a handful of messages.
    flood_a_child_that_reads_nothing("", 4 * 1024 * 1024, 8, 128 * 1024).await;
}

/// The configured key is the bound: 1 MiB holds four 256 KiB notifications, not 256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_queue_bytes_sets_the_bound() {
    flood_a_child_that_reads_nothing("upstream_queue_bytes = 1048576\n", 256 * 1024, 8, 64 * 1024).await;
}

/// POSTs notifications of `size` bytes to a child that reads nothing until three are refused;
/// at most `most` may be accepted, and RSS may grow by less than `growth` KiB.
async fn flood_a_child_that_reads_nothing(limits: &str, size: usize, most: usize, growth: u64) {
    let config =
        format!("[limits]\nupstream_stall = \"off\"\n{limits}{}args = [\"--stop-reading-after\", \"2\"]\n", echo_server("hung"));
    let bridge = Bridge::start(&config, &[]).await;
    let pid = procfs::bridge_pid(bridge.port);
    let session = McpSession::open(&bridge.url("/mcp/hung")).await;
    let note = json!({"jsonrpc": "2.0", "method": "notifications/padding", "params": {"pad": "p".repeat(size)}});
    let rss_before = procfs::rss_kib(pid);
    let (mut accepted, mut refused, mut peak) = (0usize, 0usize, rss_before);
    for n in 0..POSTS {
        let resp = tokio::time::timeout(Duration::from_secs(30), session.post(&note))
            .await
            .unwrap_or_else(|_| panic!("POST {n} hung on a full upstream queue"));
        match resp.status().as_u16() {
            202 => accepted += 1,
            503 => {
                let body = resp.text().await.unwrap_or_default();
                assert!(rpc_error_code(&body).is_some(), "503 carries a JSON-RPC error: {body}");
                refused += 1;
            }
            s => panic!("POST {n}: unexpected status {s}: {}", resp.text().await.unwrap_or_default()),
        }
        peak = peak.max(procfs::rss_kib(pid));
        // Three refusals in a row show the queue stays full; each costs a 3 s wait.
        if refused == 3 {
            break;
        }
    }
    eprintln!(
        "{accepted} notifications of {} KiB accepted, {refused} refused (503); bridge RSS {} MiB before, peak {} MiB",
        size / 1024,
        rss_before / 1024,
        peak / 1024
    );
    let kib = size / 1024;
    assert!(refused > 0, "all {POSTS} notifications of {kib} KiB were queued for a child that reads nothing");
    assert!(accepted <= most, "{accepted} notifications of {kib} KiB were queued (at most {most} fit the bound)");
    assert!(peak < rss_before + growth, "RSS stays bounded: {rss_before} KiB before, peak {peak} KiB");
}
