//! Hostile input against the real bridge: malformed JSON and JSON-RPC, huge ids, deep nesting,
//! invalid UTF-8, header injection, path traversal, broken HTTP framing, oversized bodies,
//! thousands of sessions, and a reader that stops reading. Each case's status is asserted, the
//! bridge must stay up, and well-behaved clients running alongside (raw Streamable HTTP and
//! legacy sessions, plus the official TypeScript and Python SDK clients) must get the same
//! answers and lose no events.

#[path = "hostile/child_stderr.rs"]
mod child_stderr;
mod common;
#[path = "fixtures/procfs.rs"]
mod procfs;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    echo_call, echo_server, everything_stdio, initialize_request, python_fixture, run_client, Bridge, LegacySession, McpSession,
    Sdk, ACCEPT_BOTH, PROTOCOL,
};
use futures_util::StreamExt;
use serde_json::{json, Value};

// ---- the well-behaved client --------------------------------------------------------------

/// What the well-behaved client saw while the hostile traffic ran.
#[derive(Debug, Default)]
struct Report {
    /// Echo calls answered correctly on the streamable session and on the legacy session.
    round_trips: u64,
    /// Consecutive event ids checked on the legacy stream (a gap would be a lost event).
    events: u64,
    slowest: Duration,
}

/// Raw Streamable HTTP and legacy sessions on server `good` that call `echo` in a loop, each
/// answer checked, the legacy stream's event ids checked to be consecutive.
struct WellBehaved {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Report>,
}

impl WellBehaved {
    async fn start(bridge: &Bridge) -> WellBehaved {
        let mcp = McpSession::open(&bridge.url("/mcp/good")).await;
        let legacy = LegacySession::open(&bridge.base(), "good").await;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(well_behaved(mcp, legacy, stop.clone()));
        WellBehaved { stop, task }
    }

    async fn finish(self, label: &str) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.task.await.unwrap_or_else(|e| panic!("{label}: the well-behaved client failed (see its panic above): {e}"));
        assert!(r.round_trips >= 3, "{label}: the well-behaved client made progress: {r:?}");
        eprintln!(
            "{label}: well-behaved client: {} echo round trips on streamable + legacy, all answers correct, \
             {} consecutive legacy event ids (no gap), slowest round trip {:?}",
            r.round_trips, r.events, r.slowest
        );
        r
    }
}

fn seq_of(id: Option<&str>) -> u64 {
    id.and_then(|i| i.rsplit('-').next()).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("an event id: {id:?}"))
}

async fn well_behaved(mcp: McpSession, legacy: LegacySession, stop: Arc<AtomicBool>) -> Report {
    // The stream is read here; POSTs go through a clone of the session's client (a
    // `LegacySession` cannot be shared across an await in a spawned task).
    let LegacySession { http, mut stream, endpoint, .. } = legacy;
    let mut r = Report::default();
    let mut last_seq: Option<u64> = None;
    let mut id = 1000u64;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let msg = format!("good-{id}-{}", "é✓".repeat((id % 7) as usize));
        let t0 = Instant::now();
        assert_eq!(mcp.echo(id, &msg).await, msg, "streamable echo {id}");
        let posted = http
            .post(&endpoint)
            .header("content-type", "application/json")
            .body(echo_call(id, &msg).to_string())
            .send()
            .await
            .expect("legacy POST");
        assert_eq!(posted.status(), 202, "legacy POST {id}");
        let b = stream.next_event(Duration::from_secs(60)).await.expect("the legacy stream stays open");
        let seq = seq_of(b.id.as_deref());
        if let Some(prev) = last_seq {
            assert_eq!(seq, prev + 1, "legacy event ids are consecutive: an event was lost or reordered: {b:?}");
        }
        last_seq = Some(seq);
        r.events += 1;
        let m = b.json().expect("JSON event");
        assert_eq!(m["id"], id, "the legacy stream's next event answers {id}: {m}");
        assert_eq!(m["result"]["content"][0]["text"], msg.as_str(), "legacy echo {id}");
        r.slowest = r.slowest.max(t0.elapsed());
        r.round_trips += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r
}

/// The official SDK clients, in a short loop against server-everything, while hostile traffic
/// runs: TypeScript over Streamable HTTP and Python over the legacy transport.
async fn sdk_clients(bridge: &Bridge, label: &str) -> String {
    let mcp = bridge.url("/mcp/everything");
    let sse = bridge.url("/sse/everything");
    let args = ["--scenario", "basic", "--repeat", "25", "--id-tag", "wb"];
    let (ts, py) = tokio::join!(run_client(Sdk::Ts, "streamable", &mcp, &args), run_client(Sdk::Py, "sse", &sse, &args));
    for run in [&ts, &py] {
        let out = run.ok();
        assert_eq!(out["echoCount"], 25, "{label}: {}: {out}", run.label);
    }
    let summary = "TS SDK (streamable) and Python SDK (sse): 25 echoes each, all correct".to_string();
    eprintln!("{label}: {summary}");
    summary
}

// ---- raw requests -------------------------------------------------------------------------

/// What came back for one raw request; status 0 if the connection closed without an answer.
#[derive(Debug, Default)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `bytes` on a fresh connection and reads the answer: to the end, or, for a GET that
/// opens an event stream, its head and first event.
fn exchange(port: u16, bytes: &[u8]) -> Reply {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    // The server may answer (413, 400) and close before it read everything: not an error here.
    let _ = c.write_all(bytes);
    let opens_stream = bytes.starts_with(b"GET ");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = String::from_utf8_lossy(&buf);
        if let Some(i) = text.find("\r\n\r\n") {
            let is_stream = text[..i].to_ascii_lowercase().contains("content-type: text/event-stream");
            let first_event = text[i..].find("sessionId=").is_some_and(|j| text[i + j..].contains("\n\n"));
            if is_stream && opens_stream && first_event {
                break;
            }
        }
        if Instant::now() > deadline {
            break;
        }
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Reply { status, head: head.to_string(), body }
}

/// The data of a chunked body, as far as it was read.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 {
            break;
        }
        let take = n.min(rest.len());
        out.push_str(rest.get(..take).unwrap_or(rest));
        s = rest.get(take..).unwrap_or("").strip_prefix("\r\n").unwrap_or("");
    }
    out
}

/// A request with `Host`, `Connection: close` and `Content-Length`; `head` holds raw header
/// lines (`Name: value\r\n`), so they may carry any bytes.
fn request(port: u16, method: &str, path: &[u8], head: &[u8], body: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(body.len() + 512);
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(path);
    r.extend_from_slice(format!(" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n").as_bytes());
    r.extend_from_slice(head);
    r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    r.extend_from_slice(body);
    r
}

fn lines(headers: &[(&str, &str)]) -> Vec<u8> {
    headers.iter().flat_map(|(k, v)| format!("{k}: {v}\r\n").into_bytes()).collect()
}

/// One hostile request and the statuses it may get.
struct Case {
    what: String,
    bytes: Vec<u8>,
    statuses: &'static [u16],
    /// Text the answer must contain, if any.
    contains: Option<String>,
}

struct Cases {
    port: u16,
    list: Vec<Case>,
}

impl Cases {
    fn raw(&mut self, what: impl Into<String>, bytes: Vec<u8>, statuses: &'static [u16]) -> &mut Case {
        self.list.push(Case { what: what.into(), bytes, statuses, contains: None });
        self.list.last_mut().expect("just pushed")
    }

    fn add(
        &mut self,
        what: impl Into<String>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        statuses: &'static [u16],
    ) -> &mut Case {
        let bytes = request(self.port, method, path.as_bytes(), &lines(headers), body);
        self.raw(what, bytes, statuses)
    }
}

impl Case {
    fn containing(&mut self, text: impl Into<String>) {
        self.contains = Some(text.into());
    }
}

/// Runs every case (a few at a time) and reports all mismatches at once.
async fn run_cases(port: u16, cases: Vec<Case>) -> usize {
    let n = cases.len();
    let results: Vec<(Case, Reply)> = futures_util::stream::iter(cases)
        .map(|c| async move {
            let bytes = c.bytes.clone();
            let reply = tokio::task::spawn_blocking(move || exchange(port, &bytes)).await.expect("exchange task");
            (c, reply)
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let mut failures = Vec::new();
    for (c, r) in &results {
        let status_ok = c.statuses.contains(&r.status);
        let text_ok = c.contains.as_deref().is_none_or(|t| r.head.contains(t) || r.body.contains(t));
        // No answer may carry a header a client smuggled in, whatever the status.
        let injected = r.header("set-cookie").is_some() || r.header("x-injected").is_some();
        if !status_ok || !text_ok || injected {
            let body: String = r.body.chars().take(300).collect();
            failures.push(format!(
                "{}: got {} (expected one of {:?}{}); head: {:?}; body: {body}",
                c.what,
                r.status,
                c.statuses,
                c.contains.as_deref().map(|t| format!(", containing {t:?}")).unwrap_or_default(),
                r.head
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {n} hostile cases got an unexpected answer:\n{}", failures.len(), failures.join("\n"));
    n
}

async fn assert_up(bridge: &mut Bridge, label: &str) {
    assert!(bridge.is_running(), "{label}: the bridge process is still running");
    let r = common::http().get(bridge.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200, "{label}: /healthz answers");
    let log = bridge.log();
    assert!(!log.contains("panicked"), "{label}: no panic in the bridge log");
}

// ---- the cases ------------------------------------------------------------------------------

const BAD: &[u16] = &[400];
const OK: &[u16] = &[200];
const NOT_FOUND: &[u16] = &[404];

fn nested(open: &str, close: &str, depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

/// The malformed-request table. `s` is a live streamable session on `good`, `l` a live legacy
/// one; both belong to the attacker, not to the well-behaved client.
fn malformed_cases(port: u16, s: &str, l: &str) -> Vec<Case> {
    let mut c = Cases { port, list: Vec::new() };
    let p = "/mcp/good";
    let post = [("accept", ACCEPT_BOTH), ("content-type", "application/json")];
    let with_s = [
        ("accept", ACCEPT_BOTH),
        ("content-type", "application/json"),
        ("mcp-session-id", s),
        ("mcp-protocol-version", PROTOCOL),
    ];
    let msg = format!("/sse/good/message?sessionId={l}");
    let ping = |id: &str, params: &str| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping","params":{params}}}"#);

    // Bad JSON.
    for (what, body) in [
        ("truncated object", &b"{"[..]),
        ("empty body", b""),
        ("unterminated", br#"{"jsonrpc":"2.0","#),
        ("bare word", b"nul"),
        ("two values", br#"{"a":1} {"b":2}"#),
        ("binary", b"\x00\x01\x02\x03"),
        ("NaN id", br#"{"jsonrpc":"2.0","id":NaN,"method":"ping"}"#),
        ("single quotes", b"{'jsonrpc':'2.0'}"),
        ("byte order mark", b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"),
        ("comment", br#"{/*x*/"jsonrpc":"2.0","id":1,"method":"ping"}"#),
        ("unterminated string", br#"{"jsonrpc":"2.0","id":"abc}"#),
        ("trailing comma", br#"{"jsonrpc":"2.0","id":1,"method":"ping",}"#),
        ("control character in a string", b"{\"jsonrpc\":\"2.0\",\"id\":\"a\x01b\",\"method\":\"ping\"}"),
    ] {
        c.add(format!("bad JSON: {what}"), "POST", p, &post, body, BAD).containing("-32700");
    }

    // Wrong JSON-RPC shapes.
    for (what, body) in [
        ("null", "null"),
        ("number", "42"),
        ("string", "\"initialize\""),
        ("boolean", "true"),
        ("empty batch", "[]"),
        ("batch of numbers", "[1,2,3]"),
        ("nested empty batch", "[[]]"),
        ("empty object", "{}"),
        ("jsonrpc 1.0", r#"{"jsonrpc":"1.0","id":1,"method":"initialize"}"#),
        ("jsonrpc as a number", r#"{"jsonrpc":2.0,"id":1,"method":"initialize"}"#),
        ("no jsonrpc", r#"{"id":1,"method":"initialize"}"#),
        ("method is a number", r#"{"jsonrpc":"2.0","id":1,"method":5}"#),
        ("method null", r#"{"jsonrpc":"2.0","id":1,"method":null}"#),
        ("id is an object", r#"{"jsonrpc":"2.0","id":{"a":1},"method":"initialize"}"#),
        ("id is an array", r#"{"jsonrpc":"2.0","id":[1],"method":"initialize"}"#),
        ("id is a boolean", r#"{"jsonrpc":"2.0","id":true,"method":"initialize"}"#),
        ("result and error", r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}"#),
        ("params is a string", r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":"x"}"#),
        ("_meta is a number", r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"_meta":5}}"#),
        ("duplicate id", r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"initialize"}"#),
        ("two initialize in a batch", &format!("[{},{}]", initialize_request(1), initialize_request(2))),
        ("an array as the message", r#"[["2.0",1,"initialize",null,null,null]]"#),
        ("params as an array", r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":[]}"#),
    ] {
        c.add(format!("JSON-RPC shape: {what}"), "POST", p, &post, body.as_bytes(), BAD);
    }
    c.add("initialize as a notification, no session", "POST", p, &post, br#"{"jsonrpc":"2.0","method":"initialize"}"#, BAD);
    c.add(
        "a batch on a 2025-06-18 session",
        "POST",
        p,
        &with_s,
        format!("[{},{}]", ping("1", "{}"), ping("2", "{}")).as_bytes(),
        BAD,
    );
    c.add("a response without id, on the session", "POST", p, &with_s, br#"{"jsonrpc":"2.0","result":{}}"#, &[202]);
    c.add("a response to nothing, legacy", "POST", &msg, &post, br#"{"jsonrpc":"2.0","id":999,"result":{}}"#, &[202]);
    c.add("float id", "POST", p, &with_s, ping("1.5", "{}").as_bytes(), OK).containing("\"id\":1.5");
    c.add("object progress token", "POST", p, &with_s, ping("3", r#"{"_meta":{"progressToken":{"a":[1]}}}"#).as_bytes(), OK);

    // Huge ids: answered with the same id, or (when the upstream cannot echo the id back as sent)
    // by the bridge's request timeout: never left hanging.
    let long_id = format!("\"{}\"", "i".repeat(100_000));
    c.add("100 KB string id", "POST", p, &with_s, ping(&long_id, "{}").as_bytes(), OK).containing(long_id.clone());
    c.add("u64::MAX id", "POST", p, &with_s, ping("18446744073709551615", "{}").as_bytes(), OK)
        .containing("18446744073709551615");
    c.add("i64::MIN id", "POST", p, &with_s, ping("-9223372036854775808", "{}").as_bytes(), OK)
        .containing("-9223372036854775808");
    c.add("empty string id", "POST", p, &with_s, ping("\"\"", "{}").as_bytes(), OK).containing("\"id\":\"\"");
    c.add("id with CR LF and NUL escapes", "POST", p, &with_s, ping(r#""a\r\nSet-Cookie: x\u0000""#, "{}").as_bytes(), OK)
        .containing(r#"\r\nSet-Cookie"#);
    c.add("1e400 id", "POST", p, &with_s, ping("1e400", "{}").as_bytes(), OK).containing("1e400");
    c.add("2^100 id", "POST", p, &with_s, ping("1267650600228229401496703205376", "{}").as_bytes(), OK)
        .containing("1267650600228229401496703205376");

    // Deep nesting.
    let deep_arrays = nested("[", "]", 100_000, "");
    c.add("100k nested arrays", "POST", p, &post, deep_arrays.as_bytes(), BAD);
    c.add("100k nested objects", "POST", p, &post, nested("{\"a\":", "}", 100_000, "1").as_bytes(), BAD);
    c.add("100k nested arrays in params", "POST", p, &with_s, ping("4", &nested("[", "]", 100_000, "")).as_bytes(), BAD);
    // Passed through without recursion (serde_json skips nested values iteratively); the child
    // cannot parse it, so the bridge's request timeout answers.
    let deep_params = format!("{{\"x\":{}}}", nested("[", "]", 100_000, ""));
    c.add("100k nested arrays inside params", "POST", p, &with_s, ping("21", &deep_params).as_bytes(), OK).containing("-32001");
    c.add("100k nested arrays, legacy", "POST", &msg, &post, deep_arrays.as_bytes(), BAD);
    c.add(
        "120 nested arrays in params",
        "POST",
        p,
        &with_s,
        ping("5", &format!("{{\"x\":{}}}", nested("[", "]", 120, ""))).as_bytes(),
        OK,
    )
    .containing("\"id\":5");

    // The 2026-07-28 (stateless) path: the mirrored headers and per-request _meta are checked
    // before anything reaches an upstream.
    let meta =
        r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let modern = |method: &'static str, name: &str| -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("accept", ACCEPT_BOTH.to_string()),
            ("content-type", "application/json".to_string()),
            ("mcp-protocol-version", "2026-07-28".to_string()),
            ("mcp-method", method.to_string()),
        ];
        if !name.is_empty() {
            h.push(("mcp-name", name.to_string()));
        }
        h
    };
    let call =
        |params: &str| format!(r#"{{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{{"name":"echo",{params}{meta}}}}}"#);
    let as_refs = |h: &[(&'static str, String)]| h.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    for (what, headers, body, statuses, code) in [
        ("Mcp-Method of another method", modern("tools/list", "echo"), call(""), BAD, "-32020"),
        ("100 KB Mcp-Name", modern("tools/call", &"n".repeat(100_000)), call(""), &[400, 431][..], ""),
        ("Mcp-Name in broken Base64", modern("tools/call", "=?base64?ZWNo*G8=?="), call(""), BAD, "-32020"),
        (
            "Mcp-Name Base64 of a long other name",
            modern("tools/call", &format!("=?base64?{}?=", "QUFB".repeat(5_000))),
            call(""),
            BAD,
            "-32020",
        ),
        (
            "_meta version as a number",
            modern("tools/call", "echo"),
            call("").replace(r#""2026-07-28""#, "20260728"),
            BAD,
            "-32602",
        ),
        (
            "100 KB requestState",
            modern("tools/call", "echo"),
            call(&format!(r#""requestState":"{}","#, "s".repeat(100_000))),
            OK,
            "-32602",
        ),
        (
            "requestState of no session",
            modern("tools/call", "echo"),
            call(r#""requestState":"mcpb1.00000000000000000000000000000001.1.1.0","inputResponses":{"1,\"result\":{}":{}},"#),
            OK,
            "-32602",
        ),
        ("inputResponses as a string", modern("tools/call", "echo"), call(r#""inputResponses":"x","#), BAD, "-32602"),
        (
            "10k nested clientCapabilities",
            modern("tools/call", "echo"),
            call("").replace(
                r#""io.modelcontextprotocol/clientCapabilities":{}"#,
                &format!(r#""io.modelcontextprotocol/clientCapabilities":{}"#, nested("{\"a\":", "}", 10_000, "1")),
            ),
            BAD,
            "-32602",
        ),
        ("a batch of modern requests", modern("tools/call", "echo"), format!("[{},{}]", call(""), call("")), BAD, "-32600"),
    ] {
        let headers = as_refs(&headers);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let case = c.add(format!("2026-07-28: {what}"), "POST", p, &headers, body.as_bytes(), statuses);
        if !code.is_empty() {
            case.containing(code);
        }
    }

    // Invalid UTF-8.
    c.add(
        "invalid UTF-8 in a string",
        "POST",
        p,
        &with_s,
        b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\",\"params\":{\"x\":\"\xff\xfe\"}}",
        BAD,
    );
    c.add(
        "overlong UTF-8",
        "POST",
        p,
        &with_s,
        b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\",\"params\":{\"x\":\"\xc0\xaf\"}}",
        BAD,
    );
    c.add(
        "UTF-16 body",
        "POST",
        p,
        &post,
        &initialize_request(1).to_string().encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>(),
        BAD,
    );
    let mut h = lines(&post);
    h.extend_from_slice(b"Mcp-Session-Id: \xff\xfe\xfd\r\n");
    c.raw("invalid UTF-8 in Mcp-Session-Id", request(port, "POST", p.as_bytes(), &h, ping("7", "{}").as_bytes()), NOT_FOUND);
    let mut h = lines(&[("accept", "text/event-stream")]);
    h.extend_from_slice(b"Last-Event-ID: \xff\xfe-0-1\r\n");
    c.raw("invalid UTF-8 in Last-Event-ID (a new session)", request(port, "GET", b"/sse/good", &h, b""), OK)
        .containing("event: endpoint");
    c.add("%FF in sessionId", "POST", "/sse/good/message?sessionId=%FF%FE", &post, ping("8", "{}").as_bytes(), NOT_FOUND);
    c.add("%FF in the server name", "POST", "/mcp/%FF", &post, &[], BAD);
    c.raw("raw byte 0xFF in the path", request(port, "GET", b"/sse/\xff", b"", b""), BAD);

    // Header injection.
    let mut h = lines(&post);
    h.extend_from_slice(b"Mcp-Session-Id: 0123456789abcdef0123456789abcdef\r\nSet-Cookie: pwn=1\r\n");
    c.raw(
        "CRLF: a second header after Mcp-Session-Id",
        request(port, "POST", p.as_bytes(), &h, ping("9", "{}").as_bytes()),
        NOT_FOUND,
    );
    let mut h = lines(&post);
    h.extend_from_slice(b"Mcp-Session-Id: abc\rSet-Cookie: pwn=1\r\n");
    c.raw("bare CR in Mcp-Session-Id", request(port, "POST", p.as_bytes(), &h, ping("9", "{}").as_bytes()), BAD);
    let mut h = lines(&post);
    h.extend_from_slice(b"Mcp-Session-Id: abc\nX-Injected: 1\r\n");
    c.raw("bare LF in Mcp-Session-Id", request(port, "POST", p.as_bytes(), &h, ping("9", "{}").as_bytes()), NOT_FOUND);
    let mut h = lines(&post);
    h.extend_from_slice(b"Mcp-Session-Id: abc\x00def\r\n");
    c.raw("NUL in Mcp-Session-Id", request(port, "POST", p.as_bytes(), &h, ping("9", "{}").as_bytes()), BAD);
    let mut h = lines(&post);
    h.extend_from_slice(b"Mcp-Session-Id : abc\r\n");
    c.raw("space before the colon", request(port, "POST", p.as_bytes(), &h, ping("9", "{}").as_bytes()), BAD);
    let sid_crlf = format!("{s}\r\nX-Injected: 1");
    let crlf_text = [("accept", ACCEPT_BOTH), ("content-type", "application/json"), ("mcp-session-id", sid_crlf.as_str())];
    // Raw CRLF in a header only makes another request header: the request is served, and the
    // "header" is never reflected in the answer.
    c.add("a session id followed by CRLF and a header", "POST", p, &crlf_text, ping("10", "{}").as_bytes(), OK)
        .containing("\"id\":10");
    c.add(
        "CRLF in sessionId (encoded)",
        "POST",
        "/sse/good/message?sessionId=abc%0d%0aSet-Cookie:%20pwn=1",
        &post,
        ping("11", "{}").as_bytes(),
        NOT_FOUND,
    );
    c.add(
        "CRLF after a live sessionId",
        "POST",
        &format!("{msg}%0d%0aSet-Cookie:%20pwn=1"),
        &post,
        ping("12", "{}").as_bytes(),
        NOT_FOUND,
    );
    c.add("duplicate sessionId", "POST", &format!("{msg}&sessionId=zz"), &post, ping("13", "{}").as_bytes(), BAD);
    c.add(
        "Last-Event-ID with %0d%0a (a new session)",
        "GET",
        "/sse/good",
        &[("last-event-id", "abc%0d%0aSet-Cookie:%20x-0-1")],
        b"",
        OK,
    )
    .containing("event: endpoint");
    c.add(
        "X-Forwarded-Prefix with markup (sanitized)",
        "GET",
        "/sse/good",
        &[("x-forwarded-prefix", "/x\"><script>alert(1)</script>")],
        b"",
        OK,
    )
    .containing("data: /sse/good/message?sessionId=");
    c.add("log injection in the server name", "POST", "/mcp/x%0aFAKE%20session%20ended%20reason=shutdown", &post, &[], NOT_FOUND);
    c.add(
        "a junk protocol version",
        "POST",
        p,
        &[with_s[0], with_s[1], with_s[2], ("mcp-protocol-version", "2099-99-99")],
        ping("14", "{}").as_bytes(),
        BAD,
    );
    let long_version = "v".repeat(10_000);
    c.add(
        "a 10 KB protocol version",
        "POST",
        p,
        &[with_s[0], with_s[1], with_s[2], ("mcp-protocol-version", &long_version)],
        ping("15", "{}").as_bytes(),
        BAD,
    );
    c.add(
        "uppercase session id",
        "POST",
        p,
        &[post[0], post[1], ("mcp-session-id", &s.to_ascii_uppercase())],
        ping("16", "{}").as_bytes(),
        NOT_FOUND,
    );
    c.add(
        "the legacy session's id on /mcp",
        "POST",
        p,
        &[post[0], post[1], ("mcp-session-id", l)],
        ping("17", "{}").as_bytes(),
        NOT_FOUND,
    );
    c.add(
        "the streamable session's id on the legacy endpoint",
        "POST",
        &format!("/sse/good/message?sessionId={s}"),
        &post,
        ping("18", "{}").as_bytes(),
        NOT_FOUND,
    );
    let big = "h".repeat(64 * 1024);
    c.add("a 64 KB header", "GET", "/healthz", &[("x-junk", &big)], b"", OK);
    let huge = "h".repeat(1024 * 1024);
    c.add("a 1 MB header", "GET", "/healthz", &[("x-junk", &huge)], b"", &[431]);
    let many: Vec<(String, String)> = (0..200).map(|i| (format!("x-h{i}"), "v".to_string())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    c.add("200 headers", "GET", "/healthz", &many, b"", &[431]);

    // Path traversal in server names.
    for path in [
        "/sse/..%2F..%2Fetc",
        "/sse/..%2F..%2Fetc%2Fpasswd",
        "/sse/%2e%2e",
        "/sse/%2e",
        "/sse/good%00",
        "/sse/%00",
        "/sse/..",
        "/sse/../healthz",
        "/sse/good/../../etc/passwd",
        "/sse/",
        "//sse/good",
        "/sse/good/..",
        "/sse/%2E%2E%2Fgood",
    ] {
        c.add(format!("traversal GET {path}"), "GET", path, &[("accept", "text/event-stream")], b"", NOT_FOUND);
    }
    for path in ["/mcp/%2e%2e", "/mcp/%2E%2E%2Fgood", "/mcp/..%2fgood", "/mcp/good%2F..%2F..", "/mcp/good/..", "/mcp/.%2e/good"] {
        c.add(format!("traversal POST {path}"), "POST", path, &post, initialize_request(1).to_string().as_bytes(), NOT_FOUND);
    }
    c.add(
        "the message route spelled with %2F",
        "POST",
        &format!("/sse/good%2Fmessage?sessionId={l}"),
        &post,
        ping("19", "{}").as_bytes(),
        &[405],
    );
    let long_name = format!("/sse/{}", "n".repeat(300));
    c.add("a 300-character server name", "GET", &long_name, &[], b"", NOT_FOUND);
    c.raw(
        "absolute-form target with traversal",
        format!("GET http://127.0.0.1:{port}/sse/..%2Fetc HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .into_bytes(),
        NOT_FOUND,
    );
    c.raw(
        "a foreign Host (DNS rebinding)",
        b"GET /sse/good HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\nAccept: text/event-stream\r\n\r\n".to_vec(),
        &[403],
    );
    c.add(
        "a foreign Origin",
        "POST",
        p,
        &[post[0], post[1], ("origin", "https://evil.example")],
        initialize_request(1).to_string().as_bytes(),
        &[403],
    );

    // Methods and broken HTTP framing.
    c.add("TRACE", "TRACE", p, &[], b"", &[405]);
    c.add("OPTIONS without Origin", "OPTIONS", p, &[], b"", &[405]);
    c.add("HEAD /healthz", "HEAD", "/healthz", &[], b"", OK);
    c.raw("HTTP/1.0", format!("GET /healthz HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").into_bytes(), OK);
    c.raw("HTTP/0.9 request line", b"GET /healthz\r\n\r\n".to_vec(), BAD);
    // 0: hyper closes the connection without an answer.
    c.raw("HTTP/2 preface on HTTP/1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), &[0]);
    c.raw("a TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), BAD);
    c.raw("CONNECT", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n".to_vec(), NOT_FOUND);
    c.raw("garbage", b"\x00\x00\x00\x00\r\n\r\n".to_vec(), BAD);
    let init = initialize_request(1).to_string();
    // RFC 9112: Transfer-Encoding wins over Content-Length, and hyper closes the connection
    // afterwards, so nothing is left to smuggle into a next request.
    c.raw(
        "Content-Length and Transfer-Encoding",
        format!(
            "POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{init}\r\n0\r\n\r\n",
            init.len()
        )
        .into_bytes(),
        OK,
    );
    c.raw(
        "two different Content-Lengths",
        format!("POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}").into_bytes(),
        BAD,
    );
    c.raw(
        "negative Content-Length",
        format!("POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: -1\r\n\r\n").into_bytes(),
        BAD,
    );
    c.raw(
        "a bad chunk size",
        format!("POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").into_bytes(),
        BAD,
    );
    c.raw(
        "Transfer-Encoding gzip, chunked",
        format!("POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n").into_bytes(),
        BAD,
    );

    // Oversized bodies (max_body is 1 MiB here).
    let over = echo_call(20, &"o".repeat(2 * 1024 * 1024)).to_string();
    c.add("2 MiB on the session", "POST", p, &with_s, over.as_bytes(), &[413]);
    c.add("2 MiB initialize", "POST", p, &post, over.as_bytes(), &[413]);
    c.add("2 MiB on the legacy endpoint", "POST", &msg, &post, over.as_bytes(), &[413]);
    let mut chunked = format!("POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 65536, "c".repeat(65536)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    c.raw("2.5 MiB chunked", chunked, &[413]);
    let mut claimed = format!("POST {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n").into_bytes();
    claimed.extend_from_slice(&vec![b' '; 1100 * 1024]);
    c.raw("a claimed 1 TB body", claimed, &[413]);
    c.list
}

fn hostile_config(extra: &str) -> String {
    format!(
        "[limits]\nmax_body = 1048576\nrequest_timeout = \"3s\"\n{extra}{}{}",
        echo_server("good"),
        everything_stdio("everything")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_hostile_requests_get_their_status_and_hurt_no_one() {
    common::require_node();
    common::require_python();
    let mut bridge = Bridge::start(&hostile_config(""), &[]).await;
    let wb = WellBehaved::start(&bridge).await;
    let s = McpSession::open(&bridge.url("/mcp/good")).await;
    let l = LegacySession::open(&bridge.base(), "good").await;
    let port = bridge.port;

    let cases = malformed_cases(port, &s.id, &l.id);
    let (tried, sdk) = tokio::join!(run_cases(port, cases), sdk_clients(&bridge, "malformed"));
    assert_up(&mut bridge, "after the malformed requests").await;
    // The attacker's own sessions survive their bad requests too.
    assert_eq!(s.echo(77, "attacker still served").await, "attacker still served");
    let log = bridge.log();
    assert!(!log.lines().any(|line| line.starts_with("FAKE")), "a request forged a log line");
    let report = wb.finish("malformed").await;
    eprintln!("malformed: hostile cases tried: {tried}; {sdk}; well-behaved round trips: {}", report.round_trips);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_sessions_stay_bounded_and_hurt_no_one() {
    common::require_node();
    common::require_python();
    const STREAMABLE: usize = 1500;
    const LEGACY: usize = 500;
    // Above what the burst can hold at once (every other session is deleted at once; a legacy
    // stream starts no child before initialize), so the well-behaved clients always get theirs.
    const MAX_CHILDREN: usize = 1500;
    let extra = format!("max_children = {MAX_CHILDREN}\nmax_sessions = 5000\n[sessions]\nidle_timeout = \"3s\"\n");
    let mut bridge = Bridge::start(&hostile_config(&extra), &[]).await;
    let pid = procfs::bridge_pid(bridge.port);
    let wb = WellBehaved::start(&bridge).await;
    let rss_before = procfs::rss_kib(pid);
    let http = reqwest::Client::builder().pool_max_idle_per_host(32).build().expect("client");
    let url = bridge.url("/mcp/good");
    let base = bridge.base();

    let started = Instant::now();
    let burst = async {
        let streamable = futures_util::stream::iter(0..STREAMABLE).map(|i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let resp = common::post_initialize(&http, &url).await;
                let status = resp.status().as_u16();
                let sid = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
                let answers = if status == 200 { common::responses(resp).await } else { Vec::new() };
                if !answers.iter().any(|m| m["id"] == 1 && m["result"]["protocolVersion"].is_string()) {
                    return format!("unexpected: {status} {answers:?}");
                }
                // Every other session is deleted at once; the rest are left to expire.
                if let Some(sid) = sid.filter(|_| i % 2 == 0) {
                    let del = http.delete(&url).header("mcp-session-id", sid).send().await.expect("DELETE");
                    if del.status() != 200 {
                        return format!("unexpected DELETE status {}", del.status());
                    }
                }
                "initialized".to_string()
            }
        });
        let legacy = futures_util::stream::iter(0..LEGACY).map(|_| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let resp =
                    http.get(format!("{base}/sse/good")).header("accept", "text/event-stream").send().await.expect("GET /sse");
                let status = resp.status().as_u16();
                let mut r = common::SseReader::new(resp);
                match r.next_event(Duration::from_secs(30)).await {
                    Some(b) if status == 200 && b.event.as_deref() == Some("endpoint") => "opened".to_string(),
                    other => format!("unexpected legacy: {status} {other:?}"),
                }
            }
        });
        let a: Vec<String> = streamable.buffer_unordered(16).collect().await;
        let b: Vec<String> = legacy.buffer_unordered(16).collect().await;
        (a, b)
    };
    let ((outcomes, legacy), sdk) = tokio::join!(burst, sdk_clients(&bridge, "sessions"));
    let took = started.elapsed();
    let unexpected: Vec<&String> = outcomes.iter().chain(&legacy).filter(|o| o.starts_with("unexpected")).collect();
    assert!(
        unexpected.is_empty(),
        "{} sessions got something unexpected: {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)]
    );
    assert_eq!(outcomes.len(), STREAMABLE);
    let rss_peak = procfs::rss_kib(pid);
    assert_up(&mut bridge, "after the burst").await;

    // Idle sessions expire and their children go: back to the well-behaved client's own.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready = common::http().get(bridge.url("/readyz")).send().await.expect("readyz").text().await.unwrap_or_default();
        let ready: Value = serde_json::from_str(&ready).unwrap_or_default();
        let children = procfs::children(pid);
        if ready["sessions"].as_u64().is_some_and(|n| n <= 2) && children.len() <= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "sessions or children are not released: readyz {ready}, {} children", children.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(procfs::zombies(pid).is_empty(), "zombies: {:?}", procfs::zombies(pid));
    let rss_after = procfs::rss_kib(pid);
    let report = wb.finish("sessions").await;
    eprintln!(
        "sessions: hostile cases tried: {} ({STREAMABLE} streamable initialize, half deleted at once, half left to expire; \
         {LEGACY} legacy streams) in {took:?}, all answered; bridge RSS {} MiB before, {} MiB after the burst, {} MiB once \
         idle; {sdk}; well-behaved round trips: {}",
        STREAMABLE + LEGACY,
        rss_before / 1024,
        rss_peak / 1024,
        rss_after / 1024,
        report.round_trips
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_detached_and_hurts_no_one() {
    const FLOOD: u64 = 3000;
    const SIZE: u64 = 4000;
    let config = format!("{}{}", echo_server("good"), python_fixture("flood", "stall_and_flood.py"));
    let mut bridge = Bridge::start(&config, &[]).await;
    let pid = procfs::bridge_pid(bridge.port);
    let wb = WellBehaved::start(&bridge).await;
    let port = bridge.port;
    let rss_before = procfs::rss_kib(pid);

    // The slow reader: a tiny receive buffer, reads the endpoint event, then never reads again.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut slow = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let req = format!("GET /sse/flood HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n");
        slow.write_all(req.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        let mut chunk = [0u8; 512];
        let has_endpoint = |got: &[u8]| {
            let text = String::from_utf8_lossy(got);
            text.find("sessionId=").is_some_and(|i| text[i..].contains("\n\n"))
        };
        while !has_endpoint(&got) {
            let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut chunk))
                .await
                .expect("endpoint in time")
                .expect("read");
            assert!(n > 0, "the stream closed early");
            got.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        let sid: String = text.split("sessionId=").nth(1).expect("sid").chars().take(32).collect();
        let endpoint = bridge.url(&format!("/sse/flood/message?sessionId={sid}"));
        let http = common::http();
        let post = |body: Value| http.post(&endpoint).header("content-type", "application/json").body(body.to_string()).send();
        assert_eq!(post(initialize_request(1)).await.expect("POST").status(), 202);
        assert_eq!(post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await.expect("POST").status(), 202);
        let flood = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "flood", "arguments": {"count": FLOOD, "size": SIZE}}});
        assert_eq!(post(flood).await.expect("POST").status(), 202);
        // The session routes the whole flood and lets go of the reader whose queue filled,
        // while that reader is still connected.
        let admin = bridge.url(&format!("/admin/api/sessions/{sid}"));
        let deadline = Instant::now() + Duration::from_secs(120);
        let summary = loop {
            let text = http.get(&admin).send().await.expect("admin API").text().await.unwrap_or_default();
            let v: Value = serde_json::from_str(&text).unwrap_or_default();
            let s = &v["session"];
            if s["attached"] == 0 && s["pending"] == 0 && s["events"].as_u64().is_some_and(|n| n >= FLOOD + 2) {
                break s.clone();
            }
            assert!(Instant::now() < deadline, "the flood was not routed, or the slow reader is still attached: {text}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let rss_flooded = procfs::rss_kib(pid);
        assert_up(&mut bridge, "after the flood").await;
        // Known gap (see SECURITY.md): there is no socket write timeout, so the connection
        // itself stays open until the client closes it.
        let mut probe = [0u8; 1];
        let held = matches!(
            tokio::time::timeout(Duration::from_millis(300), tokio::io::AsyncReadExt::read(&mut slow, &mut probe)).await,
            Err(_) | Ok(Ok(1))
        );
        drop(slow);
        let closed = bridge
            .wait_for_log_line("the slow reader's stream closed", Duration::from_secs(30), |l| {
                l.contains("SSE connection closed") && l.contains(&sid)
            })
            .await;
        assert!(closed.contains("reason=slow_consumer"), "the close reason: {closed}");

        // The events waited in the session's bounded log: the client resumes and gets them all.
        let resumed = http
            .get(bridge.url("/sse/flood"))
            .header("accept", "text/event-stream")
            .header("last-event-id", format!("{sid}-0-1"))
            .send()
            .await
            .expect("resume");
        assert_eq!(resumed.status(), 200);
        let mut r = common::SseReader::new(resumed);
        let (mut notes, mut prev, mut answered) = (0u64, 1u64, false);
        while !answered {
            let b = r.next_event(Duration::from_secs(60)).await.expect("the replay");
            let seq = seq_of(b.id.as_deref());
            assert_eq!(seq, prev + 1, "the replay has no gap");
            prev = seq;
            let m = b.json().expect("JSON");
            if m["method"] == "notifications/message" {
                notes += 1;
                assert_eq!(m["params"]["data"]["n"], notes, "notifications in order");
            }
            answered = m["id"] == 2;
        }
        assert_eq!(notes, FLOOD, "every flooded notification was kept for the slow client");
        eprintln!(
            "slow reader: {FLOOD} notifications of {SIZE} B ({} events, {} bytes routed); detached with slow_consumer \
             (its TCP connection still held until it closed: {held}), then all {notes} replayed in order on resume; \
             bridge RSS {} MiB before, {} MiB flooded",
            summary["events"],
            summary["bytes"],
            rss_before / 1024,
            rss_flooded / 1024
        );
        assert!(rss_flooded < rss_before + 512 * 1024, "memory stays bounded: {rss_before} KiB -> {rss_flooded} KiB");
    }
    assert_up(&mut bridge, "after the slow reader").await;
    let report = wb.finish("slow reader").await;
    eprintln!("slow reader: hostile cases tried: 1; well-behaved round trips: {}", report.round_trips);
}

/// A client that sends its headers, then only part of the body it announced, and stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_does_not_hold_the_bridge() {
    let mut bridge = Bridge::start(&format!("[limits]\nheader_read_timeout = \"1s\"\n{}", echo_server("good")), &[]).await;
    let wb = WellBehaved::start(&bridge).await;
    let port = bridge.port;
    let stalled: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let head = format!(
                "POST /mcp/good HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"jsonrpc\""
            );
            c.write_all(head.as_bytes()).expect("write");
            c
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_up(&mut bridge, "with 50 stalled bodies").await;
    let report = wb.finish("stalled bodies").await;
    // How the bridge treats them (there is no body read timeout: see SECURITY.md).
    let (mut open, mut closed, mut answered) = (0, 0, 0);
    for mut c in stalled {
        c.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let mut b = [0u8; 64];
        match c.read(&mut b) {
            Ok(0) => closed += 1,
            Ok(_) => answered += 1,
            Err(_) => open += 1,
        }
    }
    eprintln!(
        "stalled bodies: hostile cases tried: 50 (still held after 3 s: {open}, closed: {closed}, answered: {answered}); \
         well-behaved round trips: {}",
        report.round_trips
    );
}
