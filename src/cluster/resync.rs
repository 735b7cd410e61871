//! Streams held here across a gap in the inbox. An owner sends the frames (and the close) of a
//! stream held here over pub/sub, which keeps nothing: while the connection carrying this
//! instance's inbox is re-established (a Redis node failed over, and the client subscribes
//! again by itself), what owners published to it is gone, and a client would wait on its
//! stream for an answer that was sent. So after such a gap every held stream asks its owner
//! for what it missed (an `Attach` of the same token, replaying after the last frame passed
//! on); frames that arrive meanwhile wait, and the two are merged in order, each once.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::wire::{Reply, Request};
use super::Cluster;
use crate::ids::CloseReason;
use crate::session::Frame;

/// Frames kept for a stream while its resync is in flight; more end it (its client resumes).
const WAITING_MAX: usize = crate::session::STREAM_QUEUE;
/// How long a stream held for a lapsed owner waits for the owner to rejoin or for a takeover
/// (a Redis failover takes about 2.5 s here, and leases lapse 1.5 s into it).
const REHOME_FOR: std::time::Duration = std::time::Duration::from_secs(3);
/// How long after a gap in its own inbox an instance takes a lapsed lease for a Redis
/// failover rather than a dead owner.
const GAP_RECENT: std::time::Duration = std::time::Duration::from_secs(10);

impl Cluster {
    /// The connection carrying the inbox dropped (or its subscription is gone: see
    /// `Cluster::inbox_lost`, which subscribes again itself). The client subscribes again by itself once
    /// it reconnects; when a probe sent after that comes back (every 200 ms, for at most
    /// 30 s), every established held stream resyncs. One established meanwhile resyncs when it
    /// is (see `held_stream`).
    pub(super) fn inbox_gap(&self) {
        self.gap_at.store(crate::ids::unix_ms(), Ordering::Relaxed);
        let gap = self.gaps.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            for _ in 0..150 {
                let nonce = me.send_probe();
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                if me.probe_seen.load(Ordering::Relaxed) >= nonce {
                    break;
                }
            }
            me.gap_over(gap);
        });
    }

    /// The inbox works again after gap number `gap` (unless another one began since): every
    /// established held stream resyncs.
    pub(super) fn gap_over(&self, gap: u64) {
        if self.gaps.load(Ordering::Relaxed) != gap {
            return;
        }
        self.healed.store(gap, Ordering::Relaxed);
        let tokens: Vec<u64> =
            self.held.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|(_, h)| h.established).map(|(t, _)| *t).collect();
        if !tokens.is_empty() {
            tracing::info!(streams = tokens.len(), "the inbox is back; streams held here ask their owners what they missed");
        }
        tokens.into_iter().for_each(|t| self.resync(t));
    }

    /// Records which stream a held token reads and the last frame its client got with the
    /// owner's reply, once the owner has said; a gap in the inbox since it was opened makes it
    /// resync at once (as does one opened while a gap was not healed yet).
    pub(crate) fn held_stream(&self, token: u64, stream: u32, replayed: Option<u64>) {
        let gap = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            let Some(h) = held.get_mut(&token) else { return };
            h.stream = stream;
            h.last_seq = h.last_seq.max(replayed);
            h.established = true;
            // While a gap is open, `gap_over` resyncs it when the gap is over.
            let (gaps, healed) = (self.gaps.load(Ordering::Relaxed), self.healed.load(Ordering::Relaxed));
            gaps == healed && (h.gaps != gaps || h.gaps != h.healed)
        };
        if gap {
            self.resync(token);
        }
    }

    /// Passes a frame from the owner on to the held stream `token`, once (see `HeldStream`).
    pub(super) fn on_frame(&self, token: u64, seq: u64, data: String) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let Some(h) = held.get_mut(&token) else { return };
        if let Some(waiting) = h.waiting.as_mut() {
            if waiting.len() < WAITING_MAX {
                waiting.push((seq, data));
                return;
            }
        } else if h.last_seq.is_none_or(|last| seq > last) {
            h.last_seq = Some(seq);
            let frame = if data.is_empty() { Frame::Priming(seq) } else { Frame::Message(seq, Bytes::from(data)) };
            if h.tx.try_send(frame).is_ok() {
                return;
            }
        } else {
            return;
        }
        // Its client does not keep up (or too much waited): let it go; it resumes.
        if let Some(h) = held.remove(&token) {
            let _ = h.reason.set(CloseReason::SlowConsumer);
            drop(held);
            self.publish(&h.owner, super::Envelope::Detached { sid: h.sid.to_string(), stream: h.stream, token });
        }
    }

    /// The streams held here for `owner` in `epoch`, which lapsed. One whose owner rejoined
    /// (a new epoch) resyncs with it. While Redis itself was lately out of reach here
    /// (`Cluster::cut_off_lately`: a failover or a stall lapses the leases of live instances),
    /// one whose session another instance took
    /// over resyncs with that one, and one whose owner may still rejoin waits for that, up to
    /// [`REHOME_FOR`]. The others end, and their clients reconnect with `Last-Event-ID` (a
    /// takeover replays what they missed): an owner that died is not waited for.
    /// One whose opening is still in flight is left to it (it watches the same lease).
    pub(super) async fn rehome(&self, owner: &str, epoch: u64) {
        let lapsed: Vec<(u64, crate::ids::SessionId)> = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, h)| h.owner == owner && h.epoch == epoch && h.established)
            .map(|(t, h)| (*t, h.sid))
            .collect();
        for (token, sid) in lapsed {
            let now = self.record(sid).await.ok().and_then(|r| r.owner);
            let live = match &now {
                Some((o, e)) => self.alive(o, *e).await.unwrap_or(false),
                None => false,
            };
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            let Some(h) = held.get_mut(&token) else { continue };
            match now {
                Some((o, e)) if live && (o == owner || self.cut_off_lately()) => {
                    tracing::info!(session = %sid, from = %owner, to = %o, epoch = e, "a stream held here follows its session to its owner");
                    (h.owner, h.epoch, h.lapsed) = (o, e, None);
                    drop(held);
                    self.resync(token);
                }
                _ if self.cut_off_lately() && h.lapsed.is_none_or(|t| t.elapsed() < REHOME_FOR) => {
                    h.lapsed.get_or_insert_with(std::time::Instant::now);
                }
                _ => {
                    if let Some(h) = held.remove(&token) {
                        let _ = h.reason.set(CloseReason::Error);
                        tracing::info!(session = %sid, %owner, epoch, "ending a stream held for an instance whose lease lapsed");
                    }
                }
            }
        }
    }

    /// Whether this instance's inbox had a gap in the last [`GAP_RECENT`].
    pub(super) fn gap_lately(&self) -> bool {
        let at = self.gap_at.load(Ordering::Relaxed);
        at != 0 && crate::ids::unix_ms().saturating_sub(at) < GAP_RECENT.as_millis() as u64
    }

    /// The owner closed held stream `token`; while it resyncs, the close waits for the frames.
    pub(super) fn on_close(&self, token: u64, reason: CloseReason) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match held.get_mut(&token) {
            Some(h) if h.waiting.is_some() => h.closing = Some(reason),
            Some(_) => {
                if let Some(h) = held.remove(&token) {
                    let _ = h.reason.set(reason);
                }
            }
            None => {}
        }
    }

    /// Asks the owner of held stream `token` for what it sent after the last frame passed on.
    fn resync(&self, token: u64) {
        let Some(me) = self.me.upgrade() else { return };
        let ask = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.get_mut(&token).filter(|h| h.waiting.is_none()).map(|h| {
                h.waiting = Some(Vec::new());
                (h.owner.clone(), h.epoch, h.sid, h.stream, h.last_seq)
            })
        };
        let Some((owner, epoch, sid, stream, last)) = ask else { return };
        tokio::spawn(async move {
            let body = Request::Attach { stream, after: Some(last.unwrap_or(0)), replace: true, token };
            let reply = me.call((&owner, epoch), sid, body).await;
            let mut held = me.held.lock().unwrap_or_else(|e| e.into_inner());
            let Some(h) = held.get_mut(&token) else { return };
            let waiting = h.waiting.take().unwrap_or_default();
            match reply {
                Ok(Reply::Attached { replay, done, .. }) => {
                    let closing = h.closing.take().or(done.then_some(CloseReason::Completed));
                    let mut frames: Vec<(u64, String)> = replay.into_iter().chain(waiting).collect();
                    frames.sort_by_key(|(seq, _)| *seq);
                    drop(held);
                    frames.into_iter().for_each(|(seq, data)| me.on_frame(token, seq, data));
                    if let Some(reason) = closing {
                        me.on_close(token, reason);
                    }
                }
                other => {
                    tracing::info!(session = %sid, %owner, reply = ?other.err(), "a held stream could not resync; it ends and its client resumes");
                    if let Some(h) = held.remove(&token) {
                        let _ = h.reason.set(CloseReason::Error);
                    }
                }
            }
        });
    }
}
