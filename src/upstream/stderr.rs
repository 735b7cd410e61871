//! A stdio child's stderr, drained to the log until EOF: read as bytes, split into lines of
//! bounded length (the rest of a longer line is counted and marked, never buffered), shown as
//! lossy UTF-8 with control characters escaped, and rate-limited per child so that a child
//! writing without pause cannot flood the log. Whatever the child writes, the pipe keeps being
//! read, so the child never dies of SIGPIPE (or `BrokenPipeError`) because of the bridge.
//!
//! The rate limit is a small token bucket rather than `governor`: it is one counter per child,
//! read by one task, and `governor`'s direct limiter would bring nine crates for it.

use std::fmt;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::ids::SessionId;

/// Bytes of one stderr line that reach the log; the rest is counted.
pub const MAX_LINE: usize = 4096;
/// Lines a child may log at once before the rate limit applies.
const BURST: f64 = 200.0;
/// Lines per second a child may log in the long run.
const RATE: f64 = 50.0;
/// Bytes read from the pipe at a time.
const CHUNK: usize = 16 * 1024;

/// One stderr line as it reaches the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The kept bytes, lossy UTF-8, without the line ending.
    pub text: String,
    /// Bytes of the line past [`LineReader`]'s bound, dropped.
    pub truncated: u64,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.text.chars() {
            // A child's bytes must not drive the operator's terminal or forge log lines.
            if c.is_control() && c != '\t' {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if self.truncated > 0 {
            write!(f, " … [truncated {} bytes]", self.truncated)?;
        }
        Ok(())
    }
}

/// Splits a byte stream into newline-terminated lines and holds at most `max` bytes whatever it
/// is fed: past the bound, a line's bytes are only counted.
#[derive(Debug)]
pub struct LineReader {
    max: usize,
    buf: Vec<u8>,
    dropped: u64,
}

impl LineReader {
    pub fn new(max: usize) -> LineReader {
        LineReader { max, buf: Vec::new(), dropped: 0 }
    }

    /// Feeds `bytes`, calling `emit` for every line they complete.
    pub fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(Line)) {
        while !bytes.is_empty() {
            let (part, done) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[..i], Some(i + 1)),
                None => (bytes, None),
            };
            let keep = part.len().min(self.max - self.buf.len());
            self.buf.extend_from_slice(&part[..keep]);
            self.dropped += (part.len() - keep) as u64;
            let Some(next) = done else { return };
            emit(self.take());
            bytes = &bytes[next..];
        }
    }

    /// The unterminated last line at EOF, if any.
    pub fn finish(&mut self) -> Option<Line> {
        (!self.buf.is_empty() || self.dropped > 0).then(|| self.take())
    }

    /// Bytes held for the line in progress (never more than `max`).
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self) -> Line {
        // A CR before the LF is part of the line ending, unless the line was cut.
        if self.dropped == 0 && self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        Line { text, truncated: std::mem::take(&mut self.dropped) }
    }
}

/// A token bucket of log lines: [`BURST`] at once, [`RATE`] per second after that.
#[derive(Debug)]
struct Budget {
    tokens: f64,
    last: Instant,
    /// Lines refused since the last one logged.
    suppressed: u64,
    /// Lines refused in all.
    suppressed_total: u64,
}

impl Budget {
    fn new(now: Instant) -> Budget {
        Budget { tokens: BURST, last: now, suppressed: 0, suppressed_total: 0 }
    }

    /// Whether a line may be logged now; if so, how many were suppressed before it.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * RATE).min(BURST);
        if self.tokens < 1.0 {
            self.suppressed += 1;
            self.suppressed_total += 1;
            return None;
        }
        self.tokens -= 1.0;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Logs `stderr` line by line until EOF (or a read error, which a pipe does not give).
pub(super) async fn drain(mut stderr: impl AsyncRead + Unpin, session: SessionId, server: Arc<str>) {
    let mut lines = LineReader::new(MAX_LINE);
    let mut budget = Budget::new(Instant::now());
    let mut chunk = vec![0u8; CHUNK];
    let log = |budget: &mut Budget, line: Line| {
        let Some(suppressed) = budget.allow(Instant::now()) else { return };
        if suppressed > 0 {
            tracing::warn!(target: "mcp_bridge::upstream_stderr", session = %session, server = %server, suppressed,
                "{suppressed} stderr lines suppressed (over {RATE} lines/s)");
        }
        tracing::info!(target: "mcp_bridge::upstream_stderr", session = %session, server = %server, "{line}");
    };
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => lines.feed(&chunk[..n], |line| log(&mut budget, line)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(session = %session, server = %server, "cannot read the child's stderr: {e}");
                break;
            }
        }
    }
    if let Some(line) = lines.finish() {
        log(&mut budget, line);
    }
    if budget.suppressed_total > 0 {
        tracing::warn!(target: "mcp_bridge::upstream_stderr", session = %session, server = %server,
            suppressed = budget.suppressed_total, "stderr closed; {} lines were suppressed in all (over {RATE} lines/s)",
            budget.suppressed_total);
    }
}

/// How long [`BURST`] lines take to earn back.
#[cfg(test)]
fn refill() -> std::time::Duration {
    std::time::Duration::from_secs_f64(BURST / RATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> (Vec<Line>, usize) {
        let mut r = LineReader::new(max);
        let mut out = Vec::new();
        let mut held = 0;
        for c in chunks {
            r.feed(c, |l| out.push(l));
            held = held.max(r.held());
        }
        out.extend(r.finish());
        (out, held)
    }

    #[test]
    fn lines_are_lossy_bounded_and_marked() {
        let (lines, held) = split(&[b"ok\r\nbad \xff byte\n", b"0123456789abc", b"def\nlast"], 8);
        let shown: Vec<String> = lines.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["ok", "bad \u{fffd} by … [truncated 2 bytes]", "01234567 … [truncated 8 bytes]", "last"]);
        assert!(held <= 8);
    }

    #[test]
    fn control_characters_are_escaped() {
        let line = Line { text: "a\u{1b}[31mred\rb\tc".into(), truncated: 0 };
        assert_eq!(line.to_string(), "a\\u{1b}[31mred\\rb\tc");
    }

    #[test]
    fn a_line_without_end_is_counted_not_held() {
        let mut r = LineReader::new(MAX_LINE);
        let mb = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            r.feed(&mb, |_| panic!("no line ends"));
            assert!(r.held() <= MAX_LINE);
        }
        let last = r.finish().expect("the unterminated line");
        assert_eq!(last.truncated, (64 << 20) - MAX_LINE as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_allows_a_burst_then_the_rate_and_counts_the_rest() {
        let mut b = Budget::new(Instant::now());
        let allowed = (0..1000).filter(|_| b.allow(Instant::now()).is_some()).count();
        assert_eq!(allowed, BURST as usize);
        tokio::time::advance(refill()).await;
        assert_eq!(b.allow(Instant::now()), Some(1000 - BURST as u64), "the next line says how many were suppressed");
        assert_eq!(b.suppressed_total, 1000 - BURST as u64);
    }
}
