//! `mcp-bridge diagnose URL`: opens an SSE stream like a client, holds it for a while, records
//! what arrives (optionally running the MCP handshake and pings), and says how and why it
//! ended. The facts and the verdict live in `report`, their text and JSON in `render`; this
//! file does the network part.

pub(crate) mod render;
pub(crate) mod report;

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::sse::parse::{Item, Parser};
use report::{Arrival, End, Pings, Record, Report};

/// What to diagnose and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub duration: Duration,
    pub json: bool,
    /// Run the MCP handshake and ping every `ping_interval`.
    pub mcp: bool,
    pub ping_interval: Duration,
    /// Hold a 2026-07-28 `subscriptions/listen` stream instead of a GET.
    pub listen: bool,
}

/// Parses `600`, `2.5` (seconds) or a duration like `10m`.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Duration::from_secs_f64(n),
        Ok(_) => return Err(format!("`{s}` must be a positive number of seconds")),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("`{s}` is not seconds or a duration like `10m` ({e})"))?,
    };
    Ok(d)
}

/// Runs the diagnosis, prints the report on stdout, and returns the exit code: 0 when the
/// stream lasted the whole duration.
pub fn main(opts: Options) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report = rt.block_on(run(&opts));
    let out = if opts.json { format!("{}\n", render::to_json(&report)) } else { render::render_text(&report) };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(if report.end == End::Lasted { 0 } else { 1 })
}

/// Which handshake to run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Only the GET.
    Stream,
    /// Legacy HTTP+SSE: the endpoint event, then POSTs to it; answers come on the stream.
    Sse,
    /// Streamable HTTP: POST initialize, GET the stream, answers come on each POST.
    Streamable,
    /// 2026-07-28: the stream is the response to a POSTed `subscriptions/listen`.
    Listen,
}

fn mode_for(opts: &Options) -> Mode {
    let path = reqwest::Url::parse(&opts.url).map(|u| u.path().to_string()).unwrap_or_default();
    if opts.listen {
        return Mode::Listen;
    }
    match opts.mcp {
        false => Mode::Stream,
        true if path.trim_end_matches('/').rsplit('/').nth(1) == Some("mcp") || path.ends_with("/mcp") => Mode::Streamable,
        true => Mode::Sse,
    }
}

/// What a background POST reports back to the main loop.
enum Posted {
    /// A POST failed (the label says which).
    Failed(String),
    /// A Streamable ping answered on its own response.
    PingAnswered(u64),
}

/// The state of one run.
struct Run {
    client: reqwest::Client,
    start: Instant,
    report: Report,
    mode: Mode,
    /// Where legacy POSTs go, once the endpoint event named it.
    endpoint: Option<reqwest::Url>,
    /// Streamable session header and protocol version.
    session: Option<(String, String)>,
    /// Ready for pings: the handshake is done.
    ready: bool,
    /// Sent pings not answered yet: (number, sent at).
    in_flight: Vec<(u64, Instant)>,
    next_ping: u64,
    posted_tx: mpsc::UnboundedSender<Posted>,
}

const SSE_VERSION: &str = crate::protocol::V2024_11_05;
const STREAMABLE_VERSION: &str = crate::protocol::V2025_06_18;

fn initialize(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": "diagnose-init", "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {},
        "clientInfo": {"name": "mcp-bridge-diagnose", "version": env!("CARGO_PKG_VERSION")}}})
}

const MODERN_VERSION: &str = crate::protocol::V2026_07_28;

/// A `subscriptions/listen` for every kind of change notification.
fn listen_request() -> Value {
    json!({"jsonrpc": "2.0", "id": "diagnose-listen", "method": "subscriptions/listen", "params": {
        "notifications": {"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "mcp-bridge-diagnose", "version": env!("CARGO_PKG_VERSION")}}}})
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// A reqwest error with its causes, which is where "connection reset" hides.
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

async fn run(opts: &Options) -> Report {
    let mode = mode_for(opts);
    let (posted_tx, mut posted_rx) = mpsc::unbounded_channel();
    let mut run = Run::new(opts, mode, posted_tx);
    if mode == Mode::Streamable {
        if let Err(end) = run.streamable_handshake().await {
            return run.finish(end);
        }
        // The clock measures the stream, not the handshake.
        run.start = Instant::now();
    }
    let deadline = run.start + opts.duration;
    let resp = match run.open_stream(opts, deadline).await {
        Ok(resp) => resp,
        Err(end) => return run.finish(end),
    };
    let end = run.hold(resp, opts, deadline, &mut posted_rx).await;
    while let Ok(p) = posted_rx.try_recv() {
        run.posted(p);
    }
    run.finish(end)
}

fn interesting_headers(h: &HeaderMap) -> Vec<(String, String)> {
    ["content-type", "x-accel-buffering", "content-encoding", "transfer-encoding", "mcp-session-id"]
        .iter()
        .filter_map(|k| h.get(*k).and_then(|v| v.to_str().ok()).map(|v| (k.to_string(), v.to_string())))
        .collect()
}

impl Run {
    /// A run that has sent nothing yet, its report empty but for what `opts` says.
    fn new(opts: &Options, mode: Mode, posted_tx: mpsc::UnboundedSender<Posted>) -> Run {
        let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().expect("the HTTP client builds");
        Run {
            client,
            start: Instant::now(),
            report: Report {
                url: opts.url.clone(),
                mode: match mode {
                    Mode::Stream => "stream",
                    Mode::Sse => "sse",
                    Mode::Streamable => "streamable",
                    Mode::Listen => "listen",
                },
                duration: opts.duration,
                lasted: Duration::ZERO,
                status: None,
                headers: Vec::new(),
                records: Vec::new(),
                end: End::Lasted,
                pings: opts.mcp.then(Pings::default),
                notes: Vec::new(),
            },
            mode,
            endpoint: None,
            session: None,
            ready: false,
            in_flight: Vec::new(),
            next_ping: 1,
            posted_tx,
        }
    }

    /// Sends the GET (or the `subscriptions/listen` POST) and records the status and headers;
    /// the stream's response when it succeeded, else how the run ends.
    async fn open_stream(&mut self, opts: &Options, deadline: Instant) -> Result<reqwest::Response, End> {
        let mut get = self.client.get(&opts.url).header(ACCEPT, "text/event-stream").header("cache-control", "no-cache");
        if let Some((id, version)) = &self.session {
            get = get.header("mcp-session-id", id).header("mcp-protocol-version", version);
        }
        if self.mode == Mode::Listen {
            get = self
                .client
                .post(&opts.url)
                .header(ACCEPT, "application/json, text/event-stream")
                .header(CONTENT_TYPE, "application/json")
                .header("mcp-protocol-version", MODERN_VERSION)
                .header("mcp-method", "subscriptions/listen")
                .body(listen_request().to_string());
        }
        let resp = match tokio::time::timeout_at(deadline, get.send()).await {
            Err(_) => return Err(End::Error("no response headers within the duration".into())),
            Ok(Err(e)) => return Err(End::Connect(describe(&e))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        self.report.status = Some(status.as_u16());
        self.report.headers = interesting_headers(resp.headers());
        if !status.is_success() {
            let body =
                tokio::time::timeout(Duration::from_secs(2), resp.text()).await.ok().and_then(Result::ok).unwrap_or_default();
            let body: String = body.trim().chars().take(300).collect();
            return Err(End::Status(status.as_u16(), body));
        }
        Ok(resp)
    }

    /// Reads the stream until the deadline or its end, pinging when ready and showing progress;
    /// how it ended.
    async fn hold(
        &mut self,
        resp: reqwest::Response,
        opts: &Options,
        deadline: Instant,
        posted_rx: &mut mpsc::UnboundedReceiver<Posted>,
    ) -> End {
        let mut body = resp.bytes_stream();
        let mut parser = Parser::default();
        let mut progress = Progress::new();
        let mut ping_at = Instant::now() + opts.ping_interval;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let end = loop {
            tokio::select! {
                _ = sleep_until(deadline) => break End::Lasted,
                chunk = body.next() => match chunk {
                    Some(Ok(bytes)) => {
                        parser.feed(&bytes);
                        self.drain(&mut parser);
                    }
                    Some(Err(e)) => break End::Error(describe(&e)),
                    None => break End::Eof,
                },
                Some(p) = posted_rx.recv() => self.posted(p),
                _ = sleep_until(ping_at), if self.ready => {
                    self.ping();
                    ping_at = Instant::now() + opts.ping_interval;
                }
                _ = tick.tick() => progress.show(&self.report, self.start.elapsed()),
            }
        };
        progress.done();
        end
    }

    /// Records every whole item the parser holds; a parse error becomes a note.
    fn drain(&mut self, parser: &mut Parser) {
        loop {
            match parser.try_next_item() {
                Ok(Some(item)) => self.arrived(item),
                Ok(None) => break,
                Err(e) => {
                    self.report.notes.push(e.to_string());
                    break;
                }
            }
        }
    }

    fn finish(mut self, end: End) -> Report {
        let elapsed = self.start.elapsed();
        self.report.lasted = if end == End::Lasted { self.report.duration } else { elapsed.min(self.report.duration) };
        if matches!(end, End::Status(..) | End::Connect(_)) {
            self.report.lasted = Duration::ZERO;
        }
        self.report.end = end;
        if let (Some((id, version)), Mode::Streamable) = (self.session.take(), self.mode) {
            // Best effort: end the session so it does not wait for its idle expiry.
            let req = self.client.delete(&self.report.url).header("mcp-session-id", id).header("mcp-protocol-version", version);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), req.send()).await;
            });
        }
        self.report
    }

    fn record(&mut self, what: Arrival) {
        self.report.records.push(Record { at: self.start.elapsed(), what });
    }

    fn arrived(&mut self, item: Item) {
        let ev = match item {
            Item::Comment(c) if c.trim() == "heartbeat" => return self.record(Arrival::Heartbeat),
            Item::Comment(c) => return self.record(Arrival::Comment(c.chars().take(80).collect())),
            Item::Event(ev) => ev,
        };
        match ev.event.as_deref() {
            Some("heartbeat") => self.record(Arrival::Heartbeat),
            Some("endpoint") => {
                let uri = ev.data.trim().to_string();
                self.record(Arrival::Endpoint(uri.clone()));
                if self.mode == Mode::Sse && self.endpoint.is_none() {
                    match reqwest::Url::parse(&self.report.url).and_then(|base| base.join(&uri)) {
                        Ok(url) => {
                            self.endpoint = Some(url);
                            self.post(initialize(SSE_VERSION).to_string(), "initialize");
                        }
                        Err(e) => self.report.notes.push(format!("the endpoint `{uri}` is not a URI: {e}")),
                    }
                }
            }
            None | Some("message") if !ev.data.is_empty() => {
                let label = self.message(&ev.data);
                self.record(Arrival::Message(label));
            }
            None if ev.retry.is_some() && ev.id.is_none() => self.record(Arrival::Retry(ev.retry.unwrap_or(0))),
            None => self.record(Arrival::Other(format!("event with id {} and no data", ev.id.as_deref().unwrap_or("-")))),
            Some(other) => self.record(Arrival::Other(format!("event `{other}`"))),
        }
    }

    /// Labels a JSON-RPC message and advances the handshake or the pings it answers.
    fn message(&mut self, data: &str) -> String {
        let Ok(msg) = serde_json::from_str::<Value>(data) else {
            return "not JSON".into();
        };
        if let Some(method) = msg.get("method").and_then(Value::as_str) {
            return method.chars().take(80).collect();
        }
        let id = msg.get("id").map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string)).unwrap_or_default();
        let error = msg.get("error").is_some();
        if id == "diagnose-init" {
            if error {
                self.report.notes.push(format!("initialize failed: {}", msg["error"]));
            } else if self.mode == Mode::Sse {
                self.post(INITIALIZED.to_string(), "notifications/initialized");
                self.ready = true;
            }
            return "response to initialize".into();
        }
        if let Some(n) = id.strip_prefix("diagnose-ping-").and_then(|n| n.parse().ok()) {
            self.answered(n);
            return if error { "error for ping".into() } else { "response to ping".into() };
        }
        format!("response to {}", id.chars().take(40).collect::<String>())
    }

    fn answered(&mut self, n: u64) {
        let Some(i) = self.in_flight.iter().position(|(k, _)| *k == n) else { return };
        let (_, sent) = self.in_flight.swap_remove(i);
        if let Some(p) = &mut self.report.pings {
            p.answered += 1;
            let took = sent.elapsed();
            p.slowest = Some(p.slowest.map_or(took, |s| s.max(took)));
        }
    }

    fn posted(&mut self, p: Posted) {
        match p {
            Posted::Failed(what) => {
                if self.report.notes.len() < 20 {
                    self.report.notes.push(what);
                }
            }
            Posted::PingAnswered(n) => self.answered(n),
        }
    }

    fn ping(&mut self) {
        let n = self.next_ping;
        self.next_ping += 1;
        self.in_flight.push((n, Instant::now()));
        if let Some(p) = &mut self.report.pings {
            p.sent += 1;
        }
        let body = json!({"jsonrpc": "2.0", "id": format!("diagnose-ping-{n}"), "method": "ping"}).to_string();
        match self.mode {
            Mode::Sse => self.post(body, "ping"),
            Mode::Streamable => {
                let req = self.streamable_post(body);
                let tx = self.posted_tx.clone();
                tokio::spawn(async move {
                    let id = format!("diagnose-ping-{n}");
                    let msg = match tokio::time::timeout(Duration::from_secs(30), answer(req, &id)).await {
                        Ok(Ok(_)) => Posted::PingAnswered(n),
                        Ok(Err(e)) => Posted::Failed(format!("ping {n}: {e}")),
                        Err(_) => Posted::Failed(format!("ping {n}: no answer within 30 s")),
                    };
                    let _ = tx.send(msg);
                });
            }
            Mode::Stream | Mode::Listen => {}
        }
    }

    /// A legacy POST to the endpoint, in the background; only failures come back.
    fn post(&self, body: String, what: &'static str) {
        let Some(url) = self.endpoint.clone() else { return };
        let req = self.client.post(url).header(CONTENT_TYPE, "application/json").body(body);
        let tx = self.posted_tx.clone();
        tokio::spawn(async move {
            let failed = match tokio::time::timeout(Duration::from_secs(30), req.send()).await {
                Ok(Ok(r)) if r.status().is_success() => return,
                Ok(Ok(r)) => format!("POST {what}: HTTP {}", r.status().as_u16()),
                Ok(Err(e)) => format!("POST {what}: {}", describe(&e)),
                Err(_) => format!("POST {what}: no answer within 30 s"),
            };
            let _ = tx.send(Posted::Failed(failed));
        });
    }

    fn streamable_post(&self, body: String) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(&self.report.url)
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some((id, version)) = &self.session {
            req = req.header("mcp-session-id", id).header("mcp-protocol-version", version);
        }
        req
    }

    /// POST initialize and notifications/initialized; the GET stream comes after.
    async fn streamable_handshake(&mut self) -> Result<(), End> {
        let req = self.streamable_post(initialize(STREAMABLE_VERSION).to_string());
        let resp = req.send().await.map_err(|e| End::Connect(describe(&e)))?;
        let status = resp.status().as_u16();
        let session = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        if status >= 300 {
            let body: String = resp.text().await.unwrap_or_default().trim().chars().take(300).collect();
            return Err(End::Status(status, format!("initialize: {body}")));
        }
        let answer = tokio::time::timeout(Duration::from_secs(30), read_answer(resp, "diagnose-init"))
            .await
            .map_err(|_| End::Error("initialize: no answer within 30 s".into()))?
            .map_err(|e| End::Error(format!("initialize: {e}")))?;
        let version = answer["result"]["protocolVersion"].as_str().unwrap_or(STREAMABLE_VERSION).to_string();
        let Some(session) = session else {
            return Err(End::Error("initialize: the answer carried no Mcp-Session-Id".into()));
        };
        self.session = Some((session, version));
        let resp = self.streamable_post(INITIALIZED.to_string()).send().await.map_err(|e| End::Connect(describe(&e)))?;
        if !resp.status().is_success() {
            return Err(End::Status(resp.status().as_u16(), "notifications/initialized was refused".into()));
        }
        self.ready = true;
        Ok(())
    }
}

/// Sends a Streamable POST and finds the answer with `id` in its JSON or SSE body.
async fn answer(req: reqwest::RequestBuilder, id: &str) -> Result<Value, String> {
    let resp = req.send().await.map_err(|e| describe(&e))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    read_answer(resp, id).await
}

async fn read_answer(resp: reqwest::Response, id: &str) -> Result<Value, String> {
    let is_sse =
        resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
    let matches = |v: &Value| v.get("id").and_then(Value::as_str) == Some(id);
    if !is_sse {
        let body = resp.bytes().await.map_err(|e| describe(&e))?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| format!("the answer is not JSON: {e}"))?;
        return [v.clone()]
            .into_iter()
            .chain(v.as_array().cloned().unwrap_or_default())
            .find(matches)
            .ok_or("no answer in the body".into());
    }
    let mut body = resp.bytes_stream();
    let mut parser = Parser::default();
    while let Some(chunk) = body.next().await {
        let chunk: Bytes = chunk.map_err(|e| describe(&e))?;
        parser.feed(&chunk);
        while let Some(item) = parser.next_item() {
            if let Item::Event(ev) = item {
                if let Some(v) = serde_json::from_str::<Value>(&ev.data).ok().filter(matches) {
                    return Ok(v);
                }
            }
        }
    }
    Err("the stream ended without the answer".into())
}

/// The live progress line on stderr: rewritten in place on a terminal, every 5 s otherwise.
struct Progress {
    tty: bool,
    last: Option<Instant>,
}

impl Progress {
    fn new() -> Progress {
        Progress { tty: std::io::stderr().is_terminal(), last: Some(Instant::now()) }
    }

    fn show(&mut self, r: &Report, elapsed: Duration) {
        let every = if self.tty { Duration::from_millis(250) } else { Duration::from_secs(5) };
        if self.last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let since = elapsed.saturating_sub(r.records.last().map_or(Duration::ZERO, |x| x.at));
        let silence = report::longest_gap(&r.records, elapsed).0;
        let mut line = format!(
            "{:>7.1} s  events {}  heartbeats {}  longest silence {:.1} s  (last arrival {:.1} s ago)",
            elapsed.as_secs_f64(),
            r.records.len() - r.heartbeats(),
            r.heartbeats(),
            silence.as_secs_f64(),
            since.as_secs_f64()
        );
        if let Some(p) = &r.pings {
            let _ = write!(line, "  pings answered {}/{}", p.answered, p.sent);
        }
        let mut err = std::io::stderr().lock();
        let _ = if self.tty { write!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
    }

    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}
