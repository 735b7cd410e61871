//! Shared by the operations tests: a bridge process the test can signal (SIGHUP, SIGTERM),
//! whose config file it can rewrite, and which it can start again on the same port with the
//! same arguments; reading Prometheus text and calling the admin API. Every process started
//! here is killed on Drop.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{free_port, root, strip_ansi, TempDir};

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

/// A TOML string literal.
pub(crate) fn toml_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}
