//! The throughput and latency workload: K sessions, each initializing and then sending
//! sequential `tools/call` echo requests for a bounded time, over legacy SSE, Streamable HTTP,
//! the 2026-07-28 stateless revision (no initialize: every request carries its `_meta`), or
//! straight to a stdio child (the no-bridge baseline).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

use crate::cost::{self, Meter, Perf, Tree};
use crate::http::{self, Conn, SseReader, Url};
use crate::mcp::{self, Verdict};
use crate::stats::Run;

/// What the sessions talk to.
#[derive(Debug, Clone)]
pub enum Target {
    /// Legacy HTTP+SSE: GET the stream, POST to the endpoint it announces.
    Sse(Url),
    /// Streamable HTTP: POST everything to one URL, session in `Mcp-Session-Id`.
    Streamable(Url),
    /// The 2026-07-28 (stateless) revision: no initialize and no session id; every POST
    /// carries `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and `params._meta`.
    Stateless(Url),
    /// Streamable HTTP across a cluster: initialize at `init` (the owner), then send every
    /// other request to `rest` (another instance, which forwards to the owner).
    Forwarded { init: Url, rest: Url },
    /// A stdio MCP server spawned per session, no HTTP at all.
    Stdio { command: PathBuf, args: Vec<String> },
}

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct Load {
    pub sessions: usize,
    pub duration: Duration,
    /// Size of each echo message in bytes.
    pub size: usize,
    /// The echo tool's name (a gateway may namespace it, e.g. `echo/echo`).
    pub tool: String,
    /// Longest wait for one answer (or one session's set-up) before it counts as an error.
    pub timeout: Duration,
    /// Stateless only: each worker names itself differently in `clientInfo` (a diagnostic:
    /// the bridge then keeps a backing-session pool per worker instead of one for all).
    pub client_per_session: bool,
    /// Whose CPU, context switches and syscalls to read over the window (never the generator's).
    pub meter: Option<Meter>,
}

/// What a request came back with.
struct Answer {
    at: Instant,
    wrong: u64,
    error: Option<String>,
}

enum Session {
    Sse(SseSession),
    Streamable(StreamableSession),
    Stateless(StatelessSession),
    Stdio(StdioSession),
}

impl Session {
    async fn open(target: &Target, tool: &str, limit: Duration) -> anyhow::Result<Session> {
        let mut s = match target {
            Target::Sse(url) => Session::Sse(SseSession::open(url, limit).await?),
            Target::Streamable(url) => Session::Streamable(StreamableSession::open(url).await?),
            Target::Forwarded { init, rest } => {
                let mut s = StreamableSession::open(init).await?;
                s.then = Some(rest.clone());
                Session::Streamable(s)
            }
            Target::Stdio { command, args } => Session::Stdio(StdioSession::open(command, args)?),
            // Nothing to set up: the revision has no handshake.
            Target::Stateless(url) => return Ok(Session::Stateless(StatelessSession::open(url, tool).await?)),
        };
        let a = s.request(1, mcp::initialize(1), "", limit).await?;
        if let Some(e) = a.error {
            bail!("initialize failed: {e}");
        }
        s.notify(mcp::initialized(), limit).await?;
        Ok(s)
    }

    async fn request(&mut self, id: u64, body: Vec<u8>, want: &str, limit: Duration) -> anyhow::Result<Answer> {
        match self {
            Session::Sse(s) => s.request(id, body, want, limit).await,
            Session::Streamable(s) => s.request(id, body, want, limit).await,
            Session::Stateless(s) => s.request(id, body, want, limit).await,
            Session::Stdio(s) => s.request(id, body, want).await,
        }
    }

    async fn notify(&mut self, body: Vec<u8>, limit: Duration) -> anyhow::Result<()> {
        match self {
            Session::Sse(s) => s.post(body, limit).await.map(|_| ()),
            Session::Streamable(s) => s.notify(body, limit).await,
            Session::Stateless(_) => bail!("the stateless workload sends no notifications"),
            Session::Stdio(s) => s.write(&body).await,
        }
    }

    /// The process this session spawned itself (the stdio baseline's child).
    fn child_pid(&self) -> Option<u32> {
        match self {
            Session::Stdio(s) => s.child.id(),
            _ => None,
        }
    }

    /// Ends the session politely where the transport has a way (Streamable DELETE).
    async fn close(self, limit: Duration) {
        if let Session::Streamable(mut s) = self {
            let _ = timeout(limit, s.delete()).await;
        }
    }
}

/// Waits for the answer to `id` among the events of a stream, counting strays as wrong.
async fn await_answer(stream: &mut SseReader, id: u64, want: &str) -> anyhow::Result<Answer> {
    await_checked(stream, id, want, mcp::check).await
}

async fn await_checked(
    stream: &mut SseReader,
    id: u64,
    want: &str,
    check: fn(&[u8], u64, &str) -> Verdict,
) -> anyhow::Result<Answer> {
    let mut wrong = 0;
    loop {
        let Some(ev) = stream.next_event().await? else {
            bail!("the stream ended before the answer to request {id}");
        };
        if !matches!(ev.event.as_deref(), None | Some("message")) || ev.data.is_empty() {
            continue;
        }
        match check(ev.data.as_bytes(), id, want) {
            Verdict::Ok => return Ok(Answer { at: Instant::now(), wrong, error: None }),
            Verdict::Error(e) => return Ok(Answer { at: Instant::now(), wrong, error: Some(e) }),
            Verdict::Wrong => wrong += 1,
            Verdict::Other => {}
        }
    }
}

struct SseSession {
    stream: SseReader,
    _get: Conn,
    post: Conn,
    endpoint: Url,
}

impl SseSession {
    async fn open(url: &Url, limit: Duration) -> anyhow::Result<SseSession> {
        let mut get = http::connect(url.addr, None).await?;
        let resp = get.send(http::get_sse(url, &[])).await?;
        if !resp.status().is_success() {
            bail!("GET {} answered {}", url.path, resp.status());
        }
        let mut stream = SseReader::new(resp);
        let endpoint = timeout(limit, async {
            loop {
                match stream.next_event().await? {
                    Some(ev) if ev.event.as_deref() == Some("endpoint") => return url.join(ev.data.trim()),
                    Some(_) => continue,
                    None => bail!("the stream ended before the endpoint event"),
                }
            }
        })
        .await
        .map_err(|_| anyhow!("no endpoint event within {limit:?}"))??;
        let post = http::connect(endpoint.addr, None).await?;
        Ok(SseSession { stream, _get: get, post, endpoint })
    }

    async fn post(&mut self, body: Vec<u8>, limit: Duration) -> anyhow::Result<Option<String>> {
        if self.post.is_closed() {
            self.post = http::connect(self.endpoint.addr, None).await?;
        }
        let resp = self.post.send(http::post(&self.endpoint, body, &[])).await?;
        let status = resp.status();
        let text = http::body_bytes(resp, limit).await?;
        if !status.is_success() {
            return Ok(Some(format!("POST answered {status}: {}", String::from_utf8_lossy(&text[..text.len().min(200)]))));
        }
        Ok(None)
    }

    async fn request(&mut self, id: u64, body: Vec<u8>, want: &str, limit: Duration) -> anyhow::Result<Answer> {
        if let Some(e) = self.post(body, limit).await? {
            return Ok(Answer { at: Instant::now(), wrong: 0, error: Some(e) });
        }
        timeout(limit, await_answer(&mut self.stream, id, want))
            .await
            .map_err(|_| anyhow!("no answer to {id} within {limit:?}"))?
    }
}

struct StreamableSession {
    conn: Option<Conn>,
    url: Url,
    session: Option<String>,
    version: Option<String>,
    /// Where requests go after the handshake (the forwarded workload).
    then: Option<Url>,
}

impl StreamableSession {
    async fn open(url: &Url) -> anyhow::Result<StreamableSession> {
        let conn = http::connect(url.addr, None).await?;
        Ok(StreamableSession { conn: Some(conn), url: url.clone(), session: None, version: None, then: None })
    }

    async fn send(
        &mut self,
        req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let conn = match &mut self.conn {
            Some(c) if !c.is_closed() => c,
            _ => self.conn.insert(http::connect(self.url.addr, None).await?),
        };
        conn.send(req).await
    }

    /// After the handshake, moves on to the `then` URL, if any.
    fn switch(&mut self) {
        if let Some(rest) = self.then.take() {
            self.url = rest;
            self.conn = None;
        }
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        let mut h = Vec::with_capacity(2);
        if let Some(s) = &self.session {
            h.push(("mcp-session-id", s.as_str()));
        }
        if let Some(v) = &self.version {
            h.push(("mcp-protocol-version", v.as_str()));
        }
        h
    }

    async fn request(&mut self, id: u64, body: Vec<u8>, want: &str, limit: Duration) -> anyhow::Result<Answer> {
        let req = http::post(&self.url, body, &self.headers());
        let resp = self.send(req).await?;
        let status = resp.status();
        if let Some(s) = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            self.session = Some(s.to_string());
        }
        let sse =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
        if !status.is_success() {
            let text = http::body_bytes(resp, limit).await.unwrap_or_default();
            let e = format!("POST answered {status}: {}", String::from_utf8_lossy(&text[..text.len().min(200)]));
            return Ok(Answer { at: Instant::now(), wrong: 0, error: Some(e) });
        }
        if sse {
            let mut stream = SseReader::new(resp);
            let answer = timeout(limit, await_answer(&mut stream, id, want))
                .await
                .map_err(|_| anyhow!("no answer to {id} within {limit:?}"))??;
            if !stream.drain(limit).await {
                // The answer stream stayed open: this connection cannot carry another request.
                self.conn = None;
            }
            if id == 1 {
                self.version = Some(mcp::PROTOCOL.to_string());
                self.switch();
            }
            return Ok(answer);
        }
        let text = http::body_bytes(resp, limit).await?;
        let at = Instant::now();
        if id == 1 {
            self.version = mcp::negotiated(&text).or(Some(mcp::PROTOCOL.to_string()));
            self.switch();
        }
        Ok(match mcp::check(&text, id, want) {
            Verdict::Ok => Answer { at, wrong: 0, error: None },
            Verdict::Error(e) => Answer { at, wrong: 0, error: Some(e) },
            Verdict::Wrong | Verdict::Other => Answer { at, wrong: 1, error: None },
        })
    }

    async fn notify(&mut self, body: Vec<u8>, limit: Duration) -> anyhow::Result<()> {
        let req = http::post(&self.url, body, &self.headers());
        let resp = self.send(req).await?;
        let status = resp.status();
        http::body_bytes(resp, limit).await?;
        if !status.is_success() {
            bail!("notification answered {status}");
        }
        Ok(())
    }

    async fn delete(&mut self) -> anyhow::Result<()> {
        let mut b = hyper::Request::delete(&self.url.path).header("host", &self.url.authority);
        for (k, v) in self.headers() {
            b = b.header(k, v);
        }
        let req = b.body(http_body_util::Full::new(bytes::Bytes::new()))?;
        let resp = self.send(req).await?;
        http::body_bytes(resp, Duration::from_secs(2)).await?;
        Ok(())
    }
}

/// A 2026-07-28 client: one connection (re-opened if the server closes it), one request at a
/// time, answered with JSON or, past the server's heartbeat interval, an SSE stream.
struct StatelessSession {
    conn: Option<Conn>,
    url: Url,
    /// The tool, for the `Mcp-Name` header.
    tool: String,
}

impl StatelessSession {
    async fn open(url: &Url, tool: &str) -> anyhow::Result<StatelessSession> {
        let conn = http::connect(url.addr, None).await?;
        Ok(StatelessSession { conn: Some(conn), url: url.clone(), tool: tool.to_string() })
    }

    async fn request(&mut self, id: u64, body: Vec<u8>, want: &str, limit: Duration) -> anyhow::Result<Answer> {
        let headers =
            [("mcp-protocol-version", mcp::MODERN_PROTOCOL), ("mcp-method", "tools/call"), ("mcp-name", self.tool.as_str())];
        let req = http::post(&self.url, body, &headers);
        let conn = match &mut self.conn {
            Some(c) if !c.is_closed() => c,
            _ => self.conn.insert(http::connect(self.url.addr, None).await?),
        };
        let resp = conn.send(req).await?;
        let status = resp.status();
        let sse =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/event-stream"));
        if !status.is_success() {
            let text = http::body_bytes(resp, limit).await.unwrap_or_default();
            let e = format!("POST answered {status}: {}", String::from_utf8_lossy(&text[..text.len().min(200)]));
            return Ok(Answer { at: Instant::now(), wrong: 0, error: Some(e) });
        }
        if sse {
            let mut stream = SseReader::new(resp);
            let answer = timeout(limit, await_checked(&mut stream, id, want, mcp::check_modern))
                .await
                .map_err(|_| anyhow!("no answer to {id} within {limit:?}"))??;
            if !stream.drain(limit).await {
                self.conn = None;
            }
            return Ok(answer);
        }
        let text = http::body_bytes(resp, limit).await?;
        let at = Instant::now();
        Ok(match mcp::check_modern(&text, id, want) {
            Verdict::Ok => Answer { at, wrong: 0, error: None },
            Verdict::Error(e) => Answer { at, wrong: 0, error: Some(e) },
            Verdict::Wrong | Verdict::Other => Answer { at, wrong: 1, error: None },
        })
    }
}

struct StdioSession {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl StdioSession {
    fn open(command: &PathBuf, args: &[String]) -> anyhow::Result<StdioSession> {
        let mut child = Command::new(command)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", command.display()))?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = child.stdout.take().context("child stdout")?;
        Ok(StdioSession { child, stdin, lines: BufReader::new(stdout).lines() })
    }

    async fn write(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let mut line = Vec::with_capacity(body.len() + 1);
        line.extend_from_slice(body);
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn request(&mut self, id: u64, body: Vec<u8>, want: &str) -> anyhow::Result<Answer> {
        self.write(&body).await?;
        let mut wrong = 0;
        loop {
            let Some(line) = self.lines.next_line().await? else { bail!("the child closed its stdout") };
            match mcp::check(line.as_bytes(), id, want) {
                Verdict::Ok => return Ok(Answer { at: Instant::now(), wrong, error: None }),
                Verdict::Error(e) => return Ok(Answer { at: Instant::now(), wrong, error: Some(e) }),
                Verdict::Wrong => wrong += 1,
                Verdict::Other => {}
            }
        }
    }
}

/// Sessions set up at once; more at a time only measures the target's connect storm.
const SETUP_CONCURRENCY: usize = 16;

/// Runs one point: sets every session up, starts them together, stops them at the deadline.
/// With a meter, the target's process tree is read just before the start and at the deadline.
pub async fn run(target: &Target, load: &Load) -> Run {
    let (ready_tx, mut ready_rx) = mpsc::channel::<Option<u32>>(load.sessions.max(1));
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    // Sessions stay open past the deadline until the tree has been read (a closed session
    // ends its child, which would leave the tree before the window's end is read).
    let (read_tx, read_rx) = watch::channel(false);
    let setup = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for k in 0..load.sessions {
        let (target, load, setup, ready, start) =
            (target.clone(), load.clone(), setup.clone(), ready_tx.clone(), start_rx.clone());
        tasks.spawn(session(k, target, load, setup, ready, start, read_rx.clone()));
    }
    drop(ready_tx);
    let setup_limit = load.timeout * (1 + (load.sessions / SETUP_CONCURRENCY) as u32).min(10);
    let mut spawned = Vec::new();
    let _ = timeout(setup_limit, async {
        for _ in 0..load.sessions {
            match ready_rx.recv().await {
                Some(pid) => spawned.extend(pid),
                None => break,
            }
        }
    })
    .await;
    let metered = match &load.meter {
        Some(m) => {
            let roots = match m.tree {
                Tree::Pid(pid) => vec![pid],
                Tree::Sessions => spawned,
            };
            let (r, a) = tokio::task::spawn_blocking(move || {
                let a = cost::snapshot(&roots);
                (roots, a)
            })
            .await
            .expect("a /proc read does not panic");
            // perf counts over a window that starts after its own start-up and ends before
            // the deadline, so it sees the steady state only.
            let perf = m.perf.then(|| Perf::start(&a.pids, load.duration.saturating_sub(Duration::from_millis(500))));
            Some((r, a, perf))
        }
        None => None,
    };
    let deadline = Instant::now() + load.duration;
    let _ = start_tx.send(Some(deadline));
    let end = match metered {
        None => {
            let _ = read_tx.send(true);
            None
        }
        Some((roots, a, perf)) => Some(tokio::spawn(async move {
            let perf_roots = roots.clone();
            let perf = async move {
                match perf {
                    Some(Ok(p)) => Some(p.finish_or_retry(&perf_roots, deadline).await),
                    Some(Err(e)) => Some(Err(e)),
                    None => None,
                }
            };
            let b = async {
                tokio::time::sleep_until(deadline).await;
                let b = tokio::task::spawn_blocking(move || cost::snapshot(&roots)).await;
                let _ = read_tx.send(true);
                b.expect("a /proc read does not panic")
            };
            let (perf, b) = tokio::join!(perf, b);
            cost::Cost { perf, ..cost::between(&a, &b) }
        })),
    };
    let mut total = Run { window: load.duration, ..Run::default() };
    let all = async {
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(run) => total.merge(run),
                Err(e) => total.error(format!("session task failed: {e}")),
            }
        }
    };
    if timeout(load.duration + load.timeout * 2 + setup_limit, all).await.is_err() {
        total.error("sessions still running after the bound; aborted");
    }
    total.window = load.duration;
    if let Some(end) = end {
        total.cost = end.await.ok();
    }
    total
}

async fn session(
    k: usize,
    target: Target,
    load: Load,
    setup: Arc<Semaphore>,
    ready: mpsc::Sender<Option<u32>>,
    mut start: watch::Receiver<Option<Instant>>,
    mut read: watch::Receiver<bool>,
) -> Run {
    let mut run = Run::default();
    let opened = {
        let _permit = setup.acquire().await;
        timeout(load.timeout, Session::open(&target, &load.tool, load.timeout)).await
    };
    let _ = ready.send(opened.as_ref().ok().and_then(|r| r.as_ref().ok()).and_then(Session::child_pid)).await;
    let mut s = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            run.error(format!("session set-up: {e:#}"));
            return run;
        }
        Err(_) => {
            run.error(format!("session set-up took over {:?}", load.timeout));
            return run;
        }
    };
    let deadline = loop {
        if let Some(d) = *start.borrow_and_update() {
            break d;
        }
        if start.changed().await.is_err() {
            return run;
        }
    };
    let tag = format!("s{k}");
    let client = if load.client_per_session { tag.as_str() } else { "0" };
    let mut id = 2u64;
    while Instant::now() < deadline {
        let want = mcp::payload(&tag, id, load.size);
        let body = match s {
            Session::Stateless(_) => mcp::modern_call(id, &load.tool, &want, client),
            _ => mcp::call(id, &load.tool, &want),
        };
        let t0 = Instant::now();
        match s.request(id, body, &want, load.timeout).await {
            Ok(a) => {
                run.wrong += a.wrong;
                match a.error {
                    Some(e) => run.error(e),
                    None if a.at <= deadline => {
                        run.completed += 1;
                        run.latencies.push(a.at.duration_since(t0).as_nanos() as u64);
                    }
                    None => {}
                }
            }
            Err(e) => {
                run.error(format!("{e:#}"));
                break;
            }
        }
        id += 1;
    }
    // Bounded: the tree is read right at the deadline.
    let _ = timeout(load.timeout, read.wait_for(|r| *r)).await;
    s.close(load.timeout).await;
    run
}
