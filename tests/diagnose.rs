//! `mcp-bridge diagnose` against real set-ups: nginx with a 5 s proxy_read_timeout in front of a
//! bridge with and without heartbeats, a proxy that caps stream time while heartbeats flow, the
//! MCP handshake with pings over both transports, a 2026-07-28 listen stream, and the note's
//! script.

mod common;
mod support_nginx;

use std::time::Duration;

use common::{echo_server, Bridge};
use serde_json::Value;
use support_nginx::{CapProxy, Nginx, NginxOpts};

const SHORT_READ_TIMEOUT: NginxOpts = NginxOpts { read_timeout: "5s", buffering: false, http_gzip: false, drop_gzip_off: false };

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("diagnose --json printed no JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs `program args…` to completion (killed if it overruns by a minute).
async fn run(program: &str, args: &[&str], limit: Duration) -> Run {
    let child = tokio::process::Command::new(program)
        .args(args)
        .env("MCP_BRIDGE_BIN", env!("CARGO_BIN_EXE_mcp-bridge"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit + Duration::from_secs(60), child)
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish"))
        .expect("run diagnose");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn diagnose(url: &str, secs: u64, extra: &[&str]) -> Run {
    let d = secs.to_string();
    let mut args = vec!["diagnose", url, "--duration", &d];
    args.extend_from_slice(extra);
    run(env!("CARGO_BIN_EXE_mcp-bridge"), &args, Duration::from_secs(secs)).await
}

async fn echo_bridge(heartbeat: &str) -> Bridge {
    Bridge::start(&echo_server("echo"), &["--heartbeat-interval", heartbeat]).await
}

/// N in "idle cut near N s".
fn idle_cut_near(verdict: &str) -> u64 {
    let rest = verdict.split("idle cut near ").nth(1).unwrap_or_else(|| panic!("no `idle cut near` in: {verdict}"));
    rest.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no number after `idle cut near`: {verdict}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_cut_near_5s_behind_nginx_without_heartbeats() {
    let bridge = echo_bridge("off").await;
    let nginx = Nginx::start(bridge.port, &SHORT_READ_TIMEOUT);
    let r = diagnose(&nginx.url("/sse/echo"), 12, &["--json"]).await;
    let j = r.json();
    let verdict = j["verdict"].as_str().unwrap_or_default();
    assert_ne!(r.code, 0, "a cut stream is a failure:\n{r}");
    assert_eq!(j["verdict_kind"], "idle_cut", "{r}");
    assert!((4..=7).contains(&idle_cut_near(verdict)), "nginx's 5 s read timeout: {verdict}");
    assert_eq!(j["end"], "error", "nginx closes a chunked body without its last chunk: {r}");
    assert_eq!(j["heartbeats"], 0);
    assert!(verdict.contains("heartbeat was not reaching you"), "{verdict}");
    let lasted = j["lasted_s"].as_f64().unwrap();
    assert!((3.0..12.0).contains(&lasted), "lasted {lasted} s");
    assert!(j["timeline"].as_array().unwrap().iter().any(|row| row["kind"] == "endpoint"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stayed_up_behind_nginx_with_heartbeats() {
    let bridge = echo_bridge("2s").await;
    let nginx = Nginx::start(bridge.port, &SHORT_READ_TIMEOUT);
    let r = diagnose(&nginx.url("/sse/echo"), 10, &["--json"]).await;
    let j = r.json();
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(j["end"], "lasted", "{r}");
    let verdict = j["verdict"].as_str().unwrap_or_default();
    assert!(verdict.starts_with("stayed up for the full 10.0 s; heartbeats every 2."), "{verdict}");
    assert!(j["heartbeats"].as_u64().unwrap() >= 3, "{r}");
    assert_eq!(j["headers"]["content-type"], "text/event-stream", "{r}");
    // nginx acts on X-Accel-Buffering and does not pass it on.
    assert_eq!(j["headers"]["x-accel-buffering"], Value::Null, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_while_heartbeats_flow() {
    let bridge = echo_bridge("1s").await;
    let cap = CapProxy::start(bridge.port, Duration::from_secs(5)).await;
    let r = diagnose(&cap.url("/sse/echo"), 12, &["--json"]).await;
    let j = r.json();
    assert_ne!(r.code, 0, "{r}");
    assert_eq!(j["verdict_kind"], "capped", "{r}");
    let verdict = j["verdict"].as_str().unwrap_or_default();
    assert!(
        verdict.contains("while heartbeats arrived every 1.") && verdict.contains("caps total stream time at about"),
        "{verdict}"
    );
    let lasted = j["lasted_s"].as_f64().unwrap();
    assert!((4.0..9.0).contains(&lasted), "the proxy cuts at 5 s, lasted {lasted} s");
    assert!(j["heartbeats"].as_u64().unwrap() >= 2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_handshake_and_pings_through_the_prefix() {
    let bridge = echo_bridge("2s").await;
    let nginx = Nginx::start(bridge.port, &NginxOpts::default());
    let (sse_url, mcp_url) = (nginx.url("/mcp-bridge/sse/echo"), nginx.url("/mcp-bridge/mcp/echo"));
    let (sse, streamable) = tokio::join!(
        diagnose(&sse_url, 5, &["--mcp", "--ping-interval", "1"]),
        diagnose(&mcp_url, 5, &["--mcp", "--ping-interval", "1", "--json"]),
    );
    // Legacy: the text report, answers on the stream.
    assert_eq!(sse.code, 0, "{sse}");
    assert!(sse.stdout.contains("endpoint /mcp-bridge/sse/echo/message?sessionId="), "{sse}");
    assert!(sse.stdout.contains("message: response to initialize"), "{sse}");
    let pings = sse.stdout.lines().find(|l| l.starts_with("pings: ")).unwrap_or_else(|| panic!("no pings line:\n{sse}"));
    let nums: Vec<u64> = pings.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    assert!(nums.len() >= 2 && nums[0] >= 3 && nums[0] == nums[1], "every ping answered: {pings}");
    assert!(sse.stdout.contains("verdict: stayed up for the full 5.0 s"), "{sse}");
    assert!(!sse.stdout.contains("note:"), "no failed POST: {sse}");
    // Streamable: answers on each POST, heartbeats on the GET stream.
    let j = streamable.json();
    assert_eq!(streamable.code, 0, "{streamable}");
    assert_eq!(j["mode"], "streamable");
    assert!(j["pings"]["sent"].as_u64().unwrap() >= 3 && j["pings"]["sent"] == j["pings"]["answered"], "{streamable}");
    assert!(j["heartbeats"].as_u64().unwrap() >= 1, "{streamable}");
    assert!(j["notes"].as_array().unwrap().is_empty(), "{streamable}");
}

/// A 2026-07-28 `subscriptions/listen` stream held through nginx's 5 s read timeout: the
/// acknowledgement first, then heartbeats keep it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_stream_of_the_stateless_revision_stays_up_behind_nginx() {
    let bridge = echo_bridge("2s").await;
    let nginx = Nginx::start(bridge.port, &SHORT_READ_TIMEOUT);
    let r = diagnose(&nginx.url("/mcp/echo"), 8, &["--listen", "--json"]).await;
    let j = r.json();
    assert_eq!(r.code, 0, "{r}");
    assert_eq!((j["mode"].as_str(), j["end"].as_str()), (Some("listen"), Some("lasted")), "{r}");
    assert!(j["heartbeats"].as_u64().unwrap() >= 2, "{r}");
    let first = &j["timeline"][0];
    assert_eq!(first["kind"], "message", "{r}");
    assert!(first.to_string().contains("notifications/subscriptions/acknowledged"), "the acknowledgement comes first: {r}");
    assert!(bridge.log().contains("subscriptions/listen opened"), "{}", bridge.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notes_script_runs_diagnose() {
    let bridge = echo_bridge("1s").await;
    let script = common::root().join("scripts/diagnose-sse-disconnect.sh");
    let r = run(script.to_str().unwrap(), &[&bridge.url("/sse/echo"), "3"], Duration::from_secs(3)).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("verdict: stayed up for the full 3.0 s; heartbeats every 1."), "{r}");
    assert!(r.stdout.contains("heartbeat ×"), "runs of heartbeats collapse: {r}");
    // Not a TTY: the progress goes to stderr as plain lines, not carriage returns.
    assert!(!r.stderr.contains('\r'), "{r}");
}
