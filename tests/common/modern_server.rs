//! tests/clients/modern_server.mjs, a remote MCP server that serves only 2026-07-28
//! (`MODERN_ONLY=1`: it refuses 2025 traffic), on a free port; killed on Drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{clients_dir, free_port, require_node, TempDir};

const MINUTE: Duration = Duration::from_secs(60);

/// tests/clients/modern_server.mjs on a free port (`MODERN_ONLY=1`), killed on Drop.
pub(crate) struct ModernServer {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) log_path: PathBuf,
    pub(crate) _dir: TempDir,
}

impl ModernServer {
    pub(crate) async fn start() -> ModernServer {
        require_node();
        let dir = TempDir::new("modern-server");
        let log_path = dir.path().join("modern_server.log");
        let log = std::fs::File::create(&log_path).expect("create log file");
        let err = log.try_clone().expect("clone log file");
        let port = free_port();
        let child = Command::new("node")
            .arg(clients_dir().join("modern_server.mjs"))
            .env("PORT", port.to_string())
            .env("MODERN_ONLY", "1")
            .current_dir(clients_dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn node modern_server.mjs");
        let mut me = ModernServer { child, port, log_path, _dir: dir };
        let deadline = Instant::now() + MINUTE;
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("modern_server.mjs exited ({status}); log:\n{}", me.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return me;
            }
            assert!(Instant::now() < deadline, "modern_server.mjs did not listen on {port}; log:\n{}", me.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }
}

impl Drop for ModernServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- modern_server.mjs log ----\n{}", self.log());
        }
    }
}
