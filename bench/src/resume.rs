//! Resume: a legacy SSE client (a fresh session each cycle) drops its stream, POSTs K echo
//! requests while disconnected, and reconnects with `Last-Event-ID`. Measures the time from
//! the reconnect (TCP connect included) to the first replayed event, and the replay rate.

use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio::time::{timeout, Instant};

use crate::http::{self, Conn, SseReader, Url};
use crate::mcp::{self, Verdict};
use crate::stats::percentile;

#[derive(Debug, Clone)]
pub struct Opts {
    pub url: Url,
    /// Requests sent while disconnected, replayed on each reconnect.
    pub events: usize,
    pub cycles: usize,
    pub size: usize,
    pub tool: String,
    /// Wait after the last POST so every answer is in the event log before reconnecting.
    pub settle: Duration,
}

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub cycles: usize,
    pub first_p50_ms: f64,
    pub first_p99_ms: f64,
    pub first_max_ms: f64,
    /// Median over cycles of replayed events per second (reconnect to last event).
    pub replay_per_s: f64,
    pub replayed: u64,
    /// Replayed answers that were not this session's, out of order, or missing.
    pub wrong: u64,
    pub missing: u64,
    pub error: Option<String>,
}

struct Stream {
    reader: SseReader,
    _conn: Conn,
}

async fn attach(url: &Url, last: Option<&str>) -> anyhow::Result<Stream> {
    let mut conn = http::connect(url.addr, None).await?;
    let headers: Vec<(&str, &str)> = last.map(|l| ("last-event-id", l)).into_iter().collect();
    let resp = conn.send(http::get_sse(url, &headers)).await?;
    if !resp.status().is_success() {
        bail!("GET answered {}", resp.status());
    }
    Ok(Stream { reader: SseReader::new(resp), _conn: conn })
}

/// The next `message` event: (id, data).
async fn next_message(s: &mut Stream) -> anyhow::Result<(String, String)> {
    loop {
        match s.reader.next_event().await? {
            Some(ev) if matches!(ev.event.as_deref(), None | Some("message")) && !ev.data.is_empty() => {
                return Ok((ev.id.unwrap_or_default(), ev.data))
            }
            Some(_) => continue,
            None => bail!("the stream ended"),
        }
    }
}

pub async fn run(o: &Opts) -> Outcome {
    let mut out = Outcome::default();
    let mut firsts = Vec::new();
    let mut rates = Vec::new();
    for _ in 0..o.cycles {
        match cycle(o, &mut out).await {
            Ok((first, rate)) => {
                firsts.push(first.as_nanos() as u64);
                rates.push(rate);
                out.cycles += 1;
            }
            Err(e) => {
                out.error = Some(format!("{e:#}"));
                break;
            }
        }
    }
    firsts.sort_unstable();
    out.first_p50_ms = percentile(&firsts, 50.0) as f64 / 1e6;
    out.first_p99_ms = percentile(&firsts, 99.0) as f64 / 1e6;
    out.first_max_ms = firsts.last().copied().unwrap_or(0) as f64 / 1e6;
    rates.sort_by(f64::total_cmp);
    out.replay_per_s = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
    out
}

/// One resume on a fresh session (so every cycle starts from the same state): returns the
/// time to the first replayed event and the replay rate.
async fn cycle(o: &Opts, out: &mut Outcome) -> anyhow::Result<(Duration, f64)> {
    let limit = Duration::from_secs(10);
    let mut s = attach(&o.url, None).await?;
    let endpoint = timeout(limit, async {
        loop {
            match s.reader.next_event().await? {
                Some(ev) if ev.event.as_deref() == Some("endpoint") => return o.url.join(ev.data.trim()),
                Some(_) => continue,
                None => bail!("the stream ended before the endpoint event"),
            }
        }
    })
    .await
    .map_err(|_| anyhow!("no endpoint event"))??;
    let mut post = http::connect(endpoint.addr, None).await?;
    let send = async |post: &mut Conn, body: Vec<u8>| -> anyhow::Result<()> {
        let resp = post.send(http::post(&endpoint, body, &[])).await?;
        let status = resp.status();
        http::body_bytes(resp, limit).await?;
        if !status.is_success() {
            bail!("POST answered {status}");
        }
        Ok(())
    };
    send(&mut post, mcp::initialize(1)).await?;
    let (last, init) = timeout(limit, next_message(&mut s)).await.map_err(|_| anyhow!("no initialize answer"))??;
    if mcp::check(init.as_bytes(), 1, "") != Verdict::Ok {
        bail!("unexpected initialize answer: {init}");
    }
    send(&mut post, mcp::initialized()).await?;
    drop(s);
    let base = 2u64;
    for n in 0..o.events as u64 {
        let want = mcp::payload("resume", base + n, o.size);
        send(&mut post, mcp::call(base + n, &o.tool, &want)).await?;
    }
    tokio::time::sleep(o.settle).await;
    let t0 = Instant::now();
    let mut s = attach(&o.url, Some(&last)).await?;
    let mut first = None;
    let mut got = 0u64;
    let replay = async {
        for n in 0..o.events as u64 {
            let (_, data) = next_message(&mut s).await?;
            first.get_or_insert_with(|| t0.elapsed());
            let want = mcp::payload("resume", base + n, o.size);
            if mcp::check(data.as_bytes(), base + n, &want) != Verdict::Ok {
                out.wrong += 1;
            }
            got += 1;
        }
        anyhow::Ok(())
    };
    let r = timeout(limit, replay).await;
    let total = t0.elapsed();
    out.missing += o.events as u64 - got;
    out.replayed += got;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => bail!("replay of {} events not complete within {limit:?}", o.events),
    }
    let first = first.ok_or_else(|| anyhow!("nothing replayed"))?;
    Ok((first, got as f64 / total.as_secs_f64()))
}
