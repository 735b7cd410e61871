//! The status page (`/admin`) in headless Chromium against a running bridge with live
//! sessions (legacy SSE and Streamable HTTP, two principals, a crash-looping server): the
//! rendered DOM must list every session, and a screenshot is taken. The screenshot goes to
//! target/status-page.png; with `UPDATE_STATUS_SCREENSHOT=1` it also replaces
//! docs/status-page.png (the README's picture), so ordinary runs leave the tree clean.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{echo_server, get_json, root, Bridge, Legacy, TempDir, ACCEPT_BOTH, LEGACY_PROTOCOL, PROTOCOL};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const MINUTE: Duration = Duration::from_secs(60);

/// Runs headless Chromium with `args` then `url` in its own process group; returns stdout.
/// The whole group is killed when it is done or after two minutes.
fn chromium(args: &[String], url: &str) -> String {
    assert!(Path::new(CHROMIUM).exists(), "chromium missing at {CHROMIUM}: run scripts/test-deps (apt-get install chromium)");
    let profile = TempDir::new("chromium-profile");
    let out_path = profile.path().join("stdout.html");
    let out = std::fs::File::create(&out_path).expect("create chromium stdout file");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            // The page polls every 2 s; 5 s of virtual time lets it fetch and render.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn chromium");
    let group = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Chromium leaves helper processes behind in its group.
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
    let status = status.unwrap_or_else(|| panic!("chromium did not finish within 2 minutes ({args:?} {url})"));
    assert!(status.success(), "chromium {args:?} {url}: {status}");
    std::fs::read_to_string(&out_path).unwrap_or_default()
}

/// A Streamable HTTP session with a bearer token: initialize, initialized, one echo.
async fn streamable_session(b: &Bridge, name: &str, token: &str) -> String {
    let http = common::http();
    let post = |body: serde_json::Value, sid: Option<&str>| {
        let mut req = http
            .post(b.url(&format!("/mcp/{name}")))
            .bearer_auth(token)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .header("mcp-protocol-version", PROTOCOL)
            .body(body.to_string());
        if let Some(s) = sid {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let r = post(common::initialize_request(1), None).await.expect("POST initialize");
    assert_eq!(r.status(), 200);
    let sid = r.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).expect("Mcp-Session-Id").to_string();
    common::responses(r).await;
    let r = post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}), Some(&sid)).await.expect("POST");
    assert_eq!(r.status(), 202);
    let r = post(common::echo_call(2, "streamable"), Some(&sid)).await.expect("POST echo");
    let answers = common::responses(r).await;
    assert!(answers.iter().any(|m| m["id"] == 2 && m["result"].is_object()), "{answers:?}");
    sid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_live_sessions() {
    let config = format!(
        "{}{}[servers.flaky]\ncommand = \"sh\"\nargs = [\"-c\", \"exit 7\"]\n\n[auth]\n\
         [[auth.clients]]\nname = \"alice\"\ntoken = \"alice-token\"\n[[auth.clients]]\nname = \"bob\"\ntoken = \"bob-token\"\n",
        echo_server("echo"),
        echo_server("files")
    );
    let b = Bridge::named("status-page", &config, &["--instance-id", "bridge-1"]).await;
    let base = b.base();

    let mut alice = Legacy::open_as(&base, "echo", Some("alice-token"), LEGACY_PROTOCOL).await;
    for i in 0..3u64 {
        alice.echo_via(&base, 10 + i, &format!("hello {i}")).await;
    }
    alice.call_via(&base, 20, "no-such-tool", json!({})).await;
    let mut bob = Legacy::open_as(&base, "files", Some("bob-token"), LEGACY_PROTOCOL).await;
    bob.echo_via(&base, 2, "hi").await;
    let streamable = streamable_session(&b, "echo", "alice-token").await;
    // A server that keeps crashing, so the page has a health problem to show.
    for _ in 0..5 {
        let mut c = Legacy::connect_as(&base, "flaky", Some("bob-token")).await;
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
        c.post_via(&base, &init).await.expect("POST initialize");
        c.until_end(MINUTE).await;
    }
    let (_, list) = get_json(&b.url("/admin/api/sessions"), None, &[]).await;
    assert_eq!(list["count"], 3, "three live sessions: {list}");

    let url = b.url("/admin");
    let dom = tokio::task::spawn_blocking(move || chromium(&["--dump-dom".to_string()], &url)).await.expect("chromium task");
    // What the script rendered (its own source, which follows, holds the templates).
    let rendered = dom.split("<script").next().unwrap_or_default();
    let rows = rendered.matches("<tr data-id=").count();
    assert_eq!(rows, 3, "one row per live session; DOM:\n{dom}");
    for sid in [&alice.sid, &bob.sid, &streamable] {
        assert!(rendered.contains(&format!("data-id=\"{sid}\"")), "session {sid} is on the page; DOM:\n{dom}");
    }
    for text in ["bridge-1", "alice", "bob", "streamable_http", "files", "flaky", "(3)"] {
        assert!(rendered.contains(text), "the page shows {text:?}; DOM:\n{dom}");
    }
    assert!(!dom.contains("HTTP 401"), "the page's API calls were admitted; DOM:\n{dom}");

    let shot = root().join("target/status-page.png");
    let _ = std::fs::remove_file(&shot);
    let args = vec![format!("--screenshot={}", shot.display()), "--window-size=1400,900".to_string(), "--hide-scrollbars".into()];
    let url = b.url("/admin");
    tokio::task::spawn_blocking(move || chromium(&args, &url)).await.expect("chromium task");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("chromium wrote no screenshot at {}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");
    assert!(png.len() > 10_000 && png.len() < 300_000, "a small but non-empty screenshot: {} bytes", png.len());
    if std::env::var_os("UPDATE_STATUS_SCREENSHOT").is_some() {
        let docs: PathBuf = root().join("docs");
        std::fs::create_dir_all(&docs).expect("create docs/");
        std::fs::copy(&shot, docs.join("status-page.png")).expect("copy the screenshot to docs/");
    }
    // The sessions were live all along.
    assert_eq!(alice.echo_via(&base, 30, "still live").await, "still live");
    drop(bob);
}
