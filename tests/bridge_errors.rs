//! Bad input and bad upstreams: the HTTP status and JSON-RPC error for each malformed request
//! on both transports (as the spec and the official TypeScript server answer), an upstream that
//! cannot start, and a child that dies with a request in flight; meanwhile a well-behaved
//! session on another server keeps answering.

mod common;

use std::time::Duration;

use common::{
    echo_server, initialize_request, python_fixture, raw, rpc_error_code, run_client, Bridge, Legacy, McpSession, RawResponse,
    Sdk, SseReader, ACCEPT_BOTH, PROTOCOL,
};
use serde_json::{json, Value};

const UNKNOWN_SESSION: &str = "0123456789abcdef0123456789abcdef";

/// A streamable session and a legacy session on the `good` server, which must keep working.
struct Good {
    mcp: McpSession,
    legacy: Legacy,
    calls: u64,
}

impl Good {
    async fn open(bridge: &Bridge) -> Good {
        let mcp = McpSession::open(&bridge.url("/mcp/good")).await;
        let legacy = Legacy::open(&bridge.base(), "good").await;
        let mut g = Good { mcp, legacy, calls: 100 };
        g.still_answers("before").await;
        g
    }

    async fn still_answers(&mut self, when: &str) {
        self.calls += 1;
        let msg = format!("good-{when}-{}", self.calls);
        assert_eq!(self.mcp.echo(self.calls, &msg).await, msg, "the good streamable session answers {when}");
        assert_eq!(self.legacy.echo(self.calls, &msg).await, msg, "the good legacy session answers {when}");
    }
}

fn config(extra: &str) -> String {
    format!("{}{}{extra}", echo_server("echo"), echo_server("good"))
}

/// One request and what the bridge must answer.
struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: String,
    status: u16,
    code: Option<i64>,
}

fn case(what: &'static str, method: &'static str, path: &str, headers: &[(&'static str, &str)], body: &str) -> Case {
    Case {
        what,
        method,
        path: path.to_string(),
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        body: body.to_string(),
        status: 0,
        code: None,
    }
}

impl Case {
    fn expect(mut self, status: u16, code: Option<i64>) -> Case {
        self.status = status;
        self.code = code;
        self
    }
}

async fn send(port: u16, c: &Case) -> RawResponse {
    let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    raw(port, c.method, &c.path, &headers, &c.body).await
}

/// Runs every case and reports all mismatches at once.
async fn check_all(port: u16, cases: &[Case]) -> Vec<RawResponse> {
    let mut failures = Vec::new();
    let mut out = Vec::new();
    for c in cases {
        let r = send(port, c).await;
        let code = rpc_error_code(&r.body);
        if r.status != c.status || (c.code.is_some() && code != c.code) {
            failures.push(format!(
                "{}: {} {} -> {} (code {code:?}), expected {} (code {:?}); body: {}",
                c.what, c.method, c.path, r.status, c.status, c.code, r.body
            ));
        }
        out.push(r);
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_bad_requests_get_the_status_the_spec_and_the_ts_server_use() {
    let bridge = Bridge::start(&config(""), &[]).await;
    let mut good = Good::open(&bridge).await;
    let port = bridge.port;
    let init = initialize_request(1).to_string();
    let ping = json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}).to_string();
    let json_ct = ("content-type", "application/json");
    let both = ("accept", ACCEPT_BOTH);
    let p = "/mcp/echo";
    let two_inits = format!("[{init},{}]", initialize_request(2));
    let cases = [
        case("no Accept", "POST", p, &[json_ct], &init).expect(406, Some(-32000)),
        case("Accept json only", "POST", p, &[json_ct, ("accept", "application/json")], &init).expect(406, Some(-32000)),
        case("Accept SSE only", "POST", p, &[json_ct, ("accept", "text/event-stream")], &init).expect(406, Some(-32000)),
        case("Content-Type text/plain", "POST", p, &[both, ("content-type", "text/plain")], &init).expect(415, Some(-32000)),
        case("no Content-Type", "POST", p, &[both], &init).expect(415, Some(-32000)),
        case("unparsable body", "POST", p, &[both, json_ct], "{\"jsonrpc\": \"2.0\", ").expect(400, Some(-32700)),
        case("not JSON-RPC", "POST", p, &[both, json_ct], "[1, 2]").expect(400, None),
        case("no Mcp-Session-Id", "POST", p, &[both, json_ct], &ping).expect(400, Some(-32000)),
        case("unknown session", "POST", p, &[both, json_ct, ("mcp-session-id", UNKNOWN_SESSION)], &ping)
            .expect(404, Some(-32001)),
        case("malformed session id", "POST", p, &[both, json_ct, ("mcp-session-id", "../x")], &ping).expect(404, Some(-32001)),
        case("two initialize in a batch", "POST", p, &[both, json_ct], &two_inits).expect(400, Some(-32600)),
        case("GET without session", "GET", p, &[("accept", "text/event-stream")], "").expect(400, Some(-32000)),
        case("GET without Accept SSE", "GET", p, &[("accept", "application/json")], "").expect(406, Some(-32000)),
        case("GET unknown session", "GET", p, &[("accept", "text/event-stream"), ("mcp-session-id", UNKNOWN_SESSION)], "")
            .expect(404, Some(-32001)),
        case("DELETE without session", "DELETE", p, &[], "").expect(400, Some(-32000)),
        case("DELETE unknown session", "DELETE", p, &[("mcp-session-id", UNKNOWN_SESSION)], "").expect(404, Some(-32001)),
        case("PUT", "PUT", p, &[json_ct], &ping).expect(405, None),
        case("PATCH", "PATCH", p, &[json_ct], &ping).expect(405, None),
        case("unknown server POST", "POST", "/mcp/nope", &[both, json_ct], &init).expect(404, None),
        case("unknown server GET", "GET", "/mcp/nope", &[("accept", "text/event-stream")], "").expect(404, None),
        case("unknown server DELETE", "DELETE", "/mcp/nope", &[], "").expect(404, None),
    ];
    let answers = check_all(port, &cases).await;
    for (c, r) in cases.iter().zip(&answers) {
        if c.status == 405 {
            let allow = r.header("allow").unwrap_or_else(|| panic!("{}: 405 without Allow: {r:?}", c.what));
            for m in ["GET", "POST", "DELETE"] {
                assert!(allow.contains(m), "{}: Allow lists {m}: {allow}", c.what);
            }
        }
    }
    good.still_answers("after the stateless bad requests").await;

    // With a live session on the same server.
    let s = McpSession::open(&bridge.url(p)).await;
    let sid = s.id.as_str();
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h: Vec<(&'static str, &str)> = vec![both, json_ct, ("mcp-session-id", sid)];
        h.extend_from_slice(extra);
        h
    };
    let cases = [
        case("bad MCP-Protocol-Version", "POST", p, &with(&[("mcp-protocol-version", "1999-01-01")]), &ping)
            .expect(400, Some(-32000)),
        case("initialize again on a live session", "POST", p, &with(&[]), &init).expect(400, Some(-32600)),
        case("the session on another server", "POST", "/mcp/good", &with(&[]), &ping).expect(404, Some(-32001)),
    ];
    check_all(port, &cases).await;

    // One standalone GET stream per session: the second is a conflict while the first is read.
    let first = s
        .http
        .get(&s.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", PROTOCOL)
        .send()
        .await
        .expect("first GET");
    assert_eq!(first.status(), 200, "the first standalone GET is accepted");
    let mut first = SseReader::new(first);
    first.next(Duration::from_secs(5)).await.expect("first bytes of the GET stream");
    let second = [case("second standalone GET", "GET", p, &[("accept", "text/event-stream"), ("mcp-session-id", sid)], "")
        .expect(409, Some(-32000))];
    check_all(port, &second).await;
    drop(first);

    // DELETE ends the session; the id is then unknown.
    let del = s.http.delete(&s.url).header("mcp-session-id", sid).send().await.expect("DELETE");
    assert_eq!(del.status(), 200, "DELETE of a live session");
    let after = [
        case("POST after DELETE", "POST", p, &with(&[]), &ping).expect(404, Some(-32001)),
        case("GET after DELETE", "GET", p, &[("accept", "text/event-stream"), ("mcp-session-id", sid)], "")
            .expect(404, Some(-32001)),
        case("DELETE after DELETE", "DELETE", p, &[("mcp-session-id", sid)], "").expect(404, Some(-32001)),
    ];
    check_all(port, &after).await;
    good.still_answers("after the session bad requests").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_bad_requests_get_404_or_400_with_a_json_rpc_parse_error() {
    let bridge = Bridge::start(&config(""), &[]).await;
    let mut good = Good::open(&bridge).await;
    let port = bridge.port;
    let ping = json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}).to_string();
    let json_ct = ("content-type", "application/json");
    let unknown = format!("/sse/echo/message?sessionId={UNKNOWN_SESSION}");
    let cases = [
        case("unknown server GET", "GET", "/sse/nope", &[("accept", "text/event-stream")], "").expect(404, None),
        case("unknown server message", "POST", &format!("/sse/nope/message?sessionId={UNKNOWN_SESSION}"), &[json_ct], &ping)
            .expect(404, None),
        case("unknown sessionId", "POST", &unknown, &[json_ct], &ping).expect(404, None),
        case("malformed sessionId", "POST", "/sse/echo/message?sessionId=zz", &[json_ct], &ping).expect(404, None),
        case("no sessionId", "POST", "/sse/echo/message", &[json_ct], &ping).expect(400, None),
    ];
    check_all(port, &cases).await;

    let mut s = Legacy::open(&bridge.base(), "echo").await;
    let (status, body) = s.post_raw("{\"jsonrpc\": ").await;
    assert_eq!(status, 400, "bad JSON on the message endpoint: {body}");
    assert_eq!(rpc_error_code(&body), Some(-32700), "bad JSON gets a JSON-RPC parse error: {body}");
    let cross =
        [case("the session on another server", "POST", &format!("/sse/good/message?sessionId={}", s.sid), &[json_ct], &ping)
            .expect(404, None)];
    check_all(port, &cross).await;
    // The session survives its bad message.
    assert_eq!(s.echo(3, "after bad json").await, "after bad json");
    good.still_answers("after the legacy bad requests").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_cannot_start_answers_initialize_with_an_error_not_a_hang() {
    let missing = "[servers.missing]\ncommand = \"/nonexistent/mcp-server-that-is-not-installed\"\n";
    let bridge = Bridge::start(&config(missing), &[]).await;
    let mut good = Good::open(&bridge).await;

    // Streamable: the initialize POST gets an error response on its stream, which then ends.
    let http = common::http();
    let url = bridge.url("/mcp/missing");
    let resp = common::post_initialize(&http, &url).await;
    assert_eq!(resp.status(), 200);
    let answers = common::responses(resp).await;
    let err = answers.iter().find(|m| m["id"] == 1).unwrap_or_else(|| panic!("an answer to initialize: {answers:?}"));
    assert!(err["error"]["code"].is_i64(), "initialize gets a JSON-RPC error: {err}");
    assert!(err["error"]["message"].as_str().unwrap_or("").contains("not-installed"), "the error names the command: {err}");

    // Legacy: the answer arrives on the stream, then the stream ends.
    let mut s = Legacy::connect(&bridge.base(), "missing").await;
    assert_eq!(s.post(&initialize_request(1)).await, 202);
    let m = s.next_message(Duration::from_secs(20)).await.expect("an answer to initialize");
    assert_eq!(m["id"], 1, "{m}");
    assert!(m["error"]["code"].is_i64(), "initialize gets a JSON-RPC error: {m}");
    s.stream().rest(Duration::from_secs(20)).await;

    // Real clients fail fast with that error, on both transports.
    let sse_url = bridge.url("/sse/missing");
    let runs = futures_util::future::join_all([
        run_client(Sdk::Ts, "streamable", &url, &["--scenario", "basic", "--timeout", "40"]),
        run_client(Sdk::Ts, "sse", &sse_url, &["--scenario", "basic", "--timeout", "40"]),
        run_client(Sdk::Py, "streamable", &url, &["--scenario", "basic", "--timeout", "40"]),
        run_client(Sdk::Py, "sse", &sse_url, &["--scenario", "basic", "--timeout", "40"]),
    ])
    .await;
    for r in &runs {
        assert_eq!(r.json["ok"], false, "{}: {}", r.label, r.json);
        let e = r.json["error"].as_str().unwrap_or("");
        // Six failed starts within a minute also trip the crash-loop guard (src/health.rs):
        // from then on a new session is refused with 503 at once. Either way: an error, fast.
        assert!(
            (e.contains("upstream_failed_to_start") || e.contains("503") || e.contains("keeps crashing"))
                && !e.contains("timeout"),
            "{}: the client gets the bridge's error, not a hang: {e}\n{}",
            r.label,
            r.stderr
        );
    }
    bridge
        .wait_for_log_line("session ended reason=upstream_failed_to_start", Duration::from_secs(5), |l| {
            l.contains("session ended") && l.contains("reason=upstream_failed_to_start")
        })
        .await;
    let health = http.get(bridge.url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200, "the bridge stays up");
    good.still_answers("after the failed upstreams").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_dies_mid_request_fails_that_request_and_ends_the_stream() {
    let bridge = Bridge::start(&config(&python_fixture("crash", "crash_on_call.py")), &[]).await;
    let mut good = Good::open(&bridge).await;
    let call =
        |id: u64| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "crash", "arguments": {}}});

    // Streamable: the POST stream carries an error for the in-flight call, then ends.
    let s = McpSession::open(&bridge.url("/mcp/crash")).await;
    let resp = s.post(&call(5)).await;
    assert_eq!(resp.status(), 200);
    let mut r = SseReader::new(resp);
    let events = r.rest(Duration::from_secs(30)).await;
    let msgs: Vec<Value> = events.iter().filter_map(|b| b.json()).collect();
    let err = msgs.iter().find(|m| m["id"] == 5).unwrap_or_else(|| panic!("an answer to the in-flight call: {events:?}"));
    assert_eq!(err["error"]["code"], -32603, "{err}");
    assert!(err["error"]["message"].as_str().unwrap_or("").contains("upstream_exited"), "{err}");
    bridge
        .wait_for_log_line("session ended reason=upstream_exited (streamable)", Duration::from_secs(10), |l| {
            l.contains("session ended") && l.contains(&s.id) && l.contains("reason=upstream_exited")
        })
        .await;
    let again = s.post(&json!({"jsonrpc": "2.0", "id": 6, "method": "ping"})).await;
    assert_eq!(again.status(), 404, "the ended session is gone");

    // Legacy: the error arrives on the session's stream, which then closes with upstream_exited.
    let mut l = Legacy::open(&bridge.base(), "crash").await;
    assert_eq!(l.post(&call(9)).await, 202);
    let m = l.next_message(Duration::from_secs(30)).await.expect("an answer to the in-flight call");
    assert_eq!(m["id"], 9, "{m}");
    assert_eq!(m["error"]["code"], -32603, "{m}");
    l.stream().rest(Duration::from_secs(20)).await;
    let closed = bridge
        .wait_for_log_line("SSE connection closed (legacy crash)", Duration::from_secs(10), |line| {
            line.contains("SSE connection closed") && line.contains(&l.sid)
        })
        .await;
    assert!(closed.contains("reason=upstream_exited"), "{closed}");
    good.still_answers("after the crashes").await;
}
