//! A stdio child process: newline-delimited JSON-RPC on stdin and stdout, stderr to the log.
//! The child runs in its own process group, and the whole group is killed when the session
//! ends, however it ends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tracing::Instrument;

use super::UpstreamEvent;
use crate::session::{CloseReason, SessionId};

/// The PATH a child gets unless its env sets one.
const MINIMAL_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

pub(super) struct Spec {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub pump: crate::config::pump::PumpLimits,
}

/// Kills the child's process group when dropped (the task ended or was aborted).
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

pub(super) async fn run(
    spec: Spec,
    server: Arc<str>,
    session: SessionId,
    slots: super::ChildSlots,
    rx: super::budget::Receiver<Bytes>,
    events: super::Events,
) {
    let Some(_slot) = slots.take() else {
        let detail = format!("the bridge already runs its maximum of {} child processes (limits.max_children)", slots.running());
        tracing::warn!(session = %session, server = %server, "{detail}");
        // Not `UpstreamFailedToStart`: the server did not fail, the bridge is full, and the
        // crash-loop guard must not lock every client out of a healthy server for it.
        let _ = events.send(UpstreamEvent::Closed { reason: CloseReason::Error, detail }).await;
        return;
    };
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
        .env_clear()
        .env("PATH", MINIMAL_PATH)
        .envs(&spec.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = match super::reaper::spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => {
            let detail = format!("cannot start `{}`: {e}", spec.command);
            tracing::warn!(session = %session, server = %server, "{detail}");
            let _ = events.send(UpstreamEvent::Closed { reason: CloseReason::UpstreamFailedToStart, detail }).await;
            return;
        }
    };
    let _group = GroupKill(child.id());
    tracing::info!(session = %session, server = %server, pid = child.id(), command = %spec.command, "upstream started");
    let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take()) else {
        return;
    };
    tokio::spawn(super::stderr::drain(stderr, session, server.clone()));
    let span = tracing::info_span!("pump", session = %session, server = %server);
    let pumped = super::pump::run(stdin, stdout, rx, &events, spec.pump).instrument(span).await;
    let Some(super::pump::Ended { reason, detail }) = pumped else {
        return;
    };
    if reason == CloseReason::UpstreamStalled {
        drop(_group);
    }
    let status = match tokio::time::timeout(std::time::Duration::from_secs(2), child.wait()).await {
        Ok(Ok(s)) => s.to_string(),
        _ => "still running; killed".to_string(),
    };
    let detail = format!("`{}` {detail} ({status})", spec.command);
    tracing::warn!(session = %session, server = %server, "upstream exited: {detail}");
    let _ = events.send(UpstreamEvent::Closed { reason, detail }).await;
}
