//! The one launcher of the bridge under test: `mcp-bridge serve --config FILE --listen
//! 127.0.0.1:PORT ARGS...` with a temp config, alone or as an instance of a cluster
//! (`--instance-id`, `--redis`). A test can signal it, rewrite its config, start it again on the
//! same port, `kill -9` it, and read its log, `/readyz` and `/metrics`. Its stdout and stderr go
//! to `log_path`, appended across restarts. Stopped on Drop (with the stdio children a `kill -9`
//! orphaned).

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use super::{alive, children_of, free_port, get_json, root, stop, strip_ansi, Metrics, TempDir, START_TIMEOUT};

/// What differs between the bridges the tests start, besides their config.
#[derive(Clone, Copy, Default)]
pub(crate) struct Launch<'a> {
    /// Names it in messages and its temp dir (a cluster instance's id); `bridge` if empty.
    pub(crate) name: &'a str,
    /// Arguments after `--config FILE --listen ADDR`.
    pub(crate) args: &'a [&'a str],
    /// Environment variables besides `MCP_BRIDGE_LOG=info`.
    pub(crate) env: &'a [(&'a str, &'a str)],
    /// The address it listens on; `127.0.0.1` if empty. It is probed on 127.0.0.1 either way.
    pub(crate) ip: &'a str,
}

/// A running (or stopped, or killed) `mcp-bridge serve`.
pub(crate) struct Bridge {
    child: Option<Child>,
    /// Names it in messages and its temp dir; a cluster instance's id.
    pub(crate) name: String,
    ip: String,
    pub(crate) port: u16,
    pub(crate) config_path: PathBuf,
    pub(crate) log_path: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The pid of the current run, or of the last one once it ended.
    last_pid: u32,
    /// How the previous runs ended.
    pub(crate) exits: Vec<ExitStatus>,
    /// Stdio children orphaned by [`Bridge::kill9`], killed on Drop.
    orphans: Vec<i32>,
    _dir: TempDir,
}

impl Bridge {
    /// Writes `config` (TOML) to a temp dir and starts the bridge with `args` on a free port;
    /// returns once `/healthz` answers.
    pub(crate) async fn start(config: &str, args: &[&str]) -> Bridge {
        Bridge::launch(config, Launch { args, ..Launch::default() }).await
    }

    /// [`Bridge::start`] with extra environment variables for the bridge process.
    pub(crate) async fn start_env(config: &str, args: &[&str], env: &[(&str, &str)]) -> Bridge {
        Bridge::launch(config, Launch { args, env, ..Launch::default() }).await
    }

    /// [`Bridge::start`] under a name (for messages and its temp dir).
    pub(crate) async fn named(name: &str, config: &str, args: &[&str]) -> Bridge {
        Bridge::launch(config, Launch { name, args, ..Launch::default() }).await
    }

    /// An instance `id` of the cluster whose Redis is at `redis`.
    pub(crate) async fn instance(config: &str, redis: &str, id: &str) -> Bridge {
        Bridge::launch(config, Launch { name: id, args: &["--instance-id", id, "--redis", redis], ..Launch::default() }).await
    }

    /// Starts the bridge on a free port (another one if the port was taken meanwhile); returns
    /// once `/healthz` answers.
    pub(crate) async fn launch(config: &str, how: Launch<'_>) -> Bridge {
        let name = if how.name.is_empty() { "bridge" } else { how.name };
        for attempt in 0..3 {
            let dir = TempDir::new(&format!("bridge-{name}"));
            let config_path = dir.path().join("mcp-bridge.toml");
            std::fs::write(&config_path, config).expect("write config");
            let mut b = Bridge {
                child: None,
                name: name.to_string(),
                ip: if how.ip.is_empty() { "127.0.0.1" } else { how.ip }.to_string(),
                port: free_port(),
                config_path,
                log_path: dir.path().join("bridge.log"),
                args: how.args.iter().map(|s| s.to_string()).collect(),
                env: how.env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                last_pid: 0,
                exits: Vec::new(),
                orphans: Vec::new(),
                _dir: dir,
            };
            b.spawn();
            match b.wait_healthy().await {
                Ok(()) => return b,
                // Another test took the port between our probe and the bridge's bind.
                Err(true) if attempt < 2 && b.log().contains("cannot listen") => continue,
                Err(_) => panic!("mcp-bridge {name} did not become healthy on port {}; log:\n{}", b.port, b.log()),
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
            .arg(format!("{}:{}", self.ip, self.port))
            .args(&self.args)
            .env("MCP_BRIDGE_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn mcp-bridge");
        self.last_pid = child.id();
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

    /// The pid of the current run, or of the last one once it ended (or was killed).
    pub(crate) fn pid(&self) -> u32 {
        self.last_pid
    }

    /// Sends `sig` to the running bridge process; panics if it cannot.
    pub(crate) fn signal(&self, sig: Signal) {
        let pid = self.child.as_ref().expect("a running bridge").id();
        let pid = i32::try_from(pid).expect("pid fits i32");
        nix::sys::signal::kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
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

    /// `kill -9`: no shutdown, no lease handed back. Returns the stdio children it had, which
    /// it can no longer kill; they are killed when this value drops.
    pub(crate) fn kill9(&mut self) -> Vec<i32> {
        let mut child = self.child.take().expect("a running bridge");
        let children = children_of(child.id());
        let _ = child.kill();
        if let Ok(status) = child.wait() {
            self.exits.push(status);
        }
        self.orphans.extend(&children);
        children
    }

    /// Which of the children orphaned by `kill9` are still running.
    pub(crate) fn orphans_alive(&self) -> Vec<i32> {
        self.orphans.iter().copied().filter(|p| alive(*p)).collect()
    }

    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The log so far (all runs), without colour codes.
    pub(crate) fn log(&self) -> String {
        strip_ansi(&self.raw_log())
    }

    /// The log so far, exactly as written.
    pub(crate) fn raw_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// How many log lines contain `needle`.
    pub(crate) fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// The log lines that contain every one of `needles`.
    pub(crate) fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.log().lines().filter(|l| needles.iter().all(|n| l.contains(n))).map(String::from).collect()
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
                panic!("bridge {}: no log line {what} within {timeout:?}; log:\n{log}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a log line contains every one of `needles`; panics with the log after `timeout`.
    pub(crate) async fn wait_log(&self, needles: &[&str], timeout: Duration) -> String {
        self.wait_for_log_line(&format!("with {needles:?}"), timeout, |l| needles.iter().all(|n| l.contains(n))).await
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

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, Signal::SIGTERM, Duration::from_secs(5));
        }
        // The stdio children of a killed bridge run in their own process groups.
        for pid in self.orphans.drain(..) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().filter(|l| !l.contains("heartbeat")).rev().take(80).collect();
            eprintln!("---- bridge {} log tail ({}) ----", self.name, self.log_path.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}
