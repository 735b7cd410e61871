//! A rolling restart of a whole cluster (a real redis-server, three instances, the deployed
//! nginx config balancing round-robin) while clients run sessions: each instance in turn gets
//! SIGTERM, must drain and exit 0, and is started again on the same port with the same
//! instance id. Raw clients send numbered echo requests through nginx the whole time: legacy
//! HTTP+SSE ones resume their stream with `Last-Event-ID` whenever it ends, Streamable HTTP ones
//! resume a POST stream cut before its answer the same way. Every session must complete with
//! every response exactly once. Run with `--nocapture` for the per-client figures.

mod cluster_support;
mod common;
mod support_nginx;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::{Balancer, Redis};
use common::{echo_server, get_json, Bridge, Legacy, SseReader, ACCEPT_BOTH, LEGACY_PROTOCOL, PROTOCOL};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const SSE_CLIENTS: usize = 6;
const STREAMABLE_CLIENTS: usize = 3;
/// Bounds every client: it stops after this many requests whatever happens.
const MAX_REQUESTS: u64 = 3000;
/// Requests each client sends after the last instance came back.
const AFTER: u64 = 10;
/// How long a client waits for one answer, across reconnects (a lease lapses in 4 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(45);
const MINUTE: Duration = Duration::from_secs(60);

/// What one client saw.
#[derive(Debug, Default)]
struct Outcome {
    client: usize,
    transport: &'static str,
    sid: String,
    /// JSON-RPC ids of the echo requests it sent (each accepted with 202 once).
    sent: Vec<u64>,
    /// Every response received, by id, over all connections.
    responses: BTreeMap<u64, Vec<Value>>,
    /// Requests whose answer never came.
    missing: Vec<u64>,
    /// Times its stream ended and it resumed with Last-Event-ID.
    resumes: usize,
    /// Resume attempts that failed before one succeeded (status and body).
    resume_failures: Vec<String>,
    /// POSTs that were not accepted and were sent again (status and body).
    post_failures: Vec<String>,
}

/// One client: a session through nginx, numbered echoes until `stop`, then `AFTER` more.
async fn run_client(k: usize, base: String, answered: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> Outcome {
    let mut c = Legacy::open_as(&base, "echo", None, LEGACY_PROTOCOL).await;
    let mut out = Outcome { client: k, transport: "sse", sid: c.sid.clone(), ..Outcome::default() };
    let mut after_stop = 0;
    for i in 0..MAX_REQUESTS {
        if stop.load(Ordering::Relaxed) {
            if after_stop == AFTER {
                break;
            }
            after_stop += 1;
        }
        let id = 100 + i;
        let msg = echo(k, id);
        // Send until accepted. A 502 from nginx or a refused connection means the request
        // reached no bridge; a bridge's own refusal is recorded too.
        let deadline = Instant::now() + MINUTE;
        loop {
            match c.post_via(&base, &msg).await {
                Ok((202, _)) => break,
                Ok((status, body)) => {
                    out.post_failures.push(format!("{id}: {status} {}", body.chars().take(200).collect::<String>()))
                }
                Err(e) => out.post_failures.push(format!("{id}: {e}")),
            }
            assert!(Instant::now() < deadline, "client {k}: request {id} was never accepted: {:?}", out.post_failures);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        out.sent.push(id);
        // Read until its answer, resuming whenever the stream ends.
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let got = loop {
            if !c.is_connected() {
                resume(&mut c, &base, &mut out, deadline).await;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match c.next(left).await {
                Ok(Some(m)) if m["id"] == id && m.get("method").is_none() => break true,
                Ok(Some(_)) | Ok(None) => {}
                Err(()) => break false,
            }
            if Instant::now() >= deadline {
                break false;
            }
        };
        if got {
            answered.fetch_add(1, Ordering::Relaxed);
        } else {
            out.missing.push(id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Late duplicates would show up here.
    if c.is_connected() {
        while let Ok(Some(_)) = c.next(Duration::from_millis(500)).await {}
    }
    for m in &c.received {
        if m.get("method").is_none() && m["id"].as_u64().is_some_and(|id| id >= 100) {
            out.responses.entry(m["id"].as_u64().unwrap_or_default()).or_default().push(m.clone());
        }
    }
    out
}

/// The echo request `id` of client `k`; its answer must be `c{k}-{id}`.
fn echo(k: usize, id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": format!("c{k}-{id}")}}})
}

/// A POST (or GET) to `/mcp/echo` through nginx with the session's headers.
fn mcp(http: &reqwest::Client, method: reqwest::Method, url: &str, sid: Option<&str>) -> reqwest::RequestBuilder {
    let accept = if method == reqwest::Method::GET { "text/event-stream" } else { ACCEPT_BOTH };
    let mut req = http.request(method, url).header("accept", accept).timeout(MINUTE);
    if let Some(sid) = sid {
        req = req.header("mcp-session-id", sid).header("mcp-protocol-version", PROTOCOL);
    }
    req
}

/// One Streamable HTTP client: each echo is a POST answered on its own SSE stream; a stream cut
/// before the answer is resumed with GET and `Last-Event-ID`. Stops like [`run_client`].
async fn run_streamable_client(k: usize, base: String, answered: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> Outcome {
    use reqwest::Method;
    let http = common::http();
    let url = format!("{base}/mcp/echo");
    let r = mcp(&http, Method::POST, &url, None)
        .header("content-type", "application/json")
        .body(common::initialize_request(1).to_string())
        .send()
        .await
        .expect("POST initialize");
    assert_eq!(r.status(), 200, "initialize through nginx");
    let sid = r.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).expect("Mcp-Session-Id").to_string();
    common::responses(r).await;
    let r = mcp(&http, Method::POST, &url, Some(&sid))
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
        .send()
        .await
        .expect("POST initialized");
    assert_eq!(r.status(), 202);
    let mut out = Outcome { client: k, transport: "streamable", sid: sid.clone(), ..Outcome::default() };
    let mut received: Vec<Value> = Vec::new();
    let mut after_stop = 0;
    for i in 0..MAX_REQUESTS {
        if stop.load(Ordering::Relaxed) {
            if after_stop == AFTER {
                break;
            }
            after_stop += 1;
        }
        let id = 100 + i;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let resp = loop {
            let sent = mcp(&http, Method::POST, &url, Some(&sid))
                .header("content-type", "application/json")
                .body(echo(k, id).to_string())
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 200 => break r,
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    out.post_failures.push(format!("{id}: {status} {}", body.chars().take(200).collect::<String>()));
                }
                Err(e) => out.post_failures.push(format!("{id}: {e}")),
            }
            assert!(Instant::now() < deadline, "client {k}: request {id} was never accepted: {:?}", out.post_failures);
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        out.sent.push(id);
        let mut stream = SseReader::new(resp);
        let mut last_event: Option<String> = None;
        let got = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stream.try_next(left).await {
                Ok(Some(b)) => {
                    if b.id.is_some() {
                        last_event = b.id.clone();
                    }
                    if let Some(m) = b.json() {
                        received.push(m.clone());
                        if m["id"] == id && m.get("method").is_none() {
                            break true;
                        }
                    }
                }
                // Cut before the answer: resume that stream where it was.
                Ok(None) => {
                    let Some(last) = last_event.clone() else {
                        out.resume_failures.push(format!("{id}: the POST stream ended before any event"));
                        break false;
                    };
                    loop {
                        let r = mcp(&http, Method::GET, &url, Some(&sid)).header("last-event-id", &last).send().await;
                        match r {
                            Ok(r) if r.status() == 200 => {
                                stream = SseReader::new(r);
                                out.resumes += 1;
                                break;
                            }
                            Ok(r) => out.resume_failures.push(format!("{id}: {}", r.status())),
                            Err(e) => out.resume_failures.push(format!("{id}: {e}")),
                        }
                        assert!(Instant::now() < deadline, "client {k}: could not resume: {:?}", out.resume_failures);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                Err(()) => break false,
            }
        };
        if got {
            answered.fetch_add(1, Ordering::Relaxed);
        } else {
            out.missing.push(id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for m in received {
        if m.get("method").is_none() && m["id"].as_u64().is_some_and(|id| id >= 100) {
            out.responses.entry(m["id"].as_u64().unwrap_or_default()).or_default().push(m);
        }
    }
    let r = mcp(&http, Method::DELETE, &url, Some(&sid)).send().await.expect("DELETE");
    assert_eq!(r.status(), 200, "client {k}: the session ends with DELETE");
    out
}

/// Resumes the session with Last-Event-ID through nginx, retrying until `deadline`.
async fn resume(c: &mut Legacy, base: &str, out: &mut Outcome, deadline: Instant) {
    loop {
        match c.resume(base).await {
            Ok(()) => {
                out.resumes += 1;
                return;
            }
            Err((status, body)) => out.resume_failures.push(format!("{status} {}", body.chars().take(200).collect::<String>())),
        }
        assert!(Instant::now() < deadline, "session {}: could not resume: {:?}", c.sid, out.resume_failures);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `answered` grew by `n` (all clients together); panics after `timeout`.
async fn progress(answered: &AtomicUsize, n: usize, timeout: Duration, what: &str) {
    let start = answered.load(Ordering::Relaxed);
    let deadline = Instant::now() + timeout;
    while answered.load(Ordering::Relaxed) < start + n {
        assert!(
            Instant::now() < deadline,
            "no progress {what}: {} answers within {timeout:?}",
            answered.load(Ordering::Relaxed) - start
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the instance answers /readyz with 200 and `ready`.
async fn ready(p: &Bridge) {
    let deadline = Instant::now() + MINUTE;
    loop {
        let (status, body) = p.readyz().await;
        if status == 200 && body["status"] == "ready" {
            return;
        }
        assert!(Instant::now() < deadline, "{} not ready after its restart: {status} {body}", p.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_loses_no_response() {
    let redis = Redis::start();
    let config = format!("[sessions]\ndrain_grace = \"1s\"\n\n{}", echo_server("echo"));
    let mut instances = Vec::new();
    for i in 1..=3 {
        let id = format!("b{i}");
        instances.push(
            Bridge::named(&id, &config, &["--instance-id", &id, "--redis", &redis.url(), "--heartbeat-interval", "2s"]).await,
        );
    }
    let nginx = Balancer::start(&instances.iter().map(|p| p.port).collect::<Vec<_>>());
    let base = nginx.base();

    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients: Vec<_> =
        (0..SSE_CLIENTS).map(|k| tokio::spawn(run_client(k, base.clone(), answered.clone(), stop.clone()))).collect();
    for k in SSE_CLIENTS..SSE_CLIENTS + STREAMABLE_CLIENTS {
        clients.push(tokio::spawn(run_streamable_client(k, base.clone(), answered.clone(), stop.clone())));
    }
    let all = SSE_CLIENTS + STREAMABLE_CLIENTS;
    progress(&answered, all * 5, MINUTE, "before the restart").await;

    let mut held = Vec::new();
    for p in instances.iter_mut() {
        let (_, before) = p.readyz().await;
        held.push(before["sessions"].as_u64().unwrap_or(0));
        p.signal(Signal::SIGTERM);
        let status = p.wait_exit(MINUTE).await.unwrap_or_else(|| panic!("{} did not exit after SIGTERM", p.name));
        assert!(status.success(), "{} exited with {status} after SIGTERM", p.name);
        p.restart().await;
        ready(p).await;
        progress(&answered, all * 5, MINUTE, &format!("after restarting {}", p.name)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut outcomes = Vec::new();
    for c in clients {
        outcomes.push(tokio::time::timeout(Duration::from_secs(300), c).await.expect("a client finishes").expect("client task"));
    }

    // The figures, then the verdict.
    let shutdown_cuts: usize = instances.iter().map(|p| p.lines_with(&["SSE connection closed", "reason=shutdown"]).len()).sum();
    let takeovers: usize = instances.iter().map(|p| p.lines_with(&["session taken over"]).len()).sum();
    println!("sessions held by b1, b2, b3 when each was stopped: {held:?}; streams cut by shutdown: {shutdown_cuts}; take-overs: {takeovers}");
    for o in &outcomes {
        let holders: BTreeSet<String> = instances
            .iter()
            .filter(|p| !p.lines_with(&["SSE connection opened", &o.sid]).is_empty())
            .map(|p| p.name.clone())
            .collect();
        println!(
            "client {} ({}) session {}: {} requests, {} answered, {} resumes, streams on {holders:?}, post retries {:?}, resume failures {:?}",
            o.client,
            o.transport,
            o.sid,
            o.sent.len(),
            o.responses.len(),
            o.resumes,
            o.post_failures,
            o.resume_failures
        );
    }

    let nginx_errors: Vec<String> = nginx
        .error_log()
        .lines()
        .filter(|l| l.contains("[error]") && !l.contains("connect() failed"))
        .map(|l| l.chars().take(300).collect())
        .collect();
    println!("nginx errors ({}): {:#?}", nginx_errors.len(), nginx_errors.iter().take(10).collect::<Vec<_>>());

    let mut problems = Vec::new();
    for o in &outcomes {
        let sent: BTreeSet<u64> = o.sent.iter().copied().collect();
        let got: BTreeSet<u64> = o.responses.keys().copied().collect();
        let lost: Vec<_> = sent.difference(&got).collect();
        let extra: Vec<_> = got.difference(&sent).collect();
        let dup: Vec<_> = o.responses.iter().filter(|(_, v)| v.len() > 1).map(|(id, v)| (id, v.len())).collect();
        let wrong: Vec<&Value> = o
            .responses
            .iter()
            .flat_map(|(id, v)| v.iter().map(move |m| (id, m)))
            .filter(|(id, m)| m["result"]["content"][0]["text"] != format!("c{}-{id}", o.client))
            .map(|(_, m)| m)
            .collect();
        if !lost.is_empty() || !extra.is_empty() || !dup.is_empty() || !wrong.is_empty() || !o.missing.is_empty() {
            problems.push(format!(
                "client {} session {}: lost {lost:?} (unanswered in time: {:?}), unexpected {extra:?}, duplicated {dup:?}, \
                 wrong answers {wrong:?}",
                o.client, o.sid, o.missing
            ));
        }
        // A POST may be refused while an instance goes away (nginx 502: a pooled connection
        // closed under it; bridge 503: the instance is shutting down); it was not delivered and
        // is sent again. A 404 would tell a real client that its session is gone.
        let refused = o.post_failures.iter().chain(&o.resume_failures).filter(|f| f.contains(": 404") || f.starts_with("404"));
        problems.extend(refused.map(|f| format!("client {} session {}: the session was reported gone: {f}", o.client, o.sid)));
        assert!(o.sent.len() as u64 > AFTER, "client {} ran through the restarts: {} requests", o.client, o.sent.len());
    }
    assert!(problems.is_empty(), "responses lost, duplicated or wrong across the rolling restart:\n{}", problems.join("\n"));
    assert!(shutdown_cuts >= 3, "the restarts cut streams (reason=shutdown), which the clients resumed: {shutdown_cuts}");
    let resumes: usize = outcomes.iter().map(|o| o.resumes).sum();
    assert!(resumes >= 3, "clients resumed after the cuts: {resumes}");

    // Every instance lists the cluster's open sessions.
    for p in &instances {
        let (status, list) = get_json(&p.url("/admin/api/sessions"), None, &[]).await;
        assert_eq!(status, 200, "{list}");
        let ids: BTreeSet<&str> = list["sessions"].as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
        for o in &outcomes {
            // The Streamable sessions ended with DELETE; the legacy ones are still open.
            let open = o.transport == "sse";
            assert_eq!(ids.contains(o.sid.as_str()), open, "{} lists session {} iff it is open: {list}", p.name, o.sid);
        }
    }
    drop(nginx);
}
