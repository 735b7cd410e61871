//! Issue 18 finding 6: an upstream that answers 3xx must not steer the bridge elsewhere. A
//! hostile remote server answers every request with `307` to another loopback port, where a
//! recorder notes any connection; the bridge follows none, sends the configured `X-Api-Key`,
//! the client's `initialize` and a `Referer` nowhere, and the client's error names the
//! `Location`. (A file of its own: tests/security.rs and tests/hostile.rs are past 600 lines.)

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{http, initialize_request, post_initialize, responses, toml_str, Bridge, Legacy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Counts connections to a loopback port and what they sent; answers nothing useful.
struct Recorder {
    port: u16,
    connections: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<String>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the recorder");
        let port = listener.local_addr().expect("recorder address").port();
        let (connections, seen) = (Arc::new(AtomicUsize::new(0)), Arc::new(std::sync::Mutex::new(String::new())));
        let (c, s) = (connections.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await {
                        s.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                    let _ = sock.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                });
            }
        });
        Recorder { port, connections, seen }
    }
}

/// Answers every request with `307 Temporary Redirect` to `location`.
async fn redirector(location: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the redirector");
    let port = listener.local_addr().expect("redirector address").port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let location = location.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
                let head = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = sock.write_all(head.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_redirect_is_not_followed_and_the_error_names_the_location() {
    let recorder = Recorder::start().await;
    let target = format!("http://127.0.0.1:{}/steal", recorder.port);
    let port = redirector(target.clone()).await;
    let config = format!(
        "[servers.redir]\nurl = {}\nheaders = {{ X-Api-Key = \"upstream-secret\" }}\n\
         [servers.redir-sse]\nurl = {}\ntype = \"sse\"\nheaders = {{ X-Api-Key = \"upstream-secret\" }}\n",
        toml_str(&format!("http://127.0.0.1:{port}/mcp")),
        toml_str(&format!("http://127.0.0.1:{port}/sse")),
    );
    let bridge = Bridge::start(&config, &[]).await;

    // Streamable HTTP upstream: the client's initialize gets an error naming the Location.
    let answers = responses(post_initialize(&http(), &bridge.url("/mcp/redir")).await).await;
    let text = serde_json::to_string(&answers).unwrap();
    assert!(answers.iter().any(|m| m["id"] == 1 && m["error"].is_object()), "initialize gets a JSON-RPC error: {text}");
    assert!(
        text.contains("307") && text.contains(&target) && text.contains("not followed"),
        "the error names the redirect: {text}"
    );

    // Legacy SSE upstream: the stream's GET is redirected; the initialize gets the same kind of error.
    let mut legacy = Legacy::connect(&bridge.base(), "redir-sse").await;
    assert_eq!(legacy.post(&initialize_request(1)).await, 202);
    let answer = legacy.next_message(Duration::from_secs(20)).await.expect("an answer to initialize");
    let text = answer.to_string();
    assert!(answer["error"].is_object() && text.contains(&target) && text.contains("not followed"), "{text}");

    bridge.wait_for_log_line("naming the redirect", Duration::from_secs(10), |l| l.contains(&target)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(recorder.connections.load(Ordering::SeqCst), 0, "nothing reached the redirect target; it saw:\n{seen}");
}
