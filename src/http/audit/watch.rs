//! Watching answers for the audited requests: a POST's own body (SSE events or one JSON body),
//! a REST call's answer (its status and body), and a legacy session's SSE stream (answers to its
//! message endpoint's POSTs). Each watcher writes a line per answer it sees, and when its body
//! ends (its Drop) the requests still unanswered as `unanswered`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use futures_util::StreamExt;

use super::line::{Audit, Outcome, Pending};
use crate::protocol::jsonrpc::{self, Kind};

/// The most of a JSON body kept to read its answers at the end.
const MAX_JSON: usize = 64 * 1024 * 1024;

/// The outcome of one answer.
fn outcome(raw: &[u8], error: bool) -> Outcome {
    if error {
        let v: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
        return Outcome::Error(v.pointer("/error/code").and_then(|c| c.as_i64()).unwrap_or(0));
    }
    if raw.windows(7).any(|w| w == b"isError") {
        let v: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
        if v.pointer("/result/isError").and_then(|e| e.as_bool()) == Some(true) {
            return Outcome::ToolError;
        }
    }
    Outcome::Ok
}

/// Complete SSE events out of a byte stream: each event's `event:` name and joined data.
#[derive(Default)]
struct Events {
    buf: Vec<u8>,
}

impl Events {
    fn push(&mut self, chunk: &[u8], mut each: impl FnMut(Option<&[u8]>, &[u8])) {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(end) = self.buf[start..].windows(2).position(|w| w == b"\n\n").map(|p| start + p + 2) {
            let ev = &self.buf[start..end];
            let mut name = None;
            let mut data: Vec<u8> = Vec::new();
            for line in ev.split(|&b| b == b'\n') {
                if let Some(n) = line.strip_prefix(b"event:") {
                    name = Some(n.strip_prefix(b" ").unwrap_or(n));
                } else if let Some(d) = line.strip_prefix(b"data:") {
                    if !data.is_empty() {
                        data.push(b'\n');
                    }
                    data.extend_from_slice(d.strip_prefix(b" ").unwrap_or(d));
                }
            }
            each(name, &data);
            start = end;
        }
        self.buf.drain(..start);
    }
}

/// The answers in one message body (a message or a batch): (id, outcome, bytes).
fn answers(body: &[u8]) -> Vec<(Box<str>, Outcome, usize)> {
    let Ok((messages, _)) = jsonrpc::split(&bytes::Bytes::copy_from_slice(body)) else { return Vec::new() };
    messages
        .iter()
        .filter_map(|raw| {
            let p = jsonrpc::peek(raw).ok()?;
            (p.kind == Kind::Response).then(|| Some((p.id?, outcome(raw, p.error), raw.len())))?
        })
        .collect()
}

/// A POST's answers.
struct PostWatch {
    audit: Arc<Audit>,
    pendings: Vec<Pending>,
    sse: bool,
    events: Events,
    json: Vec<u8>,
}

impl PostWatch {
    fn push(&mut self, chunk: &[u8]) {
        if !self.sse {
            if self.json.len() + chunk.len() <= MAX_JSON {
                self.json.extend_from_slice(chunk);
            }
            return;
        }
        let mut seen = Vec::new();
        self.events.push(chunk, |_, data| seen.extend(answers(data)));
        for a in seen {
            self.answer(a);
        }
    }

    fn answer(&mut self, (id, outcome, bytes): (Box<str>, Outcome, usize)) {
        if let Some(i) = self.pendings.iter().position(|p| p.id.as_deref() == Some(&*id)) {
            let p = self.pendings.swap_remove(i);
            self.audit.write(&p, outcome, bytes);
        }
    }
}

impl Drop for PostWatch {
    fn drop(&mut self) {
        for a in answers(&std::mem::take(&mut self.json)) {
            self.answer(a);
        }
        for p in &self.pendings {
            self.audit.write(p, Outcome::Unanswered, 0);
        }
    }
}

fn is_sse(resp: &Response) -> bool {
    resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Watches a POST's body for the answers to `pendings`.
pub(super) fn post_answer(audit: Arc<Audit>, pendings: Vec<Pending>, resp: Response) -> Response {
    let mut w = PostWatch { audit, pendings, sse: is_sse(&resp), events: Events::default(), json: Vec::new() };
    observed(resp, move |c| w.push(c))
}

/// A REST call's answer: its status, its size, and its failure's code.
struct RestWatch {
    audit: Arc<Audit>,
    pendings: Vec<Pending>,
    status: u16,
    sse: bool,
    events: Events,
    body: Vec<u8>,
    bytes: usize,
    failed: Option<Outcome>,
}

impl Drop for RestWatch {
    fn drop(&mut self) {
        let code = |v: &serde_json::Value| v.pointer("/error/code").and_then(|c| c.as_i64());
        let outcome = match (self.status, self.failed) {
            (_, Some(o)) => o,
            (200..=299, None) => Outcome::Ok,
            (s, None) => match serde_json::from_slice::<serde_json::Value>(&self.body).ok().as_ref().and_then(code) {
                // The upstream's (or the bridge's) JSON-RPC error, in the problem document.
                Some(c) if s != 403 && s != 429 => Outcome::Error(c),
                _ => Outcome::Refused(s),
            },
        };
        for p in &self.pendings {
            self.audit.write(p, outcome, self.bytes);
        }
    }
}

/// Watches a REST call's answer.
pub(super) fn rest_answer(audit: Arc<Audit>, pendings: Vec<Pending>, resp: Response) -> Response {
    let (status, sse) = (resp.status().as_u16(), is_sse(&resp));
    let mut w = RestWatch { audit, pendings, status, sse, events: Events::default(), body: Vec::new(), bytes: 0, failed: None };
    observed(resp, move |c| {
        w.bytes += c.len();
        if w.sse {
            let mut failed = None;
            w.events.push(c, |name, data| {
                if name == Some(b"error".as_slice()) {
                    let v: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
                    failed = Some(Outcome::Error(v.pointer("/error/code").and_then(|c| c.as_i64()).unwrap_or(0)));
                }
            });
            w.failed = failed.or(w.failed);
        } else if w.body.len() + c.len() <= MAX_JSON {
            w.body.extend_from_slice(c);
        }
    })
}

/// A legacy SSE stream: its session (from the `endpoint` event, or the resumed event id), and
/// the answers to audited requests of that session.
pub(super) fn legacy_stream(audit: Arc<Audit>, session: Option<String>, resp: Response) -> Response {
    let mut session = session;
    let mut events = Events::default();
    observed(resp, move |c| {
        events.push(c, |name, data| {
            if name == Some(b"endpoint".as_slice()) {
                let text = String::from_utf8_lossy(data);
                session = text.split("sessionId=").nth(1).map(|s| s.split('&').next().unwrap_or(s).to_string());
                return;
            }
            let Some(sid) = &session else { return };
            for (id, outcome, bytes) in answers(data) {
                if let Some(p) = audit.answered(sid, &id) {
                    audit.write(&p, outcome, bytes);
                }
            }
        });
    })
}

/// A response body whose chunks `f` sees on their way (and which is told when it ends, by its
/// own Drop).
fn observed(resp: Response, mut f: impl FnMut(&[u8]) + Send + 'static) -> Response {
    let (parts, body) = resp.into_parts();
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        if let Ok(c) = &chunk {
            f(c);
        }
        chunk
    }));
    Response::from_parts(parts, body)
}
