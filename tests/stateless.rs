//! The 2026-07-28 ("stateless") revision at `/mcp/{name}`: the official v2 TypeScript client
//! through the bridge onto server-everything (stdio and remote Streamable HTTP, both served
//! through backing sessions) and onto a modern upstream (passed through); the revision's
//! status and error table with raw HTTP; a legacy client on the same endpoint afterwards;
//! `_meta` logLevel; and `subscriptions/listen` by hand. MRTR is in stateless_mrtr.rs, the
//! adapter for 2025 clients in stateless_adapter.rs.

mod common;
#[path = "stateless/servers.rs"]
mod servers;
#[path = "stateless/wire.rs"]
mod wire;

use base64::Engine;
use common::{
    everything_stdio, http, modern_client, require_node, run_client, toml_str, Bridge, Everything, Sdk, SseReader, TempDir,
    ACCEPT_BOTH,
};
use serde_json::{json, Value};
use servers::*;
use wire::*;

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
