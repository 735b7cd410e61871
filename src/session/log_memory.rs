//! Room in a session's event logs for one more message: what an attached client's queue
//! still holds (not delivered, so not evictable), and eviction across the session's streams.

use super::stream_map::StreamMap;
use super::{Live, Sink, Stream};

impl Live {
    /// Frames sent to a local client that its body has not taken yet: they are the newest
    /// entries of the stream's log, not delivered. A remote holder's queue is its instance's
    /// concern (it lets the client go when that queue fills).
    pub(super) fn queued(&self) -> usize {
        match &self.sink {
            Sink::Local(tx) => tx.len(),
            Sink::Remote { .. } => 0,
        }
    }
}

/// Evicts delivered entries from the session's streams other than `n`, lowest-numbered
/// first, until `len` more bytes fit the session's and the instance's bounds. Stream `n`'s
/// own log makes what room it can in its push; what is left over is an overflow there.
pub(super) fn make_room(streams: &mut StreamMap<Stream>, n: u32, len: usize) {
    let len = len as u64;
    if streams.get(&n).is_none_or(|s| s.log.fits(len)) {
        return;
    }
    for (_, s) in streams.iter_mut().filter(|(k, _)| **k != n) {
        let in_flight = s.live.as_ref().map_or(0, Live::queued);
        s.log.make_room(len, in_flight);
        if s.log.fits(len) {
            return;
        }
    }
}
