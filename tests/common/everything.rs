//! server-everything (the reference MCP server) listening on loopback as a remote upstream, in
//! `sse` or `streamableHttp` mode; stopped on Drop.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{clients_dir, free_port, require_node, stop, TempDir, START_TIMEOUT};

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
        stop(&mut self.child, Signal::SIGTERM, Duration::from_secs(3));
        if std::thread::panicking() {
            eprintln!("---- server-everything log ----\n{}", self.log());
        }
    }
}
