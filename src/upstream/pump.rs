//! The stdio pump: a child's stdout is read by the upstream task, its stdin written by a
//! task of its own, so neither direction ever waits for the other. (Awaiting a write to
//! stdin while not reading stdout deadlocks with any child that writes its answer before it
//! reads the next line: both pipes fill, and each side waits for the other for ever.)

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStdin, ChildStdout};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use super::framing::{Codec, Line, Names};
use super::UpstreamEvent;
use crate::config::pump::PumpLimits;
use crate::ids::CloseReason;
use crate::protocol::jsonrpc;

/// How the pump ended, when the session did not end it.
pub(super) struct Ended {
    pub reason: CloseReason,
    pub detail: String,
}

/// Aborts the writer when the pump is dropped (the session ended and aborted its upstream).
struct Writer(JoinHandle<Option<Ended>>);

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Moves client messages to the child and the child's lines to the session until one side
/// ends. `None`: the session went away first, nothing is left to report.
pub(super) async fn run(
    stdin: ChildStdin,
    stdout: ChildStdout,
    rx: super::budget::Receiver<Bytes>,
    (events, direct): (&super::Events, Option<super::Direct>),
    limits: PumpLimits,
) -> Option<Ended> {
    let mut writer = Writer(tokio::spawn(write_stdin(stdin, rx, limits.upstream_stall)));
    let mut out = FramedRead::new(stdout, Codec::new(limits.max_message));
    let detail = loop {
        tokio::select! {
            line = out.next() => {
                let msg = match line {
                    Some(Ok(Line::Message(msg))) => msg,
                    Some(Ok(Line::TooLong { size, names })) => match too_long(size, names, limits.max_message) {
                        Some(error) => error,
                        None => continue,
                    },
                    Some(Err(e)) => break format!("unreadable output: {e}"),
                    None => break "closed its stdout".to_string(),
                };
                let delivered = match &direct {
                    Some(route) => route(msg),
                    None => events.send(UpstreamEvent::Message(msg)).await.is_ok(),
                };
                if !delivered {
                    return None;
                }
            },
            written = &mut writer.0 => match written {
                Ok(Some(ended)) => return Some(ended),
                // The session dropped its sender: it is ending, and drops this task next.
                Ok(None) | Err(_) => return None,
            },
        }
    };
    Some(Ended { reason: CloseReason::UpstreamExited, detail })
}

/// A message over `limits.max_message` was skipped: an answer becomes an error answer to
/// its request; anything else (a notification, a server request, no id found) is only logged.
fn too_long(size: usize, names: Names, max: usize) -> Option<Bytes> {
    let what = format!("{size} bytes, more than limits.max_message ({max} bytes)");
    match names.id {
        Some(id) if !names.method => {
            tracing::warn!(request = %id, "dropped an upstream answer of {what}; its request gets an error");
            let msg = format!("mcp-bridge: the upstream's answer was {what}; it was dropped");
            Some(jsonrpc::error(Some(&id), jsonrpc::code::INTERNAL_ERROR, &msg))
        }
        Some(id) => {
            tracing::warn!(request = %id, "dropped an upstream request of {what}");
            None
        }
        None => {
            tracing::warn!("dropped an upstream message of {what} that names no request");
            None
        }
    }
}

/// Writes each queued message as one line; returns why it stopped, or `None` when the
/// queue closed (the session is ending). A child that takes no byte of a waiting message
/// within `stall` has stalled.
async fn write_stdin(mut stdin: ChildStdin, mut rx: super::budget::Receiver<Bytes>, stall: Option<Duration>) -> Option<Ended> {
    let exited = |detail: String| Some(Ended { reason: CloseReason::UpstreamExited, detail });
    // A message's bytes count against `upstream_queue_bytes` until it is written.
    while let Some((msg, _bytes)) = rx.recv_held().await {
        let line = line_of(&msg);
        let mut done = 0;
        while done < line.len() {
            let write = stdin.write(&line[done..]);
            let wrote = match stall {
                Some(stall) => match tokio::time::timeout(stall, write).await {
                    Ok(w) => w,
                    Err(_) => {
                        let detail = format!(
                            "read none of its stdin for {stall:?} (limits.upstream_stall) while {} bytes of a message and {} more messages waited",
                            line.len() - done,
                            rx.queued()
                        );
                        return Some(Ended { reason: CloseReason::UpstreamStalled, detail });
                    }
                },
                None => write.await,
            };
            match wrote {
                Ok(0) => return exited("closed its stdin".into()),
                Ok(n) => done += n,
                Err(e) => return exited(format!("stdin write failed: {e}")),
            }
        }
    }
    None
}

/// One message as one line. Raw newlines in valid JSON are only whitespace between tokens,
/// so replacing them keeps the message's meaning while keeping the framing intact.
fn line_of(msg: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(msg.len() + 1);
    buf.extend_from_slice(msg);
    for b in buf.iter_mut() {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
    buf.extend_from_slice(b"\n");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_of_flattens_pretty_json() {
        assert_eq!(&super::line_of(b"{\n  \"a\": 1\r\n}")[..], b"{   \"a\": 1  }\n");
    }
}
