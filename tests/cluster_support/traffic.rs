//! Echo traffic on live sessions through nginx while something breaks underneath (a Redis
//! primary killed, slots moved): one request at a time per session, each checked to be
//! answered exactly once with its own text. A refusal with 503 (what a Redis outage may cost a
//! cross-instance request, ARCHITECTURE.md) is retried with the same id, as a client would; any
//! other refusal, a missing answer or a second one is a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{echo_call, echo_text, responses, Legacy, McpSession, SseReader, ACCEPT_BOTH, PROTOCOL};

/// How long one request may take, retries and all, before it counts as lost.
const REQUEST_BUDGET: Duration = Duration::from_secs(30);
/// Pause between requests, so that a few sessions leave Redis and the bridges room on 2 cores.
const PACE: Duration = Duration::from_millis(50);

/// What one session's traffic saw.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) label: String,
    /// The session id.
    pub(crate) sid: String,
    /// Requests sent (ids `first..first + sent`).
    pub(crate) sent: u64,
    pub(crate) first: u64,
    /// Refusals (503) that were retried: (id, status, body).
    pub(crate) retried: Vec<(u64, u16, String)>,
    /// Times the legacy stream ended and was resumed through nginx.
    pub(crate) resumed: usize,
    pub(crate) slowest: Duration,
    pub(crate) failures: Vec<String>,
    /// Failures say when they happened, counted from here (the test's start).
    since: Option<Instant>,
}

impl Tally {
    fn new(label: &str, sid: &str, first: u64, since: Instant) -> Tally {
        Tally { label: format!("{label} {sid}"), sid: sid.to_string(), first, since: Some(since), ..Tally::default() }
    }

    fn fail(&mut self, what: String) {
        let at = self.since.map_or(0, |s| s.elapsed().as_millis());
        let what = format!("at {at} ms: {what}");
        eprintln!("{}: {what}", self.label);
        self.failures.push(what);
    }

    /// Panics with everything it saw unless every request was answered once.
    pub(crate) fn assert_clean(&self) {
        assert!(self.sent > 0, "{}: traffic ran", self.label);
        assert!(
            self.failures.is_empty(),
            "{}: {} failures: {:#?}\n{}; refusals retried (id, status, body): {:#?}",
            self.label,
            self.failures.len(),
            self.failures,
            self.summary(),
            self.retried
        );
    }

    pub(crate) fn summary(&self) -> String {
        format!(
            "{}: {} requests, {} refusals retried, {} stream resumes, slowest {} ms",
            self.label,
            self.sent,
            self.retried.len(),
            self.resumed,
            self.slowest.as_millis()
        )
    }
}

/// A flag the traffic tasks poll between requests.
#[derive(Clone, Default)]
pub(crate) struct Stop(Arc<AtomicBool>);

impl Stop {
    pub(crate) fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    fn stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Echo traffic on a legacy session: POSTs through `base`, answers on its stream (resumed
/// through `base` with `Last-Event-ID` if it ends). Returns the session (to check its stream
/// afterwards) and the tally.
pub(crate) async fn legacy(mut s: Legacy, base: String, first: u64, stop: Stop, since: Instant) -> (Legacy, Tally) {
    let mut t = Tally::new("legacy", &s.sid, first, since);
    let mut id = first;
    while !stop.stopped() && t.failures.is_empty() {
        let started = Instant::now();
        let text = format!("t{id}");
        t.sent += 1;
        // Accepted, or retried while refused with 503.
        loop {
            match s.post_via(&base, &echo_call(id, &text)).await {
                Ok((202, _)) => break,
                Ok((503, body)) if started.elapsed() < REQUEST_BUDGET => t.retried.push((id, 503, body)),
                Ok((status, body)) => t.fail(format!("request {id} refused with {status}: {body}")),
                Err(e) => t.fail(format!("request {id}: {e}")),
            }
            if !t.failures.is_empty() {
                return (s, t);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Its answer, once, with its text.
        loop {
            let left = REQUEST_BUDGET.saturating_sub(started.elapsed());
            match s.next(left).await {
                Ok(Some(m)) if m["id"] == id && m.get("method").is_none() => {
                    if !m["result"].is_object() || echo_text(&m) != text {
                        t.fail(format!("request {id}: a wrong answer: {m}"));
                    }
                    break;
                }
                Ok(Some(m)) => {
                    if m.get("method").is_none() {
                        t.fail(format!("request {id}: an answer to another request while waiting: {m}"));
                    }
                }
                Ok(None) => {
                    t.resumed += 1;
                    // A 503 is a refusal to try again (this instance's inbox or lease is being
                    // re-established), as for a POST.
                    loop {
                        match s.resume(&base).await {
                            Ok(()) => break,
                            Err((503, body)) if started.elapsed() < REQUEST_BUDGET => {
                                t.retried.push((id, 503, body));
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err((status, body)) => {
                                t.fail(format!("request {id}: the stream ended and did not resume: {status} {body}"));
                                break;
                            }
                        }
                    }
                }
                Err(()) => t.fail(format!("request {id}: no answer within {REQUEST_BUDGET:?}")),
            }
            if !t.failures.is_empty() {
                return (s, t);
            }
        }
        t.slowest = t.slowest.max(started.elapsed());
        id += 1;
        tokio::time::sleep(PACE).await;
    }
    // Nothing more arrives: no late answer, no second one.
    while let Ok(Some(m)) = s.next(Duration::from_millis(500)).await {
        if m.get("method").is_none() {
            t.fail(format!("an answer after the last request's: {m}"));
        }
    }
    for i in first..id {
        let n = s.responses_to(i);
        if n != 1 {
            t.fail(format!("request {i} answered {n} times"));
        }
    }
    (s, t)
}

/// Echo traffic on a Streamable HTTP session: each POST through the session's URL (nginx)
/// must answer 200 with its answer once. An SSE answer that ends before the answer is resumed
/// with a GET and `Last-Event-ID` (through nginx), as the SDK clients do; one that ends
/// without an event id to resume from has lost the request.
pub(crate) async fn streamable(s: McpSession, first: u64, stop: Stop, since: Instant) -> Tally {
    let mut t = Tally::new("streamable", &s.id, first, since);
    let mut id = first;
    while !stop.stopped() && t.failures.is_empty() {
        let started = Instant::now();
        let text = format!("t{id}");
        t.sent += 1;
        let resp = loop {
            let sent = s
                .http
                .post(&s.url)
                .header("accept", ACCEPT_BOTH)
                .header("content-type", "application/json")
                .header("mcp-session-id", &s.id)
                .header("mcp-protocol-version", PROTOCOL)
                .body(echo_call(id, &text).to_string())
                .timeout(REQUEST_BUDGET)
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 200 => break r,
                Ok(r) if r.status() == 503 && started.elapsed() < REQUEST_BUDGET => {
                    t.retried.push((id, 503, r.text().await.unwrap_or_default()));
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    t.fail(format!("request {id} refused with {status}: {}", r.text().await.unwrap_or_default()));
                    return t;
                }
                Err(e) => {
                    t.fail(format!("request {id}: {e}"));
                    return t;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let answers = match answers_resuming(&s, resp, started, &mut t).await {
            Ok(a) => a,
            Err(why) => {
                t.fail(format!("request {id}: {why}"));
                return t;
            }
        };
        let mine: Vec<&Value> = answers.iter().filter(|m| m["id"] == id && m.get("method").is_none()).collect();
        match mine.as_slice() {
            [m] if m["result"].is_object() && echo_text(m) == text => {}
            _ => t.fail(format!("request {id}: not answered once with its text: {answers:?}")),
        }
        t.slowest = t.slowest.max(started.elapsed());
        id += 1;
        tokio::time::sleep(PACE).await;
    }
    t
}

/// The messages of a POST's answer: JSON, or an SSE stream read to its end and resumed (GET
/// with `Last-Event-ID`) while it ends without a response.
async fn answers_resuming(
    s: &McpSession,
    resp: reqwest::Response,
    started: Instant,
    t: &mut Tally,
) -> Result<Vec<Value>, String> {
    let sse =
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
    if !sse {
        return Ok(responses(resp).await);
    }
    let (mut reader, mut out, mut last) = (SseReader::new(resp), Vec::new(), None::<String>);
    loop {
        let left = REQUEST_BUDGET.saturating_sub(started.elapsed());
        match reader.try_next(left).await {
            Ok(Some(b)) => {
                last = b.id.clone().or(last);
                out.extend(b.json());
            }
            Err(()) => return Err(format!("no end of its answer stream within {REQUEST_BUDGET:?}; got {out:?}")),
            Ok(None) if out.iter().any(|m: &Value| m.get("method").is_none()) => return Ok(out),
            Ok(None) => {
                let Some(from) = last.clone() else {
                    return Err(format!("its answer stream ended without an answer or an event id to resume from; got {out:?}"));
                };
                t.resumed += 1;
                let r = s
                    .http
                    .get(&s.url)
                    .header("accept", "text/event-stream")
                    .header("mcp-session-id", &s.id)
                    .header("mcp-protocol-version", PROTOCOL)
                    .header("last-event-id", &from)
                    .timeout(left)
                    .send()
                    .await
                    .map_err(|e| format!("resuming after {from}: {e}"))?;
                if r.status() != 200 {
                    return Err(format!("resuming after {from}: {} {}", r.status(), r.text().await.unwrap_or_default()));
                }
                reader = SseReader::new(r);
            }
        }
    }
}
