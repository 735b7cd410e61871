//! Idle streams: hold N legacy SSE streams open (no child starts until a POST), spread over
//! 127.0.0.x source addresses, and measure the bridge's RSS per stream, its CPU while only
//! heartbeats flow, heartbeat lateness, and streams that dropped.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

use crate::http::{self, Url};
use crate::procs;
use crate::stats::percentile;

#[derive(Debug, Clone)]
pub struct Opts {
    pub url: Url,
    pub streams: usize,
    /// Client source addresses 127.0.0.1 ..= 127.0.0.`sources`.
    pub sources: u8,
    /// The heartbeat interval the bridge was started with.
    pub interval: Duration,
    /// How long to watch once every stream is open.
    pub window: Duration,
    /// The bridge's pid, for RSS and CPU (None: skip those).
    pub pid: Option<u32>,
}

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub requested: usize,
    pub opened: usize,
    pub open_failed: usize,
    pub open_secs: f64,
    pub rss_before_kib: u64,
    pub rss_open_kib: u64,
    pub rss_end_kib: u64,
    pub cpu_percent: f64,
    pub heartbeats: u64,
    pub late_p50_ms: f64,
    pub late_p99_ms: f64,
    pub late_max_ms: f64,
    /// Streams that ended, or got no heartbeat in a window of two intervals or more.
    pub drops: u64,
    /// Streams that ended before the harness closed them (part of `drops`).
    pub ended: u64,
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn kib_per_stream(&self) -> f64 {
        if self.opened == 0 {
            return 0.0;
        }
        self.rss_open_kib.saturating_sub(self.rss_before_kib) as f64 / self.opened as f64
    }
}

/// What one held stream saw.
#[derive(Default)]
struct Seen {
    heartbeats: u64,
    /// Lateness (gap minus interval) of beats arriving inside the window, in microseconds.
    late_us: Vec<i64>,
    ended_early: bool,
}

const NEEDLE: &[u8] = b": heartbeat";

pub async fn run(o: &Opts) -> anyhow::Result<Outcome> {
    let mut out = Outcome { requested: o.streams, ..Outcome::default() };
    let rss = || o.pid.and_then(procs::rss_kib).unwrap_or(0);
    out.rss_before_kib = rss();
    let (window_tx, window_rx) = watch::channel(None::<(Instant, Instant)>);
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(128));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut held = JoinSet::new();
    let mut opening = JoinSet::new();
    let t_open = Instant::now();
    for i in 0..o.streams {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % o.sources.max(1) as usize) as u8));
        let (url, gate, failed, first_error) = (o.url.clone(), gate.clone(), failed.clone(), first_error.clone());
        opening.spawn(async move {
            let _permit = gate.acquire_owned().await;
            match timeout(Duration::from_secs(30), open(&url, source)).await {
                Ok(Ok(s)) => Some(s),
                other => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    let msg = match other {
                        Ok(Err(e)) => format!("{e:#}"),
                        _ => "open took over 30 s".to_string(),
                    };
                    first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(msg);
                    None
                }
            }
        });
    }
    while let Some(r) = opening.join_next().await {
        if let Ok(Some((stream, at))) = r {
            held.spawn(hold(stream, at, o.interval, window_rx.clone(), stop_rx.clone()));
        }
    }
    out.open_secs = t_open.elapsed().as_secs_f64();
    out.opened = held.len();
    out.open_failed = failed.load(Ordering::Relaxed) as usize;
    out.first_error = first_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    out.rss_open_kib = rss();
    let cpu0 = o.pid.and_then(procs::cpu_time);
    let w0 = Instant::now();
    let _ = window_tx.send(Some((w0, w0 + o.window)));
    tokio::time::sleep(o.window).await;
    let cpu1 = o.pid.and_then(procs::cpu_time);
    out.rss_end_kib = rss();
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        out.cpu_percent = (b.saturating_sub(a)).as_secs_f64() / o.window.as_secs_f64() * 100.0;
    }
    let _ = stop_tx.send(true);
    let mut late: Vec<i64> = Vec::new();
    let silent_counts = o.window >= o.interval * 2;
    while let Some(r) = held.join_next().await {
        let Ok(seen) = r else {
            out.drops += 1;
            out.ended += 1;
            continue;
        };
        out.heartbeats += seen.heartbeats;
        if seen.ended_early || (silent_counts && seen.late_us.is_empty()) {
            out.drops += 1;
        }
        out.ended += u64::from(seen.ended_early);
        late.extend(seen.late_us);
    }
    // Lateness below zero (a beat early by scheduling jitter) counts as on time.
    let mut late: Vec<u64> = late.into_iter().map(|l| l.max(0) as u64).collect();
    late.sort_unstable();
    out.late_p50_ms = percentile(&late, 50.0) as f64 / 1e3;
    out.late_p99_ms = percentile(&late, 99.0) as f64 / 1e3;
    out.late_max_ms = late.last().copied().unwrap_or(0) as f64 / 1e3;
    Ok(out)
}

/// Opens one stream and reads up to its endpoint event; returns it and when that arrived.
async fn open(url: &Url, source: IpAddr) -> anyhow::Result<(TcpStream, Instant)> {
    let mut s = http::tcp(url.addr, Some(source)).await?;
    let req = format!("GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n", url.path, url.authority);
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.context("read")?;
        if n == 0 {
            bail!("closed before the endpoint event: {}", String::from_utf8_lossy(&buf[..buf.len().min(200)]));
        }
        buf.extend_from_slice(&chunk[..n]);
        if !buf.starts_with(b"HTTP/1.1 200") && buf.len() >= 12 {
            bail!("answered {}", String::from_utf8_lossy(&buf[..buf.len().min(200)]));
        }
        if memfind(&buf, b"event: endpoint").is_some() && buf.ends_with(b"\n\r\n") {
            return Ok((s, Instant::now()));
        }
        if buf.len() > 64 * 1024 {
            bail!("no endpoint event in the first 64 KiB");
        }
    }
}

/// Reads a stream until told to stop, timing each heartbeat against the interval.
async fn hold(
    mut s: TcpStream,
    opened: Instant,
    interval: Duration,
    window: watch::Receiver<Option<(Instant, Instant)>>,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut last = opened;
    let mut buf = [0u8; 256];
    // Bytes kept from the previous read, in case a heartbeat straddles two reads.
    let mut carry = 0usize;
    loop {
        tokio::select! {
            r = s.read(&mut buf[carry..]) => {
                let n = match r {
                    Ok(0) | Err(_) => {
                        seen.ended_early = !*stop.borrow();
                        return seen;
                    }
                    Ok(n) => n,
                };
                let now = Instant::now();
                let data = &buf[..carry + n];
                let beats = count(data);
                if beats > 0 {
                    seen.heartbeats += beats as u64;
                    if let Some((w0, w1)) = *window.borrow() {
                        if now >= w0 && now <= w1 {
                            let gap = now.duration_since(last).as_micros() as i64;
                            seen.late_us.push(gap - interval.as_micros() as i64);
                        }
                    }
                }
                last = now;
                // A tail shorter than the needle cannot hold a counted heartbeat, but may
                // begin one that the next read completes.
                let len = data.len();
                carry = (NEEDLE.len() - 1).min(len);
                buf.copy_within(len - carry..len, 0);
            }
            _ = stop.changed() => return seen,
        }
    }
}

fn count(data: &[u8]) -> usize {
    let mut n = 0;
    let mut at = 0;
    while let Some(i) = memfind(&data[at..], NEEDLE) {
        n += 1;
        at += i + NEEDLE.len();
    }
    n
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_heartbeats_in_chunked_bytes() {
        assert_eq!(count(b"d\r\n: heartbeat\n\n\r\nd\r\n: heartbeat\n\n\r\n"), 2);
        assert_eq!(count(b": heart"), 0);
        assert_eq!(memfind(b"abcdef", b"cd"), Some(2));
    }
}
