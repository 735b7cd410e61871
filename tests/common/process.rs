//! Child processes of the tests: the one way to stop them (a signal, a grace period, then
//! SIGKILL, always reaped), and what /proc says about the processes they started.

use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Sends `sig` to `pid` (ignoring a process that is gone).
pub(crate) fn signal(pid: u32, sig: Signal) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(p), sig);
    }
}

/// Stops a child: `sig`, then up to `grace` for it to exit, then SIGKILL; always reaps it.
/// Returns whether it exited by itself (before or within the grace period).
pub(crate) fn stop(child: &mut Child, sig: Signal, grace: Duration) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        return true;
    }
    signal(child.id(), sig);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// The pids whose parent is `parent` (from /proc).
pub(crate) fn children_of(parent: u32) -> Vec<i32> {
    let parent = parent.to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the parenthesised name: state, ppid, ...
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1).map(|p| p == parent)).unwrap_or(false)
        })
        .collect()
}

/// Whether `pid` runs (a zombie, state Z, has exited).
pub(crate) fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z")
}
