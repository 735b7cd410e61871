//! Where a stream's live events go: a client connected here ([`Sink::Local`]), or one held by
//! another party ([`Sink::Remote`], in cluster mode another instance, behind a [`RemoteSink`]
//! the cluster implements; the session never names it).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::ids::CloseReason;

/// What travels from a session to an attached client stream.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A JSON-RPC message with its sequence number in the stream.
    Message(u64, Bytes),
    /// An event with an id and empty data (2025-11-25 priming).
    Priming(u64),
}

/// Frames queued per attached stream before the client counts as a slow consumer.
pub(crate) const STREAM_QUEUE: usize = 256;

/// The sending end of a stream's frames.
pub(crate) type FrameTx = flume::Sender<Frame>;

/// A stream's queue of frames, [`STREAM_QUEUE`] at most. flume's bounded channel grows its
/// buffer as frames come; tokio's allocates a block of 32 slots when it is made (1.8 KiB),
/// which an idle legacy SSE stream would hold for as long as it stays open.
pub(crate) fn frames() -> (FrameTx, FrameRx) {
    let (tx, rx) = flume::bounded(STREAM_QUEUE);
    (tx, FrameRx(rx.into_stream()))
}

/// The receiving end of a stream's frames, handed to the HTTP body.
pub struct FrameRx(flume::r#async::RecvStream<'static, Frame>);

impl FrameRx {
    /// The next frame; `None` once every sender is gone and nothing is queued.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.0.next().await
    }

    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        Pin::new(&mut self.0).poll_next(cx)
    }

    /// Every sender is gone: nothing more will be queued.
    pub fn is_closed(&self) -> bool {
        self.0.is_disconnected()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where the stream's close reason is left for the body to log.
pub(crate) type CloseCell = Arc<OnceLock<CloseReason>>;

/// A client stream held elsewhere, which the session reaches without waiting.
pub(crate) trait RemoteSink: Send + Sync {
    /// Queues a frame for the holder; `false` when it could not be queued.
    fn send(&self, frame: &Frame) -> bool;
    /// Tells the holder the stream is closed, and why.
    fn close(&self, reason: CloseReason);
    /// The holder's name for the stream, which it gives when its client goes away.
    fn token(&self) -> u64;
}

/// Where a stream's live events go.
pub(crate) enum Sink {
    Local(FrameTx),
    Remote(Box<dyn RemoteSink>),
}

/// A client stream attached to a session stream.
pub(super) struct Live {
    pub(super) sink: Sink,
    pub(super) reason: CloseCell,
}

pub(super) enum SendFailed {
    Full,
    Closed,
}

impl Live {
    pub(super) fn close(self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        if let Sink::Remote(remote) = &self.sink {
            remote.close(reason);
        }
    }

    /// Whether a client still reads it (a remote holder says so itself when it stops).
    pub(super) fn reading(&self) -> bool {
        match &self.sink {
            Sink::Local(tx) => !tx.is_disconnected(),
            Sink::Remote(_) => true,
        }
    }

    /// Whether it is the remote stream the holder calls `token`.
    pub(super) fn is_remote(&self, token: u64) -> bool {
        matches!(&self.sink, Sink::Remote(r) if r.token() == token)
    }

    pub(super) fn try_send(&self, frame: Frame) -> Result<(), SendFailed> {
        match &self.sink {
            Sink::Local(tx) => tx.try_send(frame).map_err(|e| match e {
                flume::TrySendError::Full(_) => SendFailed::Full,
                flume::TrySendError::Disconnected(_) => SendFailed::Closed,
            }),
            Sink::Remote(remote) => {
                if remote.send(&frame) {
                    Ok(())
                } else {
                    Err(SendFailed::Full)
                }
            }
        }
    }
}
