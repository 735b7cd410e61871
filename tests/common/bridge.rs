//! The bridge under test (`mcp-bridge serve` on a free loopback port with a temp config) and
//! server-everything as a remote upstream; both are stopped on Drop.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{clients_dir, free_port, require_node, root, stop, strip_ansi, TempDir, START_TIMEOUT};

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
