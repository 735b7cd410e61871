//! The audit's line: what is noted of a request ([`Pending`]), how it ended ([`Outcome`]), and
//! [`Audit`], which writes the JSON line to the audit file (through a writer thread) or the log,
//! and keeps legacy sessions' requests until their answer shows on the stream. A leaf.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::config::auth::audit::AuditSettings;

/// Lines waiting for the writer thread; past it they are dropped (and counted in the log).
const QUEUE: usize = 10_000;
/// Requests of legacy sessions waiting for their answer on the stream; past it the oldest are
/// written as `unanswered`.
const MAX_WAITING: usize = 100_000;

/// One audited request, from the moment it was read.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(super) started: Instant,
    pub(super) time: SystemTime,
    pub(super) principal: Option<Arc<str>>,
    pub(super) server: String,
    pub(super) transport: &'static str,
    pub(super) method: &'static str,
    /// The tool, the prompt, or the resource URI.
    pub(super) name: String,
    /// The JSON-RPC id's text (none on REST).
    pub(super) id: Option<Box<str>>,
    pub(super) bytes_in: usize,
    pub(super) arguments: Option<serde_json::Value>,
}

/// How an audited request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A result (`ok`), or a tool result with `isError` (`tool_error`).
    Ok,
    ToolError,
    /// A JSON-RPC error answer, with its code.
    Error(i64),
    /// Refused before it reached the session (the HTTP status).
    Refused(u16),
    /// The client went away, or the stream ended, before the answer.
    Unanswered,
}

/// Where lines go.
enum Sink {
    File(mpsc::SyncSender<String>),
    Log,
}

/// The audit, built once at start.
pub(crate) struct Audit {
    pub(super) settings: AuditSettings,
    sink: Sink,
    pub(super) servers: Vec<String>,
    pub(super) max_body: usize,
    /// Legacy sessions' requests, by (session id, request id), until their answer is seen.
    waiting: Mutex<HashMap<(String, Box<str>), Pending>>,
}

impl Audit {
    pub(crate) fn new(settings: AuditSettings, servers: Vec<String>, max_body: usize) -> Arc<Audit> {
        let sink = match &settings.file {
            None => Sink::Log,
            Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                Ok(file) => {
                    let (tx, rx) = mpsc::sync_channel::<String>(QUEUE);
                    std::thread::Builder::new()
                        .name("audit-writer".into())
                        .spawn(move || write_lines(file, rx))
                        .map(|_| Sink::File(tx))
                        .unwrap_or(Sink::Log)
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "audit.file cannot be opened; audit lines go to the log");
                    Sink::Log
                }
            },
        };
        Arc::new(Audit { settings, sink, servers, max_body, waiting: Mutex::default() })
    }

    /// Writes the line of `p`.
    pub(crate) fn write(&self, p: &Pending, outcome: Outcome, bytes_out: usize) {
        let (word, code, status) = match outcome {
            Outcome::Ok => ("ok", None, None),
            Outcome::ToolError => ("tool_error", None, None),
            Outcome::Error(c) => ("error", Some(c), None),
            Outcome::Refused(s) => ("refused", None, Some(s)),
            Outcome::Unanswered => ("unanswered", None, None),
        };
        let mut line = serde_json::json!({
            "time": humantime::format_rfc3339_millis(p.time).to_string(),
            "principal": p.principal.as_deref(),
            "server": p.server,
            "transport": p.transport,
            "method": p.method,
            "name": p.name,
            "id": p.id.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()),
            "outcome": word,
            "duration_ms": p.started.elapsed().as_secs_f64() * 1000.0,
            "bytes_in": p.bytes_in,
            "bytes_out": bytes_out,
        });
        if let Some(c) = code {
            line["error_code"] = c.into();
        }
        if let Some(s) = status {
            line["status"] = s.into();
        }
        if let Some(a) = &p.arguments {
            line["arguments"] = a.clone();
        }
        let line = line.to_string();
        match &self.sink {
            Sink::Log => tracing::info!(target: "audit", "audit {line}"),
            Sink::File(tx) => {
                if tx.try_send(line).is_err() {
                    tracing::warn!("an audit line was dropped: the audit file is not keeping up");
                }
            }
        }
    }

    /// Keeps a legacy session's request until its answer shows on the stream.
    pub(super) fn wait(&self, session: &str, p: Pending) {
        let Some(id) = p.id.clone() else { return };
        let mut map = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_WAITING {
            let oldest = map.iter().min_by_key(|(_, p)| p.started).map(|(k, _)| k.clone());
            if let Some(p) = oldest.and_then(|k| map.remove(&k)) {
                self.write(&p, Outcome::Unanswered, 0);
            }
        }
        map.insert((session.to_string(), id), p);
    }

    /// The legacy request an answer on session `session`'s stream belongs to, if audited.
    pub(crate) fn answered(&self, session: &str, id: &str) -> Option<Pending> {
        let mut map = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(session.to_string(), Box::from(id)))
    }
}

fn write_lines(file: std::fs::File, rx: mpsc::Receiver<String>) {
    let mut out = std::io::BufWriter::new(file);
    while let Ok(line) = rx.recv() {
        let _ = writeln!(out, "{line}");
        // Everything queued now goes in the same write.
        while let Ok(line) = rx.try_recv() {
            let _ = writeln!(out, "{line}");
        }
        if let Err(e) = out.flush() {
            tracing::warn!(error = %e, "could not write the audit file");
        }
    }
}
