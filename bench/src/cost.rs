//! What a measured target costs the machine over a throughput window, read from /proc: the CPU
//! time of its whole process tree (the target process and every live descendant: the bridge's
//! echo children, node's children, ...), its threads' context switches, its read/write
//! syscalls, and, when asked, every syscall as `perf stat -e raw_syscalls:sys_enter` counts it.
//! The load generator is never part of a tree: a tree is walked down from its roots only.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Which processes a run measures.
#[derive(Debug, Clone)]
pub enum Tree {
    /// This process and its descendants (the bridge, the ceiling, a peer).
    Pid(u32),
    /// The processes the sessions spawned themselves (the stdio baseline's echo children)
    /// and their descendants.
    Sessions,
}

/// What to measure about a run besides requests and latency.
#[derive(Debug, Clone)]
pub struct Meter {
    pub tree: Tree,
    /// Also count every syscall with `perf stat` over the window (adds tracing overhead to the
    /// target, so the CPU figures of such a run are not the plain ones).
    pub perf: bool,
}

/// One process as /proc/PID/stat shows it.
#[derive(Debug, Clone, Copy)]
struct Stat {
    ppid: u32,
    /// utime + stime, in clock ticks.
    own: u64,
    /// cutime + cstime: the CPU of children this process has waited for, in clock ticks.
    reaped: u64,
}

/// Clock ticks per second (USER_HZ), 100 on every Linux architecture the bridge targets.
const TICK: Duration = Duration::from_millis(10);

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name may hold spaces and parentheses; the fields after it start at the last ')'.
    let f: Vec<&str> = text[text.rfind(')')? + 2..].split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    Some(Stat { ppid: n(1)? as u32, own: n(11)? + n(12)?, reaped: n(13)? + n(14)? })
}

/// Every process on the machine (thread-group leaders: /proc lists no other threads).
fn scan() -> HashMap<u32, Stat> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // A process may exit between the listing and the read: skip it.
        if let Some(s) = std::fs::read_to_string(e.path().join("stat")).ok().as_deref().and_then(parse_stat) {
            out.insert(pid, s);
        }
    }
    out
}

/// The roots that are alive and all their descendants, by the ppid links of one scan.
fn walk(all: &HashMap<u32, Stat>, roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, s) in all {
        children.entry(s.ppid).or_default().push(pid);
    }
    let mut seen: HashSet<u32> = HashSet::new();
    let mut todo: Vec<u32> = roots.iter().copied().filter(|p| all.contains_key(p)).collect();
    let mut out = Vec::new();
    while let Some(p) = todo.pop() {
        if seen.insert(p) {
            out.push(p);
            todo.extend(children.get(&p).into_iter().flatten());
        }
    }
    out.sort_unstable();
    out
}

/// The process tree under `roots` right now: the roots and their live descendants.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    walk(&scan(), roots)
}

/// A tree's counters at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    pub pids: Vec<u32>,
    /// Σ (utime + stime + cutime + cstime) over the tree, in clock ticks.
    ticks: u64,
    /// Per thread id (unique machine-wide): (voluntary, involuntary) context switches.
    switches: HashMap<u32, (u64, u64)>,
    /// Per process: syscr + syscw from /proc/PID/io.
    rw: HashMap<u32, u64>,
}

/// Reads the counters of the tree under `roots`. Blocking: a few ms of /proc reads.
pub fn snapshot(roots: &[u32]) -> Snapshot {
    let all = scan();
    let at = Instant::now();
    let pids = walk(&all, roots);
    let ticks = pids.iter().filter_map(|p| all.get(p)).map(|s| s.own + s.reaped).sum();
    let mut switches = HashMap::new();
    let mut rw = HashMap::new();
    for &pid in &pids {
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
                if let Some(c) = std::fs::read_to_string(t.path().join("status")).ok().as_deref().and_then(ctxt_switches) {
                    switches.insert(tid, c);
                }
            }
        }
        if let Some(n) = std::fs::read_to_string(format!("/proc/{pid}/io")).ok().as_deref().and_then(read_write_syscalls) {
            rw.insert(pid, n);
        }
    }
    Snapshot { at, pids, ticks, switches, rw }
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok())
}

fn ctxt_switches(status: &str) -> Option<(u64, u64)> {
    Some((field(status, "voluntary_ctxt_switches:")?, field(status, "nonvoluntary_ctxt_switches:")?))
}

fn read_write_syscalls(io: &str) -> Option<u64> {
    Some(field(io, "syscr:")? + field(io, "syscw:")?)
}

/// What a tree used between two snapshots.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    pub cpu: Duration,
    pub wall: Duration,
    pub voluntary: u64,
    pub involuntary: u64,
    /// read-family + write-family syscalls (/proc/PID/io syscr + syscw).
    pub rw_syscalls: u64,
    /// Processes in the tree at the end.
    pub processes: usize,
    /// Every syscall (`perf stat`), and the window perf counted over; or why perf failed.
    pub perf: Option<Result<(u64, Duration), String>>,
}

/// The tree's usage from `a` to `b`.
///
/// CPU: the sums of utime+stime+cutime+cstime over each snapshot's tree. A child that exits
/// inside the window and is waited for by a process of the tree (the bridge and the peers
/// wait for their children) moves its whole CPU time into its parent's cutime/cstime, so the
/// difference counts exactly its share inside the window. A process that exits and is
/// reaped outside the tree (or not at all by the end) is under-counted; the difference is
/// clamped at zero.
///
/// Context switches and read/write syscalls are per thread / per process: each one alive at
/// both ends counts its increase, one born inside the window counts in full, and one that
/// exits inside the window is not counted at all (/proc keeps no total for it), so these
/// under-count a tree whose threads or children come and go.
pub fn between(a: &Snapshot, b: &Snapshot) -> Cost {
    let delta = |new: u64, old: Option<u64>| new.saturating_sub(old.unwrap_or(0));
    let (mut voluntary, mut involuntary) = (0, 0);
    for (tid, &(v, i)) in &b.switches {
        let old = a.switches.get(tid);
        voluntary += delta(v, old.map(|o| o.0));
        involuntary += delta(i, old.map(|o| o.1));
    }
    let rw_syscalls = b.rw.iter().map(|(pid, &n)| delta(n, a.rw.get(pid).copied())).sum();
    Cost {
        cpu: TICK * u32::try_from(b.ticks.saturating_sub(a.ticks)).unwrap_or(u32::MAX),
        wall: b.at.saturating_duration_since(a.at),
        voluntary,
        involuntary,
        rw_syscalls,
        processes: b.pids.len(),
        perf: None,
    }
}

/// How many times [`Perf::finish_or_retry`] attaches perf at most.
const ATTACHES: usize = 3;

/// A running `perf stat -e raw_syscalls:sys_enter` attached to a tree for a fixed window.
pub struct Perf {
    child: tokio::process::Child,
    window: Duration,
}

impl Perf {
    /// Attaches to `pids` (perf follows threads and children they create afterwards) for
    /// `window`. Fails when perf is missing.
    pub fn start(pids: &[u32], window: Duration) -> Result<Perf, String> {
        if pids.is_empty() {
            return Err("no process to attach to".into());
        }
        let list = pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let child = tokio::process::Command::new("perf")
            .args(["stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p", &list, "--", "sleep"])
            .arg(format!("{:.3}", window.as_secs_f64()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run perf ({e}): install it with `apt-get install linux-perf`"))?;
        Ok(Perf { child, window })
    }

    /// Like [`Perf::finish`], but when perf gave up before the window was over (a process of
    /// the tree exited between the walk and perf's attach: "Problems finding threads of
    /// monitor"), attaches again to the tree under `roots` as it is then, for what is left of
    /// the window (up to 0.5 s before `deadline`), at most [`ATTACHES`] times in all.
    pub async fn finish_or_retry(mut self, roots: &[u32], deadline: tokio::time::Instant) -> Result<(u64, Duration), String> {
        for _ in 1..ATTACHES {
            // However long perf takes to start on a loaded machine: a failure to attach is
            // its exit before the window is over.
            let failed = matches!(
                tokio::time::timeout(self.window, self.child.wait()).await,
                Ok(Ok(status)) if !status.success()
            );
            let left = deadline.saturating_duration_since(tokio::time::Instant::now()).saturating_sub(Duration::from_millis(500));
            if !failed || left < Duration::from_millis(500) {
                break;
            }
            let roots = roots.to_vec();
            let pids = tokio::task::spawn_blocking(move || tree(&roots)).await.unwrap_or_default();
            self = Perf::start(&pids, left)?;
        }
        self.finish().await
    }

    /// Waits for perf (bounded) and reads its count.
    pub async fn finish(self) -> Result<(u64, Duration), String> {
        let limit = self.window + Duration::from_secs(10);
        let out = tokio::time::timeout(limit, self.child.wait_with_output())
            .await
            .map_err(|_| format!("perf still running after {limit:?}"))?
            .map_err(|e| format!("perf: {e}"))?;
        let text = String::from_utf8_lossy(&out.stderr);
        parse_perf(&text).map(|n| (n, self.window)).ok_or_else(|| {
            format!("perf stat ({}) gave no count: {}", out.status, text.trim().chars().take(300).collect::<String>())
        })
    }
}

/// The count on perf's CSV line for the event (`<not counted>`: the tree never ran, 0).
fn parse_perf(csv: &str) -> Option<u64> {
    let line = csv.lines().find(|l| l.contains("raw_syscalls:sys_enter"))?;
    let first = line.split(',').next()?.trim();
    if first == "<not counted>" {
        return Some(0);
    }
    first.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    /// A shell that starts two `sleep` children (one of them with a child of its own).
    fn family() -> Child {
        Command::new("sh").args(["-c", "sleep 30 & sh -c 'sleep 31 & wait' & wait"]).stdin(Stdio::null()).spawn().expect("sh")
    }

    /// Ends `root` and everything under it (only processes this test started).
    fn end(mut root: Child) {
        let pids = tree(&[root.id()]);
        let _ = root.kill();
        for p in pids.into_iter().filter(|&p| p != root.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = root.wait();
    }

    fn comm(pid: u32) -> String {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
    }

    #[test]
    fn the_tree_holds_every_live_descendant_and_not_the_parent() {
        let root = family();
        let pid = root.id();
        let start = Instant::now();
        let mut pids = tree(&[pid]);
        while pids.len() < 4 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
            pids = tree(&[pid]);
        }
        let names: Vec<String> = pids.iter().map(|&p| comm(p)).collect();
        end(root);
        assert_eq!(pids.len(), 4, "sh, sleep, sh, sleep: {names:?}");
        assert!(pids.contains(&pid));
        assert_eq!(names.iter().filter(|n| *n == "sleep").count(), 2, "{names:?}");
        assert!(!pids.contains(&std::process::id()), "the tree never climbs to the parent");
        assert!(tree(&[u32::MAX - 1]).is_empty(), "a dead root has no tree");
    }

    #[test]
    fn cpu_of_a_child_that_exits_in_the_window_moves_to_its_parent() {
        // The parent waits for a busy child that exits inside the window: the child's CPU
        // shows up through the parent's cutime, so the tree's CPU covers it.
        let root = Command::new("sh")
            .args(["-c", "sleep 0.3; i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done & wait; sleep 30"])
            .spawn()
            .expect("sh");
        let pid = root.id();
        let a = snapshot(&[pid]);
        let start = Instant::now();
        // Until the busy child is gone (the tree is back to sh and its final sleep).
        let mut saw_busy = false;
        while start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
            let t = tree(&[pid]);
            let busy = t.iter().any(|&p| p != pid && comm(p) == "sh");
            saw_busy |= busy;
            if saw_busy && !busy {
                break;
            }
        }
        let b = snapshot(&[pid]);
        end(root);
        let c = between(&a, &b);
        assert!(saw_busy, "the busy child was seen in the tree");
        assert!(c.cpu >= Duration::from_millis(50), "the exited child's CPU counted: {c:?}");
        assert!(c.wall > Duration::ZERO);
    }

    #[test]
    fn counters_of_this_process() {
        let me = std::process::id();
        let a = snapshot(&[me]);
        for _ in 0..200 {
            let _ = std::fs::read_to_string("/proc/self/stat");
        }
        std::thread::sleep(Duration::from_millis(5));
        let b = snapshot(&[me]);
        assert!(b.pids.contains(&me));
        assert!(!b.switches.is_empty(), "threads of this process read");
        let c = between(&a, &b);
        assert!(c.rw_syscalls >= 200, "{c:?}");
        assert!(c.voluntary >= 1, "the sleep switched out: {c:?}");
    }

    #[test]
    fn parsing() {
        let s = parse_stat("12 (a b) c) S 7 1 1 0 -1 0 0 0 0 0 30 4 5 6 20 0 1 0").unwrap();
        assert_eq!((s.ppid, s.own, s.reaped), (7, 34, 11));
        assert_eq!(ctxt_switches("Name:\tx\nvoluntary_ctxt_switches:\t9\nnonvoluntary_ctxt_switches:\t2\n"), Some((9, 2)));
        assert_eq!(read_write_syscalls("rchar: 1\nsyscr: 5\nsyscw: 7\n"), Some(12));
        assert_eq!(parse_perf("1234,,raw_syscalls:sys_enter,5000,100.00,,\n"), Some(1234));
        assert_eq!(parse_perf("<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n"), Some(0));
        assert_eq!(parse_perf("nothing\n"), None);
    }

    /// A loop of syscalls without child processes (`read` is a shell builtin), so no process
    /// of its tree comes and goes between a walk and perf's attach.
    const BUSY: &str = "while :; do read x < /proc/loadavg; done";

    #[tokio::test]
    async fn perf_counts_syscalls_of_a_busy_process() {
        let busy = Command::new("sh").args(["-c", BUSY]).spawn().expect("sh");
        let perf = Perf::start(&[busy.id()], Duration::from_millis(500))
            .expect("perf is needed for the syscall table: apt-get install linux-perf");
        let r = perf.finish().await;
        end(busy);
        let (n, w) = r.expect("perf stat counted");
        assert!(n > 100, "a loop of cat makes syscalls: {n}");
        assert_eq!(w, Duration::from_millis(500));
    }

    #[tokio::test]
    async fn perf_attaches_again_when_a_process_left_before_it_attached() {
        let busy = Command::new("sh").args(["-c", BUSY]).spawn().expect("sh");
        // A pid no process has: perf gives up at once, as when a child exits before the attach.
        let gone = u32::MAX / 2;
        let window = Duration::from_millis(1500);
        let deadline = tokio::time::Instant::now() + window + Duration::from_millis(500);
        let perf = Perf::start(&[busy.id(), gone], window).expect("perf is needed: apt-get install linux-perf");
        let r = perf.finish_or_retry(&[busy.id()], deadline).await;
        end(busy);
        let (n, w) = r.expect("the second attach counted");
        assert!(n > 100, "{n}");
        assert!(w < window && w >= Duration::from_millis(500), "counted over what was left: {w:?}");
    }
}
