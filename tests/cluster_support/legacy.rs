//! A raw legacy HTTP+SSE client that keeps its session across reconnects and instances, and the
//! `echo` call the cluster tests make.

use std::time::{Duration, Instant};

use serde_json::Value;

/// A 2024-11-05 client: one session, a stream that can be dropped and resumed with
/// `Last-Event-ID` at any base URL, and every message it received.
pub(crate) struct Legacy {
    http: reqwest::Client,
    pub(crate) name: String,
    /// `/sse/{name}/message?sessionId=...`, as announced.
    pub(crate) endpoint: String,
    pub(crate) sid: String,
    stream: Option<crate::common::SseReader>,
    pub(crate) last_id: Option<String>,
    /// Every JSON-RPC message received, in order, over all connections.
    pub(crate) received: Vec<Value>,
}

impl Legacy {
    /// GET {base}/sse/{name} and read up to the endpoint event.
    pub(crate) async fn connect(base: &str, name: &str) -> Legacy {
        let http = crate::common::http();
        let resp = http.get(format!("{base}/sse/{name}")).header("accept", "text/event-stream").send().await.expect("GET /sse");
        assert_eq!(resp.status(), 200, "GET {base}/sse/{name}");
        let mut stream = crate::common::SseReader::new(resp);
        let ev = stream.next_event(Duration::from_secs(30)).await.expect("the endpoint event");
        assert_eq!(ev.event.as_deref(), Some("endpoint"), "the first event is the endpoint: {ev:?}");
        let endpoint = ev.data.clone().unwrap_or_default();
        let sid = endpoint.split("sessionId=").nth(1).expect("sessionId in the endpoint").to_string();
        Legacy { http, name: name.to_string(), endpoint, sid, stream: Some(stream), last_id: ev.id, received: Vec::new() }
    }

    /// Connects and runs the handshake (initialize with id 1, `notifications/initialized`).
    pub(crate) async fn open(base: &str, name: &str) -> Legacy {
        let mut s = Legacy::connect(base, name).await;
        let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "cluster-test", "version": "0"}}});
        assert_eq!(s.post(base, &init).await.0, 202, "initialize is accepted");
        let answer = s.answer(1, Duration::from_secs(60)).await;
        assert!(answer["result"]["protocolVersion"].is_string(), "initialize answered: {answer}");
        let initialized = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(s.post(base, &initialized).await.0, 202, "notifications/initialized is accepted");
        s
    }

    /// Drops the stream, like a client whose connection broke.
    pub(crate) fn disconnect(&mut self) {
        self.stream = None;
    }

    /// GET {base}/sse/{name} with `Last-Event-ID`; returns the status (the stream is kept on 200).
    pub(crate) async fn resume(&mut self, base: &str) -> (u16, String) {
        let last = self.last_id.clone().expect("an event id to resume from");
        let resp = self
            .http
            .get(format!("{base}/sse/{}", self.name))
            .header("accept", "text/event-stream")
            .header("last-event-id", last)
            .send()
            .await
            .expect("GET /sse with Last-Event-ID");
        let status = resp.status().as_u16();
        if status != 200 {
            return (status, resp.text().await.unwrap_or_default());
        }
        self.stream = Some(crate::common::SseReader::new(resp));
        (status, String::new())
    }

    /// POSTs one message to the endpoint at `base`; returns status and body.
    pub(crate) async fn post(&self, base: &str, msg: &Value) -> (u16, String) {
        let r = self
            .http
            .post(format!("{base}{}", self.endpoint))
            .header("content-type", "application/json")
            .body(msg.to_string())
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("POST message");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// The next message on the stream; `Ok(None)` if the stream ended, `Err` on timeout.
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
                Some(_) => {}
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

    /// Calls the `echo` tool through `base` and waits for its answer.
    pub(crate) async fn echo(&mut self, base: &str, id: u64, message: &str) -> Value {
        let (status, body) = self.post(base, &echo(id, message)).await;
        assert_eq!(status, 202, "session {}: echo {id} via {base}: {body}", self.sid);
        self.answer(id, Duration::from_secs(60)).await
    }

    /// How many responses (not notifications or requests) to `id` were received.
    pub(crate) fn responses_to(&self, id: u64) -> usize {
        self.received.iter().filter(|m| m["id"] == id && m.get("method").is_none()).count()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.stream.is_some()
    }
}

/// A `tools/call` of `echo`.
pub(crate) fn echo(id: u64, message: &str) -> Value {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": message}}})
}

/// The text of an echo answer (server-everything says `Echo: m`, mcp-echo-server says `m`).
pub(crate) fn echo_text(answer: &Value) -> String {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("an echo result: {answer}")).to_string()
}
