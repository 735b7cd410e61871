//! Shared harness for the integration tests, the one place for their plumbing: the bridge
//! launcher (`bridge.rs`), the raw legacy HTTP+SSE client (`legacy.rs`) and Streamable HTTP
//! session (`session.rs`), the official SDK clients (`sdk.rs`), server-everything as a remote
//! upstream (`everything.rs`), stopping child processes (`process.rs`), raw HTTP and chunked
//! bodies (`raw.rs`), SSE (`sse.rs`) and `/metrics` (`metrics.rs`); here, prerequisites, temp
//! dirs, ports and config snippets. Every process started here is killed on Drop.
// Each test binary uses a part of the harness, so items and re-exports go unused in some.
#![allow(dead_code, unused_imports)]

mod bridge;
mod everything;
mod legacy;
mod metrics;
mod modern_server;
mod node_server;
mod pki;
mod process;
mod raw;
pub(crate) mod scenario;
mod sdk;
mod session;
mod sse;

pub(crate) use bridge::{Bridge, Launch};
pub(crate) use everything::Everything;
pub(crate) use legacy::{echo_text, initialize_at, Legacy, LEGACY_PROTOCOL};
pub(crate) use metrics::{Metrics, Sample};
pub(crate) use modern_server::ModernServer;
pub(crate) use node_server::NodeServer;
pub(crate) use pki::Pki;
pub(crate) use process::{alive, children_of, signal, stop};
pub(crate) use raw::{dechunk, get_json, http, raw, raw_request, request_json, RawResponse};
pub(crate) use sdk::{modern_client, node_json, run_client, ClientRun, Sdk};
pub(crate) use session::{
    echo_call, initialize_request, post_initialize, responses, rpc_error_code, McpSession, ACCEPT_BOTH, PROTOCOL,
};
pub(crate) use sse::{SseBlock, SseReader};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

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
