//! Security controls of the real bridge binary, part one: authentication (401 with a challenge,
//! 403 for a server a client may not use, the protected-resource document, credentials kept from
//! upstreams) and sessions bound to their principal. Limits and child processes are in
//! tests/security_limits.rs.

mod common;
#[path = "security/principals.rs"]
mod principals;

use std::time::Duration;

use common::{echo_server, initialize_request, raw, responses, rpc_error_code, Bridge, McpSession, ACCEPT_BOTH, PROTOCOL};
use principals::*;
use serde_json::{json, Value};
use sha2::Digest;

/// (what, method, path, headers) of a request.
type Attempt<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>);
/// Owned headers.
type Headers = Vec<(String, String)>;
/// (what, method, path, headers, the same request's headers for an unknown session, body).
type Probe = (&'static str, &'static str, String, Headers, Headers, String);

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
    let last_event = format!("{}-0-1", l.sid);
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
            format!("/sse/echo/message?sessionId={}", l.sid),
            post_headers(""),
            post_headers(""),
            ping.clone(),
        ),
        ("legacy /message", "POST", format!("/message?sessionId={}", l.sid), post_headers(""), post_headers(""), ping.clone()),
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
        let unknown_path = path.replace(&l.sid, UNKNOWN_SESSION);
        let unknown = send(method, unknown_path, unknown_headers, body).await;
        assert_eq!(theirs.status, 404, "{what}: bob gets 404 for alice's session: {theirs:?}");
        assert_eq!(theirs.status, unknown.status, "{what}: same status as an unknown session");
        let strip = |b: &str| b.replace(UNKNOWN_SESSION, "<sid>").replace(&l.sid, "<sid>").replace(&s.id, "<sid>");
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
    let b = l.stream().next_event(Duration::from_secs(30)).await.expect("the echo answer on alice's stream");
    let m = b.json().expect("JSON");
    assert_eq!(m["id"], 3, "the next event on alice's stream is her answer, nothing of bob's: {m}");
    assert_eq!(m["result"]["content"][0]["text"], "still mine");
    let seq: u64 = b.id.as_deref().and_then(|i| i.rsplit('-').next()).and_then(|s| s.parse().ok()).expect("event id");
    assert_eq!(seq, 4, "events 1-4 on alice's stream: endpoint, initialize, echo 2, echo 3: {b:?}");
    healthz(&bridge).await;
}
