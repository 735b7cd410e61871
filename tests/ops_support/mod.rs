//! Shared by the operations tests: a bridge process the test can signal (SIGHUP, SIGTERM),
//! whose config file it can rewrite, and which it can start again on the same port with the
//! same arguments; a legacy HTTP+SSE client that can carry a bearer token and resume with
//! `Last-Event-ID`; reading Prometheus text and calling the admin API. Every process started
//! here is killed on Drop.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use crate::common::{free_port, root, strip_ansi, SseReader, TempDir};

/// How long a bridge may take to answer `/healthz` on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

// ---- a bridge process ---------------------------------------------------------------------

/// One `mcp-bridge serve --config FILE --listen 127.0.0.1:PORT ARGS...`. Its stdout and
/// stderr go to `log_path`, appended across restarts.
pub(crate) struct Proc {
    child: Option<Child>,
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) config_path: PathBuf,
    pub(crate) log_path: PathBuf,
    args: Vec<String>,
    /// How the previous runs ended.
    pub(crate) exits: Vec<ExitStatus>,
    dir: TempDir,
}

impl Proc {
    /// Writes `config` and starts the bridge on a free port; returns once `/healthz` answers.
    pub(crate) async fn start(name: &str, config: &str, args: &[&str]) -> Proc {
        Proc::start_on(name, config, args, None).await
    }

    /// Like [`Proc::start`], on `port` if given (no retry then: the caller chose it).
    pub(crate) async fn start_on(name: &str, config: &str, args: &[&str], port: Option<u16>) -> Proc {
        for attempt in 0..3 {
            let dir = TempDir::new(&format!("ops-{name}"));
            let config_path = dir.path().join("mcp-bridge.toml");
            std::fs::write(&config_path, config).expect("write config");
            let log_path = dir.path().join("bridge.log");
            let mut p = Proc {
                child: None,
                name: name.to_string(),
                port: port.unwrap_or_else(free_port),
                config_path,
                log_path,
                args: args.iter().map(|s| s.to_string()).collect(),
                exits: Vec::new(),
                dir,
            };
            p.spawn();
            match p.wait_healthy().await {
                Ok(()) => return p,
                // Another test took the port between our probe and the bridge's bind.
                Err(true) if port.is_none() && attempt < 2 && p.log().contains("cannot listen") => continue,
                Err(_) => panic!("bridge {name} did not become healthy on port {}; log:\n{}", p.port, p.log()),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "bridge {} is already running", self.name);
        let log = OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open log file");
        let err = log.try_clone().expect("clone log file");
        let child = Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.args)
            .env("MCP_BRIDGE_LOG", "info")
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn mcp-bridge");
        self.child = Some(child);
    }

    /// Err(true) if the process exited, Err(false) on timeout.
    async fn wait_healthy(&mut self) -> Result<(), bool> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if !self.is_running() {
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

    /// Starts it again after it exited: same port, config file, arguments and log.
    pub(crate) async fn restart(&mut self) {
        assert!(!self.is_running(), "bridge {} is still running", self.name);
        self.spawn();
        if let Err(exited) = self.wait_healthy().await {
            panic!("bridge {} did not come back on port {} (exited: {exited}); log:\n{}", self.name, self.port, self.log());
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running bridge").id()
    }

    pub(crate) fn signal(&self, sig: Signal) {
        let pid = i32::try_from(self.pid()).expect("pid fits i32");
        kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
    }

    /// Replaces the config file (for a reload).
    pub(crate) fn write_config(&self, config: &str) {
        std::fs::write(&self.config_path, config).expect("rewrite config");
    }

    /// Whether the process runs; records its exit status when it has ended.
    pub(crate) fn is_running(&mut self) -> bool {
        let Some(child) = &mut self.child else { return false };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.exits.push(status);
                self.child = None;
                false
            }
            Err(_) => false,
        }
    }

    /// Waits for the process to exit on its own; `None` if it still runs after `timeout`.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running() {
                return self.exits.last().copied();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The log so far (all runs), without colour codes.
    pub(crate) fn log(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()))
    }

    /// The log lines that contain every one of `needles`.
    pub(crate) fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.log().lines().filter(|l| needles.iter().all(|n| l.contains(n))).map(String::from).collect()
    }

    /// Waits until a log line contains every one of `needles`; panics with the log after `timeout`.
    pub(crate) async fn wait_log(&self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines_with(needles).into_iter().next() {
                return l;
            }
            if Instant::now() >= deadline {
                panic!("bridge {}: no log line with {needles:?} within {timeout:?}; log:\n{}", self.name, self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET /readyz: status code and JSON body.
    pub(crate) async fn readyz(&self) -> (u16, Value) {
        get_json(&self.url("/readyz"), None, &[]).await
    }

    /// GET /metrics as text.
    pub(crate) async fn metrics(&self) -> Metrics {
        let r = reqwest::Client::new().get(self.url("/metrics")).timeout(Duration::from_secs(10)).send().await;
        let r = r.unwrap_or_else(|e| panic!("GET /metrics on {}: {e}", self.name));
        assert_eq!(r.status(), 200, "GET /metrics");
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(ct.starts_with("text/plain"), "/metrics is Prometheus text, got content-type {ct:?}");
        Metrics(r.text().await.expect("read /metrics"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().filter(|l| !l.contains("heartbeat")).rev().take(60).collect();
            eprintln!("---- bridge {} log tail ({}) ----", self.name, self.log_path.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

// ---- HTTP helpers ---------------------------------------------------------------------------

/// GET `url` (with a bearer token and extra headers): status and body as JSON (`Value::String`
/// of the text if it is not JSON).
pub(crate) async fn get_json(url: &str, token: Option<&str>, headers: &[(&str, &str)]) -> (u16, Value) {
    request_json(reqwest::Method::GET, url, token, headers).await
}

pub(crate) async fn request_json(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = crate::common::http().request(method.clone(), url).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

// ---- Prometheus text ------------------------------------------------------------------------

/// A `/metrics` answer.
pub(crate) struct Metrics(pub(crate) String);

/// One series line: name, labels, value.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

impl Sample {
    pub(crate) fn label(&self, k: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

impl Metrics {
    /// Every series line (comments skipped).
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.0.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(parse_sample).collect()
    }

    /// The series named `name` whose labels include all of `labels`.
    pub(crate) fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<Sample> {
        self.samples().into_iter().filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v))).collect()
    }

    /// The value of the one series named `name` with `labels`; panics if there is not exactly one.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert_eq!(found.len(), 1, "exactly one series {name}{labels:?} in /metrics, found {found:?}; /metrics:\n{}", self.0);
        found[0].value
    }

    /// Like [`Metrics::value`], 0 when the series does not exist (yet).
    pub(crate) fn value_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).first().map_or(0.0, |s| s.value)
    }
}

/// `name{k="v",...} value` (label values here never hold `"` or `,`).
fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a metrics line: {line:?}"));
    let value: f64 = value.parse().unwrap_or_else(|_| panic!("a numeric value: {line:?}"));
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => {
            let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("labels end with `}}`: {line:?}"));
            let labels = inner
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or_else(|| panic!("a label pair: {line:?}"));
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            (n.to_string(), labels)
        }
        None => (series.to_string(), Vec::new()),
    };
    Sample { name, labels, value }
}

// ---- a legacy HTTP+SSE client ---------------------------------------------------------------

/// A 2024-11-05 client: the `GET /sse/{name}` stream (resumable with `Last-Event-ID` at any
/// base URL), its message endpoint, and what it received.
pub(crate) struct Client {
    http: reqwest::Client,
    token: Option<String>,
    pub(crate) name: String,
    /// `{prefix}/sse/{name}/message?sessionId=...`, as announced.
    pub(crate) endpoint: String,
    pub(crate) sid: String,
    stream: Option<SseReader>,
    pub(crate) last_id: Option<String>,
    /// Heartbeat comments seen over all connections.
    pub(crate) heartbeats: usize,
    /// Every JSON-RPC message received, in order, over all connections.
    pub(crate) received: Vec<Value>,
}

impl Client {
    /// GET {base}/sse/{name}; `Err((status, body))` unless it answers 200 with an endpoint.
    pub(crate) async fn try_connect(base: &str, name: &str, token: Option<&str>) -> Result<Client, (u16, String)> {
        let http = crate::common::http();
        let mut req = http.get(format!("{base}/sse/{name}")).header("accept", "text/event-stream");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| (0, e.to_string()))?;
        if resp.status() != 200 {
            return Err((resp.status().as_u16(), resp.text().await.unwrap_or_default()));
        }
        let mut stream = SseReader::new(resp);
        let ev =
            stream.next_event(Duration::from_secs(30)).await.ok_or((200, "the stream ended before the endpoint".to_string()))?;
        assert_eq!(ev.event.as_deref(), Some("endpoint"), "the first event is the endpoint: {ev:?}");
        let endpoint = ev.data.clone().unwrap_or_default();
        let sid = endpoint.split("sessionId=").nth(1).expect("sessionId in the endpoint").to_string();
        Ok(Client {
            http,
            token: token.map(String::from),
            name: name.to_string(),
            endpoint,
            sid,
            stream: Some(stream),
            last_id: ev.id,
            heartbeats: 0,
            received: Vec::new(),
        })
    }

    pub(crate) async fn connect(base: &str, name: &str, token: Option<&str>) -> Client {
        Client::try_connect(base, name, token).await.unwrap_or_else(|(s, b)| panic!("GET {base}/sse/{name}: {s} {b}"))
    }

    /// Connects and runs the handshake (initialize with id 1, `notifications/initialized`).
    pub(crate) async fn open(base: &str, name: &str, token: Option<&str>) -> Client {
        let mut c = Client::connect(base, name, token).await;
        c.handshake(base).await;
        c
    }

    pub(crate) async fn handshake(&mut self, base: &str) {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "ops-test", "version": "0"}}});
        let (status, body) = self.post(base, &init).await.expect("POST initialize");
        assert_eq!(status, 202, "initialize is accepted: {body}");
        let answer = self.answer(1, Duration::from_secs(60)).await;
        assert!(answer["result"]["protocolVersion"].is_string(), "initialize answered: {answer}");
        let (status, body) =
            self.post(base, &json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await.expect("POST");
        assert_eq!(status, 202, "notifications/initialized is accepted: {body}");
    }

    /// POSTs one message to the endpoint at `base`.
    pub(crate) async fn post(&mut self, base: &str, msg: &Value) -> reqwest::Result<(u16, String)> {
        let mut req = self
            .http
            .post(format!("{base}{}", self.endpoint))
            .header("content-type", "application/json")
            .body(msg.to_string())
            .timeout(Duration::from_secs(60));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        Ok((r.status().as_u16(), r.text().await.unwrap_or_default()))
    }

    /// Drops the stream, like a client whose connection broke.
    pub(crate) fn disconnect(&mut self) {
        self.stream = None;
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// GET {base}/sse/{name} with `Last-Event-ID`; on 200 the new stream replaces the old.
    pub(crate) async fn resume(&mut self, base: &str) -> Result<(), (u16, String)> {
        let last = self.last_id.clone().expect("an event id to resume from");
        let mut req = self
            .http
            .get(format!("{base}/sse/{}", self.name))
            .header("accept", "text/event-stream")
            .header("last-event-id", last);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| (0, e.to_string()))?;
        if resp.status() != 200 {
            return Err((resp.status().as_u16(), resp.text().await.unwrap_or_default()));
        }
        self.stream = Some(SseReader::new(resp));
        Ok(())
    }

    /// The next message on the stream, counting heartbeats on the way: `Ok(None)` if the
    /// stream ended, `Err(())` if nothing came within `timeout`.
    pub(crate) async fn next(&mut self, timeout: Duration) -> Result<Option<Value>, ()> {
        let stream = self.stream.as_mut().expect("a connected stream");
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stream.try_next(left).await? {
                None => {
                    self.stream = None;
                    return Ok(None);
                }
                Some(b) if b.data.is_some() => {
                    if b.id.is_some() {
                        self.last_id = b.id.clone();
                    }
                    let v = b.json().unwrap_or_else(|| panic!("event data is JSON: {b:?}"));
                    self.received.push(v.clone());
                    return Ok(Some(v));
                }
                Some(b) => {
                    if b.is_heartbeat_comment() {
                        self.heartbeats += 1;
                    }
                }
            }
        }
    }

    /// Reads until `n` more heartbeats arrived (messages are kept); panics after `timeout`.
    pub(crate) async fn heartbeats_more(&mut self, n: usize, timeout: Duration) {
        let want = self.heartbeats + n;
        let deadline = Instant::now() + timeout;
        while self.heartbeats < want {
            let left = deadline.saturating_duration_since(Instant::now());
            let stream = self.stream.as_mut().expect("a connected stream");
            match stream.try_next(left).await {
                Ok(Some(b)) if b.data.is_some() => {
                    if b.id.is_some() {
                        self.last_id = b.id.clone();
                    }
                    self.received.push(b.json().unwrap_or_default());
                }
                Ok(Some(b)) => {
                    if b.is_heartbeat_comment() {
                        self.heartbeats += 1;
                    }
                }
                Ok(None) => panic!("session {}: the stream ended while waiting for heartbeats", self.sid),
                Err(()) => panic!("session {}: fewer than {n} heartbeats within {timeout:?}", self.sid),
            }
        }
    }

    /// Reads until the response to `id`; panics after `timeout` or at the end of the stream.
    pub(crate) async fn answer(&mut self, id: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Ok(Some(m)) if m["id"] == id && m.get("method").is_none() => return m,
                Ok(Some(_)) => {}
                Ok(None) => panic!("session {}: the stream ended before the answer to {id}", self.sid),
                Err(()) => panic!("session {}: no answer to {id} within {timeout:?}; received {:?}", self.sid, self.received),
            }
        }
    }

    /// Calls `tool` with `arguments` and waits for its answer.
    pub(crate) async fn call(&mut self, base: &str, id: u64, tool: &str, arguments: Value) -> Value {
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
        let (status, body) = self.post(base, &msg).await.expect("POST tools/call");
        assert_eq!(status, 202, "session {}: tools/call {id} is accepted: {body}", self.sid);
        self.answer(id, Duration::from_secs(60)).await
    }

    /// Calls `echo` and returns its text.
    pub(crate) async fn echo(&mut self, base: &str, id: u64, message: &str) -> String {
        let answer = self.call(base, id, "echo", json!({ "message": message })).await;
        answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("an echo result: {answer}")).to_string()
    }

    /// Reads to the end of the stream (skipping heartbeats); panics if it does not end in `timeout`.
    pub(crate) async fn until_end(&mut self, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Ok(Some(m)) => out.push(m),
                Ok(None) => return out,
                Err(()) => panic!("session {}: the stream did not end within {timeout:?}; got {out:?}", self.sid),
            }
        }
    }
}

/// A TOML string literal.
pub(crate) fn toml_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}
