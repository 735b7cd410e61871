//! The 2026-07-28 ("stateless") revision at `/mcp/{name}`: the official v2 TypeScript client
//! through the bridge onto server-everything (stdio and remote Streamable HTTP, both served
//! through backing sessions) and onto a modern upstream (passed through); the revision's
//! status and error table with raw HTTP; MRTR (`InputRequiredResult`, `requestState`) by hand,
//! also across two cluster instances; `_meta` logLevel; `subscriptions/listen` by hand; a
//! legacy client on the same endpoint afterwards; and the adapter: 2025 clients (the v1
//! TypeScript SDK and the Python SDK over Streamable HTTP and SSE, and a session by hand) on a
//! remote upstream that speaks only 2026-07-28.

mod cluster_support;
mod common;
mod support_nginx;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use cluster_support::Cluster;
use common::{
    clients_dir, everything_stdio, free_port, http, modern_client, require_node, run_client, toml_str, Bridge, Everything,
    LegacySession, Sdk, SseReader, TempDir, ACCEPT_BOTH,
};
use serde_json::{json, Value};

const MODERN: &str = "2026-07-28";
const MINUTE: Duration = Duration::from_secs(60);

// ---- modern requests by hand ----------------------------------------------------------------

/// The per-request `_meta` of a 2026-07-28 request.
fn meta(caps: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": caps,
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-bridge-stateless-tests", "version": "0"},
    })
}

/// A request with `params._meta` set to [`meta`] (`params` must be an object).
fn request(id: Value, method: &str, mut params: Value, caps: Value) -> Value {
    params["_meta"] = meta(caps);
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The headers a modern client sends with `method` (and `Mcp-Name` for tools/call etc.).
fn headers(method: &str, name: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![("mcp-protocol-version".to_string(), MODERN.to_string()), ("mcp-method".to_string(), method.to_string())];
    if let Some(n) = name {
        h.push(("mcp-name".to_string(), n.to_string()));
    }
    h
}

/// A whole answer: status, headers, and every JSON-RPC message in it (JSON or SSE).
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    sse: bool,
    body: String,
    messages: Vec<Value>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The one message that answers a request (has an id and a result or an error).
    fn answer(&self) -> &Value {
        let answers: Vec<&Value> = self
            .messages
            .iter()
            .filter(|m| m.get("id").is_some() && (m.get("result").is_some() || m.get("error").is_some()))
            .collect();
        assert_eq!(answers.len(), 1, "exactly one answer in {self:?}");
        answers[0]
    }

    fn notifications(&self, method: &str) -> Vec<&Value> {
        self.messages.iter().filter(|m| m["method"] == method).collect()
    }
}

/// POSTs `body` with `hs` (plus Accept and Content-Type) and reads the whole answer.
async fn post(url: &str, hs: &[(String, String)], body: &str) -> Reply {
    let mut r = http().post(url).header("accept", ACCEPT_BOTH).header("content-type", "application/json").timeout(MINUTE * 2);
    for (k, v) in hs {
        r = r.header(k.as_str(), v.as_str());
    }
    let resp = r.body(body.to_string()).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let sse = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
    let body = resp.text().await.unwrap_or_else(|e| panic!("read the answer of POST {url}: {e}"));
    let messages = if sse {
        body.split("\n\n")
            .filter_map(|block| {
                let data: Vec<&str> =
                    block.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
                (!data.is_empty())
                    .then(|| serde_json::from_str(&data.join("\n")).unwrap_or_else(|e| panic!("SSE data ({e}): {block}")))
            })
            .collect()
    } else {
        match serde_json::from_str::<Value>(&body) {
            Ok(Value::Array(a)) => a,
            Ok(v) => vec![v],
            Err(_) => Vec::new(),
        }
    };
    Reply { status, headers, sse, body, messages }
}

/// POSTs a modern request with the headers that match it.
async fn call(url: &str, msg: &Value) -> Reply {
    let method = msg["method"].as_str().expect("method");
    let name = msg["params"]["name"].as_str().or(msg["params"]["uri"].as_str());
    post(url, &headers(method, name), &msg.to_string()).await
}

/// Asserts an error answer: HTTP status, JSON-RPC code, and the request's id.
fn assert_error(what: &str, r: &Reply, status: u16, code: i64, id: &Value) -> Value {
    assert_eq!(r.status, status, "{what}: HTTP status; body: {}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{what}: a JSON body ({e}): {}", r.body));
    assert_eq!(v["error"]["code"].as_i64(), Some(code), "{what}: JSON-RPC error code: {v}");
    assert_eq!(&v["id"], id, "{what}: the error carries the request's id: {v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: an error message: {v}");
    v
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// The backing session a log line names (`session=...`).
fn session_of(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("session="))
        .unwrap_or_else(|| panic!("a session in {line}"))
        .trim_matches('"')
        .to_string()
}

/// The lines of `log` that contain every needle.
fn lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines().filter(|l| needles.iter().all(|n| l.contains(n))).collect()
}

// ---- a stdio fixture that misbehaves on purpose -----------------------------------------------

/// A small stdio MCP server: `ask-sampling` sends `sampling/createMessage` whatever the client
/// declared (which a conforming server does not do, so the bridge's -32021 path can be seen),
/// and `log-levels` sends `notifications/message` at four levels (and progress, if asked)
/// before it answers.
const FIXTURE: &str = r#"
import json, sys
def send(m):
    sys.stdout.write(json.dumps(m) + "\n")
    sys.stdout.flush()
waiting = {}
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    m = json.loads(line)
    method, mid = m.get("method"), m.get("id")
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {"protocolVersion": m["params"]["protocolVersion"],
              "capabilities": {"tools": {"listChanged": True}, "logging": {}},
              "serverInfo": {"name": "stateless-fixture", "version": "0"}}})
    elif method == "tools/list":
        schema = {"type": "object", "properties": {}}
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [
              {"name": "ask-sampling", "inputSchema": schema}, {"name": "log-levels", "inputSchema": schema}]}})
    elif method == "tools/call" and m["params"]["name"] == "ask-sampling":
        ask = "ask-%s" % mid
        waiting[ask] = mid
        send({"jsonrpc": "2.0", "id": ask, "method": "sampling/createMessage", "params": {
              "messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 5}})
    elif method == "tools/call" and m["params"]["name"] == "log-levels":
        for level in ["debug", "info", "warning", "error"]:
            send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": level, "logger": "fixture", "data": level + " message"}})
        token = m["params"].get("_meta", {}).get("progressToken")
        if token is not None:
            send({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1, "total": 1}})
        send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": "logged"}]}})
    elif method is None and mid in waiting:
        orig = waiting.pop(mid)
        send({"jsonrpc": "2.0", "id": orig, "result": {"content": [{"type": "text", "text": "sampled: " + json.dumps(m.get("result"))}]}})
    elif mid is not None and method is not None:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "Method not found"}})
"#;

/// `[servers.{name}]` running [`FIXTURE`] with python3; the script lives in `dir`.
fn fixture_server(name: &str, dir: &TempDir) -> String {
    let path = dir.path().join("stateless_fixture.py");
    std::fs::write(&path, FIXTURE).expect("write the fixture");
    format!("[servers.{name}]\ncommand = \"python3\"\nargs = [{}]\n", toml_str(&path.display().to_string()))
}

// ---- the official v2 client and the modern test server ----------------------------------------

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// The results every full run of the client must have, whichever upstream serves it.
fn assert_full_run(what: &str, v: &Value) {
    assert_eq!(v["era"], "modern", "{what}: {v}");
    assert_eq!(v["protocolVersion"], MODERN, "{what}: {v}");
    assert!(v["sessionId"].is_null(), "{what}: no Mcp-Session-Id in 2026-07-28: {v}");
    assert!(strings(&v["discover"]["supportedVersions"]).contains(&MODERN), "{what}: discover lists {MODERN}: {v}");
    assert_eq!(v["echo"], "Echo: hello", "{what}: {v}");
    assert_eq!(v["progress"], 4, "{what}: four progress notifications: {v}");
    assert_eq!(v["progressValues"], json!([1, 2, 3, 4]), "{what}: {v}");
    assert_eq!(v["cancelled"], true, "{what}: {v}");
    assert_eq!(v["samplingRequests"], 1, "{what}: {v}");
    assert_eq!(v["sampling"], "sampled: Resource trigger-sampling-request context: hello", "{what}: {v}");
    assert_eq!(v["elicitationRequests"], 1, "{what}: {v}");
    assert!(
        v["elicitation"].as_str().is_some_and(|t| t.contains("Bridge Tester")),
        "{what}: the elicitation answer came back: {v}"
    );
    assert_eq!(v["listen"]["closed"], "local", "{what}: {v}");
}

/// tests/clients/modern_server.mjs on a free port (`MODERN_ONLY=1`), killed on Drop.
struct ModernServer {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _dir: TempDir,
}

impl ModernServer {
    async fn start() -> ModernServer {
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

    fn log(&self) -> String {
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

// ---- 1. the official v2 client onto server-everything over stdio -------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_v2_client_runs_every_step_through_the_bridge_onto_stdio_everything() {
    require_node();
    let bridge = Bridge::start(&everything_stdio("everything"), &[]).await;
    let (v, _) = modern_client(&bridge.url("/mcp/everything"), &[]).await;
    assert_full_run("stdio everything", &v);
    let versions = strings(&v["discover"]["supportedVersions"]);
    assert!(versions.contains(&"2025-11-25"), "discover also lists the session-based 2025-11-25: {v}");
    assert_eq!(v["discover"]["connectProbeVersions"], v["discover"]["supportedVersions"], "{v}");
    for cap in ["tools", "resources", "prompts", "logging"] {
        assert!(strings(&v["discover"]["capabilities"]).contains(&cap), "discover carries everything's {cap}: {v}");
    }
    assert_eq!(v["serverInfo"]["name"], "mcp-servers/everything", "{v}");
    for t in ["echo", "trigger-long-running-operation", "trigger-sampling-request", "trigger-elicitation-request"] {
        assert!(strings(&v["tools"]).contains(&t), "tools/list has {t} (the client declared sampling and elicitation): {v}");
    }
    assert!(!strings(&v["resources"]).is_empty() && !strings(&v["prompts"]).is_empty(), "{v}");
    assert_eq!(
        v["listen"]["honoredFilter"],
        json!({"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true}),
        "everything declares listChanged for all three: {v}"
    );

    // The aborted call ended its backing session as a cancellation.
    let cancelled = bridge
        .wait_for_log_line("of a cancelled stateless request", MINUTE, |l| {
            l.contains("stateless request ended") && l.contains("outcome=\"cancelled\"")
        })
        .await;
    let sid = session_of(&cancelled);
    let ended = bridge
        .wait_for_log_line("ending the cancelled request's backing session", MINUTE, |l| {
            l.contains("session ended") && l.contains(&format!("session={sid}"))
        })
        .await;
    assert!(ended.contains("transport=\"stateless\"") && ended.contains("reason=cancelled"), "{ended}");
    let log = bridge.log();
    assert_eq!(lines_with(&log, &["outcome=\"cancelled\""]).len(), 1, "exactly one request was cancelled:\n{log}");
    assert_eq!(lines_with(&log, &["session ended", "reason=cancelled"]).len(), 1, "one session ended as cancelled:\n{log}");
    // The listen stream's backing session ended when the client closed it.
    assert_eq!(lines_with(&log, &["session ended", "transport=\"stateless\"", "reason=client_closed"]).len(), 1, "{log}");
}

// ---- 2. remote upstreams: legacy (mapped) and modern (passed through) ---------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_v2_client_onto_remote_upstreams_legacy_mapped_and_modern_passed_through() {
    require_node();
    let everything = Everything::start("streamableHttp").await;
    let modern = ModernServer::start().await;
    let config = format!(
        "[servers.remote]\nurl = {}\n[servers.modern]\nurl = {}\n",
        toml_str(&everything.url("/mcp")),
        toml_str(&format!("http://127.0.0.1:{}/mcp", modern.port))
    );
    let bridge = Bridge::start(&config, &[]).await;

    // server-everything speaks 2025-11-25 only: the bridge maps through backing sessions.
    let (v, _) = modern_client(&bridge.url("/mcp/remote"), &[]).await;
    assert_full_run("remote everything", &v);
    assert!(strings(&v["discover"]["supportedVersions"]).contains(&"2025-11-25"), "{v}");
    assert_eq!(v["serverInfo"]["name"], "mcp-servers/everything", "{v}");
    let log = bridge.log();
    assert!(
        !lines_with(&log, &["session ended", "server=remote", "transport=\"stateless\"", "reason=cancelled"]).is_empty(),
        "{log}"
    );
    assert!(!lines_with(&log, &["stateless request ended", "outcome=\"input_required\""]).is_empty(), "MRTR was mapped:\n{log}");

    // modern_server.mjs rejects 2025 traffic: everything must pass through unchanged.
    let (v, _) = modern_client(&bridge.url("/mcp/modern"), &["--listen-trigger", "notify-list-changed"]).await;
    assert_full_run("modern upstream", &v);
    assert_eq!(v["discover"]["supportedVersions"], json!([MODERN]), "the modern upstream's own discover answer: {v}");
    assert_eq!(v["serverInfo"]["name"], "mcp-bridge-modern-test-server", "{v}");
    let notes = strings(&v["listen"]["notifications"]);
    for m in ["notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"] {
        assert!(notes.contains(&m), "the listen stream carried {m}: {v}");
    }
    let url = format!("http://127.0.0.1:{}/mcp", modern.port);
    let probe = bridge
        .wait_for_log_line("probing the modern upstream", MINUTE, |l| {
            l.contains("probed the upstream's protocol") && l.contains(&url)
        })
        .await;
    assert!(probe.contains("modern=true") || probe.contains(MODERN), "the probe found a 2026-07-28 upstream: {probe}");
    let log = bridge.log();
    assert!(
        lines_with(&log, &["server=modern", "transport=\"stateless\""]).is_empty(),
        "no backing session for passthrough:\n{log}"
    );
    assert!(lines_with(&log, &["upstream started", "server=modern"]).is_empty(), "{log}");
    assert!(modern.log().contains("cancelled"), "closing the passed-through response cancelled upstream:\n{}", modern.log());
}

// ---- 3. the status and error table -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_error_table_and_a_legacy_client_on_the_same_endpoint() {
    require_node();
    let bridge = Bridge::start(&everything_stdio("everything"), &[]).await;
    let url = bridge.url("/mcp/everything");
    let caps = json!({});
    let echo = |id: u64| request(json!(id), "tools/call", json!({"name": "echo", "arguments": {"message": "m"}}), json!({}));
    let h = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();

    // Header validation.
    let r = post(&url, &h(&[("mcp-method", "tools/call"), ("mcp-name", "echo")]), &echo(1).to_string()).await;
    assert_error("no MCP-Protocol-Version, _meta present", &r, 400, -32020, &json!(1));
    for (i, key) in ["io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientCapabilities"].iter().enumerate() {
        let mut m = echo(2 + i as u64);
        m["params"]["_meta"].as_object_mut().expect("meta").remove(*key);
        let r = post(&url, &headers("tools/call", Some("echo")), &m.to_string()).await;
        let v = assert_error(&format!("_meta without {key}"), &r, 400, -32602, &json!(2 + i as u64));
        assert!(v["error"]["message"].as_str().is_some_and(|s| s.contains(key)), "the message names {key}: {v}");
    }
    let mut m = echo(4);
    m["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2025-11-25");
    let r = post(&url, &headers("tools/call", Some("echo")), &m.to_string()).await;
    assert_error("header 2026-07-28, _meta 2025-11-25", &r, 400, -32020, &json!(4));

    let mut m = echo(5);
    m["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let hs = h(&[("mcp-protocol-version", "2099-01-01"), ("mcp-method", "tools/call"), ("mcp-name", "echo")]);
    let v = assert_error("unknown version in both", &post(&url, &hs, &m.to_string()).await, 400, -32022, &json!(5));
    assert!(strings(&v["error"]["data"]["supported"]).contains(&MODERN), "data.supported: {v}");
    assert!(strings(&v["error"]["data"]["supported"]).contains(&"2025-11-25"), "data.supported: {v}");
    assert_eq!(v["error"]["data"]["requested"], "2099-01-01", "{v}");

    let hs = h(&[("mcp-protocol-version", MODERN), ("mcp-name", "echo")]);
    assert_error("no Mcp-Method", &post(&url, &hs, &echo(6).to_string()).await, 400, -32020, &json!(6));
    let r = post(&url, &headers("tools/list", Some("echo")), &echo(7).to_string()).await;
    assert_error("Mcp-Method tools/list on a tools/call", &r, 400, -32020, &json!(7));
    let r = post(&url, &headers("tools/call", None), &echo(8).to_string()).await;
    assert_error("tools/call without Mcp-Name", &r, 400, -32020, &json!(8));
    let r = post(&url, &headers("tools/call", Some("get-sum")), &echo(9).to_string()).await;
    assert_error("Mcp-Name names another tool", &r, 400, -32020, &json!(9));
    let bad = format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode("get-sum"));
    let r = post(&url, &headers("tools/call", Some(&bad)), &echo(10).to_string()).await;
    assert_error("base64 Mcp-Name of another tool", &r, 400, -32020, &json!(10));

    // The base64 sentinel form of the right name is the name.
    let good = format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode("echo"));
    let r = post(&url, &headers("tools/call", Some(&good)), &echo(11).to_string()).await;
    assert_eq!(r.status, 200, "{r:?}");
    let a = r.answer();
    assert_eq!((&a["id"], text_of(&a["result"]).as_str()), (&json!(11), "Echo: m"), "{a}");
    assert_eq!(a["result"]["resultType"], "complete", "{a}");

    // Methods of the session-based revisions are not part of 2026-07-28.
    for (i, (method, params)) in [
        ("initialize", json!({"protocolVersion": MODERN, "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}})),
        ("ping", json!({})),
        ("logging/setLevel", json!({"level": "debug"})),
        ("resources/subscribe", json!({"uri": "demo://resource/static/document/features.md"})),
    ]
    .into_iter()
    .enumerate()
    {
        let id = json!(format!("legacy-{i}"));
        let r = call(&url, &request(id.clone(), method, params, caps.clone())).await;
        assert_error(method, &r, 404, -32601, &id);
    }
    // An unknown method: the upstream's own error, as JSON, with the status the revision gives it.
    let r = call(&url, &request(json!(20), "no/such-method", json!({}), caps.clone())).await;
    assert!(!r.sse, "a JSON answer: {r:?}");
    assert_error("unknown method", &r, 404, -32601, &json!(20));

    // A batch.
    let batch = json!([
        request(json!(21), "tools/list", json!({}), caps.clone()),
        request(json!(22), "tools/list", json!({}), caps.clone())
    ]);
    let r = post(&url, &headers("tools/list", None), &batch.to_string()).await;
    assert_eq!(r.status, 400, "a batch: {r:?}");
    assert!(r.messages.iter().all(|m| m.get("result").is_none()), "nothing of the batch ran: {r:?}");

    // No standalone stream, no session to delete.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let resp = http()
            .request(method.clone(), &url)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", MODERN)
            .timeout(MINUTE)
            .send()
            .await
            .expect("GET/DELETE");
        assert_eq!(resp.status(), 405, "{method} with MCP-Protocol-Version {MODERN}");
        let allow = resp.headers().get("allow").and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(allow.as_deref(), Some("POST"), "{method}: Allow");
    }

    // A notification is accepted.
    let note =
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1, "_meta": meta(json!({}))}});
    let r = post(&url, &headers("notifications/cancelled", None), &note.to_string()).await;
    assert_eq!(r.status, 202, "{r:?}");

    // Results say what they are and, for lists, how long they may be cached.
    let r = call(&url, &request(json!(30), "tools/list", json!({}), caps.clone())).await;
    assert_eq!(r.status, 200, "{r:?}");
    let a = r.answer();
    assert_eq!(a["id"], 30, "{a}");
    assert_eq!(a["result"]["resultType"], "complete", "{a}");
    assert!(a["result"]["ttlMs"].is_u64(), "tools/list carries ttlMs: {}", a["result"]["ttlMs"]);
    assert!(a["result"]["cacheScope"].as_str().is_some_and(|s| ["private", "public"].contains(&s)), "cacheScope: {a}");
    assert!(r.header("mcp-session-id").is_none(), "no session: {r:?}");
    let r = call(
        &url,
        &request(json!(31), "resources/read", json!({"uri": "demo://resource/static/document/features.md"}), caps.clone()),
    )
    .await;
    let a = r.answer();
    assert_eq!((r.status, &a["result"]["resultType"]), (200, &json!("complete")), "{a}");
    assert!(a["result"]["contents"][0]["text"].is_string(), "{a}");

    // A modern request that also names a session is still served statelessly.
    let mut hs = headers("tools/call", Some("echo"));
    hs.push(("mcp-session-id".into(), "0123456789abcdef0123456789abcdef".into()));
    let r = post(&url, &hs, &echo(40).to_string()).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(text_of(&r.answer()["result"]), "Echo: m", "{r:?}");
    assert!(r.header("mcp-session-id").is_none(), "{r:?}");

    // And the same endpoint still serves the session-based revisions.
    let run = run_client(Sdk::Ts, "streamable", &url, &["--scenario", "basic", "--timeout", "40"]).await;
    let v = run.ok();
    assert_eq!(v["echo"], "Echo: hello-0", "{v}");
    assert!(v["sessionId"].as_str().is_some_and(|s| !s.is_empty()), "the legacy client got a session: {v}");
    let log = bridge.log();
    assert!(!lines_with(&log, &["session ended", "transport=\"streamable_http\"", "reason=deleted"]).is_empty(), "{log}");
}

// ---- 4. MRTR by hand --------------------------------------------------------------------------

fn elicit(id: Value, extra: Value) -> Value {
    let mut params = json!({"name": "trigger-elicitation-request", "arguments": {}});
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    request(id, "tools/call", params, json!({"elicitation": {}}))
}

/// An `InputRequiredResult` for `id` asking `elicitation/create`: its key and requestState.
fn assert_input_required(r: &Reply, id: &Value) -> (String, String) {
    assert_eq!(r.status, 200, "{r:?}");
    let a = r.answer();
    assert_eq!(&a["id"], id, "{a}");
    assert_eq!(a["result"]["resultType"], "input_required", "{a}");
    let asks = a["result"]["inputRequests"].as_object().unwrap_or_else(|| panic!("inputRequests: {a}"));
    assert_eq!(asks.len(), 1, "{a}");
    let (key, ask) = asks.iter().next().expect("one input request");
    assert_eq!(ask["method"], "elicitation/create", "{a}");
    assert!(ask["params"]["requestedSchema"]["properties"]["name"].is_object(), "{a}");
    let state = a["result"]["requestState"].as_str().unwrap_or_else(|| panic!("requestState: {a}")).to_string();
    assert!(state.starts_with("mcpb1."), "{state}");
    (key.clone(), state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mrtr_by_hand_wrong_key_right_key_tampered_state_and_missing_capability() {
    require_node();
    let dir = TempDir::new("stateless-fixture");
    let config = format!("{}{}", everything_stdio("everything"), fixture_server("fixture", &dir));
    let bridge = Bridge::start(&config, &[]).await;
    let url = bridge.url("/mcp/everything");

    let r = call(&url, &elicit(json!("e1"), json!({}))).await;
    let (key, state) = assert_input_required(&r, &json!("e1"));

    // An answer under a key that was not asked for answers nothing: the same question again.
    let wrong = format!("{key}999");
    let retry = json!({"requestState": state, "inputResponses": {wrong: {"action": "accept", "content": {"name": "Wrong"}}}});
    let r = call(&url, &elicit(json!("e2"), retry)).await;
    let (key2, state2) = assert_input_required(&r, &json!("e2"));
    assert_eq!(key2, key, "the same upstream request is still waiting");
    let part = |s: &str| s.split('.').nth(1).map(str::to_string);
    assert_eq!(part(&state2), part(&state), "still the same backing session: {state} / {state2}");

    // A requestState whose session part was changed belongs to nothing.
    let mut pieces: Vec<String> = state2.split('.').map(str::to_string).collect();
    pieces[1] = pieces[1].chars().rev().collect();
    let tampered = pieces.join(".");
    assert_ne!(tampered, state2);
    let retry = json!({"requestState": tampered, "inputResponses": {key.clone(): {"action": "decline"}}});
    let r = call(&url, &elicit(json!("e3"), retry)).await;
    let a = r.answer();
    assert_eq!(a["id"], "e3", "{a}");
    assert_eq!(a["error"]["code"], -32602, "a tampered requestState: {a}");
    assert!(a["error"]["message"].as_str().is_some_and(|m| m.contains("requestState")), "{a}");
    let r = call(&url, &elicit(json!("e3b"), json!({"requestState": "not-ours", "inputResponses": {}}))).await;
    assert_eq!(r.answer()["error"]["code"], -32602, "{r:?}");

    // The right key (with the untampered state) completes the original request.
    let answer =
        json!({"action": "accept", "content": {"name": "Answer From Raw HTTP", "check": true, "email": "raw@example.com"}});
    let retry = json!({"requestState": state2, "inputResponses": {key: answer}});
    let r = call(&url, &elicit(json!("e4"), retry)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let a = r.answer();
    assert_eq!(a["id"], "e4", "the final answer carries the retry's id: {a}");
    assert_eq!(a["result"]["resultType"], "complete", "{a}");
    let text = text_of(&a["result"]);
    assert!(text.contains("Answer From Raw HTTP") && text.contains("raw@example.com"), "the answer reached the tool: {text}");
    // server-everything registers trigger-sampling-request only for clients that declare
    // sampling (tools/registerConditionalTools), so a request without the capability never
    // gets a sampling request: the tool is not listed, and calling it is the SDK's
    // "Tool ... not found" tool error. That is correct per spec (a server must not send a
    // request the client did not declare), and the bridge passes it through as a result.
    let no_caps = json!({});
    let r = call(&url, &request(json!("s0"), "tools/list", json!({}), no_caps.clone())).await;
    let tools: Vec<&str> =
        r.answer()["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(tools.contains(&"echo") && !tools.contains(&"trigger-sampling-request"), "{tools:?}");
    let params = json!({"name": "trigger-sampling-request", "arguments": {"prompt": "p"}});
    let r = call(&url, &request(json!("s1"), "tools/call", params, no_caps.clone())).await;
    let a = r.answer();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert!(text_of(&a["result"]).contains("not found"), "{a}");

    // An upstream that asks anyway (the fixture): the client hears -32021 naming sampling.
    let fixture = bridge.url("/mcp/fixture");
    let params = json!({"name": "ask-sampling", "arguments": {}});
    let r = call(&fixture, &request(json!("s2"), "tools/call", params.clone(), no_caps)).await;
    let v = assert_error("sampling without the capability", &r, 400, -32021, &json!("s2"));
    assert!(v["error"]["data"]["requiredCapabilities"]["sampling"].is_object(), "{v}");
    // With the capability the same call is an MRTR round trip.
    let r = call(&fixture, &request(json!("s3"), "tools/call", params.clone(), json!({"sampling": {}}))).await;
    let a = r.answer();
    assert_eq!(a["result"]["resultType"], "input_required", "{a}");
    let (key, ask) = a["result"]["inputRequests"].as_object().and_then(|o| o.iter().next()).expect("one input request");
    assert_eq!(ask["method"], "sampling/createMessage", "{a}");
    assert_eq!(key, "\"ask-s3\"", "the key is the upstream request id's JSON text: {a}");
    let mut retry = request(json!("s4"), "tools/call", params, json!({"sampling": {}}));
    retry["params"]["requestState"] = a["result"]["requestState"].clone();
    retry["params"]["inputResponses"] =
        json!({key.clone(): {"role": "assistant", "model": "m", "content": {"type": "text", "text": "fixture sample"}}});
    let r = call(&fixture, &retry).await;
    let a = r.answer();
    assert_eq!((&a["id"], &a["result"]["resultType"]), (&json!("s4"), &json!("complete")), "{a}");
    assert!(text_of(&a["result"]).contains("fixture sample"), "{a}");
}

/// MRTR ties the answers to the `requestState` they come with: a spent `requestState` (its
/// request already answered, its backing session idle again and now serving another request
/// Y) is refused with -32602, and its `inputResponses` never reach Y's question. (Found by this
/// test: the bridge used to forward any key to the backing session.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_request_state_is_refused_and_answers_no_other_request() {
    require_node();
    let bridge = Bridge::start(&everything_stdio("everything"), &[]).await;
    let url = bridge.url("/mcp/everything");

    // X: asked, answered, done; its backing session goes back to the idle pool.
    let (kx, sx) = assert_input_required(&call(&url, &elicit(json!("x1"), json!({}))).await, &json!("x1"));
    let done = json!({"requestState": sx, "inputResponses": {kx: {"action": "accept", "content": {"name": "X Done"}}}});
    let r = call(&url, &elicit(json!("x2"), done)).await;
    assert!(text_of(&r.answer()["result"]).contains("X Done"), "{r:?}");

    // Y: same client identity, so the same backing session; parked on its own question.
    let (ky, sy) = assert_input_required(&call(&url, &elicit(json!("y1"), json!({}))).await, &json!("y1"));
    assert_eq!(sx.split('.').nth(1), sy.split('.').nth(1), "precondition: X and Y share the backing session");

    // A retry of X (spent state) that carries an answer under Y's key.
    let stale =
        json!({"requestState": sx, "inputResponses": {ky.clone(): {"action": "accept", "content": {"name": "Injected Via X"}}}});
    let r = call(&url, &elicit(json!("x3"), stale)).await;
    let a = r.answer();
    assert_eq!((&a["id"], a["error"]["code"].as_i64()), (&json!("x3"), Some(-32602)), "{a}");
    assert!(a["error"]["message"].as_str().is_some_and(|m| m.contains("requestState")), "{a}");

    // X forges a state for Y's stream out of its own (the session part is the same): the
    // signature does not match, so it reaches nothing. (Found in review: before states were
    // signed, this handed X Y's question, and X's answer became Y's result.)
    let parts: Vec<&str> = sx.split('.').collect();
    let (sy_stream, sy_asked) = (sy.split('.').nth(2).expect("stream"), sy.split('.').nth(3).expect("asked"));
    let forged = format!("{}.{}.{}.{}.{}.{}", parts[0], parts[1], sy_stream, sy_asked, parts[4], parts[5]);
    let hijack = json!({"requestState": forged, "inputResponses": {ky.clone(): {"action": "accept", "content": {"name": "Injected Via X"}}}});
    let r = call(&url, &elicit(json!("x4"), hijack)).await;
    let a = r.answer();
    assert_eq!((&a["id"], a["error"]["code"].as_i64()), (&json!("x4"), Some(-32602)), "a forged state is refused: {a}");

    // Y's own retry must complete with Y's own answer.
    let own = json!({"requestState": sy, "inputResponses": {ky: {"action": "accept", "content": {"name": "Y Own Answer"}}}});
    let r = call(&url, &elicit(json!("y2"), own)).await;
    let text = text_of(&r.answer()["result"]);
    assert!(
        text.contains("Y Own Answer") && !text.contains("Injected Via X"),
        "Y's question was answered by a retry of another request (spent requestState): {text}"
    );
}

/// A request the bridge times out (`limits.request_timeout`) may still run upstream, since
/// `notifications/cancelled` is only advisory: its backing session is ended rather than handed
/// to the next request, whose stream would otherwise carry the old call's progress. (Found in
/// review: the next client got the timed-out call's progress notifications.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_request_does_not_leak_into_the_next_one() {
    require_node();
    let config = format!("[limits]\nrequest_timeout = \"2s\"\n\n{}", everything_stdio("everything"));
    let bridge = Bridge::start(&config, &[]).await;
    let url = bridge.url("/mcp/everything");

    let mut slow = request(
        json!("a"),
        "tools/call",
        json!({"name": "trigger-long-running-operation", "arguments": {"duration": 6, "steps": 6}}),
        json!({}),
    );
    slow["params"]["_meta"]["progressToken"] = json!("USER-A");
    let r = call(&url, &slow).await;
    let a = r.answer();
    assert_eq!((&a["id"], a["error"]["code"].as_i64()), (&json!("a"), Some(-32001)), "the bridge's timeout: {a}");

    let mut next = request(
        json!("b"),
        "tools/call",
        json!({"name": "trigger-long-running-operation", "arguments": {"duration": 1, "steps": 4}}),
        json!({}),
    );
    next["params"]["_meta"]["progressToken"] = json!("USER-B");
    let r = call(&url, &next).await;
    assert!(text_of(&r.answer()["result"]).contains("completed"), "{r:?}");
    let progress = r.notifications("notifications/progress");
    assert_eq!(progress.len(), 4, "{r:?}");
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "USER-B"), "only B's own progress: {progress:?}");
    let log = bridge.log();
    assert_eq!(
        lines_with(&log, &["session ended", "reason=cancelled", "a request timed out"]).len(),
        1,
        "the timed-out request's backing session was ended:\n{log}"
    );
}

// ---- 5. logLevel ------------------------------------------------------------------------------

fn long_call(id: &str, token: &str, level: Option<&str>) -> Value {
    let params = json!({"name": "trigger-long-running-operation", "arguments": {"duration": 6, "steps": 3}});
    let mut m = request(json!(id), "tools/call", params, json!({}));
    m["params"]["_meta"]["progressToken"] = json!(token);
    if let Some(l) = level {
        m["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!(l);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_in_meta_gates_server_everything_simulated_logging() {
    require_node();
    let bridge = Bridge::start(&everything_stdio("everything"), &[]).await;
    let url = bridge.url("/mcp/everything");

    // Start server-everything's simulated logging (a random-level notifications/message every
    // 5 s, all levels, since no logging/setLevel ever reaches it) on a backing session.
    let mut toggle = request(json!("t"), "tools/call", json!({"name": "toggle-simulated-logging", "arguments": {}}), json!({}));
    toggle["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!("debug");
    let r = call(&url, &toggle).await;
    assert!(text_of(&r.answer()["result"]).contains("Started simulated"), "{r:?}");

    // The same client identity and capabilities get the same (idle) backing session back, so
    // during each 6 s call below the 5 s logging interval fires at least once on it.
    let quiet = call(&url, &long_call("quiet", "p-quiet", None)).await;
    let a = quiet.answer();
    assert_eq!(a["id"], "quiet", "{a}");
    assert!(text_of(&a["result"]).contains("completed"), "{a}");
    assert_eq!(quiet.notifications("notifications/progress").len(), 3, "progress arrives without logLevel: {quiet:?}");
    assert!(
        quiet.notifications("notifications/message").is_empty(),
        "a request without io.modelcontextprotocol/logLevel gets no log messages: {quiet:?}"
    );

    let loud = call(&url, &long_call("loud", "p-loud", Some("debug"))).await;
    let a = loud.answer();
    assert!(text_of(&a["result"]).contains("completed"), "{a}");
    let progress = loud.notifications("notifications/progress");
    assert_eq!(progress.len(), 3, "{loud:?}");
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "p-loud"), "{progress:?}");
    // What the debug request shows: the session was emitting log messages in such a window
    // (so the quiet request's silence was the bridge's filtering, not an idle server).
    let logs = loud.notifications("notifications/message");
    assert!(!logs.is_empty(), "logLevel debug passes every level of the simulated logging: {loud:?}");
    assert!(logs.iter().all(|m| m["params"]["level"].is_string()), "{logs:?}");

    // All three ran on one backing session, one child (that is what made the comparison fair),
    // which now waits idle in the pool.
    let log = bridge.log();
    assert_eq!(lines_with(&log, &["upstream started"]).len(), 1, "one backing session served the three calls:\n{log}");
    let ready = common::http().get(bridge.url("/readyz")).send().await.expect("readyz").text().await.expect("body");
    let ready: Value = serde_json::from_str(&ready).expect("JSON");
    assert_eq!((ready["sessions"].as_u64(), ready["stateless_idle"].as_u64()), (Some(1), Some(1)), "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_in_meta_is_a_threshold() {
    let dir = TempDir::new("stateless-fixture");
    let bridge = Bridge::start(&fixture_server("fixture", &dir), &[]).await;
    let url = bridge.url("/mcp/fixture");
    let levels = |r: &Reply| -> Vec<String> {
        r.notifications("notifications/message")
            .iter()
            .filter_map(|m| m["params"]["level"].as_str().map(str::to_string))
            .collect()
    };
    for (i, (wanted, expect)) in [
        (None, vec![]),
        (Some("warning"), vec!["warning", "error"]),
        (Some("debug"), vec!["debug", "info", "warning", "error"]),
        (Some("emergency"), vec![]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut m = request(json!(i), "tools/call", json!({"name": "log-levels", "arguments": {}}), json!({}));
        m["params"]["_meta"]["progressToken"] = json!(format!("tok-{i}"));
        if let Some(l) = wanted {
            m["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!(l);
        }
        let r = call(&url, &m).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(text_of(&r.answer()["result"]), "logged", "{r:?}");
        assert_eq!(levels(&r), expect, "logLevel {wanted:?}: {r:?}");
        assert_eq!(r.notifications("notifications/progress").len(), 1, "progress always arrives: {r:?}");
    }
}

// ---- 6. MRTR across two cluster instances -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mrtr_retry_on_another_cluster_instance_reaches_the_parked_backing_session() {
    require_node();
    let c = Cluster::start(&everything_stdio("everything"), 2, false);
    let (a, b) = (&c.instances[0], &c.instances[1]);
    let (url_a, url_b) = (a.url("/mcp/everything"), b.url("/mcp/everything"));

    for (i, url) in [&url_a, &url_b].into_iter().enumerate() {
        let r = call(
            url,
            &request(json!(i), "tools/call", json!({"name": "echo", "arguments": {"message": format!("on {i}")}}), json!({})),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(text_of(&r.answer()["result"]), format!("Echo: on {i}"), "{r:?}");
    }

    let r = call(&url_a, &elicit(json!("c1"), json!({}))).await;
    let (key, state) = assert_input_required(&r, &json!("c1"));
    let sid = state.split('.').nth(1).expect("the session part").to_string();
    let answer = json!({"action": "accept", "content": {"name": "Across Instances"}});
    let r = call(&url_b, &elicit(json!("c2"), json!({"requestState": state, "inputResponses": {key: answer}}))).await;
    assert_eq!(r.status, 200, "{r:?}");
    let fin = r.answer();
    assert_eq!((&fin["id"], &fin["result"]["resultType"]), (&json!("c2"), &json!("complete")), "{fin}");
    assert!(text_of(&fin["result"]).contains("Across Instances"), "{fin}");

    // The backing session lives on A (its upstream started there, never on B); B's request
    // was an exchange on that session from afar.
    let (log_a, log_b) = (a.log(), b.log());
    assert_eq!(lines_with(&log_a, &["upstream started", &format!("session={sid}")]).len(), 1, "A:\n{log_a}");
    assert!(lines_with(&log_b, &["upstream started", &format!("session={sid}")]).is_empty(), "B:\n{log_b}");
    assert_eq!(lines_with(&log_a, &[&format!("session={sid}"), "outcome=\"input_required\""]).len(), 1, "A:\n{log_a}");
    // B served the retry: its answered stateless requests are its echo and this retry.
    let metrics = common::http().get(b.url("/metrics")).send().await.expect("B's /metrics").text().await.expect("text");
    let answered = metrics
        .lines()
        .find(|l| l.starts_with("mcp_bridge_stateless_requests_total{") && l.contains("outcome=\"answered\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(answered, Some(2), "B answered its echo and the retry:\n{metrics}");
}

// ---- 7. subscriptions/listen by hand ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_by_hand_acknowledges_the_honored_filter_and_ends_its_backing_session_on_close() {
    require_node();
    let dir = TempDir::new("stateless-fixture");
    let config = format!("{}{}", everything_stdio("everything"), fixture_server("fixture", &dir));
    let bridge = Bridge::start(&config, &[]).await;

    let listen =
        |id: &str, filter: Value| request(json!(id), "subscriptions/listen", json!({"notifications": filter}), json!({}));
    let open = |url: String, msg: Value| async move {
        let mut r = http().post(url).header("accept", ACCEPT_BOTH).header("content-type", "application/json");
        for (k, v) in headers("subscriptions/listen", None) {
            r = r.header(k, v);
        }
        let resp = r.body(msg.to_string()).send().await.expect("POST subscriptions/listen");
        assert_eq!(resp.status(), 200, "subscriptions/listen");
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert!(ct.starts_with("text/event-stream"), "a listen answer is a stream: {ct}");
        SseReader::new(resp)
    };

    let filter = json!({"resourcesListChanged": true, "toolsListChanged": true});
    let mut s = open(bridge.url("/mcp/everything"), listen("L1", filter)).await;
    let first = s.next_event(MINUTE).await.expect("the first event");
    let ack = first.json().unwrap_or_else(|| panic!("JSON: {first:?}"));
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L1", "{ack}");
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true, "resourcesListChanged": true}),
        "what was asked for and everything declares (nothing unasked): {ack}"
    );
    assert!(ack.get("id").is_none(), "{ack}");
    let opened = bridge
        .wait_for_log_line("of the listen stream", MINUTE, |l| l.contains("subscriptions/listen opened") && l.contains("L1"))
        .await;
    let sid = session_of(&opened);
    drop(s);
    let ended = bridge
        .wait_for_log_line("ending the listen stream's backing session", MINUTE, |l| {
            l.contains("session ended") && l.contains(&format!("session={sid}"))
        })
        .await;
    assert!(ended.contains("transport=\"stateless\"") && ended.contains("reason=client_closed"), "{ended}");

    // The fixture declares tools.listChanged only: the rest of the filter is not honored.
    let all = json!({"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true, "resourceSubscriptions": ["x://y"]});
    let mut s = open(bridge.url("/mcp/fixture"), listen("L2", all)).await;
    let ack = s.next_event(MINUTE).await.and_then(|b| b.json()).expect("the acknowledgement");
    assert_eq!(ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "L2", "{ack}");
    assert_eq!(ack["params"]["notifications"], json!({"toolsListChanged": true}), "{ack}");
}

// ---- 8. legacy clients on a modern-only remote upstream (the adapter) ---------------------------

/// `[servers.adapted]`: tests/clients/modern_server.mjs (`MODERN_ONLY=1`) as a remote upstream.
fn adapted_config(modern: &ModernServer) -> String {
    format!("[servers.adapted]\nurl = {}\n", toml_str(&format!("http://127.0.0.1:{}/mcp", modern.port)))
}

/// One `--scenario full` run of a 2025 SDK client through the adapter: concrete results, and the
/// bridge log says it adapted that very session to the 2026-07-28 upstream.
async fn adapted_full_run(bridge: &Bridge, modern: &ModernServer, sdk: Sdk, transport: &str) {
    let path = if transport == "sse" { "/sse/adapted" } else { "/mcp/adapted" };
    let run = run_client(sdk, transport, &bridge.url(path), &["--scenario", "full"]).await;
    let v = run.ok();
    let what = &run.label;
    assert_eq!(v["server"], "mcp-bridge-modern-test-server", "{what}: initialize answered from server/discover: {v}");
    if sdk == Sdk::Py || transport == "streamable" {
        assert_eq!(v["protocolVersion"], "2025-11-25", "{what}: a 2025 session: {v}");
    }
    for t in ["echo", "get-sum", "trigger-long-running-operation", "trigger-sampling-request", "notify-list-changed"] {
        assert!(strings(&v["tools"]).contains(&t), "{what}: tools/list has {t}: {v}");
    }
    assert_eq!(v["echo"], "Echo: hello-0", "{what}: {v}");
    assert_eq!(v["sum"], 5, "{what}: {v}");
    assert_eq!(v["progress"], 4, "{what}: four progress notifications: {v}");
    let values: Vec<f64> =
        v["progressValues"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
    assert_eq!(values, [1.0, 2.0, 3.0, 4.0], "{what}: {v}");
    assert_eq!(v["samplingRequests"], 1, "{what}: the InputRequiredResult became one sampling/createMessage: {v}");
    assert_eq!(v["sampling"], "sampled: Resource trigger-sampling-request context: ping", "{what}: {v}");
    let sid = v["sessionId"].as_str().unwrap_or_else(|| panic!("{what}: a session id: {v}"));
    let adapted = bridge
        .wait_for_log_line("the adapter's line for this session", MINUTE, |l| {
            l.contains("the bridge adapts this session") && l.contains(&format!("session={sid}"))
        })
        .await;
    assert!(adapted.contains(MODERN) && adapted.contains(&format!("127.0.0.1:{}", modern.port)), "{adapted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_typescript_client_on_a_modern_only_upstream_is_adapted() {
    require_node();
    let modern = ModernServer::start().await;
    let bridge = Bridge::start(&adapted_config(&modern), &[]).await;
    adapted_full_run(&bridge, &modern, Sdk::Ts, "streamable").await;
    adapted_full_run(&bridge, &modern, Sdk::Ts, "sse").await;
    let log = bridge.log();
    assert_eq!(lines_with(&log, &["the bridge adapts this session"]).len(), 2, "one adapted session per client:\n{log}");
    assert!(lines_with(&log, &["server=adapted", "transport=\"stateless\""]).is_empty(), "no backing sessions:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_python_client_on_a_modern_only_upstream_is_adapted() {
    require_node();
    let modern = ModernServer::start().await;
    let bridge = Bridge::start(&adapted_config(&modern), &[]).await;
    adapted_full_run(&bridge, &modern, Sdk::Py, "streamable").await;
    adapted_full_run(&bridge, &modern, Sdk::Py, "sse").await;
    let log = bridge.log();
    assert_eq!(lines_with(&log, &["the bridge adapts this session"]).len(), 2, "one adapted session per client:\n{log}");
}

/// A 2025-11-25 Streamable HTTP session by hand: every message of every stream it reads (the
/// POST answers and the standalone GET stream) lands in one channel, tagged with its stream.
struct RawLegacy {
    url: String,
    sid: String,
    tx: tokio::sync::mpsc::UnboundedSender<(&'static str, Value)>,
    rx: tokio::sync::mpsc::UnboundedReceiver<(&'static str, Value)>,
    seen: Vec<(&'static str, Value)>,
}

impl RawLegacy {
    const VERSION: &'static str = "2025-11-25";

    async fn open(url: &str, caps: Value) -> (RawLegacy, Value) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": Self::VERSION, "capabilities": caps,
            "clientInfo": {"name": "mcp-bridge-raw-legacy", "version": "0"}}});
        let resp = http()
            .post(url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .timeout(MINUTE)
            .body(init.to_string())
            .send()
            .await
            .expect("POST initialize");
        assert_eq!(resp.status(), 200, "initialize");
        let sid = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).expect("Mcp-Session-Id").to_string();
        let mut s = RawLegacy { url: url.to_string(), sid, tx, rx, seen: Vec::new() };
        s.pump("initialize", resp);
        let init = s.answer(&json!(1)).await;
        let r = s.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        assert_eq!(r, 202, "notifications/initialized");
        let get = http()
            .get(url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &s.sid)
            .header("mcp-protocol-version", Self::VERSION)
            .send()
            .await
            .expect("GET stream");
        assert_eq!(get.status(), 200, "the standalone GET stream");
        s.pump("get", get);
        (s, init)
    }

    /// Reads `resp` (JSON or SSE) in the background into the channel.
    fn pump(&self, tag: &'static str, resp: reqwest::Response) {
        let tx = self.tx.clone();
        let sse =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
        tokio::spawn(async move {
            if !sse {
                let body = resp.bytes().await.unwrap_or_default();
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    let _ = tx.send((tag, v));
                }
                return;
            }
            let mut r = SseReader::new(resp);
            while let Ok(Some(b)) = r.try_next(Duration::from_secs(300)).await {
                if let Some(v) = b.json() {
                    let _ = tx.send((tag, v));
                }
            }
        });
    }

    /// POSTs one message on the session; its answer (if any) goes to the channel.
    async fn send(&self, msg: &Value) -> u16 {
        let resp = http()
            .post(&self.url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .header("mcp-session-id", &self.sid)
            .header("mcp-protocol-version", Self::VERSION)
            .body(msg.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {msg}: {e}"));
        let status = resp.status().as_u16();
        if status == 200 {
            self.pump("post", resp);
        }
        status
    }

    /// The first message (seen before or arriving within 30 s) that `pred` accepts.
    async fn wait(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> (&'static str, Value) {
        if let Some(i) = self.seen.iter().position(|(_, m)| pred(m)) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some((tag, m))) if pred(&m) => return (tag, m),
                Ok(Some(other)) => self.seen.push(other),
                _ => panic!("{what}: nothing within 30 s; seen: {:?}", self.seen),
            }
        }
    }

    /// The result of request `id` (panics on an error answer).
    async fn answer(&mut self, id: &Value) -> Value {
        let (_, m) = self.wait(&format!("the answer to {id}"), |m| &m["id"] == id && m.get("method").is_none()).await;
        assert!(m["error"].is_null(), "request {id} failed: {m}");
        m["result"].clone()
    }

    async fn call(&mut self, id: u64, name: &str, arguments: Value) -> Value {
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}});
        assert_eq!(self.send(&msg).await, 200, "tools/call {name}");
        self.answer(&json!(id)).await
    }

    /// Waits for the server-to-client request `method` and answers it with `result`.
    async fn answer_request(&mut self, method: &str, result: Value) -> Value {
        let (_, req) = self.wait(method, |m| m["method"] == method && m.get("id").is_some()).await;
        let reply = json!({"jsonrpc": "2.0", "id": req["id"], "result": result});
        assert_eq!(self.send(&reply).await, 202, "the answer to {method}");
        req
    }
}

/// The adapter by hand, with what the SDK scripts do not cover: initialize answered from
/// `server/discover`; elicitation and sampling (`InputRequiredResult`) asked on the session and
/// retried with the answers; `notifications/*/list_changed` from the upstream's
/// `subscriptions/listen` stream on the client's standalone GET stream; `logging/setLevel` and
/// `resources/subscribe` answered by the bridge; and `notifications/cancelled` turned into
/// closing the upstream response (modern_server.mjs logs the abort).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_legacy_session_on_a_modern_only_upstream_mrtr_list_changed_and_cancel() {
    require_node();
    let modern = ModernServer::start().await;
    let bridge = Bridge::start(&adapted_config(&modern), &[]).await;
    let url = bridge.url("/mcp/adapted");
    let caps = json!({"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}});
    let (mut s, init) = RawLegacy::open(&url, caps).await;
    assert_eq!(init["protocolVersion"], RawLegacy::VERSION, "{init}");
    assert_eq!(init["serverInfo"]["name"], "mcp-bridge-modern-test-server", "{init}");
    assert_eq!(init["capabilities"]["tools"]["listChanged"], true, "the upstream's discover capabilities: {init}");
    bridge
        .wait_for_log_line("the adapter's line", MINUTE, |l| {
            l.contains("the bridge adapts this session") && l.contains(&format!("session={}", s.sid))
        })
        .await;

    assert_eq!(s.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})).await, 200);
    let tools = s.answer(&json!(2)).await;
    let names: Vec<&str> = tools["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"notify-list-changed") && names.contains(&"trigger-elicitation-request"), "{names:?}");

    // Elicitation: the upstream's InputRequiredResult becomes elicitation/create on the session.
    let msg = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "trigger-elicitation-request", "arguments": {}}});
    assert_eq!(s.send(&msg).await, 200);
    let asked = s.answer_request("elicitation/create", json!({"action": "accept", "content": {"name": "Raw Legacy"}})).await;
    assert!(asked["params"]["requestedSchema"]["properties"]["name"].is_object(), "the upstream's own schema: {asked}");
    let r = s.answer(&json!(3)).await;
    assert!(text_of(&r).contains("Raw Legacy"), "the retry carried our answer: {r}");

    // Sampling, the same way.
    let msg = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "trigger-sampling-request", "arguments": {"prompt": "raw"}}});
    assert_eq!(s.send(&msg).await, 200);
    let sample = json!({"role": "assistant", "model": "raw", "content": {"type": "text", "text": "raw sample"}});
    let asked = s.answer_request("sampling/createMessage", sample).await;
    assert!(asked["params"]["messages"].to_string().contains("context: raw"), "{asked}");
    let r = s.answer(&json!(4)).await;
    assert!(text_of(&r).contains("raw sample"), "{r}");

    // Methods the revision dropped are the bridge's to answer.
    for (id, method, params) in [
        (5, "logging/setLevel", json!({"level": "debug"})),
        (6, "resources/subscribe", json!({"uri": "demo://resource/static/text/1"})),
        (7, "ping", json!({})),
    ] {
        assert_eq!(s.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await, 200, "{method}");
        assert_eq!(s.answer(&json!(id)).await, json!({}), "{method}");
    }

    // List changes: the upstream publishes to its listen streams; the client hears them on GET.
    // resources/subscribe just reopened the listen stream: the bridge holds the next request
    // until the upstream acknowledged it, so no change is lost in between.
    let r = s.call(8, "notify-list-changed", json!({})).await;
    assert_eq!(text_of(&r), "published", "{r}");
    for m in ["notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"] {
        let (tag, n) = s.wait(m, |v| v["method"] == m).await;
        assert_eq!(tag, "get", "{m} arrives on the standalone GET stream: {n}");
        assert!(n.get("id").is_none(), "{n}");
    }

    // Cancellation: notifications/cancelled closes the upstream response, which aborts the tool.
    let msg = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "trigger-long-running-operation", "arguments": {"duration": 30, "steps": 30},
        "_meta": {"progressToken": "raw-cancel"}}});
    assert_eq!(s.send(&msg).await, 200);
    s.wait("the first progress", |v| v["method"] == "notifications/progress" && v["params"]["progressToken"] == "raw-cancel")
        .await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9, "reason": "raw test"}});
    assert_eq!(s.send(&cancel).await, 202, "notifications/cancelled");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !modern.log().contains("cancelled at step") {
        assert!(Instant::now() < deadline, "the upstream saw no cancellation within 10 s:\n{}", modern.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The session goes on.
    assert_eq!(text_of(&s.call(10, "echo", json!({"message": "after cancel"})).await), "Echo: after cancel");

    // A legacy HTTP+SSE session hears list changes on its one stream.
    let mut l = LegacySession::open(&bridge.base(), "adapted").await;
    let call =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "notify-list-changed", "arguments": {}}});
    assert_eq!(l.post(&call).await, 202);
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &Value| m["method"] == "notifications/tools/list_changed") || !seen.iter().any(|m| m["id"] == 2) {
        let m = l.next_message(Duration::from_secs(30)).await.unwrap_or_else(|| panic!("the SSE stream ended; seen {seen:?}"));
        seen.push(m);
    }
}
