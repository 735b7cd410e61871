//! Processes the harness starts (the bridge, the ceiling, peers) and what it reads about them
//! from /proc. Every started process lives in its own process group, which a Drop guard ends
//! (SIGTERM, then SIGKILL), so nothing outlives the harness.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// A started process group; dropping it stops the group.
pub struct Proc {
    pub name: String,
    pub child: Child,
    /// The command line as a shell would take it, for the report.
    pub command: String,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `program args` with stdout and stderr to `log`, in a new process group.
    pub fn start(name: &str, program: &Path, args: &[String], env: &[(&str, &str)], log: &Path) -> anyhow::Result<Proc> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().with_context(|| format!("cannot start {}", program.display()))?;
        let env_text: String = env.iter().map(|(k, v)| format!("{k}={} ", shell_word(v))).collect();
        let command = format!(
            "{env_text}{} {}",
            shell_word(&program.display().to_string()),
            args.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" ")
        );
        Ok(Proc { name: name.to_string(), child, command, log: log.to_path_buf() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `addr` accepts TCP connections, or fails with the log's tail.
    pub fn wait_listening(&mut self, addr: SocketAddr, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited ({status}) before listening; log {}:\n{}", self.name, self.log.display(), tail(&self.log));
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{} not listening on {addr} after {limit:?}; log {}:\n{}", self.name, self.log.display(), tail(&self.log))
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let Ok(pid) = i32::try_from(self.child.id()) else { return };
        let group = Pid::from_raw(pid);
        let _ = killpg(group, Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Quotes a word for a shell when it needs it.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A port free on 127.0.0.1 right now (the OS picks it).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident memory of a process, in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time a process has used (user + system), from /proc/PID/stat.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after it start at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture the bridge targets.
    Some(Duration::from_millis(ticks * 10))
}

/// Raises this process's open-file limit to its hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 1024 };
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    getrlimit(Resource::RLIMIT_NOFILE).map(|(soft, _)| soft).unwrap_or(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_readings_of_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(cpu_time(me).is_some());
        assert!(raise_nofile() >= 1024);
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("a/b-c"), "a/b-c");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_started_group_is_stopped_on_drop() {
        let log = std::env::temp_dir().join(format!("mcp-bench-proc-{}.log", std::process::id()));
        let p = Proc::start("sleep", Path::new("sleep"), &["30".into()], &[], &log).unwrap();
        let pid = p.pid();
        assert!(rss_kib(pid).is_some(), "running");
        drop(p);
        assert!(rss_kib(pid).is_none(), "gone after drop");
        let _ = std::fs::remove_file(log);
    }
}
