//! Markdown rows for each workload's results.

use crate::idle;
use crate::resume;
use crate::stats::Point;

pub fn throughput_header() -> String {
    "| sessions | target | transport | req/s | p50 µs | p99 µs | max µs | errors | wrong-session | CPU µs/req | CPU % of a core |\n\
     |---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        .to_string()
}

pub fn throughput_row(sessions: usize, target: &str, transport: &str, p: &Point) -> String {
    format!(
        "| {sessions} | {target} | {transport} | {} | {} | {} | {} | {} | {} | {} | {} |",
        thousands(p.rps),
        us(p.p50_us),
        us(p.p99_us),
        us(p.max_us),
        p.errors,
        p.wrong,
        cpu_us(p),
        cpu_pct(p)
    )
}

/// The tree's CPU µs per request, or "–" when the run was not metered.
pub fn cpu_us(p: &Point) -> String {
    p.cost.as_ref().map_or("–".to_string(), |c| format!("{:.1}", c.cpu_us))
}

pub fn cpu_pct(p: &Point) -> String {
    p.cost.as_ref().map_or("–".to_string(), |c| format!("{:.0}", c.cpu_pct))
}

/// A per-request count with two decimals, or "–".
pub fn per_req(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.2}"))
}

pub fn idle_header() -> String {
    "| streams asked | held | open s | bridge RSS before MiB | RSS held MiB | KiB/stream | RSS at end MiB | CPU % of a core | heartbeats | lateness p50 / p99 / max ms | dropped |\n\
     |---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
        .to_string()
}

pub fn idle_row(o: &idle::Outcome) -> String {
    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    format!(
        "| {} | {} | {:.1} | {} | {} | {:.1} | {} | {:.2} | {} | {:.1} / {:.1} / {:.1} | {} |",
        o.requested,
        o.opened,
        o.open_secs,
        mib(o.rss_before_kib),
        mib(o.rss_open_kib),
        o.kib_per_stream(),
        mib(o.rss_end_kib),
        o.cpu_percent,
        o.heartbeats,
        o.late_p50_ms,
        o.late_p99_ms,
        o.late_max_ms,
        o.drops
    )
}

pub fn resume_header() -> String {
    "| cycles | events replayed per cycle | first replayed event p50 / p99 / max ms | replay events/s (median) | wrong | missing |\n\
     |---:|---:|---|---:|---:|---:|"
        .to_string()
}

pub fn resume_row(o: &resume::Opts, r: &resume::Outcome) -> String {
    format!(
        "| {} | {} | {:.2} / {:.2} / {:.2} | {} | {} | {} |",
        r.cycles,
        o.events,
        r.first_p50_ms,
        r.first_p99_ms,
        r.first_max_ms,
        thousands(r.replay_per_s),
        r.wrong,
        r.missing
    )
}

/// 12345.6 -> "12,346".
pub fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds, without false precision.
pub fn us(v: f64) -> String {
    if v >= 100.0 {
        thousands(v)
    } else {
        format!("{v:.1}")
    }
}

/// a / b as "4.2×", or "–" when b is 0.
pub fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        "–".to_string()
    } else {
        format!("{:.2}×", a / b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(us(42.26), "42.3");
        assert_eq!(us(1234.0), "1,234");
        assert_eq!(ratio(3.0, 2.0), "1.50×");
        assert_eq!(ratio(1.0, 0.0), "–");
        assert_eq!(per_req(Some(2.5)), "2.50");
        assert_eq!(per_req(None), "–");
        assert_eq!(cpu_us(&Point::default()), "–");
    }
}
