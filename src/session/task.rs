//! The session task: it takes the upstream's events once the upstream starts, and wakes for
//! idle expiry and request timeouts, until the session ends.

use std::sync::Arc;

use tokio::time::Instant;

use super::{hold, Live, Session, State};
use crate::ids::CloseReason;
use crate::upstream::{self, UpstreamEvent};

impl Session {
    /// Starts the session task if it is not running. A session registered without one
    /// (`Registry::start_idle`) needs it once its upstream starts, its stream goes (the idle
    /// countdown), or it ends (the task takes it out of the registry).
    pub(crate) fn needs_task(&self) {
        let spawn = self.state().task_to_spawn();
        self.spawn_task_if(spawn);
    }

    /// Spawns the session task if `spawn` (from [`State::task_to_spawn`], under the lock).
    pub(super) fn spawn_task_if(&self, spawn: bool) {
        if let (true, Some(me), Some(registry)) = (spawn, self.me.upgrade(), self.env.registry.upgrade()) {
            registry.spawn_task(me);
        }
    }

    /// Time left before the session counts as idle (a request in flight holds it), or `None`.
    fn idle_left(&self) -> Option<std::time::Duration> {
        let st = self.state();
        let now = Instant::now();
        if st.streams.values().any(|s| s.live.as_ref().is_some_and(Live::reading)) || st.in_flight() > 0 {
            return Some(self.settings.idle_timeout);
        }
        (st.last_activity + self.settings.idle_timeout).checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// Drives the session: upstream messages, upstream exit, idle expiry, request timeouts.
    ///
    /// The idle and request deadlines are looked at only when the timer fires, not after every
    /// upstream message: the timer is set at most one request timeout ahead, so a request sent
    /// after it was set is due no earlier than it fires, and activity only moves the idle
    /// deadline later (firing early just sets the timer again).
    pub(crate) async fn run(self: Arc<Self>) {
        let Some(wake) = self.next_wake() else { return };
        let timer = tokio::time::sleep(wake);
        tokio::pin!(timer);
        let mut events: Option<upstream::EventsRx> = None;
        loop {
            tokio::select! {
                ev = next_event(&mut events) => {
                    let Some(rx) = events.as_mut() else { continue };
                    match ev {
                        // Boxed: the wait on the journal (cluster mode) is the largest state of this
                        // future, which every session's task would hold for its whole life.
                        Some(UpstreamEvent::Message(raw)) => match Box::pin(self.on_upstream_messages(raw, rx)).await {
                            hold::Released::Ended => return,
                            hold::Released::Next(None) => {}
                            hold::Released::Next(Some(ev)) => {
                                if !self.on_upstream_event(ev) {
                                    return;
                                }
                            }
                        },
                        Some(ev) => {
                            if !self.on_upstream_event(ev) {
                                return;
                            }
                        }
                        // Every sender is gone without a `Closed` (an upstream task that
                        // returned early or panicked): the session ends, it is not just dropped.
                        None => {
                            self.end(CloseReason::UpstreamExited, "the upstream stopped without saying why");
                            return;
                        }
                    }
                }
                () = &mut timer => {
                    let Some(wake) = self.next_wake() else { return };
                    timer.as_mut().reset(tokio::time::Instant::now() + wake);
                }
                _ = self.wake.notified() => {
                    let mut st = self.state();
                    if st.ended.is_some() {
                        return;
                    }
                    if let Some(rx) = st.started.take() {
                        events = Some(rx);
                    }
                }
            }
        }
    }

    /// Ends an idle session (`None`), answers the requests that are due with errors, and
    /// says when to look again.
    fn next_wake(&self) -> Option<std::time::Duration> {
        let Some(idle) = self.idle_left() else {
            self.end(CloseReason::IdleTimeout, "no stream attached and no request within the idle timeout");
            return None;
        };
        // With nothing pending, still look again within one request timeout: a request sent
        // meanwhile is noticed only at the next wake, so it must come before it is due.
        Some(match self.expire_requests() {
            Some(due) => idle.min(due.max(std::time::Duration::from_millis(10))),
            None => self.settings.request_timeout.map_or(idle, |t| idle.min(t)),
        })
    }
}

/// The next upstream event; never, while the upstream has not started.
async fn next_event(events: &mut Option<upstream::EventsRx>) -> Option<UpstreamEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl State {
    /// Whether the session task is to be spawned now: it is marked as running.
    pub(super) fn task_to_spawn(&mut self) -> bool {
        !std::mem::replace(&mut self.task, true)
    }
}
