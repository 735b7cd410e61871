//! Security controls of the real bridge binary: authentication (401 with a challenge, 403 for a
//! server a client may not use, the protected-resource document, credentials kept from
//! upstreams), sessions bound to their principal, body and session limits, the upstream request
//! timeout, the child-process cap, the slow-loris header timeout, and child processes that are
//! always reaped and get only their configured environment.

mod common;
#[path = "security/outliving.rs"]
mod outliving;
#[path = "fixtures/procfs.rs"]
mod procfs;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{
    echo_server, initialize_request, python_fixture, raw, responses, rpc_error_code, toml_str, Bridge, LegacySession, McpSession,
    RawResponse, ACCEPT_BOTH, PROTOCOL,
};
use serde_json::{json, Value};
use sha2::Digest;

const ALICE: &str = "alice-token-4f0c2a9e";
const BOB: &str = "bob-token-9b1d77c3";
const UNKNOWN_SESSION: &str = "0123456789abcdef0123456789abcdef";

/// (what, method, path, headers) of a request.
type Attempt<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>);
/// Owned headers.
type Headers = Vec<(String, String)>;
/// (what, method, path, headers, the same request's headers for an unknown session, body).
type Probe = (&'static str, &'static str, String, Headers, Headers, String);

/// `[auth]`: alice may use every server, bob only `echo` (and his token is stored hashed).
fn auth_table() -> String {
    let bob_hash = format!("{:x}", sha2::Sha256::digest(BOB.as_bytes()));
    format!(
        r#"
[auth]
realm = "mcp-bridge-test"
resource_metadata = {{ resource = "http://127.0.0.1/mcp", authorization_servers = ["https://auth.example.com"], bearer_methods_supported = ["header"] }}

[[auth.clients]]
name = "alice"
token = "{ALICE}"
servers = ["*"]

[[auth.clients]]
name = "bob"
token_sha256 = "{bob_hash}"
servers = ["echo"]
"#
    )
}

/// A client that sends `token` as a bearer token on every request.
fn client(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().expect("header value"));
    reqwest::Client::builder().pool_max_idle_per_host(0).default_headers(h).build().expect("reqwest client")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Opens a legacy stream with `http`'s credentials and completes the handshake.
async fn open_legacy(http: &reqwest::Client, base: &str, name: &str) -> LegacySession {
    let mut s = LegacySession::connect_with(http.clone(), base, name).await;
    assert_eq!(s.post(&initialize_request(1)).await, 202, "initialize is accepted");
    let answer = s.next_message(Duration::from_secs(30)).await.expect("initialize answer");
    assert!(answer["result"]["protocolVersion"].is_string(), "initialize answered: {answer}");
    assert_eq!(s.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await, 202);
    s
}

fn tool_call(id: u64, name: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}})
}

/// A raw initialize POST to `path` with extra headers.
async fn raw_init(port: u16, path: &str, extra: &[(&str, &str)]) -> RawResponse {
    let mut h = vec![("accept", ACCEPT_BOTH), ("content-type", "application/json")];
    h.extend_from_slice(extra);
    raw(port, "POST", path, &h, &initialize_request(1).to_string()).await
}

async fn healthz(bridge: &Bridge) {
    let r = common::http().get(bridge.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200, "the bridge stays up");
}

// ---- authentication ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_credentials_get_401_with_a_challenge_and_other_servers_403() {
    let config = format!("{}{}{}", auth_table(), echo_server("echo"), echo_server("secret"));
    let bridge = Bridge::start(&config, &[]).await;
    let port = bridge.port;
    let (alice, bob) = (bearer(ALICE), bearer(BOB));
    let (suffixed, prefix) = (format!("Bearer {ALICE}x"), format!("Bearer {}", &ALICE[..ALICE.len() - 1]));
    let bob_hash = format!("{:x}", sha2::Sha256::digest(BOB));

    // 401 with a challenge: no credentials, a wrong token, a scheme that is not Bearer.
    let unauthorized: Vec<Attempt> = vec![
        ("no credentials, streamable", "POST", "/mcp/echo", vec![]),
        ("no credentials, legacy GET", "GET", "/sse/echo", vec![("accept", "text/event-stream")]),
        ("no credentials, legacy message", "POST", "/sse/echo/message?sessionId=0123456789abcdef0123456789abcdef", vec![]),
        ("no credentials, /message", "POST", "/message?sessionId=0123456789abcdef0123456789abcdef", vec![]),
        ("no credentials, unknown path", "GET", "/etc/passwd", vec![]),
        ("wrong bearer", "POST", "/mcp/echo", vec![("authorization", "Bearer not-a-token")]),
        ("wrong X-API-Key", "POST", "/mcp/echo", vec![("x-api-key", "not-a-token")]),
        ("empty bearer", "POST", "/mcp/echo", vec![("authorization", "Bearer ")]),
        ("Basic scheme", "POST", "/mcp/echo", vec![("authorization", "Basic YWxpY2U6YWxpY2U=")]),
        ("token without scheme", "POST", "/mcp/echo", vec![("authorization", ALICE)]),
        ("token with a suffix", "POST", "/mcp/echo", vec![("authorization", &suffixed)]),
        ("token prefix", "POST", "/mcp/echo", vec![("authorization", &prefix)]),
        ("bob's hash as a token", "POST", "/mcp/echo", vec![("x-api-key", &bob_hash)]),
    ];
    for (what, method, path, headers) in &unauthorized {
        let mut h = vec![("accept", ACCEPT_BOTH), ("content-type", "application/json")];
        h.extend_from_slice(headers);
        let r = raw(port, method, path, &h, &initialize_request(1).to_string()).await;
        assert_eq!(r.status, 401, "{what}: {r:?}");
        let challenge = r.header("www-authenticate").unwrap_or_else(|| panic!("{what}: 401 without WWW-Authenticate: {r:?}"));
        assert!(challenge.starts_with("Bearer realm=\"mcp-bridge-test\""), "{what}: {challenge}");
        assert!(challenge.contains("resource_metadata=\"/.well-known/oauth-protected-resource\""), "{what}: {challenge}");
        if what.starts_with("no credentials") {
            assert!(!challenge.contains("error="), "{what}: no error without credentials: {challenge}");
        }
        if what.starts_with("wrong") {
            assert!(challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
        }
        assert!(rpc_error_code(&r.body).is_some(), "{what}: a JSON-RPC error body: {}", r.body);
        assert!(!r.body.contains(ALICE) && !r.body.contains(BOB), "{what}: no token echoed: {}", r.body);
    }

    // The protected-resource document and health stay open.
    let md = raw(port, "GET", "/.well-known/oauth-protected-resource", &[], "").await;
    assert_eq!(md.status, 200, "{md:?}");
    let doc: Value = serde_json::from_str(&md.body).expect("the metadata is JSON");
    assert_eq!(doc["resource"], "http://127.0.0.1/mcp", "{doc}");
    assert_eq!(doc["authorization_servers"], json!(["https://auth.example.com"]), "{doc}");
    assert_eq!(raw(port, "GET", "/healthz", &[], "").await.status, 200);

    // Valid credentials, either way they may come.
    assert_eq!(raw_init(port, "/mcp/echo", &[("authorization", &alice)]).await.status, 200, "alice by bearer");
    assert_eq!(raw_init(port, "/mcp/echo", &[("authorization", &format!("bearer {ALICE}"))]).await.status, 200);
    assert_eq!(raw_init(port, "/mcp/echo", &[("x-api-key", ALICE)]).await.status, 200, "alice by X-API-Key");
    assert_eq!(raw_init(port, "/mcp/echo", &[("x-api-key", BOB)]).await.status, 200, "bob by X-API-Key (hashed token)");
    assert_eq!(raw_init(port, "/mcp/secret", &[("authorization", &alice)]).await.status, 200, "alice may use every server");

    // 403 for a server bob may not use, however the path spells it; never a 2xx.
    let forbidden = [
        ("POST", "/mcp/secret"),
        ("GET", "/sse/secret"),
        ("POST", "/sse/secret/message?sessionId=0123456789abcdef0123456789abcdef"),
        ("DELETE", "/mcp/secret"),
        ("POST", "/mcp/secre%74"),
        ("POST", "/mcp/secret/"),
    ];
    for (method, path) in forbidden {
        let r = raw(
            port,
            method,
            path,
            &[("authorization", &bob), ("accept", ACCEPT_BOTH), ("content-type", "application/json")],
            "{}",
        )
        .await;
        assert_eq!(r.status, 403, "bob {method} {path}: {r:?}");
        assert!(r.body.contains("may not use server"), "{method} {path}: {}", r.body);
    }
    // Spellings the router does not serve at all: 404, still never the server.
    for path in ["//mcp/secret", "/mcp/./secret", "/MCP/secret", "/mcp/echo/../secret"] {
        let r = raw_init(port, path, &[("authorization", &bob)]).await;
        assert!(r.status == 404 || r.status == 403, "bob POST {path}: {r:?}");
        assert!(r.header("mcp-session-id").is_none(), "bob POST {path} opened a session: {r:?}");
    }
    // An absolute-form request target names the same path.
    let abs = format!("http://127.0.0.1:{port}/mcp/secret");
    let r = raw_init(port, &abs, &[("authorization", &bob)]).await;
    assert_eq!(r.status, 403, "bob POST {abs}: {r:?}");
    let log = bridge.log();
    assert!(log.contains("refused a server the client may not use"), "403s are logged");
    assert!(log.contains("refused a request with an unknown token"), "bad tokens are logged");
    assert!(!log.contains(ALICE) && !log.contains(BOB), "tokens never reach the log");
    healthz(&bridge).await;
}

/// Records the request heads a remote "upstream" receives and answers like a minimal
/// Streamable HTTP server (JSON answers), so the test can see what the bridge sends upstream.
async fn recording_upstream() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    let task = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
                seen.lock().expect("lock").push(head.clone());
                let reply = if head.starts_with("POST") && body["id"].is_null() {
                    "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                } else if head.starts_with("POST") {
                    let result = if body["method"] == "initialize" {
                        json!({"protocolVersion": PROTOCOL, "capabilities": {"tools": {}}, "serverInfo": {"name": "rec", "version": "0"}})
                    } else {
                        json!({})
                    };
                    let msg = json!({"jsonrpc": "2.0", "id": body["id"], "result": result}).to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: upstream-1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                        msg.len()
                    )
                } else if head.starts_with("DELETE") {
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    "HTTP/1.1 405 Method Not Allowed\r\nAllow: POST, DELETE\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                };
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, heads, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_never_reach_an_upstream() {
    let (up_port, heads, up_task) = recording_upstream().await;
    let remote = format!(
        "[servers.remote]\nurl = \"http://127.0.0.1:{up_port}/mcp\"\nheaders = {{ \"X-Upstream-Key\" = \"from-config\" }}\n"
    );
    let bridge = Bridge::start(&format!("{}{remote}{}", auth_table(), echo_server("echo")), &[]).await;
    for http in [client(ALICE), {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-api-key", ALICE.parse().expect("header"));
        reqwest::Client::builder().default_headers(h).build().expect("client")
    }] {
        let s = McpSession::open_with(http.clone(), &bridge.url("/mcp/remote")).await;
        let answers = responses(s.post(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"})).await).await;
        assert!(answers.iter().any(|m| m["id"] == 2 && m["result"].is_object()), "ping through the remote: {answers:?}");
        let del = http.delete(&s.url).header("mcp-session-id", &s.id).send().await.expect("DELETE");
        assert_eq!(del.status(), 200);
    }
    let heads = heads.lock().expect("lock").clone();
    up_task.abort();
    assert!(heads.len() >= 4, "the upstream saw the sessions' requests: {heads:?}");
    for head in &heads {
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("x-upstream-key: from-config"), "configured upstream headers are sent: {head}");
        assert!(!lower.contains("authorization:") && !lower.contains("x-api-key:"), "client credentials leaked upstream: {head}");
        assert!(!head.contains(ALICE), "the client's token leaked upstream: {head}");
    }
    eprintln!("the recording upstream saw {} requests, none with client credentials", heads.len());
}

// ---- sessions bound to principals -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_principals_session_id_is_404_like_an_unknown_one_and_the_owner_keeps_it() {
    let bridge = Bridge::start(&format!("{}{}", auth_table(), echo_server("echo")), &[]).await;
    let port = bridge.port;
    let alice = client(ALICE);
    let s = McpSession::open_with(alice.clone(), &bridge.url("/mcp/echo")).await;
    let mut l = open_legacy(&alice, &bridge.base(), "echo").await;
    assert_eq!(s.echo(2, "mine").await, "mine");
    assert_eq!(l.echo(2, "mine").await, "mine");

    let bob = bearer(BOB);
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}).to_string();
    let post_headers = |sid: &str| -> Headers {
        vec![
            ("authorization".into(), bob.clone()),
            ("accept".into(), ACCEPT_BOTH.into()),
            ("content-type".into(), "application/json".into()),
            ("mcp-session-id".into(), sid.into()),
            ("mcp-protocol-version".into(), PROTOCOL.into()),
        ]
    };
    let send = |method: &'static str, path: String, headers: Headers, body: String| async move {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        raw(port, method, &path, &h, &body).await
    };
    // Each of bob's attempts is answered exactly like the same request for an unknown session.
    let last_event = format!("{}-0-1", l.id);
    let unknown_event = format!("{UNKNOWN_SESSION}-0-1");
    let get_headers = |sid: &str| -> Headers {
        vec![
            ("authorization".into(), bob.clone()),
            ("accept".into(), "text/event-stream".into()),
            ("mcp-session-id".into(), sid.into()),
        ]
    };
    let attempts: Vec<Probe> = vec![
        ("streamable POST", "POST", "/mcp/echo".into(), post_headers(&s.id), post_headers(UNKNOWN_SESSION), ping.clone()),
        ("streamable GET", "GET", "/mcp/echo".into(), get_headers(&s.id), get_headers(UNKNOWN_SESSION), String::new()),
        ("streamable DELETE", "DELETE", "/mcp/echo".into(), post_headers(&s.id), post_headers(UNKNOWN_SESSION), String::new()),
        (
            "legacy message",
            "POST",
            format!("/sse/echo/message?sessionId={}", l.id),
            post_headers(""),
            post_headers(""),
            ping.clone(),
        ),
        ("legacy /message", "POST", format!("/message?sessionId={}", l.id), post_headers(""), post_headers(""), ping.clone()),
        (
            "legacy resume",
            "GET",
            "/sse/echo".into(),
            vec![("authorization".into(), bob.clone()), ("last-event-id".into(), last_event.clone())],
            vec![("authorization".into(), bob.clone()), ("last-event-id".into(), unknown_event.clone())],
            String::new(),
        ),
    ];
    for (what, method, path, headers, unknown_headers, body) in attempts {
        let theirs = send(method, path.clone(), headers, body.clone()).await;
        let unknown_path = path.replace(&l.id, UNKNOWN_SESSION);
        let unknown = send(method, unknown_path, unknown_headers, body).await;
        assert_eq!(theirs.status, 404, "{what}: bob gets 404 for alice's session: {theirs:?}");
        assert_eq!(theirs.status, unknown.status, "{what}: same status as an unknown session");
        let strip = |b: &str| b.replace(UNKNOWN_SESSION, "<sid>").replace(&l.id, "<sid>").replace(&s.id, "<sid>");
        assert_eq!(strip(&theirs.body), strip(&unknown.body), "{what}: same body as an unknown session");
        assert!(theirs.header("mcp-session-id").is_none(), "{what}: {theirs:?}");
    }
    bridge
        .wait_for_log_line("refused a session that belongs to another client", Duration::from_secs(5), |line| {
            line.contains("refused a session that belongs to another client") && line.contains("requested_by=\"bob\"")
        })
        .await;

    // Alice's sessions are untouched: same answers, and the legacy stream lost nothing.
    assert_eq!(s.echo(3, "still mine").await, "still mine");
    assert_eq!(l.post(&common::echo_call(3, "still mine")).await, 202);
    let b = l.stream.next_event(Duration::from_secs(30)).await.expect("the echo answer on alice's stream");
    let m = b.json().expect("JSON");
    assert_eq!(m["id"], 3, "the next event on alice's stream is her answer, nothing of bob's: {m}");
    assert_eq!(m["result"]["content"][0]["text"], "still mine");
    let seq: u64 = b.id.as_deref().and_then(|i| i.rsplit('-').next()).and_then(|s| s.parse().ok()).expect("event id");
    assert_eq!(seq, 4, "events 1-4 on alice's stream: endpoint, initialize, echo 2, echo 3: {b:?}");
    healthz(&bridge).await;
}

// ---- limits -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_body_gets_413_and_one_under_it_passes() {
    let config = format!("[limits]\nmax_body = 65536\n{}", echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let port = bridge.port;
    let s = McpSession::open(&bridge.url("/mcp/echo")).await;
    let l = LegacySession::open(&bridge.base(), "echo").await;

    let under = "u".repeat(60_000);
    assert_eq!(s.echo(2, &under).await, under, "a 60 KB message passes");
    let over = common::echo_call(3, &"o".repeat(70_000)).to_string();
    let h = [("accept", ACCEPT_BOTH), ("content-type", "application/json"), ("mcp-session-id", s.id.as_str())];
    let r = raw(port, "POST", "/mcp/echo", &h, &over).await;
    assert_eq!(r.status, 413, "streamable: {r:?}");
    let r = raw(port, "POST", &format!("/sse/echo/message?sessionId={}", l.id), &h[1..2], &over).await;
    assert_eq!(r.status, 413, "legacy: {r:?}");
    let mut init_over = initialize_request(1);
    init_over["params"]["pad"] = json!("p".repeat(70_000));
    assert_eq!(raw(port, "POST", "/mcp/echo", &h[..2], &init_over.to_string()).await.status, 413, "an oversized initialize");

    // A body that claims 10 GB is cut once it passes the limit: it is never buffered whole.
    let claimed = tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let head = format!(
            "POST /mcp/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
        );
        c.write_all(head.as_bytes()).expect("write");
        let _ = c.write_all(&[b' '; 70_000]);
        let mut out = vec![0u8; 1024];
        let n = c.read(&mut out).unwrap_or(0);
        String::from_utf8_lossy(&out[..n]).to_string()
    })
    .await
    .expect("task");
    assert!(claimed.starts_with("HTTP/1.1 413"), "a 10 GB Content-Length: {claimed}");

    // Chunked without a length: cut at the limit too.
    let chunked = tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let head = format!(
            "POST /mcp/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {ACCEPT_BOTH}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        c.write_all(head.as_bytes()).expect("write");
        let chunk = format!("{:x}\r\n{}\r\n", 16384, "c".repeat(16384));
        for _ in 0..5 {
            if c.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
        let mut out = vec![0u8; 1024];
        let n = c.read(&mut out).unwrap_or(0);
        String::from_utf8_lossy(&out[..n]).to_string()
    })
    .await
    .expect("task");
    assert!(chunked.starts_with("HTTP/1.1 413"), "80 KB chunked: {chunked}");
    assert_eq!(s.echo(4, "after").await, "after", "the session survives the refused bodies");
    healthz(&bridge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_caps_answer_429_per_principal_and_503_in_total() {
    let config = format!("{}[limits]\nmax_sessions = 3\nmax_sessions_per_principal = 2\n{}", auth_table(), echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let port = bridge.port;
    let url = bridge.url("/mcp/echo");
    let (alice, bob) = (client(ALICE), client(BOB));
    let a1 = McpSession::open_with(alice.clone(), &url).await;
    let _a2 = open_legacy(&alice, &bridge.base(), "echo").await;

    let r = raw_init(port, "/mcp/echo", &[("authorization", &bearer(ALICE))]).await;
    assert_eq!(r.status, 429, "alice's third session: {r:?}");
    assert!(r.body.contains("alice") && r.body.contains("maximum of 2"), "a clear body: {}", r.body);
    let r = raw(port, "GET", "/sse/echo", &[("authorization", &bearer(ALICE)), ("accept", "text/event-stream")], "").await;
    assert_eq!(r.status, 429, "alice's third session, legacy: {r:?}");

    let _b1 = McpSession::open_with(bob.clone(), &url).await;
    let r = raw_init(port, "/mcp/echo", &[("authorization", &bearer(BOB))]).await;
    assert_eq!(r.status, 503, "the fourth session on the instance: {r:?}");
    assert!(r.body.contains("maximum of 3 sessions"), "a clear body: {}", r.body);

    // The sessions held keep working, and a freed place can be taken again.
    assert_eq!(a1.echo(2, "held").await, "held");
    let del = alice.delete(&url).header("mcp-session-id", &a1.id).send().await.expect("DELETE");
    assert_eq!(del.status(), 200);
    let again = McpSession::open_with(alice.clone(), &url).await;
    assert_eq!(again.echo(2, "again").await, "again");
    healthz(&bridge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_gets_32001_after_request_timeout_and_the_session_survives() {
    let config = format!("[limits]\nrequest_timeout = \"2s\"\n{}", python_fixture("stall", "stall_and_flood.py"));
    let bridge = Bridge::start(&config, &[]).await;
    let s = McpSession::open(&bridge.url("/mcp/stall")).await;

    let t0 = Instant::now();
    let answers = responses(s.post(&tool_call(5, "hang", json!({}))).await).await;
    let err = answers.iter().find(|m| m["id"] == 5).unwrap_or_else(|| panic!("an answer for the hung call: {answers:?}"));
    assert_eq!(err["error"]["code"], -32001, "{err}");
    assert!(err["error"]["message"].as_str().unwrap_or("").contains("request_timeout"), "{err}");
    assert!(t0.elapsed() >= Duration::from_secs(2), "not before the timeout: {:?}", t0.elapsed());
    assert_eq!(s.echo(6, "alive").await, "alive", "the same session answers afterwards");
    bridge
        .wait_for_log_line("the child got notifications/cancelled", Duration::from_secs(10), |l| l.contains("cancelled 5"))
        .await;

    // Legacy: the error comes on the stream, and the session goes on.
    let mut l = LegacySession::open(&bridge.base(), "stall").await;
    assert_eq!(l.post(&tool_call(7, "hang", json!({}))).await, 202);
    let m = l.next_message(Duration::from_secs(30)).await.expect("an answer for the hung call");
    assert_eq!((m["id"].clone(), m["error"]["code"].clone()), (json!(7), json!(-32001)), "{m}");
    assert_eq!(l.echo(8, "alive").await, "alive");
    healthz(&bridge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_children_initialize_gets_an_error_naming_the_limit() {
    let config = format!("[limits]\nmax_children = 1\n{}", echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let url = bridge.url("/mcp/echo");
    let first = McpSession::open(&url).await;

    let http = common::http();
    let resp = common::post_initialize(&http, &url).await;
    let answers = responses(resp).await;
    let err = answers.iter().find(|m| m["id"] == 1).unwrap_or_else(|| panic!("an answer to initialize: {answers:?}"));
    let msg = err["error"]["message"].as_str().unwrap_or_else(|| panic!("a JSON-RPC error: {err}"));
    assert!(msg.contains("max_children") && msg.contains("maximum of 1"), "the error names the limit: {msg}");

    let mut l = LegacySession::connect(&bridge.base(), "echo").await;
    assert_eq!(l.post(&initialize_request(1)).await, 202);
    let m = l.next_message(Duration::from_secs(20)).await.expect("an answer to initialize");
    assert!(m["error"]["message"].as_str().unwrap_or("").contains("max_children"), "{m}");

    // More refusals than the crash-loop guard tolerates: being at the cap is not a crash, so
    // the server must not be marked unhealthy for everyone.
    for _ in 0..6 {
        let resp = http
            .post(&url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(initialize_request(1).to_string())
            .send()
            .await
            .expect("POST initialize");
        assert_eq!(resp.status(), 200, "refused at the cap, not as an unhealthy server");
        let answers = responses(resp).await;
        assert!(answers.iter().any(|m| m["error"]["message"].as_str().unwrap_or("").contains("max_children")), "{answers:?}");
    }
    assert_eq!(first.echo(2, "first").await, "first", "the running session is untouched");
    let del = http.delete(&url).header("mcp-session-id", &first.id).send().await.expect("DELETE");
    assert_eq!(del.status(), 200);
    // The slot is given back when the child is gone, and the server is still healthy.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = http
            .post(&url)
            .header("accept", ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(initialize_request(1).to_string())
            .send()
            .await
            .expect("POST initialize");
        let status = resp.status();
        let answers = responses(resp).await;
        assert_eq!(status, 200, "a server that never crashed was refused: {answers:?}");
        if answers.iter().any(|m| m["id"] == 1 && m["result"].is_object()) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot is never given back: {answers:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = common::http().get(bridge.url("/readyz")).send().await.expect("readyz").text().await.unwrap_or_default();
    let ready: Value = serde_json::from_str(&ready).expect("readyz JSON");
    assert_eq!(ready["servers"]["echo"]["healthy"], true, "{ready}");
    healthz(&bridge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_connections_are_closed_after_header_read_timeout() {
    let config = format!("[limits]\nheader_read_timeout = \"1s\"\n{}", echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let port = bridge.port;
    const LORIS: usize = 20;
    let t0 = Instant::now();
    let stalls: Vec<_> = (0..LORIS)
        .map(|i| {
            tokio::task::spawn_blocking(move || {
                let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
                c.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
                // Half a request line (or half the headers), then silence.
                let partial: &[u8] =
                    if i % 2 == 0 { b"GET /heal" } else { b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1" };
                c.write_all(partial).expect("write");
                let started = Instant::now();
                let mut out = Vec::new();
                let r = c.read_to_end(&mut out);
                (started.elapsed(), r.is_ok(), String::from_utf8_lossy(&out).to_string())
            })
        })
        .collect();
    // Meanwhile a normal request is served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    healthz(&bridge).await;
    for s in stalls {
        let (took, _clean, got) = s.await.expect("task");
        assert!(took < Duration::from_secs(30), "a stalled connection was held {took:?}");
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "a stalled connection gets nothing or 408: {got:?}");
    }
    eprintln!("{LORIS} slow-loris connections closed within {:?} (header_read_timeout 1s)", t0.elapsed());

    // A client that connects and sends nothing at all is not held forever either.
    let idle = tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let started = Instant::now();
        let mut out = Vec::new();
        let closed = c.read_to_end(&mut out).is_ok();
        (started.elapsed(), closed)
    })
    .await
    .expect("task");
    assert!(idle.1 && idle.0 < Duration::from_secs(30), "a silent connection was held {:?}", idle.0);
    healthz(&bridge).await;
}

// ---- child processes --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_processes_are_reaped_however_their_session_ends() {
    let config =
        format!("[sessions]\nidle_timeout = \"2s\"\n{}{}", echo_server("echo"), python_fixture("crash", "crash_on_call.py"));
    let bridge = Bridge::start(&config, &[]).await;
    let pid = procfs::bridge_pid(bridge.port);
    let url = bridge.url("/mcp/echo");

    // DELETE.
    let sessions = futures_util::future::join_all((0..4).map(|_| McpSession::open(&url))).await;
    let running = procfs::children(pid);
    assert!(running.len() >= 4, "one child per session: {running:?}");
    for s in &sessions {
        let del = s.http.delete(&s.url).header("mcp-session-id", &s.id).send().await.expect("DELETE");
        assert_eq!(del.status(), 200);
    }
    procfs::wait_no_children(pid, Duration::from_secs(20), "after DELETE").await;

    // The client goes away and the session expires.
    let legacy = LegacySession::open(&bridge.base(), "echo").await;
    let streamable = McpSession::open(&url).await;
    assert_eq!(procfs::children(pid).len(), 2, "two children: {:?}", procfs::children(pid));
    drop(legacy);
    drop(streamable);
    procfs::wait_no_children(pid, Duration::from_secs(30), "after idle expiry").await;
    bridge
        .wait_for_log_line("session ended reason=idle_timeout", Duration::from_secs(5), |l| {
            l.contains("session ended") && l.contains("reason=idle_timeout")
        })
        .await;

    // The child crashes with a request in flight.
    let s = McpSession::open(&bridge.url("/mcp/crash")).await;
    let crashed = procfs::children(pid);
    assert_eq!(crashed.len(), 1, "{crashed:?}");
    let answers = responses(s.post(&tool_call(5, "crash", json!({}))).await).await;
    assert!(answers.iter().any(|m| m["id"] == 5 && m["error"].is_object()), "{answers:?}");
    procfs::wait_no_children(pid, Duration::from_secs(20), "after a crash").await;

    // Shutdown: SIGTERM to the bridge kills the children it still has.
    let _a = McpSession::open(&url).await;
    let _b = LegacySession::open(&bridge.base(), "echo").await;
    let last: Vec<i32> = procfs::children(pid).iter().map(|p| p.pid).collect();
    assert_eq!(last.len(), 2, "two children before shutdown");
    drop(bridge);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !last.iter().all(|p| procfs::is_dead(*p)) {
        assert!(Instant::now() < deadline, "children outlived the bridge: {last:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_child_gets_only_its_configured_env_and_no_shell() {
    let dir = common::TempDir::new("noshell");
    let marker = dir.path().join("shell-ran");
    // A one-line MCP server that reports its environment and argv in serverInfo.
    let script = r#"
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "initialize":
        info = {"env": dict(os.environ), "argv": sys.argv[1:]}
        r = {"protocolVersion": m["params"]["protocolVersion"], "capabilities": {}, "serverInfo": {"name": json.dumps(info), "version": "0"}}
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}), flush=True)
"#;
    let hostile_arg = format!("$(touch {0}); `touch {0}` | touch {0}", marker.display());
    let config = format!(
        // An absolute interpreter: a bare `python3` is found on the bridge's PATH, maybe a
        // pyenv shim, which adds variables of its own.
        "[servers.env]\ncommand = \"/usr/bin/python3\"\nargs = [\"-c\", {}, {}]\nenv = {{ CONFIGURED = \"yes\" }}\n",
        toml_str(script),
        toml_str(&hostile_arg)
    );
    let bridge = Bridge::start(&config, &[]).await;
    let resp = common::http()
        .post(bridge.url("/mcp/env"))
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(initialize_request(1).to_string())
        .send()
        .await
        .expect("POST initialize");
    let answers = responses(resp).await;
    let init = answers.iter().find(|m| m["id"] == 1).unwrap_or_else(|| panic!("{answers:?}"));
    let info: Value =
        serde_json::from_str(init["result"]["serverInfo"]["name"].as_str().expect("serverInfo.name")).expect("JSON");
    let env = info["env"].as_object().expect("env");
    let mut names: Vec<&str> = env.keys().map(String::as_str).filter(|k| *k != "LC_CTYPE").collect();
    names.sort();
    assert_eq!(names, ["CONFIGURED", "PATH"], "only PATH and the configured env: {env:?}");
    assert_eq!(env["CONFIGURED"], "yes");
    assert_eq!(info["argv"], json!([hostile_arg]), "the argument arrives verbatim");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.exists(), "a shell ran the argument");
    healthz(&bridge).await;
}
