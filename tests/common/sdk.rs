//! The scripted official SDK clients (tests/clients): the v1 TypeScript and Python clients, and
//! the v2 TypeScript client pinned to 2026-07-28. Each run prints one JSON line, parsed here.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use super::{clients_dir, python, require_node, require_python, CLIENT_TIMEOUT};

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
    let label = format!("modern_client {url} {}", args.join(" "));
    let mut all = vec![url, "--timeout", "20"];
    all.extend_from_slice(args);
    let (v, stderr) = node_json("modern_client.mjs", &all, Duration::from_secs(300), &label).await;
    assert_eq!(v["ok"], json!(true), "{label}: the client failed: {v}\nstderr:\n{stderr}");
    (v, stderr)
}

/// Runs the Node client `script` of tests/clients with `args` (bounded by `timeout`); returns
/// the last JSON object it printed, and its stderr.
pub(crate) async fn node_json(script: &str, args: &[&str], timeout: Duration, label: &str) -> (Value, String) {
    require_node();
    let child = tokio::process::Command::new("node")
        .arg(clients_dir().join(script))
        .args(args)
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: cannot start: {e}"));
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("{label}: {e}"),
        Err(_) => panic!("{label}: did not finish within {timeout:?}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok().filter(Value::is_object))
        .unwrap_or_else(|| panic!("{label}: no JSON line ({}); stdout: {stdout}\nstderr: {stderr}", out.status));
    (v, stderr)
}
