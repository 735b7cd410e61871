//! Operating the bridge, black-box against the real binary: `/metrics` after a real session,
//! the admin API (servers, sessions with principal/age/bytes, a session's timeline, ending a
//! session) and its access rules (token; loopback without `X-Forwarded-For`, also behind real
//! nginx), SIGHUP and admin-API reload (added/removed/changed servers, live streams kept, a bad
//! file refused), graceful drain on SIGTERM, and the crash-loop guard.

mod common;
mod support_nginx;

use std::time::Duration;

use common::{echo_server, get_json, request_json, toml_str, Bridge, Legacy, SseReader, LEGACY_PROTOCOL};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

fn echo_bin() -> String {
    toml_str(env!("CARGO_BIN_EXE_mcp-echo-server"))
}

/// A stdio server running the bundled echo server, with extra TOML lines in its table.
fn echo_with(name: &str, extra: &str) -> String {
    format!("[servers.{name}]\ncommand = {}\n{extra}\n", echo_bin())
}

/// The session of `list` (an admin `/sessions` answer) with id `sid`.
fn listed<'a>(list: &'a Value, sid: &str) -> &'a Value {
    list["sessions"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == sid))
        .unwrap_or_else(|| panic!("session {sid} in the admin list: {list}"))
}

fn server_names(servers: &Value) -> Vec<String> {
    let mut names: Vec<String> = servers["servers"]
        .as_array()
        .unwrap_or_else(|| panic!("a server list: {servers}"))
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

// ---- metrics ----------------------------------------------------------------------------

#[tokio::test]
async fn metrics_count_a_real_session() {
    let b =
        Bridge::named("metrics", &echo_server("echo"), &["--instance-id", "ops-metrics", "--heartbeat-interval", "300ms"]).await;
    let base = b.base();
    let mut c = Legacy::connect_as(&base, "echo", None).await;
    let endpoint_event = c.last_id.clone().expect("the endpoint event has an id");
    c.handshake(&common::initialize_at(LEGACY_PROTOCOL)).await;
    for i in 0..3u64 {
        assert_eq!(c.echo_via(&base, 10 + i, &format!("m{i}")).await, format!("m{i}"));
    }
    let unknown = c.call_via(&base, 20, "no-such-tool", json!({})).await;
    assert!(unknown["error"]["code"].is_i64(), "an unknown tool is a JSON-RPC error: {unknown}");
    c.heartbeats_more(1, MINUTE).await;

    let m = b.metrics().await;
    let samples = m.samples();
    assert!(samples.len() > 10, "/metrics has series:\n{}", m.0);
    for s in &samples {
        assert_eq!(s.label("instance"), Some("ops-metrics"), "every series names the instance: {s:?}");
    }
    let sse = [("server", "echo"), ("transport", "sse")];
    assert_eq!(m.value("mcp_bridge_sessions_open", &sse), 1.0);
    assert_eq!(m.value("mcp_bridge_streams_opened_total", &sse), 1.0);
    assert_eq!(m.value_or_zero("mcp_bridge_streams_closed_total", &sse), 0.0, "no stream closed yet");
    let method = |name: &'static str| [("server", "echo"), ("method", name)];
    assert_eq!(m.value("mcp_bridge_requests_total", &method("initialize")), 1.0);
    assert_eq!(m.value("mcp_bridge_requests_total", &method("tools/call")), 4.0, "3 echoes and 1 unknown tool");
    assert_eq!(m.value("mcp_bridge_upstream_latency_seconds_count", &method("tools/call")), 4.0);
    assert_eq!(m.value("mcp_bridge_upstream_latency_seconds_count", &method("initialize")), 1.0);
    assert!(m.value("mcp_bridge_upstream_latency_seconds_sum", &method("tools/call")) > 0.0);
    let buckets = m.find("mcp_bridge_upstream_latency_seconds_bucket", &method("tools/call"));
    assert!(buckets.len() > 5, "a histogram with buckets: {buckets:?}");
    let counts: Vec<f64> = buckets.iter().map(|b| b.value).collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "cumulative buckets never decrease: {buckets:?}");
    assert_eq!(buckets.last().and_then(|b| b.label("le")), Some("+Inf"));
    assert_eq!(counts.last().copied(), Some(4.0), "+Inf counts every call");
    assert!(counts[0] < 4.0, "the smallest bucket (50 µs) cannot hold a process round trip: {buckets:?}");
    assert!(m.value("mcp_bridge_heartbeats_sent_total", &[("server", "echo")]) >= 1.0);
    assert_eq!(m.value("mcp_bridge_upstream_healthy", &[("server", "echo")]), 1.0);
    assert_eq!(m.value("mcp_bridge_forwarded_requests_total", &[]), 0.0, "memory mode forwards nothing");

    // The client goes away, comes back with Last-Event-ID from the endpoint event (everything
    // since is replayed: initialize, 3 echoes, the error), and goes away again.
    c.disconnect();
    b.wait_log(&["SSE connection closed", &c.sid, "reason=client_closed"], MINUTE).await;
    c.last_id = Some(endpoint_event);
    c.resume(&base).await.expect("resume with Last-Event-ID");
    let mut replayed = Vec::new();
    for _ in 0..5 {
        replayed.push(c.next(MINUTE).await.expect("a replayed event").expect("the stream is open")["id"].clone());
    }
    assert_eq!(replayed, vec![json!(1), json!(10), json!(11), json!(12), json!(20)]);
    c.disconnect();
    let closed = |b: &Bridge| b.lines_with(&["SSE connection closed", &c.sid, "reason=client_closed"]).len();
    for _ in 0..600 {
        if closed(&b) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(closed(&b), 2, "both streams closed as client_closed; log:\n{}", b.log());

    let m = b.metrics().await;
    assert_eq!(m.value("mcp_bridge_streams_opened_total", &sse), 2.0);
    assert_eq!(m.value("mcp_bridge_streams_closed_total", &[("server", "echo"), ("reason", "client_closed")]), 2.0);
    assert_eq!(m.value("mcp_bridge_events_replayed_total", &[("server", "echo")]), 5.0);
    assert_eq!(m.value("mcp_bridge_sessions_open", &sse), 1.0, "the session outlives its streams (idle timeout)");
}

/// A legacy SSE session that has sent nothing gets no task while its stream is attached (an
/// idle stream costs no task, issue 16); its task starts when the stream goes, and the idle
/// timeout still ends it.
#[tokio::test]
async fn a_silent_legacy_session_ends_at_the_idle_timeout_once_its_stream_goes() {
    let config = format!("[sessions]\nidle_timeout = \"1s\"\n{}", echo_server("echo"));
    let b = Bridge::named("silent", &config, &["--heartbeat-interval", "300ms"]).await;
    let base = b.base();
    let mut c = Legacy::connect_as(&base, "echo", None).await;
    let sse = [("server", "echo"), ("transport", "sse")];
    c.heartbeats_more(5, MINUTE).await;
    assert_eq!(b.metrics().await.value("mcp_bridge_sessions_open", &sse), 1.0, "an attached stream holds its session");
    c.disconnect();
    b.wait_log(&["session ended", &c.sid, "reason=idle_timeout"], MINUTE).await;
    assert_eq!(b.metrics().await.value("mcp_bridge_sessions_open", &sse), 0.0, "the session ended");
}

// ---- admin API ------------------------------------------------------------------------------

/// Two servers, two clients with bearer tokens (so sessions carry a principal).
fn admin_config(extra: &str) -> String {
    format!(
        "{extra}\n{}{}\n[auth]\n[[auth.clients]]\nname = \"alice\"\ntoken = \"alice-token\"\n\
         [[auth.clients]]\nname = \"bob\"\ntoken = \"bob-token\"\n",
        echo_server("echo"),
        echo_server("echo2")
    )
}

#[tokio::test]
async fn admin_lists_servers_and_sessions_with_timeline() {
    let b = Bridge::named("admin", &admin_config(""), &["--instance-id", "ops-admin"]).await;
    let base = b.base();
    let mut alice = Legacy::open_as(&base, "echo", Some("alice-token"), LEGACY_PROTOCOL).await;
    for i in 0..3u64 {
        assert_eq!(alice.echo_via(&base, 10 + i, &format!("a{i}")).await, format!("a{i}"));
    }
    let unknown = alice.call_via(&base, 20, "no-such-tool", json!({})).await;
    assert!(unknown["error"].is_object(), "{unknown}");
    let mut bob = Legacy::open_as(&base, "echo2", Some("bob-token"), LEGACY_PROTOCOL).await;
    assert_eq!(bob.echo_via(&base, 2, "b").await, "b");

    let (status, servers) = get_json(&b.url("/admin/api/servers"), None, &[]).await;
    assert_eq!(status, 200, "loopback without a token may use the admin API: {servers}");
    assert_eq!(servers["instance"], "ops-admin");
    assert_eq!(server_names(&servers), ["echo", "echo2"]);
    for s in servers["servers"].as_array().unwrap() {
        assert_eq!(s["kind"], "stdio", "{s}");
        assert_eq!(s["health"]["healthy"], true, "{s}");
        assert_eq!(s["sessions"], 1, "one session on each server: {s}");
    }

    let (status, list) = get_json(&b.url("/admin/api/sessions"), None, &[]).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["count"], 2, "{list}");
    assert_eq!(list["by_server"], json!({"echo": 1, "echo2": 1}));
    let a = listed(&list, &alice.sid);
    assert_eq!(
        (a["server"].as_str(), a["transport"].as_str(), a["principal"].as_str()),
        (Some("echo"), Some("sse"), Some("alice"))
    );
    assert_eq!(a["instance"], "ops-admin");
    assert_eq!(a["events"], 5, "initialize, 3 echoes, 1 error went to the client: {a}");
    assert!(a["bytes"].as_u64().is_some_and(|n| n > 200), "bytes sent to the client: {a}");
    assert_eq!(a["attached"], 1, "{a}");
    let b_row = listed(&list, &bob.sid);
    assert_eq!((b_row["server"].as_str(), b_row["principal"].as_str()), (Some("echo2"), Some("bob")));

    // Age grows, and a large answer adds its size to the bytes.
    let (age0, bytes0) = (a["age_ms"].as_u64().expect("age_ms"), a["bytes"].as_u64().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let big = "x".repeat(2000);
    assert_eq!(alice.echo_via(&base, 30, &big).await, big);
    let (_, list) = get_json(&b.url("/admin/api/sessions"), None, &[]).await;
    let a = listed(&list, &alice.sid);
    assert!(a["age_ms"].as_u64().unwrap() >= age0 + 300, "age grows: {age0} then {a}");
    assert!(a["bytes"].as_u64().unwrap() >= bytes0 + 2000, "bytes grow by the answer: {bytes0} then {a}");

    let (status, detail) = get_json(&b.url(&format!("/admin/api/sessions/{}", alice.sid)), None, &[]).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["session"]["principal"], "alice");
    let timeline = detail["timeline"].as_array().expect("a timeline");
    let rows: Vec<(&str, &str, &str)> = timeline
        .iter()
        .map(|e| (e["method"].as_str().unwrap_or(""), e["id"].as_str().unwrap_or(""), e["outcome"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        rows,
        [
            ("initialize", "1", "ok"),
            ("tools/call", "10", "ok"),
            ("tools/call", "11", "ok"),
            ("tools/call", "12", "ok"),
            ("tools/call", "20", "error"),
            ("tools/call", "30", "ok"),
        ],
        "the request timeline: {detail}"
    );
    for e in timeline {
        assert!(e["latency_ms"].as_f64().is_some_and(|l| l > 0.0 && l < 60_000.0), "a latency: {e}");
        assert!(e["at_ms"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "a wall-clock time: {e}");
    }
    let (status, _) = get_json(&b.url("/admin/api/sessions/00000000000000000000000000000000"), None, &[]).await;
    assert_eq!(status, 404, "an unknown session");
    drop(bob);
}

#[tokio::test]
async fn admin_delete_ends_the_session() {
    let b = Bridge::named("admin-delete", &admin_config(""), &[]).await;
    let base = b.base();
    let mut alice = Legacy::open_as(&base, "echo", Some("alice-token"), LEGACY_PROTOCOL).await;
    let mut bob = Legacy::open_as(&base, "echo2", Some("bob-token"), LEGACY_PROTOCOL).await;
    assert_eq!(alice.echo_via(&base, 2, "before").await, "before");

    let (status, body) =
        request_json(reqwest::Method::DELETE, &b.url(&format!("/admin/api/sessions/{}", alice.sid)), None, &[]).await;
    assert_eq!(status, 204, "{body}");
    let rest = alice.until_end(MINUTE).await;
    assert!(rest.is_empty(), "nothing more after the end: {rest:?}");
    b.wait_log(&["SSE connection closed", &alice.sid, "reason=deleted"], MINUTE).await;
    let (status, body) = alice.post_via(&base, &common::echo_call(3, "after")).await.expect("POST");
    assert_eq!(status, 404, "the ended session is gone: {body}");
    let (_, list) = get_json(&b.url("/admin/api/sessions"), None, &[]).await;
    assert_eq!(list["count"], 1, "only bob's session is left: {list}");
    listed(&list, &bob.sid);
    assert_eq!(bob.echo_via(&base, 3, "still here").await, "still here", "the other session goes on");
    let (status, _) =
        request_json(reqwest::Method::DELETE, &b.url(&format!("/admin/api/sessions/{}", alice.sid)), None, &[]).await;
    assert_eq!(status, 404, "ending it twice");
}

#[tokio::test]
async fn admin_token_is_required_when_configured() {
    let b = Bridge::named("admin-token", &admin_config("[admin]\ntoken = \"adm-secret\"\n"), &[]).await;
    let http = common::http();
    let r = http.get(b.url("/admin/api/servers")).send().await.expect("GET");
    assert_eq!(r.status(), 401, "no token, even from loopback");
    let challenge = r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(challenge.starts_with("Bearer"), "a Bearer challenge: {challenge:?}");
    for wrong in ["alice-token", "adm-secre", "adm-secret2"] {
        let (status, _) = get_json(&b.url("/admin/api/servers"), Some(wrong), &[]).await;
        assert_eq!(status, 401, "token {wrong:?} is not the admin token");
    }
    let (status, servers) = get_json(&b.url("/admin/api/servers"), Some("adm-secret"), &[]).await;
    assert_eq!(status, 200, "{servers}");
    assert_eq!(server_names(&servers), ["echo", "echo2"]);
    // The token is what counts, wherever the request comes from.
    let (status, _) = get_json(&b.url("/admin/api/sessions"), Some("adm-secret"), &[("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(status, 200);

    // Nothing changes without the token.
    let alice = Legacy::open_as(&b.base(), "echo", Some("alice-token"), LEGACY_PROTOCOL).await;
    let path = format!("/admin/api/sessions/{}", alice.sid);
    assert_eq!(request_json(reqwest::Method::DELETE, &b.url(&path), None, &[]).await.0, 401);
    assert_eq!(request_json(reqwest::Method::POST, &b.url("/admin/api/reload"), None, &[]).await.0, 401);
    let (status, detail) = get_json(&b.url(&path), Some("adm-secret"), &[]).await;
    assert_eq!(status, 200, "the session is still there: {detail}");
    // The page itself holds no data and loads without the token (its API calls carry it).
    let page = http.get(b.url("/admin")).send().await.expect("GET /admin");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap_or_default().contains("/admin/api"), "the status page calls the API");
}

#[tokio::test]
async fn admin_without_token_refuses_forwarded_requests() {
    let b = Bridge::named("admin-xff", &echo_server("echo"), &[]).await;
    let (status, _) = get_json(&b.url("/admin/api/servers"), None, &[]).await;
    assert_eq!(status, 200, "loopback, no proxy");
    let (status, body) = get_json(&b.url("/admin/api/servers"), None, &[("x-forwarded-for", "127.0.0.1")]).await;
    assert_eq!(status, 401, "a request that came through a proxy is not a local admin: {body}");
    assert_eq!(
        request_json(reqwest::Method::POST, &b.url("/admin/api/reload"), None, &[("x-forwarded-for", "10.0.0.1")]).await.0,
        401
    );

    // Behind the deployed nginx config (which sets X-Forwarded-For), the API is closed...
    let nginx = support_nginx::Nginx::start(b.port, &support_nginx::NginxOpts::default());
    let (status, body) = get_json(&nginx.url("/admin/api/sessions"), None, &[]).await;
    assert_eq!(status, 401, "through nginx without an admin token: {body}");
    // ... while the bridge itself is reachable through it.
    let (status, _) = get_json(&nginx.url("/healthz"), None, &[]).await;
    assert_eq!(status, 200);
}

// ---- reload ---------------------------------------------------------------------------------

#[tokio::test]
async fn sighup_reload_adds_and_removes_servers_without_cutting_streams() {
    let hb = "[servers.keep.heartbeat]\ninterval = \"300ms\"";
    let v1 = format!(
        "{}{}{}",
        echo_with("keep", hb),
        echo_server("gone"),
        echo_with("tuned", "[servers.tuned.heartbeat]\ninterval = \"300ms\"\nformat = \"comment\"")
    );
    let b = Bridge::named("reload", &v1, &[]).await;
    let base = b.base();
    let mut keep = Legacy::open_as(&base, "keep", None, LEGACY_PROTOCOL).await;
    assert_eq!(keep.echo_via(&base, 2, "k1").await, "k1");
    keep.heartbeats_more(1, MINUTE).await;
    let mut gone = Legacy::open_as(&base, "gone", None, LEGACY_PROTOCOL).await;
    assert_eq!(gone.echo_via(&base, 2, "g1").await, "g1");

    // `gone` removed, `added` added, `tuned` switched to event heartbeats; `keep` unchanged.
    let v2 = format!(
        "{}{}{}",
        echo_with("keep", hb),
        echo_with("tuned", "[servers.tuned.heartbeat]\ninterval = \"300ms\"\nformat = \"event\""),
        echo_server("added")
    );
    b.write_config(&v2);
    b.signal(Signal::SIGHUP);
    let line = b.wait_log(&["configuration reloaded"], MINUTE).await;
    for part in [r#""added":["added"]"#, r#""removed":["gone"]"#, r#""changed":["tuned"]"#] {
        assert!(line.contains(part), "the reload says what changed ({part}): {line}");
    }

    // Added: new sessions work.
    let mut added = Legacy::open_as(&base, "added", None, LEGACY_PROTOCOL).await;
    assert_eq!(added.echo_via(&base, 2, "new").await, "new");
    // Removed: no new sessions, on either transport.
    match Legacy::try_connect(&base, "gone", None).await {
        Err((404, body)) => assert!(body.contains("gone"), "{body}"),
        Err(other) => panic!("GET /sse/gone after removal: {other:?}"),
        Ok(c) => panic!("GET /sse/gone opened session {} after removal", c.sid),
    }
    let r = common::http()
        .post(b.url("/mcp/gone"))
        .header("accept", common::ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(common::initialize_request(1).to_string())
        .send()
        .await
        .expect("POST /mcp/gone");
    assert_eq!(r.status(), 404, "POST /mcp/gone after removal");
    // ... but its live session goes on.
    assert_eq!(gone.echo_via(&base, 3, "g2").await, "g2", "a removed server's live session is not cut");

    // The live stream of the unchanged server was not cut: it keeps its heartbeats and answers.
    keep.heartbeats_more(2, MINUTE).await;
    assert_eq!(keep.echo_via(&base, 3, "k2").await, "k2");
    assert!(keep.is_connected());
    let cut = b.lines_with(&["SSE connection closed", &keep.sid]);
    assert!(cut.is_empty(), "the stream of `keep` was never closed: {cut:?}");

    // Changed heartbeat settings apply to new streams.
    let resp = common::http().get(b.url("/sse/tuned")).header("accept", "text/event-stream").send().await.expect("GET");
    assert_eq!(resp.status(), 200);
    let mut tuned = SseReader::new(resp);
    let mut saw_event = false;
    for _ in 0..20 {
        let block = tuned.next(MINUTE).await.expect("the stream stays open");
        assert!(!block.is_heartbeat_comment(), "after the reload `tuned` sends heartbeat events, not comments");
        if block.event.as_deref() == Some("heartbeat") {
            saw_event = true;
            break;
        }
    }
    assert!(saw_event, "a new stream on `tuned` gets `event: heartbeat`");

    let (_, servers) = get_json(&b.url("/admin/api/servers"), None, &[]).await;
    assert_eq!(server_names(&servers), ["added", "keep", "tuned"]);
}

#[tokio::test]
async fn reload_refuses_an_invalid_config_and_keeps_running() {
    let v1 = echo_server("echo");
    let b = Bridge::named("reload-bad", &v1, &[]).await;
    let base = b.base();
    let mut live = Legacy::open_as(&base, "echo", None, LEGACY_PROTOCOL).await;

    // Not TOML at all, through SIGHUP.
    b.write_config("[servers.echo\ncommand = ");
    b.signal(Signal::SIGHUP);
    let line = b.wait_log(&["reload refused"], MINUTE).await;
    assert!(line.contains("mcp-bridge.toml"), "the refusal names the file: {line}");
    assert!(b.lines_with(&["configuration reloaded"]).is_empty(), "nothing was reloaded");
    // Valid TOML, invalid config (a server with neither command nor url), through the API.
    b.write_config("[servers.echo]\nargs = [\"x\"]\n");
    let (status, body) = request_json(reqwest::Method::POST, &b.url("/admin/api/reload"), None, &[]).await;
    assert_eq!(status, 422, "{body}");
    let text = body.as_str().unwrap_or_default();
    assert!(text.contains("running configuration is unchanged") && text.contains("servers.echo"), "{text}");

    // The running configuration is unchanged: echo still takes sessions, the live one goes on.
    let mut fresh = Legacy::open_as(&base, "echo", None, LEGACY_PROTOCOL).await;
    assert_eq!(fresh.echo_via(&base, 2, "fresh").await, "fresh");
    assert_eq!(live.echo_via(&base, 2, "live").await, "live");
    let (_, servers) = get_json(&b.url("/admin/api/servers"), None, &[]).await;
    assert_eq!(server_names(&servers), ["echo"]);

    // A good file is taken, and the API answers what changed.
    b.write_config(&format!("{v1}{}", echo_server("more")));
    let (status, summary) = request_json(reqwest::Method::POST, &b.url("/admin/api/reload"), None, &[]).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["added"], json!(["more"]), "{summary}");
    assert_eq!(summary["removed"], json!([]), "{summary}");
    let mut more = Legacy::open_as(&base, "more", None, LEGACY_PROTOCOL).await;
    assert_eq!(more.echo_via(&base, 2, "more").await, "more");
}

// ---- drain ----------------------------------------------------------------------------------

#[tokio::test]
async fn sigterm_drains_then_ends_streams_and_exits_zero() {
    let config = format!("[sessions]\ndrain_grace = \"5s\"\n\n{}", echo_server("echo"));
    let mut b = Bridge::named("drain", &config, &["--heartbeat-interval", "off"]).await;
    let base = b.base();
    let mut c = Legacy::open_as(&base, "echo", None, LEGACY_PROTOCOL).await;
    assert_eq!(c.echo_via(&base, 2, "before").await, "before");
    let (status, ready) = b.readyz().await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")), "{ready}");

    b.signal(Signal::SIGTERM);
    let mut draining = None;
    for _ in 0..100 {
        let (status, body) = b.readyz().await;
        if status == 503 {
            draining = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let draining = draining.unwrap_or_else(|| panic!("/readyz never answered 503 after SIGTERM; log:\n{}", b.log()));
    assert_eq!(draining["status"], "draining", "{draining}");
    // During the grace period the listener keeps serving and the stream keeps flowing.
    assert!(b.lines_with(&["SSE connection closed", &c.sid]).is_empty(), "the stream is still open while draining");
    assert_eq!(c.echo_via(&base, 3, "while draining").await, "while draining");
    let (status, _) = get_json(&b.url("/healthz"), None, &[]).await;
    assert_eq!(status, 200, "new connections are still served during the grace period");

    // Then the stream ends with reason shutdown and the process exits 0.
    let rest = c.until_end(MINUTE).await;
    assert!(rest.is_empty(), "nothing after the answers: {rest:?}");
    let exit = b.wait_exit(MINUTE).await.unwrap_or_else(|| panic!("the bridge did not exit after draining; log:\n{}", b.log()));
    assert!(exit.success(), "exit status after SIGTERM: {exit}; log:\n{}", b.log());
    let closed = b.lines_with(&["SSE connection closed", &c.sid]);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(closed[0].contains("reason=shutdown"), "{}", closed[0]);
    let log = b.log();
    let (drain_at, end_at) = (log.find("draining"), log.find("shutting down"));
    assert!(drain_at.is_some() && drain_at < end_at, "`draining` comes before `shutting down`:\n{log}");
}

// ---- crash loop -----------------------------------------------------------------------------

#[tokio::test]
async fn crash_loop_refuses_new_sessions_with_backoff() {
    let config = format!("[servers.crash]\ncommand = \"sh\"\nargs = [\"-c\", \"exit 7\"]\n{}", echo_server("echo"));
    let b = Bridge::named("crash", &config, &[]).await;
    let base = b.base();
    for i in 1..=5 {
        let mut c = Legacy::try_connect(&base, "crash", None)
            .await
            .unwrap_or_else(|e| panic!("crash #{i}: a new session is still admitted before the 5th crash: {e:?}"));
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
        let (status, body) = c.post_via(&base, &init).await.expect("POST initialize");
        assert_eq!(status, 202, "{body}");
        let rest = c.until_end(MINUTE).await;
        let err = rest.iter().find(|m| m["id"] == 1).unwrap_or_else(|| panic!("crash #{i}: initialize answered: {rest:?}"));
        let text = err["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains("upstream_exited") && text.contains("exit status: 7"), "crash #{i}: {err}");
    }

    match Legacy::try_connect(&base, "crash", None).await {
        Err((503, body)) => {
            assert!(body.contains("keeps crashing") && body.contains("more s"), "503 names the backoff: {body}")
        }
        Err(other) => panic!("after 5 crashes: {other:?}"),
        Ok(c) => panic!("after 5 crashes session {} was still opened", c.sid),
    }
    let r = common::http()
        .post(b.url("/mcp/crash"))
        .header("accept", common::ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(common::initialize_request(1).to_string())
        .send()
        .await
        .expect("POST /mcp/crash");
    assert_eq!(r.status(), 503, "Streamable HTTP is refused too");

    let (_, ready) = b.readyz().await;
    let crash = &ready["servers"]["crash"];
    assert_eq!(crash["healthy"], false, "{ready}");
    assert!(crash["retry_in_ms"].as_u64().is_some_and(|ms| ms > 0 && ms <= 5_000), "the first backoff is 5 s: {crash}");
    assert!(crash["last_error"].as_str().is_some_and(|e| e.contains("exit status: 7")), "{crash}");
    assert_eq!(ready["servers"]["echo"]["healthy"], true, "{ready}");
    let (_, servers) = get_json(&b.url("/admin/api/servers"), None, &[]).await;
    let listed = servers["servers"].as_array().unwrap().iter().find(|s| s["name"] == "crash").cloned().unwrap_or_default();
    assert_eq!(listed["health"]["healthy"], false, "{servers}");
    let m = b.metrics().await;
    assert_eq!(m.value("mcp_bridge_upstream_healthy", &[("server", "crash")]), 0.0);
    assert_eq!(m.value("mcp_bridge_upstream_crashes_total", &[("server", "crash")]), 5.0);
    assert_eq!(m.value("mcp_bridge_upstream_healthy", &[("server", "echo")]), 1.0);
    // Other servers are not affected.
    let mut ok = Legacy::open_as(&base, "echo", None, LEGACY_PROTOCOL).await;
    assert_eq!(ok.echo_via(&base, 2, "fine").await, "fine");
}

// ---- the runtime --------------------------------------------------------------------------

/// The workers the bridge's runtime reports at start (its `runtime started` log line).
fn workers_logged(bridge: &Bridge) -> usize {
    let log = bridge.log();
    let line = log.lines().find(|l| l.contains("runtime started")).unwrap_or_else(|| panic!("no `runtime started` line:\n{log}"));
    let n = line.split("workers=").nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next());
    n.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no worker count in `{line}`"))
}

/// `worker_threads` in the file sizes the runtime, `--worker-threads` overrides it, and each
/// setting serves; 0 is refused by name.
#[tokio::test]
async fn worker_threads_sizes_the_runtime() {
    let config = format!("worker_threads = 3\n{}", echo_with("echo", ""));
    for (args, want) in [(&[][..], 3), (&["--worker-threads", "1"][..], 1)] {
        let bridge = Bridge::start(&config, args).await;
        let mut legacy = Legacy::open(&bridge.base(), "echo").await;
        assert_eq!(legacy.echo(2, "on the sized runtime").await, "on the sized runtime");
        assert_eq!(workers_logged(&bridge), want, "{args:?}\n{}", bridge.log());
    }
    let dir = common::TempDir::new("zero-workers");
    let file = dir.path().join("mcp-bridge.toml");
    std::fs::write(&file, format!("worker_threads = 0\n{}", echo_with("echo", ""))).expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-bridge")).arg("check-config").arg(&file).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("key `worker_threads`: must be at least 1"),
        "worker_threads = 0 must be refused: {err}"
    );
}
