//! A Node.js server script from tests/clients on a free loopback port, with its output in a log
//! file: started and waited for until it listens (bounded), stopped on Drop, its log printed
//! when a test fails. server-everything and the 2026-07-28-only server are two of them.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{clients_dir, free_port, require_node, stop, TempDir, START_TIMEOUT};

/// A server script of tests/clients, listening on 127.0.0.1:`port`.
pub(crate) struct NodeServer {
    child: Child,
    pub(crate) port: u16,
    script: &'static str,
    log_path: PathBuf,
    _dir: TempDir,
}

impl NodeServer {
    /// Runs `node tests/clients/SCRIPT ARGS` with `PORT` and `env` set, and waits until it
    /// listens (at most `START_TIMEOUT`); panics with its log if it exits or never does.
    pub(crate) async fn start(script: &'static str, args: &[&str], env: &[(&str, &str)]) -> NodeServer {
        require_node();
        let dir = TempDir::new(script.trim_end_matches(".mjs"));
        let log_path = dir.path().join("server.log");
        let port = free_port();
        let log = std::fs::File::create(&log_path).expect("create log file");
        let err = log.try_clone().expect("clone log file");
        let child = Command::new("node")
            .arg(clients_dir().join(script))
            .args(args)
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .current_dir(clients_dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node {script}: {e}"));
        let mut me = NodeServer { child, port, script, log_path, _dir: dir };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("{script} {args:?} exited ({status}); log:\n{}", me.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return me;
            }
            assert!(Instant::now() < deadline, "{script} {args:?} did not listen on {port}; log:\n{}", me.log());
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

impl Drop for NodeServer {
    fn drop(&mut self) {
        stop(&mut self.child, Signal::SIGTERM, Duration::from_secs(3));
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.script, self.log());
        }
    }
}
