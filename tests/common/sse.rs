//! Reading an SSE response body block by block (events, comments, `retry:`).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

/// One block of an SSE stream: an event, or a comment/`retry:`-only block.
#[derive(Debug, Clone, Default)]
pub(crate) struct SseBlock {
    pub(crate) raw: String,
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: Option<String>,
    pub(crate) comments: Vec<String>,
    pub(crate) retry: Option<u64>,
}

impl SseBlock {
    fn parse(raw: &str) -> SseBlock {
        let mut b = SseBlock { raw: raw.to_string(), ..SseBlock::default() };
        for line in raw.lines() {
            if let Some(c) = line.strip_prefix(':') {
                b.comments.push(c.trim().to_string());
                continue;
            }
            let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
            match field {
                "id" => b.id = Some(value.to_string()),
                "event" => b.event = Some(value.to_string()),
                "retry" => b.retry = value.parse().ok(),
                "data" => {
                    let d = b.data.get_or_insert_with(String::new);
                    if !d.is_empty() {
                        d.push('\n');
                    }
                    d.push_str(value);
                }
                _ => {}
            }
        }
        b
    }

    /// The data as JSON, if it is.
    pub(crate) fn json(&self) -> Option<Value> {
        self.data.as_deref().and_then(|d| serde_json::from_str(d).ok())
    }

    pub(crate) fn is_heartbeat_comment(&self) -> bool {
        self.comments.iter().any(|c| c == "heartbeat") && self.event.is_none() && self.data.is_none()
    }
}

/// Reads an SSE response body block by block.
pub(crate) struct SseReader {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
    pub(crate) ended: bool,
}

impl SseReader {
    pub(crate) fn new(resp: reqwest::Response) -> SseReader {
        SseReader { body: Box::pin(resp.bytes_stream()), buf: String::new(), ended: false }
    }

    /// The next block, `None` at the end of the stream; panics if nothing comes in `timeout`.
    pub(crate) async fn next(&mut self, timeout: Duration) -> Option<SseBlock> {
        match tokio::time::timeout(timeout, self.next_inner()).await {
            Ok(b) => b,
            Err(_) => panic!("no SSE block within {timeout:?} (buffered: {:?})", self.buf),
        }
    }

    /// Like `next`, but `Err(())` on timeout instead of a panic.
    pub(crate) async fn try_next(&mut self, timeout: Duration) -> Result<Option<SseBlock>, ()> {
        tokio::time::timeout(timeout, self.next_inner()).await.map_err(|_| ())
    }

    async fn next_inner(&mut self) -> Option<SseBlock> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..i + 2).collect();
                return Some(SseBlock::parse(raw.trim_end_matches('\n')));
            }
            if self.ended {
                return None;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => self.ended = true,
            }
        }
    }

    /// The next block that is an event with data (skipping comments and `retry:`).
    pub(crate) async fn next_event(&mut self, timeout: Duration) -> Option<SseBlock> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let b = self.next(left).await?;
            if b.data.is_some() {
                return Some(b);
            }
        }
    }

    /// Every remaining event until the stream ends; panics if it does not end in `timeout`.
    pub(crate) async fn rest(&mut self, timeout: Duration) -> Vec<SseBlock> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_next(left).await {
                Ok(Some(b)) => out.push(b),
                Ok(None) => return out,
                Err(()) => panic!("the SSE stream did not end within {timeout:?}; got {out:?}"),
            }
        }
    }
}
