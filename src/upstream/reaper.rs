//! Keeps a stdio child's processes from outliving their session or the bridge.
//!
//! - Each child gets `PR_SET_PDEATHSIG(SIGKILL)`: if the bridge dies, even of SIGKILL, the
//!   kernel kills the child, which may ignore stdin EOF.
//! - The bridge is a child subreaper (`PR_SET_CHILD_SUBREAPER`): a grandchild whose parent dies
//!   is reparented to the bridge rather than to init, so the bridge can find it even after it
//!   left the child's process group (`setsid`), which the group kill does not reach.
//! - A sweep kills and reaps every such orphan: a process whose parent is the bridge, which is
//!   not a session's child, and which is not in the process group of a live session's child
//!   (that group is killed with its session). It runs on SIGCHLD (a child died, so its
//!   descendants were just reparented), every few seconds, and at shutdown until none is left.
//!
//! The sweep reaps only pids the bridge did not spawn itself: the children it spawned are
//! registered here (under the same lock as their spawn) and reaped by tokio.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How often the sweep runs without a SIGCHLD (an orphan whose parent was a grandchild comes
/// with no signal).
const PERIOD: Duration = Duration::from_secs(2);
/// The least time between two sweeps, however often children exit.
const PAUSE: Duration = Duration::from_millis(250);
/// How long shutdown waits for the children to die and their orphans to be swept.
const SHUTDOWN: Duration = Duration::from_secs(3);

/// The pids of the children the bridge spawned for sessions, until they are gone from /proc.
/// Process-wide, like the children themselves and the subreaper attribute.
static SPAWNED: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Spawns `cmd` as a session's child: it dies with the bridge, and the sweep knows it.
pub(super) fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    die_with_bridge(cmd);
    // Held across the spawn: a sweep never sees the new child before it is registered.
    let mut spawned = lock();
    let child = cmd.spawn()?;
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        spawned.insert(pid);
    }
    Ok(child)
}

/// Sets `PR_SET_PDEATHSIG(SIGKILL)` in the child between fork and exec. The signal comes when
/// the thread that forked exits: children are spawned from the runtime's worker threads, which
/// live as long as the runtime (nothing in the bridge calls `block_in_place`).
#[allow(unsafe_code)]
fn die_with_bridge(cmd: &mut Command) {
    let bridge = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed. It makes two raw syscalls (prctl, getppid) through nix, allocates
    // nothing, takes no lock, and builds its error from an errno (no allocation either).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The bridge died between fork and prctl: the signal will never come.
            if nix::unistd::getppid() != bridge {
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
}

/// Makes the bridge a child subreaper and runs the sweep until the returned task is aborted.
/// Call [`finish`] at shutdown.
pub(crate) fn start() -> tokio::task::JoinHandle<()> {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(
            "cannot become a child subreaper ({e}): a grandchild that leaves its session's process group may outlive it"
        );
    }
    tokio::spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut chld = signal(SignalKind::child()).ok();
        let mut tick = tokio::time::interval(PERIOD);
        let mut left = 0;
        loop {
            tokio::select! {
                _ = async { chld.as_mut()?.recv().await }, if chld.is_some() => {}
                _ = tick.tick() => {
                    // Nothing spawned and nothing left over: no orphan can appear.
                    if left == 0 && lock().is_empty() {
                        continue;
                    }
                }
            }
            left = tokio::task::spawn_blocking(sweep).await.unwrap_or(0);
            // SIGCHLDs that come meanwhile are one: at most one /proc scan per PAUSE.
            tokio::time::sleep(PAUSE).await;
        }
    })
}

/// At shutdown, after every session ended: kills the process group of every child still
/// running (a shared child, or one whose session is still being torn down), then sweeps until
/// the children are gone and no orphan is left, for at most [`SHUTDOWN`].
pub(crate) async fn finish() {
    for pid in lock().iter() {
        let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN;
    while tokio::task::spawn_blocking(sweep).await.unwrap_or(0) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lock() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    SPAWNED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A process whose parent is the bridge and which the bridge did not spawn, from /proc.
struct Orphan {
    pid: i32,
    pgid: i32,
    zombie: bool,
}

/// One sweep: kills the orphans, reaps the dead ones. Returns how many processes are still
/// the bridge's business (spawned children not yet reaped, and orphans).
fn sweep() -> usize {
    let me = nix::unistd::getpid().as_raw();
    let before = lock().clone();
    let (present, found) = scan(me, &before);
    let orphans: Vec<Orphan> = {
        let mut spawned = lock();
        // A child registered before the scan that the scan did not see was reaped (by tokio).
        spawned.retain(|pid| !before.contains(pid) || present.contains(pid));
        // A child spawned since the scan began may be among `found`: not an orphan. Nor is a
        // process in a spawned child's group: that group is killed with its session.
        found.into_iter().filter(|o| !spawned.contains(&o.pid) && !spawned.contains(&o.pgid)).collect()
    };
    for o in &orphans {
        let pid = Pid::from_raw(o.pid);
        if o.zombie {
            let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
        } else {
            tracing::warn!(pid = o.pid, "killing a process a session's child left behind (it left the child's process group)");
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
    present.len() + orphans.len()
}

/// Which of the `spawned` pids are still in /proc, and every other process whose parent is
/// `me`. Only the pids not spawned are read (`stat`), so a sweep costs little however many
/// children run.
fn scan(me: i32, spawned: &BTreeSet<i32>) -> (BTreeSet<i32>, Vec<Orphan>) {
    let mut present = BTreeSet::new();
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return (present, found) };
    for pid in dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
        if spawned.contains(&pid) {
            present.insert(pid);
        } else if let Some(o) = orphan(pid, me) {
            found.push(o);
        }
    }
    (present, found)
}

/// `pid`, if its parent is `me`.
fn orphan(pid: i32, me: i32) -> Option<Orphan> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
    let mut rest = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = rest.next()?;
    let ppid: i32 = rest.next()?.parse().ok()?;
    let pgid: i32 = rest.next()?.parse().ok()?;
    (ppid == me).then(|| Orphan { pid, pgid, zombie: state == "Z" })
}
