//! Queues bounded in bytes as well as in messages: the client→upstream queue of a session
//! and the upstream→session event channel. Each message holds permits of a semaphore (one
//! per byte) from before it is queued until the receiver takes it, so a queue never holds
//! more than its byte budget however many messages it may count. A message larger than the
//! whole budget takes the whole budget: it waits for the queue to empty, never for ever.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc::error::{SendError, TrySendError};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::UpstreamEvent;

/// What a queued value costs in bytes.
pub(crate) trait Weigh {
    fn bytes(&self) -> usize;
}

impl Weigh for Bytes {
    fn bytes(&self) -> usize {
        self.len()
    }
}

impl Weigh for UpstreamEvent {
    /// Only messages cost: a session id or a close must always get through.
    fn bytes(&self) -> usize {
        match self {
            UpstreamEvent::Message(m) => m.len(),
            UpstreamEvent::Session { .. } | UpstreamEvent::Closed { .. } => 0,
        }
    }
}

/// A taken value's bytes, still counted against the budget until dropped.
pub(crate) struct Held {
    _permit: Option<OwnedSemaphorePermit>,
}

/// A value with the byte permits it holds while queued.
type Queued<T> = (T, Option<OwnedSemaphorePermit>);

/// The sending side: waits for room in bytes, then for room in messages.
pub(crate) struct Sender<T> {
    tx: mpsc::Sender<Queued<T>>,
    bytes: Arc<Semaphore>,
    /// The budget in bytes: the most one value takes.
    max: u32,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender { tx: self.tx.clone(), bytes: self.bytes.clone(), max: self.max }
    }
}

/// The receiving side: taking a value gives its bytes back to the senders.
pub(crate) struct Receiver<T> {
    rx: mpsc::Receiver<Queued<T>>,
}

/// A channel of at most `count` values and `bytes` bytes (at least 1, at most `u32::MAX`).
pub(crate) fn channel<T: Weigh>(count: usize, bytes: usize) -> (Sender<T>, Receiver<T>) {
    let max = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
    let (tx, rx) = mpsc::channel(count);
    (Sender { tx, bytes: Arc::new(Semaphore::new(max as usize)), max }, Receiver { rx })
}

impl<T: Weigh> Sender<T> {
    /// What `n` bytes take of the budget: all of it at most.
    fn cost(&self, n: usize) -> u32 {
        u32::try_from(n).unwrap_or(u32::MAX).min(self.max)
    }

    /// Byte permits for `n` bytes; `None` for an empty value.
    async fn acquire(&self, n: usize) -> Result<Option<OwnedSemaphorePermit>, ()> {
        match self.cost(n) {
            0 => Ok(None),
            c => self.bytes.clone().acquire_many_owned(c).await.map(Some).map_err(drop),
        }
    }

    /// Queues `value`, waiting for room in bytes and then in messages.
    pub(crate) async fn send(&self, value: T) -> Result<(), SendError<T>> {
        let Ok(permit) = self.acquire(value.bytes()).await else { return Err(SendError(value)) };
        self.tx.send((value, permit)).await.map_err(|SendError((v, _))| SendError(v))
    }

    /// Queues `value` if there is room in bytes and in messages now.
    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let permit = match self.cost(value.bytes()) {
            0 => None,
            c => match self.bytes.clone().try_acquire_many_owned(c) {
                Ok(p) => Some(p),
                Err(TryAcquireError::NoPermits) => return Err(TrySendError::Full(value)),
                Err(TryAcquireError::Closed) => return Err(TrySendError::Closed(value)),
            },
        };
        self.tx.try_send((value, permit)).map_err(|e| match e {
            TrySendError::Full((v, _)) => TrySendError::Full(v),
            TrySendError::Closed((v, _)) => TrySendError::Closed(v),
        })
    }

    /// Room for values of `sizes` bytes at once, in bytes and in messages (a batch above the
    /// budget takes the whole budget); `Err` if the receiver is gone.
    pub(crate) async fn reserve(&self, sizes: &[usize]) -> Result<Reserved<'_, T>, ()> {
        let held = self.acquire(sizes.iter().map(|&n| self.cost(n) as usize).sum()).await?;
        let slots = self.tx.reserve_many(sizes.len()).await.map_err(drop)?;
        Ok(Reserved { slots, held, max: self.max })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Bytes free in the budget now.
    #[cfg(test)]
    fn free(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// Room reserved by [`Sender::reserve`], given back unless used.
pub(crate) struct Reserved<'a, T> {
    slots: mpsc::PermitIterator<'a, Queued<T>>,
    held: Option<OwnedSemaphorePermit>,
    /// The budget: no value costs more.
    max: u32,
}

impl<T> Reserved<'_, T> {
    /// Queues `values` with their sizes in bytes (at most as many as were reserved, and any of
    /// the reserved ones: a caller may leave some out), each holding its own bytes; what is
    /// left unused goes back to the budget.
    pub(crate) fn send(mut self, values: impl IntoIterator<Item = (T, usize)>) {
        for (slot, (value, size)) in self.slots.by_ref().zip(values) {
            let cost = u32::try_from(size).unwrap_or(u32::MAX).min(self.max);
            let permit = match self.held.as_mut() {
                Some(h) if h.num_permits() > cost as usize => h.split(cost as usize),
                _ => self.held.take(),
            };
            slot.send((value, permit));
        }
    }
}

impl<T> Receiver<T> {
    /// The next value; its bytes go back to the budget.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await.map(|(v, _permit)| v)
    }

    /// The next value with its bytes, which go back to the budget when the holder drops them
    /// (the stdio writer keeps them until the message is written).
    pub(crate) async fn recv_held(&mut self) -> Option<(T, Held)> {
        self.rx.recv().await.map(|(v, permit)| (v, Held { _permit: permit }))
    }

    /// The next value if one is queued now; its bytes go back to the budget.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok().map(|(v, _permit)| v)
    }

    /// Values queued now.
    pub(crate) fn queued(&self) -> usize {
        self.rx.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_are_held_until_taken() {
        let (tx, mut rx) = channel::<Bytes>(16, 10);
        tx.send(Bytes::from_static(b"abcdef")).await.unwrap();
        assert_eq!(tx.free(), 4);
        assert!(matches!(tx.try_send(Bytes::from_static(b"12345")), Err(TrySendError::Full(_))));
        tx.try_send(Bytes::from_static(b"1234")).unwrap();
        assert_eq!(rx.recv().await.as_deref(), Some(&b"abcdef"[..]));
        assert_eq!(tx.free(), 6);
        assert_eq!(rx.recv().await.as_deref(), Some(&b"1234"[..]));
        assert_eq!(tx.free(), 10);
    }

    #[tokio::test]
    async fn held_bytes_count_until_dropped() {
        let (tx, mut rx) = channel::<Bytes>(16, 10);
        tx.send(Bytes::from_static(b"abcdef")).await.unwrap();
        let (_, held) = rx.recv_held().await.unwrap();
        assert_eq!(tx.free(), 4);
        drop(held);
        assert_eq!(tx.free(), 10);
    }

    #[tokio::test]
    async fn a_value_over_the_budget_takes_all_of_it_and_waits_for_an_empty_queue() {
        let (tx, mut rx) = channel::<Bytes>(16, 10);
        tx.send(Bytes::from_static(b"ab")).await.unwrap();
        let big = Bytes::from(vec![0u8; 100]);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), tx.send(big.clone())).await;
        assert!(waiting.is_err(), "an oversized value waits while anything is queued");
        rx.recv().await.unwrap();
        tx.send(big).await.unwrap();
        assert_eq!(tx.free(), 0);
        assert_eq!(rx.recv().await.map(|b| b.len()), Some(100));
        assert_eq!(tx.free(), 10);
    }

    #[tokio::test]
    async fn a_batch_splits_its_bytes_per_value_and_closes_cost_nothing() {
        let (tx, mut rx) = channel::<Bytes>(16, 10);
        let batch = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defg")];
        tx.reserve(&[3, 4]).await.unwrap().send(batch.into_iter().map(|b| (b.clone(), b.len())));
        assert_eq!(tx.free(), 3);
        rx.recv().await.unwrap();
        assert_eq!(tx.free(), 6);
        rx.recv().await.unwrap();
        assert_eq!(tx.free(), 10);
        let (ev, mut evs) = channel::<UpstreamEvent>(4, 1);
        // A value left out of a reserved batch gives its bytes back.
        let room = tx.reserve(&[5, 5]).await.unwrap();
        assert_eq!(tx.free(), 0);
        room.send([(Bytes::from_static(b"hello"), 5)]);
        assert_eq!(tx.free(), 5);
        rx.recv().await.unwrap();
        assert_eq!(tx.free(), 10);
        ev.send(UpstreamEvent::Message(Bytes::from_static(b"x"))).await.unwrap();
        let closed = UpstreamEvent::Closed { reason: crate::ids::CloseReason::UpstreamExited, detail: String::new() };
        ev.try_send(closed).unwrap();
        assert!(evs.recv().await.is_some() && evs.recv().await.is_some());
    }
}
