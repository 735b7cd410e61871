//! The one raw legacy (2024-11-05 HTTP+SSE) client of the tests: the `GET /sse/{name}` stream
//! (optionally with a bearer token, resumable with `Last-Event-ID` at any base URL, as a client
//! of a cluster would), its message endpoint, and every message and heartbeat it received.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{http, initialize_request, SseReader};

/// The revision the legacy transport was made for; the cluster and operations tests open their
/// sessions with it, the others with [`super::PROTOCOL`].
pub(crate) const LEGACY_PROTOCOL: &str = "2024-11-05";

/// A legacy session.
pub(crate) struct Legacy {
    pub(crate) http: reqwest::Client,
    /// Sent as a bearer token on every request, if set.
    token: Option<String>,
    /// The base URL it connected to: where [`Legacy::post`] and [`Legacy::echo`] go.
    pub(crate) base: String,
    pub(crate) name: String,
    /// `{prefix}/sse/{name}/message?sessionId=...`, as announced.
    pub(crate) endpoint: String,
    pub(crate) sid: String,
    stream: Option<SseReader>,
    pub(crate) last_id: Option<String>,
    /// Heartbeat comments seen over all connections (by [`Legacy::next`]).
    pub(crate) heartbeats: usize,
    /// Every JSON-RPC message [`Legacy::next`] received, in order, over all connections.
    pub(crate) received: Vec<Value>,
}

impl Legacy {
    /// GET {base}/sse/{name} with `http` (and `token`); `Err((status, body))` unless it answers
    /// 200 with an endpoint event first.
    pub(crate) async fn try_connect_with(
        http: reqwest::Client,
        base: &str,
        name: &str,
        token: Option<&str>,
    ) -> Result<Legacy, (u16, String)> {
        let mut req = http.get(format!("{base}/sse/{name}")).header("accept", "text/event-stream");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| (0, e.to_string()))?;
        if resp.status() != 200 {
            return Err((resp.status().as_u16(), resp.text().await.unwrap_or_default()));
        }
        let mut stream = SseReader::new(resp);
        let ev =
            stream.next_event(Duration::from_secs(30)).await.ok_or((200, "the stream ended before the endpoint".to_string()))?;
        assert_eq!(ev.event.as_deref(), Some("endpoint"), "the first event is the endpoint: {ev:?}");
        let endpoint = ev.data.clone().unwrap_or_default();
        let sid = endpoint.split("sessionId=").nth(1).expect("sessionId in the endpoint").to_string();
        Ok(Legacy {
            http,
            token: token.map(String::from),
            base: base.to_string(),
            name: name.to_string(),
            endpoint,
            sid,
            stream: Some(stream),
            last_id: ev.id,
            heartbeats: 0,
            received: Vec::new(),
        })
    }

    /// [`Legacy::try_connect_with`] a fresh client.
    pub(crate) async fn try_connect(base: &str, name: &str, token: Option<&str>) -> Result<Legacy, (u16, String)> {
        Legacy::try_connect_with(http(), base, name, token).await
    }

    /// Opens the stream and reads up to the endpoint event; panics unless it can.
    pub(crate) async fn connect(base: &str, name: &str) -> Legacy {
        Legacy::connect_as(base, name, None).await
    }

    /// [`Legacy::connect`] with a bearer token.
    pub(crate) async fn connect_as(base: &str, name: &str, token: Option<&str>) -> Legacy {
        Legacy::try_connect(base, name, token).await.unwrap_or_else(|(s, b)| panic!("GET {base}/sse/{name}: {s} {b}"))
    }

    /// [`Legacy::connect`] with a given client (one that carries credentials, say).
    pub(crate) async fn connect_with(http: reqwest::Client, base: &str, name: &str) -> Legacy {
        Legacy::try_connect_with(http, base, name, None).await.unwrap_or_else(|(s, b)| panic!("GET {base}/sse/{name}: {s} {b}"))
    }

    /// Connects and completes the handshake with [`super::PROTOCOL`].
    pub(crate) async fn open(base: &str, name: &str) -> Legacy {
        let mut s = Legacy::connect(base, name).await;
        s.handshake(&initialize_request(1)).await;
        s
    }

    /// Connects with a bearer token and completes the handshake with `version`.
    pub(crate) async fn open_as(base: &str, name: &str, token: Option<&str>, version: &str) -> Legacy {
        let mut s = Legacy::connect_as(base, name, token).await;
        s.handshake(&initialize_at(version)).await;
        s
    }

    /// Sends `init` (an `initialize` with id 1), waits for its answer, and sends
    /// `notifications/initialized`.
    pub(crate) async fn handshake(&mut self, init: &Value) {
        let (status, body) = self.post_raw(&init.to_string()).await;
        assert_eq!(status, 202, "initialize is accepted: {body}");
        let answer = self.answer(1, Duration::from_secs(60)).await;
        assert!(answer["result"]["protocolVersion"].is_string(), "initialize answered: {answer}");
        let (status, body) = self.post_raw(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string()).await;
        assert_eq!(status, 202, "notifications/initialized is accepted: {body}");
    }

    /// The absolute URL of the message endpoint at the base it connected to.
    pub(crate) fn endpoint_url(&self) -> String {
        format!("{}{}", self.base, self.endpoint)
    }

    // The POSTs borrow nothing across an await (the stream is not `Sync`), so a task may hold
    // the session while a POST is in flight.

    /// POSTs one message to the endpoint; returns the status.
    pub(crate) fn post(&self, msg: &Value) -> impl Future<Output = u16> + Send + 'static {
        let sent = self.post_raw(&msg.to_string());
        async move { sent.await.0 }
    }

    /// POSTs a body as given; returns status and body.
    pub(crate) fn post_raw(&self, body: &str) -> impl Future<Output = (u16, String)> + Send + 'static {
        let sent = self.send(&self.base, body);
        async move { sent.await.expect("POST message") }
    }

    /// POSTs one message to the endpoint at `base` (another instance, say).
    pub(crate) fn post_via(
        &self,
        base: &str,
        msg: &Value,
    ) -> impl Future<Output = reqwest::Result<(u16, String)>> + Send + 'static {
        self.send(base, &msg.to_string())
    }

    fn send(&self, base: &str, body: &str) -> impl Future<Output = reqwest::Result<(u16, String)>> + Send + 'static {
        let mut req = self
            .http
            .post(format!("{base}{}", self.endpoint))
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(60));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        async move {
            let r = req.send().await?;
            Ok((r.status().as_u16(), r.text().await.unwrap_or_default()))
        }
    }

    /// The stream, to read it block by block.
    pub(crate) fn stream(&mut self) -> &mut SseReader {
        self.stream.as_mut().expect("a connected stream")
    }

    /// Takes the stream out (to read it in another task).
    pub(crate) fn take_stream(&mut self) -> SseReader {
        self.stream.take().expect("a connected stream")
    }

    /// Drops the stream, like a client whose connection broke.
    pub(crate) fn disconnect(&mut self) {
        self.stream = None;
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// GET {base}/sse/{name} with `Last-Event-ID`; on 200 the new stream replaces the old.
    pub(crate) async fn resume(&mut self, base: &str) -> Result<(), (u16, String)> {
        let last = self.last_id.clone().expect("an event id to resume from");
        let mut req = self
            .http
            .get(format!("{base}/sse/{}", self.name))
            .header("accept", "text/event-stream")
            .header("last-event-id", last);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| (0, e.to_string()))?;
        if resp.status() != 200 {
            return Err((resp.status().as_u16(), resp.text().await.unwrap_or_default()));
        }
        self.stream = Some(SseReader::new(resp));
        Ok(())
    }

    /// The next message on the stream, counting heartbeats on the way: `Ok(None)` if the
    /// stream ended, `Err(())` if nothing came within `timeout`.
    pub(crate) async fn next(&mut self, timeout: Duration) -> Result<Option<Value>, ()> {
        let stream = self.stream.as_mut().expect("a connected stream");
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match stream.try_next(left).await? {
                None => {
                    self.stream = None;
                    return Ok(None);
                }
                Some(b) if b.data.is_some() => {
                    if b.id.is_some() {
                        self.last_id = b.id.clone();
                    }
                    let v = b.json().unwrap_or_else(|| panic!("event data is JSON: {b:?}"));
                    self.received.push(v.clone());
                    return Ok(Some(v));
                }
                Some(b) => {
                    if b.is_heartbeat_comment() {
                        self.heartbeats += 1;
                    }
                }
            }
        }
    }

    /// The next JSON-RPC message on the stream (skipping heartbeats); `None` if it ended; panics
    /// if nothing comes within `timeout`.
    pub(crate) async fn next_message(&mut self, timeout: Duration) -> Option<Value> {
        self.stream.as_ref()?;
        self.next(timeout).await.unwrap_or_else(|()| panic!("session {}: no message within {timeout:?}", self.sid))
    }

    /// Reads until `n` more heartbeats arrived (messages are kept); panics after `timeout`.
    pub(crate) async fn heartbeats_more(&mut self, n: usize, timeout: Duration) {
        let want = self.heartbeats + n;
        let deadline = Instant::now() + timeout;
        while self.heartbeats < want {
            let left = deadline.saturating_duration_since(Instant::now());
            let stream = self.stream.as_mut().expect("a connected stream");
            match stream.try_next(left).await {
                Ok(Some(b)) if b.data.is_some() => {
                    if b.id.is_some() {
                        self.last_id = b.id.clone();
                    }
                    self.received.push(b.json().unwrap_or_default());
                }
                Ok(Some(b)) => {
                    if b.is_heartbeat_comment() {
                        self.heartbeats += 1;
                    }
                }
                Ok(None) => panic!("session {}: the stream ended while waiting for heartbeats", self.sid),
                Err(()) => panic!("session {}: fewer than {n} heartbeats within {timeout:?}", self.sid),
            }
        }
    }

    /// Reads until the response to `id`; panics after `timeout` or at the end of the stream.
    pub(crate) async fn answer(&mut self, id: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Ok(Some(m)) if m["id"] == id && m.get("method").is_none() => return m,
                Ok(Some(_)) => {}
                Ok(None) => panic!("session {}: the stream ended before the answer to {id}", self.sid),
                Err(()) => panic!("session {}: no answer to {id} within {timeout:?}; received {:?}", self.sid, self.received),
            }
        }
    }

    /// The answer to `id`, already received or read now (within `timeout`). When the stream
    /// ends (the session moved to another instance), resumes it with `Last-Event-ID` through
    /// `base`, as a legacy client does, counting in `resumes` (at most 5 in all).
    pub(crate) async fn answer_resuming(&mut self, id: u64, base: &str, timeout: Duration, resumes: &mut usize) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.received.iter().find(|m| m["id"] == id && m.get("method").is_none()) {
                return m.clone();
            }
            assert!(
                Instant::now() < deadline,
                "session {}: no answer to {id} within {timeout:?}; received {:?}",
                self.sid,
                self.received
            );
            if !self.is_connected() {
                *resumes += 1;
                assert!(*resumes <= 5, "session {}: the stream keeps ending ({resumes} resumes)", self.sid);
                self.resume(base).await.unwrap_or_else(|e| panic!("session {}: resume through {base}: {e:?}", self.sid));
                continue;
            }
            let _ = self.next(deadline.saturating_duration_since(Instant::now())).await;
        }
    }

    /// Calls `tool` with `arguments` through `base` and waits for its answer.
    pub(crate) async fn call_via(&mut self, base: &str, id: u64, tool: &str, arguments: Value) -> Value {
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
        let (status, body) = self.post_via(base, &msg).await.expect("POST tools/call");
        assert_eq!(status, 202, "session {}: tools/call {id} via {base} is accepted: {body}", self.sid);
        self.answer(id, Duration::from_secs(60)).await
    }

    /// Calls `echo` through `base` and returns its text.
    pub(crate) async fn echo_via(&mut self, base: &str, id: u64, message: &str) -> String {
        let answer = self.call_via(base, id, "echo", json!({ "message": message })).await;
        echo_text(&answer)
    }

    /// Calls `echo` at the base it connected to and returns its text.
    pub(crate) async fn echo(&mut self, id: u64, message: &str) -> String {
        let base = self.base.clone();
        self.echo_via(&base, id, message).await
    }

    /// Reads to the end of the stream (skipping heartbeats); panics if it does not end in `timeout`.
    pub(crate) async fn until_end(&mut self, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Ok(Some(m)) => out.push(m),
                Ok(None) => return out,
                Err(()) => panic!("session {}: the stream did not end within {timeout:?}; got {out:?}", self.sid),
            }
        }
    }

    /// How many responses (not notifications or requests) to `id` were received.
    pub(crate) fn responses_to(&self, id: u64) -> usize {
        self.received.iter().filter(|m| m["id"] == id && m.get("method").is_none()).count()
    }
}

/// An `initialize` (id 1) for `version`.
pub(crate) fn initialize_at(version: &str) -> Value {
    let mut init = initialize_request(1);
    init["params"]["protocolVersion"] = json!(version);
    init
}

/// The text of an echo answer (server-everything says `Echo: m`, mcp-echo-server says `m`).
pub(crate) fn echo_text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("an echo result: {answer}")).to_string()
}
