//! The hardening findings of issue 18, each reproduced on the real bridge binary: client-chosen
//! metric labels, a malformed admin token hash, DNS rebinding on a public listener, a
//! scheme-relative `X-Forwarded-Prefix`, repeated 2026-07-28 routing headers, a forged
//! `X-Forwarded-For`, what `/readyz` and `/metrics` show without a token, and the admin guard.

mod common;
#[path = "fixtures/procfs.rs"]
mod procfs;
mod support_nginx;

use std::io::{Read, Write};
use std::time::Duration;

use common::{echo_server, Bridge, Launch, McpSession};
use serde_json::json;

/// One raw HTTP/1.1 exchange on a fresh connection to 127.0.0.1:`port`; `head` is every header
/// line (`Host` included, so a test can forge or repeat it). Returns (status, head, body).
fn exchange(port: u16, request_line: &str, head: &[u8], body: &[u8]) -> (u16, String, String) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
    let mut req = format!("{request_line} HTTP/1.1\r\nConnection: close\r\n").into_bytes();
    req.extend_from_slice(head);
    req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    let _ = c.write_all(&req);
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = h.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, h.to_ascii_lowercase(), b.to_string())
}

async fn exchange_async(port: u16, request_line: &str, head: Vec<u8>, body: Vec<u8>) -> (u16, String, String) {
    let line = request_line.to_string();
    tokio::task::spawn_blocking(move || exchange(port, &line, &head, &body)).await.expect("exchange task")
}

// ---- 1. metric labels -----------------------------------------------------------------------

/// Finding 1 (high): a method name a client sends must not become a Prometheus label (label
/// sets are never pruned: four 8 MiB names held 200 MiB for good and made a 671 MB scrape).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_chosen_method_names_never_become_metric_labels() {
    let config = format!("[limits]\nmax_body = 16777216\n{}", echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let pid = procfs::bridge_pid(bridge.port);
    let s = McpSession::open(&bridge.url("/mcp/echo")).await;
    assert_eq!(s.echo(2, "warm").await, "warm");
    let rss_before = procfs::rss_kib(pid);
    for i in 0..4u64 {
        let method = format!("{i}{}", "m".repeat(8 << 20));
        let resp = s.post(&json!({"jsonrpc": "2.0", "id": 100 + i, "method": method})).await;
        assert_eq!(resp.status(), 200, "a request with an 8 MiB method name is served (and answered by the upstream)");
        let answers = common::responses(resp).await;
        assert!(answers.iter().any(|m| m["id"] == 100 + i && m["error"].is_object()), "answered: {}", answers.len());
    }
    for i in 0..300u64 {
        let resp = s.post(&json!({"jsonrpc": "2.0", "id": 1000 + i, "method": format!("made-up/{i}")})).await;
        common::responses(resp).await;
    }
    // The admin timeline keeps clipped methods and ids.
    let one = common::http().get(bridge.url(&format!("/admin/api/sessions/{}", s.id))).send().await.expect("timeline");
    let body = one.text().await.expect("timeline body");
    assert!(body.len() < 64 * 1024, "the admin timeline keeps clipped methods: {} bytes", body.len());
    // The echo server repeats the method in its error, and the session's replay log keeps those
    // answers: end the session, so that what is left is what the bridge keeps for good.
    let del = common::http().delete(&s.url).header("mcp-session-id", &s.id).send().await.expect("DELETE");
    assert_eq!(del.status(), 200, "the session ends");
    let text = common::http().get(bridge.url("/metrics")).send().await.expect("scrape").text().await.expect("scrape body");
    let rss_after = procfs::rss_kib(pid);
    eprintln!("metrics: scrape {} bytes; RSS {rss_before} KiB before, {rss_after} KiB after", text.len());
    assert!(text.len() < 64 * 1024, "the scrape stays small: {} bytes", text.len());
    assert!(!text.contains("mmmmmmmm") && !text.contains("made-up/"), "no client-chosen method is a label");
    assert!(text.contains(r#"method="other""#), "unknown methods count as `other`:\n{text}");
    assert!(text.contains(r#"method="tools/call""#), "known methods keep their name:\n{text}");
    assert!(
        rss_after < rss_before + 128 * 1024,
        "RSS stays bounded (the transient 8 MiB bodies leave some in the allocator): {rss_before} KiB -> {rss_after} KiB"
    );
}

// ---- 5. the admin token hash ----------------------------------------------------------------

/// Runs `mcp-bridge ARGS…` to its end (bounded); returns (success, stdout + stderr).
fn run_bridge_cmd(args: &[&str]) -> (bool, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mcp-bridge");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("mcp-bridge {args:?} still ran after 20 s: {}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Finding 5: a malformed `[admin] token_sha256` (say `sha256:…`) passed `check-config` and
/// turned admin authentication off; an empty `token` did the same. Both must be refused.
#[test]
fn a_malformed_admin_token_is_refused_by_check_config_and_serve() {
    let dir = common::TempDir::new("admin-token");
    let hex = "a".repeat(64);
    for (what, table, key) in [
        ("a prefixed hash", format!("[admin]\ntoken_sha256 = \"sha256:{hex}\"\n"), "admin.token_sha256"),
        ("a short hash", "[admin]\ntoken_sha256 = \"abcd\"\n".to_string(), "admin.token_sha256"),
        ("an empty token", "[admin]\ntoken = \"\"\n".to_string(), "admin.token"),
        ("an empty metrics token", "[metrics]\ntoken = \" \"\n".to_string(), "metrics.token"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, format!("{table}{}", echo_server("echo"))).expect("write config");
        let p = path.display().to_string();
        let (ok, out) = run_bridge_cmd(&["check-config", &p]);
        assert!(!ok && out.contains(key), "{what}: check-config fails naming `{key}`: {out}");
        let listen = format!("127.0.0.1:{}", common::free_port());
        let (ok, out) = run_bridge_cmd(&["serve", "--config", &p, "--listen", &listen]);
        assert!(!ok && out.contains(key), "{what}: serve refuses to start, naming `{key}`: {out}");
    }
}

// ---- 7. DNS rebinding on a public listener --------------------------------------------------

fn initialize_body() -> Vec<u8> {
    common::initialize_request(1).to_string().into_bytes()
}

fn post_head(host: &str, extra: &str) -> Vec<u8> {
    format!("Host: {host}\r\nContent-Type: application/json\r\nAccept: {}\r\n{extra}", common::ACCEPT_BOTH).into_bytes()
}

/// Finding 7: on a public listener with no `allowed_origins`, a rebound name (`Host` and
/// `Origin` both the attacker's) got 200 and CORS naming the attacker's origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_on_a_public_listener_is_refused() {
    let b = Bridge::launch(&echo_server("echo"), Launch { ip: "0.0.0.0", ..Launch::default() }).await;
    let host = format!("evil.example:{}", b.port);
    let origin = format!("Origin: http://{host}\r\n");
    let (status, head, body) = exchange_async(b.port, "POST /mcp/echo", post_head(&host, &origin), initialize_body()).await;
    assert_eq!(status, 403, "a rebound Host with its own Origin is refused: {head}\n{body}");
    assert!(!head.contains("access-control-allow-origin"), "no CORS for it: {head}");
    // What still works: no Origin (a non-browser client), and a local page.
    let (status, ..) = exchange_async(b.port, "POST /mcp/echo", post_head(&host, ""), initialize_body()).await;
    assert_eq!(status, 200, "a request without Origin passes");
    let local = "Origin: http://localhost:3000\r\n";
    let (status, head, _) = exchange_async(b.port, "POST /mcp/echo", post_head(&host, local), initialize_body()).await;
    assert_eq!(status, 200, "a local page passes: {head}");
    assert!(head.contains("access-control-allow-origin: http://localhost:3000"), "{head}");
    assert!(b.log().contains("listening beyond loopback without [auth]"), "the start warns: {}", b.log());
}

// ---- 8. X-Forwarded-Prefix ------------------------------------------------------------------

/// The `endpoint` event of a legacy stream opened with `X-Forwarded-Prefix: prefix`.
async fn endpoint_with_prefix(bridge: &Bridge, prefix: &str) -> String {
    let resp = common::http()
        .get(bridge.url("/sse/echo"))
        .header("accept", "text/event-stream")
        .header("x-forwarded-prefix", prefix)
        .send()
        .await
        .expect("GET /sse/echo");
    assert_eq!(resp.status(), 200, "the stream opens whatever the prefix");
    let mut sse = common::SseReader::new(resp);
    let ev = sse.next_event(Duration::from_secs(10)).await.expect("the endpoint event");
    assert_eq!(ev.event.as_deref(), Some("endpoint"));
    ev.data.unwrap_or_default()
}

/// Finding 8: `X-Forwarded-Prefix: //evil.example` passed the sanitizer, and the `endpoint`
/// event became scheme-relative (`//evil.example/sse/…`), so clients POSTed to another host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_prefix_that_is_not_a_clean_path_is_ignored() {
    let bridge = Bridge::start(&echo_server("echo"), &[]).await;
    for bad in ["//evil.example", "//evil.example/x", "/a/../..", "/./a", "/a//b"] {
        let ep = endpoint_with_prefix(&bridge, bad).await;
        assert!(ep.starts_with("/sse/echo/message?sessionId="), "`{bad}` is ignored: endpoint {ep}");
    }
    let ep = endpoint_with_prefix(&bridge, "/mcp-bridge/").await;
    assert!(ep.starts_with("/mcp-bridge/sse/echo/message?sessionId="), "a clean prefix is kept: {ep}");
}

// ---- 10. repeated 2026-07-28 routing headers ------------------------------------------------

/// Finding 10: only the first of a repeated `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*` or
/// `MCP-Protocol-Version` was checked, and the request ran: a proxy routing on another copy
/// saw a different request than the upstream executed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_routing_header_is_a_400_header_mismatch() {
    let bridge = Bridge::start(&echo_server("echo"), &[]).await;
    let body =
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "hi"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}})
        .to_string()
        .into_bytes();
    let host = format!("127.0.0.1:{}", bridge.port);
    let base = "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: echo\r\n";
    let (status, _, answer) = exchange_async(bridge.port, "POST /mcp/echo", post_head(&host, base), body.clone()).await;
    assert_eq!(status, 200, "the request with each header once is served: {answer}");
    assert!(answer.contains(r#""text":"hi""#), "{answer}");
    for (what, extra) in [
        ("Mcp-Method", "Mcp-Method: tools/list\r\n"),
        ("Mcp-Name", "Mcp-Name: other\r\n"),
        ("MCP-Protocol-Version", "MCP-Protocol-Version: 2026-07-28\r\n"),
        ("Mcp-Param-Region", "Mcp-Param-Region: eu\r\nMcp-Param-Region: us\r\n"),
    ] {
        let head = post_head(&host, &format!("{base}{extra}"));
        let (status, _, answer) = exchange_async(bridge.port, "POST /mcp/echo", head, body.clone()).await;
        assert_eq!(status, 400, "a repeated {what} is refused: {answer}");
        assert_eq!(common::rpc_error_code(&answer), Some(-32020), "{what}: HeaderMismatch: {answer}");
        assert!(answer.to_ascii_lowercase().contains(&what.to_ascii_lowercase()), "the error names {what}: {answer}");
    }
}

// ---- 12. the logged client address ----------------------------------------------------------

/// The `client=` of the first `SSE connection opened` line for `server`.
async fn logged_client(bridge: &Bridge, server: &str) -> String {
    let line = bridge
        .wait_for_log_line("SSE connection opened", Duration::from_secs(10), |l| {
            l.contains("SSE connection opened") && l.contains(&format!("server={server} "))
        })
        .await;
    line.split_whitespace().find_map(|w| w.strip_prefix("client=")).unwrap_or_default().to_string()
}

/// Finding 12: the logged client was the first `X-Forwarded-For` hop, which the client writes
/// itself behind the shipped nginx (`client=6.6.6.6`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_x_forwarded_for_does_not_name_the_client() {
    let config = format!("{}{}", echo_server("echo"), echo_server("direct"));
    let bridge = Bridge::start(&config, &[]).await;
    let nginx = support_nginx::Nginx::start(bridge.port, &support_nginx::NginxOpts::default());
    let resp = common::http()
        .get(nginx.url("/sse/echo"))
        .header("accept", "text/event-stream")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .send()
        .await
        .expect("GET through nginx");
    assert_eq!(resp.status(), 200);
    let mut sse = common::SseReader::new(resp);
    sse.next_event(Duration::from_secs(10)).await.expect("the endpoint event");
    assert_eq!(logged_client(&bridge, "echo").await, "127.0.0.1", "the address nginx saw, not the forged hop");
    drop(sse);
    // A peer that is not a trusted proxy is the client, whatever it claims.
    let only_10 = format!("trusted_proxies = [\"10.0.0.0/8\"]\n{config}");
    let direct = Bridge::start(&only_10, &[]).await;
    let resp = common::http()
        .get(direct.url("/sse/direct"))
        .header("accept", "text/event-stream")
        .header("x-forwarded-for", "6.6.6.6")
        .send()
        .await
        .expect("GET direct");
    let mut sse = common::SseReader::new(resp);
    sse.next_event(Duration::from_secs(10)).await.expect("the endpoint event");
    let client = logged_client(&direct, "direct").await;
    assert!(client.starts_with("127.0.0.1:"), "an untrusted peer is named by its own address: {client}");
}

// ---- informational: the Bearer scheme -------------------------------------------------------

const CLIENT_TOKEN: &str = "client-token-71c3e0";
const ADMIN_TOKEN: &str = "admin-token-5d2a91";
const METRICS_TOKEN: &str = "metrics-token-0b8f44";

/// `[auth]` with one client, the admin token, and `extra` (say a `[metrics]` table).
fn authed_config(extra: &str) -> String {
    format!(
        "[auth]\n[[auth.clients]]\nname = \"c\"\ntoken = \"{CLIENT_TOKEN}\"\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n{extra}{}",
        echo_server("echo")
    )
}

/// RFC 9110 makes the auth scheme case-insensitive; `BEARER` was refused with 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let bridge = Bridge::start(&authed_config(""), &[]).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = common::http()
            .post(bridge.url("/mcp/echo"))
            .header("authorization", format!("{scheme} {CLIENT_TOKEN}"))
            .header("accept", common::ACCEPT_BOTH)
            .header("content-type", "application/json")
            .body(common::initialize_request(1).to_string())
            .send()
            .await
            .expect("initialize");
        assert_eq!(resp.status(), 200, "`{scheme}` is the bearer scheme for a client token");
        let admin = common::http()
            .get(bridge.url("/admin/api/servers"))
            .header("authorization", format!("{scheme} {ADMIN_TOKEN}"))
            .send()
            .await
            .expect("admin");
        assert_eq!(admin.status(), 200, "`{scheme}` is the bearer scheme for the admin token");
    }
}

// ---- 13. what is open without a token -------------------------------------------------------

/// GET `path` with `Authorization: Bearer token` (if any): (status, body).
async fn get_with(bridge: &Bridge, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = common::http().get(bridge.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

/// Finding 13: with `[auth]` on, `/readyz` showed anyone the servers, the instance id and
/// `last_error`, and every client token read every server's metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_details_and_metrics_need_a_token_when_auth_is_on() {
    let bridge = Bridge::start(&authed_config(&format!("[metrics]\ntoken = \"{METRICS_TOKEN}\"\n")), &[]).await;
    let (status, body) = get_with(&bridge, "/readyz", None).await;
    assert_eq!(status, 200, "anyone gets the status: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("readyz JSON");
    assert_eq!(v["status"], "ready");
    assert!(v.get("servers").is_none() && v.get("instance").is_none(), "no details without a token: {body}");
    for token in [CLIENT_TOKEN, ADMIN_TOKEN] {
        let (status, body) = get_with(&bridge, "/readyz", Some(token)).await;
        assert_eq!(status, 200);
        assert!(body.contains("\"servers\"") && body.contains("\"instance\""), "an authenticated caller gets details: {body}");
    }
    let (status, _) = get_with(&bridge, "/readyz", Some("wrong")).await;
    assert_eq!(status, 200, "a wrong token still gets the status");
    for (who, token) in [("no token", None), ("a client token", Some(CLIENT_TOKEN)), ("the admin token", Some(ADMIN_TOKEN))] {
        let (status, body) = get_with(&bridge, "/metrics", token).await;
        assert_eq!(status, 401, "{who} does not read /metrics: {body}");
    }
    let (status, body) = get_with(&bridge, "/metrics", Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "the metrics token reads /metrics");
    assert!(body.contains("mcp_bridge_"), "{body}");
    // With [auth] on and no [metrics] token, /metrics is closed to every token.
    let closed = Bridge::start(&authed_config(""), &[]).await;
    let (status, body) = get_with(&closed, "/metrics", Some(CLIENT_TOKEN)).await;
    assert!(status == 401 && body.contains("[metrics]"), "closed, saying how to open it: {status} {body}");
    // Without [auth], a [metrics] token still guards /metrics; /readyz keeps its details.
    let open = Bridge::start(&format!("[metrics]\ntoken = \"{METRICS_TOKEN}\"\n{}", echo_server("echo")), &[]).await;
    assert_eq!(get_with(&open, "/metrics", None).await.0, 401);
    assert_eq!(get_with(&open, "/metrics", Some(METRICS_TOKEN)).await.0, 200);
    assert!(get_with(&open, "/readyz", None).await.1.contains("\"servers\""));
}

// ---- informational: the admin guard and the Host check --------------------------------------

/// The admin guard: a request that came through a proxy (`Forwarded`, `X-Real-IP`, any
/// `X-Forwarded-*`) is not a loopback client; the admin API has no CORS and answers only its
/// own page's origin; the status page cannot be framed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_guard_sees_proxies_refuses_other_origins_and_cannot_be_framed() {
    let bridge = Bridge::start(&echo_server("echo"), &[]).await;
    let host = format!("127.0.0.1:{}", bridge.port);
    let get = |extra: &str| format!("Host: {host}\r\n{extra}").into_bytes();
    let (status, ..) = exchange_async(bridge.port, "GET /admin/api/servers", get(""), vec![]).await;
    assert_eq!(status, 200, "a loopback client without a proxy in between");
    for proxy in ["Forwarded: for=203.0.113.9", "X-Real-IP: 203.0.113.9", "X-Forwarded-Host: bridge.example"] {
        let (status, ..) = exchange_async(bridge.port, "GET /admin/api/servers", get(&format!("{proxy}\r\n")), vec![]).await;
        assert_eq!(status, 401, "`{proxy}`: came through a proxy, so not loopback-trusted");
    }
    let other = "Origin: http://localhost:3000\r\n";
    let (status, head, _) = exchange_async(bridge.port, "GET /admin/api/servers", get(other), vec![]).await;
    assert_eq!(status, 403, "another local page may not call the admin API: {head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    let preflight = format!("{other}Access-Control-Request-Method: POST\r\n");
    let (_, head, _) = exchange_async(bridge.port, "OPTIONS /admin/api/reload", get(&preflight), vec![]).await;
    assert!(!head.contains("access-control-allow-origin"), "no CORS preflight for the admin API: {head}");
    let own = format!("Origin: http://{host}\r\n");
    let (status, ..) = exchange_async(bridge.port, "GET /admin/api/servers", get(&own), vec![]).await;
    assert_eq!(status, 200, "the status page's own origin");
    let (status, head, _) = exchange_async(bridge.port, "GET /admin", get(""), vec![]).await;
    assert_eq!(status, 200);
    assert!(head.contains("content-security-policy: frame-ancestors 'none'") && head.contains("x-frame-options: deny"), "{head}");
}

/// A second `Host` header, or one that is not text, slipped past the DNS-rebinding check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_or_binary_host_header_is_a_400() {
    let bridge = Bridge::start(&echo_server("echo"), &[]).await;
    let host = format!("127.0.0.1:{}", bridge.port);
    let cases: [(&str, Vec<u8>); 3] = [
        ("two Host headers", post_head(&host, "Host: evil.example\r\n")),
        ("a Host that is not text", {
            let mut h = b"Host: evil\xff.example\r\n".to_vec();
            h.extend_from_slice(&post_head(&host, "")[format!("Host: {host}\r\n").len()..]);
            h
        }),
        ("one local Host", post_head(&host, "")),
    ];
    for (what, head) in cases {
        let (status, _, body) = exchange_async(bridge.port, "POST /mcp/echo", head, initialize_body()).await;
        let want = if what == "one local Host" { 200 } else { 400 };
        assert_eq!(status, want, "{what}: {body}");
    }
}
