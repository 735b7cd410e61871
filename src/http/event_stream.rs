//! The body of every SSE response the bridge sends: a first chunk sent at once, replayed
//! events, live events, and an idle-resetting heartbeat. Dropping it writes the stream's
//! lifecycle line ("SSE connection closed … reason=…") and detaches it from its session.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::config::{Heartbeat, HeartbeatFormat};
use crate::locator::Detach;
use crate::session::event_log::Entry;
use crate::session::{Attached, CloseCell, CloseReason, Frame, FrameRx, SessionId, Transport};
use crate::{metrics, sse};

/// Who a stream is for, for its lifecycle lines.
#[derive(Clone)]
pub(crate) struct StreamInfo {
    pub session: SessionId,
    pub stream: u32,
    pub server: Arc<str>,
    pub transport: Transport,
    pub client: super::ClientAddr,
    pub instance: Arc<str>,
}

pub(crate) struct EventStream {
    info: StreamInfo,
    first: Option<Bytes>,
    /// A live event taken before the body was first polled ([`EventStream::prefetch`]).
    early: Option<Frame>,
    /// A POST's answer stream (see `new`): quiet when it completes.
    per_request: bool,
    replay: std::vec::IntoIter<Entry>,
    rx: FrameRx,
    heartbeat: Option<(Duration, HeartbeatFormat, Pin<Box<Sleep>>)>,
    lifetime: Option<Pin<Box<Sleep>>>,
    last_seq: Option<u64>,
    reason: CloseCell,
    detach: Option<Detach>,
    opened: Instant,
    events: u64,
    heartbeats: u64,
    bytes: u64,
    done: bool,
    /// Counts this stream among the POST answers open while it lives ([`EventStream::counted`]).
    answering: Option<crate::app::Counted>,
}

impl EventStream {
    /// `first` goes out before anything else (the `retry:` hint, an endpoint or priming
    /// event), so the client has its first byte as soon as the head is sent (at once, unless
    /// the handler awaited [`EventStream::prefetch`]).
    pub(crate) fn new(
        info: StreamInfo,
        first: Bytes,
        attached: Attached,
        heartbeat: Heartbeat,
        lifetime: Option<Duration>,
        detach: Option<Detach>,
    ) -> EventStream {
        let heartbeat = heartbeat.interval.map(|every| (every, heartbeat.format, Box::pin(tokio::time::sleep(every))));
        let lifetime = lifetime.map(|d| Box::pin(tokio::time::sleep(d)));
        let Attached { replay, rx, reason, .. } = attached;
        let m = metrics::get();
        m.streams_opened
            .get_or_create(&metrics::Session { server: info.server.to_string(), transport: info.transport.as_str() })
            .inc();
        if !replay.is_empty() {
            m.events_replayed.get_or_create(&metrics::Server { server: info.server.to_string() }).inc_by(replay.len() as u64);
        }
        // A POST's answer stream (not the standalone stream, not a resumed one) opens and
        // completes once per request: its lifecycle lines are at debug unless it ends for
        // another reason than completion, so `info` stays a log of streams, not of requests.
        let per_request = info.stream != 0 && !matches!(info.transport, Transport::Sse) && replay.is_empty();
        if per_request {
            tracing::debug!(session = %info.session, server = %info.server, stream = info.stream, client = %info.client, "SSE connection opened");
        } else {
            tracing::info!(
                session = %info.session,
                server = %info.server,
                transport = info.transport.as_str(),
                stream = info.stream,
                client = %info.client,
                instance = %info.instance,
                replayed = replay.len(),
                "SSE connection opened"
            );
        }
        // The wire form of `EventId` up to its sequence number.
        EventStream {
            info,
            first: Some(first),
            early: None,
            per_request,
            replay: replay.into_iter(),
            rx,
            heartbeat,
            lifetime,
            last_seq: None,
            reason,
            detach,
            opened: Instant::now(),
            events: 0,
            heartbeats: 0,
            bytes: 0,
            done: false,
            answering: None,
        }
    }

    /// Counts this stream among the POST answers open (`guard`) until it is dropped.
    pub(crate) fn counted(&mut self, guard: crate::app::Counted) {
        self.answering = Some(guard);
    }

    /// Waits at most `wait` for the first live event, which then goes out right after the
    /// first chunk (and any replay). Awaited before the response is returned, it lets a quick
    /// answer leave in one write with the head. A stream that closes meanwhile just ends.
    pub(crate) async fn prefetch(&mut self, wait: Duration) {
        if self.early.is_none() {
            if let Ok(Some(frame)) = tokio::time::timeout(wait, self.rx.recv()).await {
                self.early = Some(frame);
            }
        }
    }

    /// `{session}-{stream}-{seq}`. Formatted per event, not kept: a prefix kept for the
    /// stream's life costs an idle stream 24 bytes and an allocation.
    fn id(&self, seq: u64) -> String {
        use std::fmt::Write;
        let mut id = String::with_capacity(32 + 2 * 20);
        let _ = write!(id, "{}-{}-{seq}", self.info.session, self.info.stream);
        id
    }

    fn message(&mut self, seq: u64, data: &[u8]) -> Bytes {
        self.last_seq = Some(seq);
        self.events += 1;
        let id = self.id(seq);
        if data.is_empty() {
            sse::event(Some(&id), None, b"")
        } else {
            sse::event(Some(&id), Some("message"), data)
        }
    }

    fn beat(&mut self, format: HeartbeatFormat) -> Bytes {
        self.heartbeats += 1;
        metrics::get().heartbeats.get_or_create(&metrics::Server { server: self.info.server.to_string() }).inc();
        match format {
            HeartbeatFormat::Comment => Bytes::from_static(b": heartbeat\n\n"),
            HeartbeatFormat::Event => {
                let ms = crate::ids::unix_ms();
                let data = format!(r#"{{"type":"heartbeat","timestamp":{ms}}}"#);
                // The id repeats the last real event's, so a reconnect resumes correctly.
                let id = self.last_seq.map(|s| self.id(s));
                sse::event(id.as_deref(), Some("heartbeat"), data.as_bytes())
            }
        }
    }

    /// The whole stream as one body when it is complete already: an event was prefetched,
    /// and the session has closed the stream since (its last request was answered), so
    /// nothing more can come. The answer then leaves with a length instead of chunked, in one
    /// write, and nothing polls the stream again (the stream has ended: drop it). `None`,
    /// and the stream untouched, when more may come.
    pub(crate) fn take_complete(&mut self) -> Option<Bytes> {
        // Closed first, then empty: once every sender is gone, every send has happened, so an
        // empty channel stays empty (the other order could miss a send just before the close).
        if self.early.is_none() || !self.rx.is_closed() || !self.rx.is_empty() {
            return None;
        }
        // Ended: no heartbeat will follow, and `ready` would re-arm its timer for nothing.
        self.heartbeat = None;
        let mut whole = bytes::BytesMut::new();
        while let Some(b) = self.ready() {
            self.bytes += b.len() as u64;
            whole.extend_from_slice(&b);
        }
        self.done = true;
        Some(whole.freeze())
    }

    /// The next chunk that is ready without waiting: the first chunk, the replay, then a
    /// prefetched event. `poll_next` and `take_complete` both read the stream through it.
    fn ready(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        let b = match self.replay.next() {
            Some(e) => self.message(e.seq, &e.data),
            None => {
                let frame = self.early.take()?;
                self.frame(frame)
            }
        };
        self.reset_heartbeat();
        Some(b)
    }

    fn frame(&mut self, frame: Frame) -> Bytes {
        match frame {
            Frame::Message(seq, data) => self.message(seq, &data),
            Frame::Priming(seq) => self.message(seq, b""),
        }
    }

    fn reset_heartbeat(&mut self) {
        if let Some((every, _, sleep)) = &mut self.heartbeat {
            sleep.as_mut().reset(Instant::now() + *every);
        }
    }

    fn emit(&mut self, b: Bytes) -> Poll<Option<Result<Bytes, Infallible>>> {
        self.bytes += b.len() as u64;
        Poll::Ready(Some(Ok(b)))
    }
}

impl Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(b) = this.ready() {
            return this.emit(b);
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(frame)) => {
                let b = this.frame(frame);
                this.reset_heartbeat();
                return this.emit(b);
            }
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if let Some(l) = &mut this.lifetime {
            if l.as_mut().poll(cx).is_ready() {
                let _ = this.reason.set(CloseReason::StreamLifetime);
                this.done = true;
                return Poll::Ready(None);
            }
        }
        if let Some((every, format, sleep)) = &mut this.heartbeat {
            if sleep.as_mut().poll(cx).is_ready() {
                let next = Instant::now() + *every;
                let format = *format;
                sleep.as_mut().reset(next);
                let b = this.beat(format);
                return this.emit(b);
            }
        }
        Poll::Pending
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let reason = self.reason.get().copied().unwrap_or(if self.done { CloseReason::Error } else { CloseReason::ClientClosed });
        let _ = self.reason.set(reason);
        let labels = metrics::Closed {
            server: self.info.server.to_string(),
            transport: self.info.transport.as_str(),
            reason: reason.as_str(),
        };
        metrics::get().streams_closed.get_or_create(&labels).inc();
        match &self.detach {
            Some(Detach::Local(s)) => s.detached(self.info.stream, &self.reason),
            Some(Detach::Remote(cluster, token)) => cluster.release_held(*token),
            None => {}
        }
        if self.per_request && reason == CloseReason::Completed {
            tracing::debug!(session = %self.info.session, stream = self.info.stream, events = self.events, "SSE connection closed");
            return;
        }
        tracing::info!(
            session = %self.info.session,
            server = %self.info.server,
            transport = self.info.transport.as_str(),
            stream = self.info.stream,
            client = %self.info.client,
            instance = %self.info.instance,
            duration_ms = self.opened.elapsed().as_millis() as u64,
            events = self.events,
            heartbeats = self.heartbeats,
            bytes = self.bytes,
            reason = %reason,
            "SSE connection closed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn stream(hb: Heartbeat) -> (EventStream, crate::session::FrameTx) {
        let (tx, rx) = crate::session::frames();
        let info = StreamInfo {
            session: SessionId::parse("00000000000000000000000000000001").unwrap(),
            stream: 0,
            server: "s".into(),
            transport: Transport::Sse,
            client: super::super::ClientAddr::Peer(([127, 0, 0, 1], 1).into()),
            instance: "i".into(),
        };
        (
            EventStream::new(
                info,
                sse::retry(1000),
                Attached { stream: 0, replay: Vec::new(), rx, reason: CloseCell::default() },
                hb,
                None,
                None,
            ),
            tx,
        )
    }

    /// Every idle SSE stream's body is one boxed `EventStream`: it fits jemalloc's 384-byte
    /// class (issue 16). Crossing it costs every idle stream 64 bytes more.
    #[test]
    fn an_event_stream_fits_the_384_byte_class() {
        let size = std::mem::size_of::<EventStream>();
        assert!(size <= 384, "EventStream is {size} bytes (docs/perf/idle-streams.md)");
    }

    async fn next_at(s: &mut EventStream) -> (Bytes, Duration) {
        let start = Instant::now();
        let b = s.next().await.unwrap().unwrap();
        (b, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn first_byte_at_once_then_heartbeat_every_interval() {
        let (mut s, _tx) = stream(Heartbeat { interval: Some(Duration::from_secs(15)), format: HeartbeatFormat::Comment });
        let (b, t) = next_at(&mut s).await;
        assert_eq!(&b[..], b"retry: 1000\n\n");
        assert_eq!(t, Duration::ZERO);
        for _ in 0..3 {
            let (b, t) = next_at(&mut s).await;
            assert_eq!(&b[..], b": heartbeat\n\n");
            assert_eq!(t, Duration::from_secs(15));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_real_event_resets_the_heartbeat() {
        let (mut s, tx) = stream(Heartbeat { interval: Some(Duration::from_secs(10)), format: HeartbeatFormat::Comment });
        next_at(&mut s).await;
        tokio::time::advance(Duration::from_secs(7)).await;
        tx.send_async(Frame::Message(1, Bytes::from_static(b"{}"))).await.unwrap();
        let (b, _) = next_at(&mut s).await;
        assert!(b.starts_with(b"id: 00000000000000000000000000000001-0-1\nevent: message\n"));
        let (b, t) = next_at(&mut s).await;
        assert_eq!(&b[..], b": heartbeat\n\n");
        assert_eq!(t, Duration::from_secs(10), "the beat comes a full interval after the event, not at 10 s");
    }

    #[tokio::test(start_paused = true)]
    async fn event_format_on_the_wire_carries_the_last_id() {
        let (mut s, tx) = stream(Heartbeat { interval: Some(Duration::from_secs(2)), format: HeartbeatFormat::Event });
        next_at(&mut s).await;
        let (b, _) = next_at(&mut s).await;
        let text = std::str::from_utf8(&b).unwrap();
        assert!(text.starts_with("event: heartbeat\ndata: {\"type\":\"heartbeat\",\"timestamp\":"), "{text}");
        tx.send_async(Frame::Message(4, Bytes::from_static(b"{}"))).await.unwrap();
        next_at(&mut s).await;
        let (b, _) = next_at(&mut s).await;
        assert!(b.starts_with(b"id: 00000000000000000000000000000001-0-4\nevent: heartbeat\n"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_prefetched_event_follows_the_first_chunk_and_the_wait_is_bounded() {
        let off = Heartbeat { interval: None, format: HeartbeatFormat::Comment };
        // The answer is there within the wait: first chunk, the answer, the end, all ready.
        let (mut s, tx) = stream(off);
        let waiting = tokio::spawn(async move {
            s.prefetch(Duration::from_millis(5)).await;
            s
        });
        tokio::time::advance(Duration::from_millis(1)).await;
        tx.send_async(Frame::Message(1, Bytes::from_static(b"{}"))).await.unwrap();
        drop(tx);
        let mut s = waiting.await.unwrap();
        assert!(s.early.is_some(), "the answer was taken within the wait");
        assert_eq!(&s.next().await.unwrap().unwrap()[..], b"retry: 1000\n\n");
        let b = s.next().await.unwrap().unwrap();
        assert!(b.starts_with(b"id: 00000000000000000000000000000001-0-1\nevent: message\n"), "{b:?}");
        assert!(s.next().await.is_none());
        // No answer within the wait: it ends at the bound, and the answer comes later, once.
        let (mut s, tx) = stream(off);
        let start = Instant::now();
        s.prefetch(Duration::from_millis(5)).await;
        assert_eq!(start.elapsed(), Duration::from_millis(5));
        assert!(s.early.is_none());
        assert_eq!(&s.next().await.unwrap().unwrap()[..], b"retry: 1000\n\n");
        tx.send_async(Frame::Message(2, Bytes::from_static(b"{}"))).await.unwrap();
        let b = s.next().await.unwrap().unwrap();
        assert!(b.starts_with(b"id: 00000000000000000000000000000001-0-2\n"), "{b:?}");
        drop(tx);
        assert!(s.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_stream_is_one_body_and_an_open_one_stays_a_stream() {
        let off = Heartbeat { interval: None, format: HeartbeatFormat::Comment };
        // Answered and closed by the session: the first chunk and the answer, as one body.
        let (mut s, tx) = stream(off);
        tx.send_async(Frame::Message(3, Bytes::from_static(b"{}"))).await.unwrap();
        drop(tx);
        s.prefetch(Duration::from_millis(5)).await;
        let whole = s.take_complete().expect("complete");
        assert!(s.next().await.is_none(), "taken whole, the stream has ended");
        assert_eq!(&whole[..], &b"retry: 1000\n\nid: 00000000000000000000000000000001-0-3\nevent: message\ndata: {}\n\n"[..]);
        // Answered, but the session has not closed the stream (another request of the batch
        // is open): it stays a stream, and the prefetched event is still the next one.
        let (mut s, tx) = stream(off);
        tx.send_async(Frame::Message(4, Bytes::from_static(b"{}"))).await.unwrap();
        s.prefetch(Duration::from_millis(5)).await;
        assert!(s.take_complete().is_none(), "the sender lives: more may come");
        assert_eq!(&s.next().await.unwrap().unwrap()[..], b"retry: 1000\n\n");
        assert!(s.next().await.unwrap().unwrap().starts_with(b"id: 00000000000000000000000000000001-0-4\n"));
        // Closed with a second event still queued: not taken whole (only what was prefetched
        // would be), so it streams both.
        let (mut s, tx) = stream(off);
        tx.send_async(Frame::Message(5, Bytes::from_static(b"{}"))).await.unwrap();
        tx.send_async(Frame::Message(6, Bytes::from_static(b"{}"))).await.unwrap();
        drop(tx);
        s.prefetch(Duration::from_millis(5)).await;
        assert!(s.take_complete().is_none(), "an event is still queued");
        let mut all = Vec::new();
        while let Some(b) = s.next().await {
            all.extend_from_slice(&b.unwrap());
        }
        let text = String::from_utf8(all).unwrap();
        assert!(text.contains("-0-5\n") && text.contains("-0-6\n"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_heartbeat_when_off_and_end_on_close() {
        let (mut s, tx) = stream(Heartbeat { interval: None, format: HeartbeatFormat::Comment });
        next_at(&mut s).await;
        let quiet = tokio::time::timeout(Duration::from_secs(3600), s.next()).await;
        assert!(quiet.is_err(), "nothing for an hour");
        drop(tx);
        assert!(s.next().await.is_none());
    }
}
