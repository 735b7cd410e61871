//! Shared harness for the integration tests: runs the real `mcp-bridge serve` on a free loopback
//! port with a temp config, the official TypeScript and Python SDK clients, and server-everything
//! as a remote upstream; plus small raw-HTTP and SSE helpers. Every process started here is
//! killed on Drop.
#![allow(dead_code)]

pub(crate) mod scenario;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

/// How long the bridge or server-everything may take to start listening on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one scripted client run may take before it is killed.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(150);

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn clients_dir() -> PathBuf {
    root().join("tests/clients")
}

fn everything_entry() -> PathBuf {
    clients_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

fn python() -> PathBuf {
    clients_dir().join(".venv/bin/python")
}

// ---- prerequisites ----------------------------------------------------------------------

fn missing(what: &str) -> ! {
    panic!("missing {what}: run scripts/test-deps");
}

/// Node on PATH and the npm pins (TS SDK, server-everything) in tests/clients/node_modules.
/// Checked once per test binary.
pub(crate) fn require_node() {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        let ok = Command::new("node").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !ok.is_ok_and(|s| s.success()) {
            missing("node (Node.js 20 on PATH)");
        }
        let sdk = clients_dir().join("node_modules/@modelcontextprotocol/sdk/package.json");
        if !sdk.is_file() {
            missing(&format!("{} (tests/clients/node_modules)", sdk.display()));
        }
        if !everything_entry().is_file() {
            missing(&format!("{} (server-everything)", everything_entry().display()));
        }
    });
}

/// The Python venv with the pinned `mcp` SDK. Checked once per test binary.
pub(crate) fn require_python() {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        if !python().is_file() {
            missing(&format!("{} (tests/clients/.venv)", python().display()));
        }
        let ok = Command::new(python()).args(["-c", "import mcp, httpx2"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !ok.is_ok_and(|s| s.success()) {
            missing("the Python `mcp` package in tests/clients/.venv");
        }
    });
}

// ---- temp dirs and ports ----------------------------------------------------------------

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh directory for one bridge's config and log; removed on Drop unless the test failed.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("mcp-bridge-test-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A loopback port that was free a moment ago (bind port 0, read it, release it).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

/// Stops a child: SIGTERM, a grace period, then SIGKILL; always reaps it.
fn stop(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Strips ANSI colour sequences (ESC `[` … letter) so log assertions see `key=value`.
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---- config snippets --------------------------------------------------------------------

/// A TOML string literal.
pub(crate) fn toml_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// `[servers.{name}]` running the bundled fast `mcp-echo-server`.
pub(crate) fn echo_server(name: &str) -> String {
    format!("[servers.{name}]\ncommand = {}\n", toml_str(env!("CARGO_BIN_EXE_mcp-echo-server")))
}

/// `[servers.{name}]` running server-everything over stdio, one child per session.
pub(crate) fn everything_stdio(name: &str) -> String {
    format!("[servers.{name}]\ncommand = \"node\"\nargs = [{}, \"stdio\"]\n", toml_str(&everything_entry().display().to_string()))
}

/// `[servers.{name}]` running a fixture script from tests/fixtures with python3.
pub(crate) fn python_fixture(name: &str, script: &str) -> String {
    let path = root().join("tests/fixtures").join(script);
    assert!(path.is_file(), "fixture {} exists", path.display());
    format!("[servers.{name}]\ncommand = \"python3\"\nargs = [{}]\n", toml_str(&path.display().to_string()))
}

// ---- the bridge -------------------------------------------------------------------------

/// A running `mcp-bridge serve`, its stdout and stderr in `log_path`.
pub(crate) struct Bridge {
    child: Child,
    pub(crate) port: u16,
    pub(crate) log_path: PathBuf,
    _dir: TempDir,
}

impl Bridge {
    /// Writes `config` (TOML) to a temp dir and starts the bridge with `args` on a free port;
    /// returns once `/healthz` answers.
    pub(crate) async fn start(config: &str, args: &[&str]) -> Bridge {
        Bridge::start_env(config, args, &[]).await
    }

    /// [`Bridge::start`] with extra environment variables for the bridge process.
    pub(crate) async fn start_env(config: &str, args: &[&str], env: &[(&str, &str)]) -> Bridge {
        for attempt in 0..3 {
            let dir = TempDir::new("bridge");
            let config_path = dir.path().join("mcp-bridge.toml");
            std::fs::write(&config_path, config).expect("write config");
            let log_path = dir.path().join("bridge.log");
            let port = free_port();
            let log = std::fs::File::create(&log_path).expect("create log file");
            let err = log.try_clone().expect("clone log file");
            let child = Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
                .arg("serve")
                .arg("--config")
                .arg(&config_path)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .args(args)
                .env("MCP_BRIDGE_LOG", "info")
                .envs(env.iter().copied())
                .current_dir(root())
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .expect("spawn mcp-bridge");
            let mut bridge = Bridge { child, port, log_path, _dir: dir };
            match bridge.wait_healthy().await {
                Ok(()) => return bridge,
                // Another test took the port between our probe and the bridge's bind.
                Err(true) if attempt < 2 && bridge.log().contains("cannot listen") => continue,
                Err(_) => panic!("mcp-bridge did not become healthy on port {port}; log:\n{}", bridge.log()),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Err(true) if the process exited, Err(false) on timeout.
    async fn wait_healthy(&mut self) -> Result<(), bool> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(true);
            }
            let r = http.get(self.url("/healthz")).timeout(Duration::from_secs(2)).send().await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(false)
    }

    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The log so far, without colour codes.
    pub(crate) fn log(&self) -> String {
        strip_ansi(&self.raw_log())
    }

    /// The log so far, exactly as written.
    pub(crate) fn raw_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Waits until a log line satisfies `pred`; panics with the log after `timeout`.
    pub(crate) async fn wait_for_log_line(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| pred(l)) {
                return line.to_string();
            }
            if Instant::now() >= deadline {
                panic!("no log line {what} within {timeout:?}; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the bridge process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(5));
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- mcp-bridge log tail ({}) ----", self.log_path.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

// ---- server-everything as a remote upstream ----------------------------------------------

/// server-everything listening on 127.0.0.1 in `sse` or `streamableHttp` mode.
pub(crate) struct Everything {
    child: Child,
    pub(crate) port: u16,
    log_path: PathBuf,
    _dir: TempDir,
}

impl Everything {
    pub(crate) async fn start(mode: &str) -> Everything {
        require_node();
        let dir = TempDir::new("everything");
        let log_path = dir.path().join("everything.log");
        let port = free_port();
        let log = std::fs::File::create(&log_path).expect("create log file");
        let err = log.try_clone().expect("clone log file");
        let child = Command::new("node")
            .arg(clients_dir().join("everything_server.mjs"))
            .arg(mode)
            .env("PORT", port.to_string())
            .current_dir(clients_dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn node everything_server.mjs");
        let mut me = Everything { child, port, log_path, _dir: dir };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("server-everything {mode} exited ({status}); log:\n{}", me.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return me;
            }
            if Instant::now() >= deadline {
                panic!("server-everything {mode} did not listen on {port}; log:\n{}", me.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(3));
        if std::thread::panicking() {
            eprintln!("---- server-everything log ----\n{}", self.log());
        }
    }
}

// ---- the scripted SDK clients -----------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sdk {
    Ts,
    Py,
}

/// What one client run printed.
#[derive(Debug)]
pub(crate) struct ClientRun {
    pub(crate) label: String,
    /// The JSON line, or `{"ok":false,"error":...}` made up here if there was none.
    pub(crate) json: Value,
    pub(crate) stderr: String,
}

impl ClientRun {
    /// The result, after asserting `ok: true`.
    pub(crate) fn ok(&self) -> &Value {
        assert_eq!(self.json["ok"], json!(true), "{}: client failed: {}\nstderr:\n{}", self.label, self.json, self.stderr);
        &self.json
    }
}

/// Runs `tests/clients/{ts_client.mjs,py_client.py} --transport T --url U ARGS...` and parses
/// its one JSON line.
///
/// One known client-side race is retried once: the Python SDK's `sse_client` (mcp 2.3.0,
/// `mcp/client/sse.py` `sse_reader`) raises `BrokenResourceError` out of its task group when a
/// server message (e.g. server-everything's late `roots/list`) arrives after the session closed
/// its read stream. It happens directly against server-everything too, without the bridge, and
/// only at teardown: every assertion of the run has passed by then.
pub(crate) async fn run_client(sdk: Sdk, transport: &str, url: &str, args: &[&str]) -> ClientRun {
    let first = run_client_once(sdk, transport, url, args).await;
    let teardown_race = sdk == Sdk::Py
        && transport == "sse"
        && first.json["error"].as_str().is_some_and(|e| e.starts_with("BrokenResourceError"))
        && first.stderr.contains("Error in sse_reader");
    if !teardown_race {
        return first;
    }
    eprintln!("{}: retrying once after the Python sse_client teardown race (BrokenResourceError)", first.label);
    run_client_once(sdk, transport, url, args).await
}

async fn run_client_once(sdk: Sdk, transport: &str, url: &str, args: &[&str]) -> ClientRun {
    let (mut cmd, name) = match sdk {
        Sdk::Ts => {
            require_node();
            let mut c = tokio::process::Command::new("node");
            c.arg(clients_dir().join("ts_client.mjs"));
            (c, "ts")
        }
        Sdk::Py => {
            require_python();
            let mut c = tokio::process::Command::new(python());
            c.arg(clients_dir().join("py_client.py"));
            (c, "py")
        }
    };
    let label = format!("{name} {transport} {url} {}", args.join(" "));
    cmd.args(["--transport", transport, "--url", url])
        .args(["--timeout", &(CLIENT_TIMEOUT.as_secs() - 10).to_string()])
        .args(args)
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("{label}: cannot start: {e}"));
    let out = match tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("{label}: {e}"),
        Err(_) => {
            return ClientRun { label, json: json!({"ok": false, "error": "harness timeout: killed"}), stderr: String::new() }
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok().filter(Value::is_object))
        .unwrap_or_else(|| json!({"ok": false, "error": format!("no JSON line ({}); stdout: {stdout}", out.status)}));
    ClientRun { label, json, stderr }
}

/// Runs tests/clients/modern_client.mjs (the official v2 TypeScript client, pinned to 2026-07-28) against `url`; returns its JSON line (and stderr).
pub(crate) async fn modern_client(url: &str, args: &[&str]) -> (Value, String) {
    require_node();
    let label = format!("modern_client {url} {}", args.join(" "));
    let child = tokio::process::Command::new("node")
        .arg(clients_dir().join("modern_client.mjs"))
        .arg(url)
        .args(["--timeout", "20"])
        .args(args)
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: cannot start: {e}"));
    let out = match tokio::time::timeout(Duration::from_secs(300), child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("{label}: {e}"),
        Err(_) => panic!("{label}: did not finish within 300 s"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok().filter(Value::is_object))
        .unwrap_or_else(|| panic!("{label}: no JSON line ({}); stdout: {stdout}\nstderr: {stderr}", out.status));
    assert_eq!(v["ok"], json!(true), "{label}: the client failed: {v}\nstderr:\n{stderr}");
    (v, stderr)
}

// ---- raw HTTP and SSE -------------------------------------------------------------------

/// A reqwest client without a connection pool, so every request is independent.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("reqwest client")
}

/// A response read by [`raw_request`].
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    /// Lower-cased names.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request exactly as given (no default headers) over a fresh connection
/// and reads the whole response (`Connection: close`; bodies must be finite).
pub(crate) fn raw_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> RawResponse {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("set timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    RawResponse { status, headers, body }
}

/// [`raw_request`] on a blocking thread, for async tests.
pub(crate) async fn raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> RawResponse {
    let (method, path, body) = (method.to_string(), path.to_string(), body.to_string());
    let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        raw_request(port, &method, &path, &h, &body)
    })
    .await
    .expect("raw request task")
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// One block of an SSE stream: an event, or a comment/`retry:`-only block.
#[derive(Debug, Clone, Default)]
pub(crate) struct SseBlock {
    pub(crate) raw: String,
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: Option<String>,
    pub(crate) comments: Vec<String>,
    pub(crate) retry: Option<u64>,
}

impl SseBlock {
    fn parse(raw: &str) -> SseBlock {
        let mut b = SseBlock { raw: raw.to_string(), ..SseBlock::default() };
        for line in raw.lines() {
            if let Some(c) = line.strip_prefix(':') {
                b.comments.push(c.trim().to_string());
                continue;
            }
            let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
            match field {
                "id" => b.id = Some(value.to_string()),
                "event" => b.event = Some(value.to_string()),
                "retry" => b.retry = value.parse().ok(),
                "data" => {
                    let d = b.data.get_or_insert_with(String::new);
                    if !d.is_empty() {
                        d.push('\n');
                    }
                    d.push_str(value);
                }
                _ => {}
            }
        }
        b
    }

    /// The data as JSON, if it is.
    pub(crate) fn json(&self) -> Option<Value> {
        self.data.as_deref().and_then(|d| serde_json::from_str(d).ok())
    }

    pub(crate) fn is_heartbeat_comment(&self) -> bool {
        self.comments.iter().any(|c| c == "heartbeat") && self.event.is_none() && self.data.is_none()
    }
}

/// Reads an SSE response body block by block.
pub(crate) struct SseReader {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
    pub(crate) ended: bool,
}

impl SseReader {
    pub(crate) fn new(resp: reqwest::Response) -> SseReader {
        SseReader { body: Box::pin(resp.bytes_stream()), buf: String::new(), ended: false }
    }

    /// The next block, `None` at the end of the stream; panics if nothing comes in `timeout`.
    pub(crate) async fn next(&mut self, timeout: Duration) -> Option<SseBlock> {
        match tokio::time::timeout(timeout, self.next_inner()).await {
            Ok(b) => b,
            Err(_) => panic!("no SSE block within {timeout:?} (buffered: {:?})", self.buf),
        }
    }

    /// Like `next`, but `Err(())` on timeout instead of a panic.
    pub(crate) async fn try_next(&mut self, timeout: Duration) -> Result<Option<SseBlock>, ()> {
        tokio::time::timeout(timeout, self.next_inner()).await.map_err(|_| ())
    }

    async fn next_inner(&mut self) -> Option<SseBlock> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..i + 2).collect();
                return Some(SseBlock::parse(raw.trim_end_matches('\n')));
            }
            if self.ended {
                return None;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => self.ended = true,
            }
        }
    }

    /// The next block that is an event with data (skipping comments and `retry:`).
    pub(crate) async fn next_event(&mut self, timeout: Duration) -> Option<SseBlock> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let b = self.next(left).await?;
            if b.data.is_some() {
                return Some(b);
            }
        }
    }

    /// Every remaining event until the stream ends; panics if it does not end in `timeout`.
    pub(crate) async fn rest(&mut self, timeout: Duration) -> Vec<SseBlock> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_next(left).await {
                Ok(Some(b)) => out.push(b),
                Ok(None) => return out,
                Err(()) => panic!("the SSE stream did not end within {timeout:?}; got {out:?}"),
            }
        }
    }
}

// ---- a raw Streamable HTTP session --------------------------------------------------------

pub(crate) const ACCEPT_BOTH: &str = "application/json, text/event-stream";
pub(crate) const PROTOCOL: &str = "2025-06-18";

pub(crate) fn initialize_request(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL,
        "capabilities": {},
        "clientInfo": {"name": "mcp-bridge-tests", "version": "0"}
    }})
}

pub(crate) fn echo_call(id: u64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": message}}})
}

/// A Streamable HTTP session opened with raw requests.
pub(crate) struct McpSession {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) id: String,
}

/// POSTs a Streamable HTTP `initialize` (id 1) as a client opening a session would.
pub(crate) async fn post_initialize(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.post(url)
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(initialize_request(1).to_string())
        .send()
        .await
        .expect("POST initialize")
}

impl McpSession {
    /// POSTs initialize and `notifications/initialized`; panics unless both succeed.
    pub(crate) async fn open(url: &str) -> McpSession {
        McpSession::open_with(http(), url).await
    }

    /// [`McpSession::open`] with `http`'s credentials.
    pub(crate) async fn open_with(http: reqwest::Client, url: &str) -> McpSession {
        let resp = post_initialize(&http, url).await;
        assert_eq!(resp.status(), 200, "initialize status");
        let id = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).expect("Mcp-Session-Id header").to_string();
        let answers = responses(resp).await;
        assert!(
            answers.iter().any(|m| m["id"] == 1 && m["result"]["protocolVersion"].is_string()),
            "initialize answered: {answers:?}"
        );
        let s = McpSession { http, url: url.to_string(), id };
        let r = s.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        assert_eq!(r.status(), 202, "notifications/initialized is accepted");
        s
    }

    /// POSTs one message with the session headers.
    pub(crate) async fn post(&self, msg: &Value) -> reqwest::Response {
        self.http
            .post(&self.url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", PROTOCOL)
            .body(msg.to_string())
            .send()
            .await
            .expect("POST")
    }

    /// Calls `echo` and returns the text it answered.
    pub(crate) async fn echo(&self, id: u64, message: &str) -> String {
        let resp = self.post(&echo_call(id, message)).await;
        assert_eq!(resp.status(), 200, "echo status");
        let answers = responses(resp).await;
        let answer = answers.iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("no answer to echo {id}: {answers:?}"));
        answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("echo result: {answer}")).to_string()
    }
}

/// The JSON-RPC messages of a POST answer, JSON or SSE; an SSE answer is read to its end.
pub(crate) async fn responses(resp: reqwest::Response) -> Vec<Value> {
    let sse =
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
    if !sse {
        let body = resp.bytes().await.expect("read body");
        let v: Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("JSON body ({e}): {}", String::from_utf8_lossy(&body)));
        return match v {
            Value::Array(a) => a,
            v => vec![v],
        };
    }
    let mut r = SseReader::new(resp);
    r.rest(Duration::from_secs(60)).await.iter().filter_map(SseBlock::json).collect()
}

/// The JSON-RPC error code in a body, if it is a JSON-RPC error.
pub(crate) fn rpc_error_code(body: &str) -> Option<i64> {
    serde_json::from_str::<Value>(body).ok().and_then(|v| v["error"]["code"].as_i64())
}

// ---- a raw legacy HTTP+SSE session ----------------------------------------------------------

/// A 2024-11-05 session: the `GET /sse/{name}` stream and its message endpoint.
pub(crate) struct LegacySession {
    pub(crate) http: reqwest::Client,
    pub(crate) stream: SseReader,
    /// Absolute URL of the message endpoint.
    pub(crate) endpoint: String,
    pub(crate) id: String,
}

impl LegacySession {
    /// Opens the stream and reads up to the endpoint event.
    pub(crate) async fn connect(base: &str, name: &str) -> LegacySession {
        LegacySession::connect_with(http(), base, name).await
    }

    /// The same with a given client (one that carries credentials, say).
    pub(crate) async fn connect_with(http: reqwest::Client, base: &str, name: &str) -> LegacySession {
        let resp = http.get(format!("{base}/sse/{name}")).header("accept", "text/event-stream").send().await.expect("GET /sse");
        assert_eq!(resp.status(), 200, "GET /sse/{name}");
        let mut stream = SseReader::new(resp);
        let ev = loop {
            let b = stream.next(Duration::from_secs(10)).await.expect("the endpoint event");
            if b.event.as_deref() == Some("endpoint") {
                break b;
            }
        };
        let path = ev.data.unwrap_or_default();
        let id = path.split("sessionId=").nth(1).expect("sessionId in the endpoint").to_string();
        LegacySession { http, stream, endpoint: format!("{base}{path}"), id }
    }

    /// Connects and completes the handshake (initialize, its answer, `notifications/initialized`).
    pub(crate) async fn open(base: &str, name: &str) -> LegacySession {
        let mut s = LegacySession::connect(base, name).await;
        assert_eq!(s.post(&initialize_request(1)).await, 202, "initialize is accepted");
        let answer = s.next_message(Duration::from_secs(30)).await.expect("initialize answer");
        assert!(answer["result"]["protocolVersion"].is_string(), "initialize answered: {answer}");
        assert_eq!(s.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await, 202);
        s
    }

    /// POSTs one message to the endpoint; returns the status.
    pub(crate) async fn post(&self, msg: &Value) -> u16 {
        self.post_raw(&msg.to_string()).await.0
    }

    /// POSTs a body as given; returns status and body.
    pub(crate) async fn post_raw(&self, body: &str) -> (u16, String) {
        let r = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST message");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// The next JSON-RPC message on the stream (skipping heartbeats); `None` if it ended.
    pub(crate) async fn next_message(&mut self, timeout: Duration) -> Option<Value> {
        let b = self.stream.next_event(timeout).await?;
        Some(b.json().unwrap_or_else(|| panic!("event data is JSON: {b:?}")))
    }

    /// Calls `echo` and returns its text.
    pub(crate) async fn echo(&mut self, id: u64, message: &str) -> String {
        assert_eq!(self.post(&echo_call(id, message)).await, 202, "echo is accepted");
        loop {
            let m = self.next_message(Duration::from_secs(30)).await.expect("echo answer");
            if m["id"] == id {
                return m["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("echo result: {m}")).to_string();
            }
        }
    }
}
