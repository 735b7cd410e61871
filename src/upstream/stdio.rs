//! A stdio child process: newline-delimited JSON-RPC on stdin and stdout, stderr to the log.
//! The child runs in its own process group, and the whole group is killed when the session
//! ends, however it ends.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use bytes::Bytes;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tracing::Instrument;

use super::UpstreamEvent;
use crate::ids::{CloseReason, SessionId};

/// The PATH a child gets unless its env sets one.
const MINIMAL_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

pub(super) struct Spec {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    pub pump: crate::config::pump::PumpLimits,
    /// Where the child's messages go when not to `events` (see [`super::Context::direct`]).
    pub direct: Option<super::Direct>,
}

/// The program to start and the child's PATH. The child's PATH is minimal, and `Command`
/// searches a bare name on the child's PATH, so a `node` or `npx` installed by nvm or Homebrew
/// would not be found. So a bare name is looked up on the bridge's own PATH, as the shell that
/// started the bridge would, and its directory goes first in the child's PATH (an `npx` runs
/// `#!/usr/bin/env node`, found beside it). A name with a `/`, or a server whose `env` sets
/// PATH, is left to `Command` and that PATH.
fn resolve(command: &str, env: &BTreeMap<String, String>, bridge_path: Option<&std::ffi::OsStr>) -> (PathBuf, String) {
    if command.contains('/') || env.contains_key("PATH") {
        return (PathBuf::from(command), MINIMAL_PATH.to_string());
    }
    let found = bridge_path.into_iter().flat_map(std::env::split_paths).filter(|d| d.is_absolute()).find_map(|dir| {
        let p = dir.join(command);
        let executable = std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        executable.then_some((p, dir))
    });
    match found {
        Some((program, dir)) if !MINIMAL_PATH.split(':').any(|d| std::path::Path::new(d) == dir) => {
            (program, format!("{}:{MINIMAL_PATH}", dir.display()))
        }
        Some((program, _)) => (program, MINIMAL_PATH.to_string()),
        None => (PathBuf::from(command), MINIMAL_PATH.to_string()),
    }
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
    let (program, path) = resolve(&spec.command, &spec.env, std::env::var_os("PATH").as_deref());
    let mut cmd = Command::new(program);
    cmd.args(&spec.args)
        .env_clear()
        .env("PATH", path)
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
    let pumped = super::pump::run(stdin, stdout, rx, (&events, spec.direct), spec.pump).instrument(span).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_is_found_on_the_bridges_path_and_its_directory_leads_the_childs() {
        let dir = std::env::temp_dir().join(format!("mcp-bridge-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let tool = dir.join("my-node-tool");
        std::fs::write(&tool, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let bridge_path = std::env::join_paths(["/nonexistent", dir.to_str().unwrap_or_default()]).expect("PATH");
        let none = BTreeMap::new();
        let (program, path) = resolve("my-node-tool", &none, Some(&bridge_path));
        assert_eq!(program, tool);
        assert_eq!(path, format!("{}:{MINIMAL_PATH}", dir.display()));
        // The server's own PATH wins; a path is taken as it is; an unknown name is left to fail.
        let own = BTreeMap::from([("PATH".to_string(), "/opt/bin".to_string())]);
        assert_eq!(resolve("my-node-tool", &own, Some(&bridge_path)).0, PathBuf::from("my-node-tool"));
        assert_eq!(resolve("./x", &none, Some(&bridge_path)).0, PathBuf::from("./x"));
        assert_eq!(
            resolve("no-such-tool-zz", &none, Some(&bridge_path)),
            (PathBuf::from("no-such-tool-zz"), MINIMAL_PATH.into())
        );
        // Found in a directory of the minimal PATH: nothing is added.
        assert_eq!(resolve("sh", &none, Some(std::ffi::OsStr::new("/bin"))), (PathBuf::from("/bin/sh"), MINIMAL_PATH.into()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
