//! The aggregate tests' plumbing: config snippets for the members, and the scripted TypeScript
//! SDK client (`tests/clients/agg_client.mjs`) that runs a list of steps and prints their results.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{self, require_python, root, toml_str, Bridge};

/// `[servers.{name}]` running tests/fixtures/paged_server.py with `NAME = name` and `env`.
pub(crate) fn paged(name: &str, env: &[(&str, &str)]) -> String {
    require_python();
    let script = root().join("tests/fixtures/paged_server.py");
    let mut vars = format!("NAME = {}", toml_str(name));
    for (k, v) in env {
        vars.push_str(&format!(", {k} = {}", toml_str(v)));
    }
    format!("[servers.{name}]\ncommand = \"python3\"\nargs = [{}]\nenv = {{ {vars} }}\n", toml_str(&script.display().to_string()))
}

/// `[servers.{name}]` whose process exits at once.
pub(crate) fn dead(name: &str) -> String {
    format!("[servers.{name}]\ncommand = \"false\"\n")
}

/// Runs `steps` with the TypeScript SDK client over `transport` (`sse` or `streamable`) at
/// `path` of `bridge`; returns the client's JSON line after asserting it ran.
pub(crate) async fn steps(bridge: &Bridge, transport: &str, path: &str, steps: Value) -> Value {
    let url = bridge.url(path);
    let label = format!("agg_client {transport} {url}");
    let steps = steps.to_string();
    let args = ["--transport", transport, "--url", &url, "--steps", &steps, "--timeout", "60"];
    let (v, stderr) = common::node_json("agg_client.mjs", &args, Duration::from_secs(90), &label).await;
    assert_eq!(v["ok"], json!(true), "{label}: {v}\nstderr: {stderr}\nbridge log:\n{}", bridge.log());
    v
}

/// The names in a list step's result.
pub(crate) fn names(v: &Value) -> Vec<String> {
    v.as_array().unwrap_or_else(|| panic!("a list: {v}")).iter().map(|n| n.as_str().unwrap_or_default().to_string()).collect()
}
