//! Rendering a `diagnose` report: the human-readable text (a timeline with runs of heartbeats
//! collapsed and silences marked) and the same facts as one JSON object.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use super::report::{secs, verdict, Arrival, End, Report};

/// A timeline row: a run of arrivals with the same label.
struct Row {
    at: Duration,
    until: Duration,
    count: usize,
    kind: &'static str,
    label: String,
    /// Silence before this row, when it stands out.
    gap_before: Option<Duration>,
}

fn rows(r: &Report) -> Vec<Row> {
    let threshold = r.cadence().map_or(Duration::from_secs(1), |c| c.mul_f64(1.5).max(Duration::from_secs(1)));
    let mut out: Vec<Row> = Vec::new();
    let mut prev = Duration::ZERO;
    for rec in &r.records {
        let gap = rec.at.saturating_sub(prev);
        let label = rec.what.label();
        match out.last_mut() {
            Some(row) if row.label == label && gap < threshold => {
                row.until = rec.at;
                row.count += 1;
            }
            _ => out.push(Row {
                at: rec.at,
                until: rec.at,
                count: 1,
                kind: rec.what.kind(),
                label,
                gap_before: Some(gap).filter(|g| *g >= threshold),
            }),
        }
        prev = rec.at;
    }
    out
}

fn end_text(end: &End) -> (&'static str, String) {
    match end {
        End::Lasted => ("lasted", "still up when the duration ran out".into()),
        End::Eof => ("eof", "clean end of stream (the server or a layer closed it)".into()),
        End::Error(e) => ("error", format!("connection reset or broken off: {e}")),
        End::Status(code, _) => ("http_status", format!("HTTP error status {code}")),
        End::Connect(e) => ("connect", format!("could not connect: {e}")),
    }
}

/// The human-readable report.
pub(crate) fn render_text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "diagnose {} ({}), for up to {}", r.url, r.mode, secs(r.duration));
    if let Some(code) = r.status {
        let h: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(s, "response: HTTP {code}; {}", h.join("; "));
    }
    if let End::Status(..) | End::Connect(_) = r.end {
        let _ = writeln!(s, "ended: {}", end_text(&r.end).1);
        let _ = writeln!(s, "verdict: {}", verdict(r).text);
        return s;
    }
    let _ = writeln!(s, "timeline (seconds since the request):");
    let cadence = r.cadence();
    let threshold = cadence.map_or(Duration::from_secs(1), |c| c.mul_f64(1.5).max(Duration::from_secs(1)));
    for row in rows(r) {
        if let Some(g) = row.gap_before {
            let _ = writeln!(s, "           … {} of silence …", secs(g));
        }
        if row.count == 1 {
            let _ = writeln!(s, "  {:>8.3}  {}", row.at.as_secs_f64(), row.label);
        } else {
            let every = (row.until - row.at) / (row.count as u32 - 1);
            let _ = writeln!(
                s,
                "  {:>8.3}  {} ×{}, about every {}, until {:.3}",
                row.at.as_secs_f64(),
                row.label,
                row.count,
                secs(every),
                row.until.as_secs_f64()
            );
        }
    }
    let tail = r.final_silence();
    if tail >= threshold {
        let _ = writeln!(s, "           … {} of silence …", secs(tail));
    }
    let (_, end) = end_text(&r.end);
    let _ = writeln!(s, "  {:>8.3}  end: {end}", r.lasted.as_secs_f64());
    let (gap, from) = r.longest_silence();
    let _ = writeln!(
        s,
        "lasted: {} of {}; {} message(s), {} heartbeat(s); longest silence {} (from {})",
        secs(r.lasted),
        secs(r.duration),
        r.messages(),
        r.heartbeats(),
        secs(gap),
        secs(from)
    );
    let _ = writeln!(s, "ended: {end}");
    if let Some(p) = &r.pings {
        let slowest = p.slowest.map_or(String::new(), |d| format!(", slowest {} ms", d.as_millis()));
        let _ = writeln!(s, "pings: {} sent, {} answered{slowest}", p.sent, p.answered);
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    let _ = writeln!(s, "verdict: {}", verdict(r).text);
    s
}

/// The same facts as one JSON object.
pub(crate) fn to_json(r: &Report) -> Value {
    let v = verdict(r);
    let (end, end_detail) = end_text(&r.end);
    let (gap, from) = r.longest_silence();
    let timeline: Vec<Value> = rows(r)
        .into_iter()
        .map(|row| {
            json!({
                "at_s": row.at.as_secs_f64(), "until_s": row.until.as_secs_f64(), "count": row.count,
                "kind": row.kind, "label": row.label, "silence_before_s": row.gap_before.map(|g| g.as_secs_f64()),
            })
        })
        .collect();
    json!({
        "url": r.url,
        "mode": r.mode,
        "duration_s": r.duration.as_secs_f64(),
        "lasted_s": r.lasted.as_secs_f64(),
        "status": r.status,
        "headers": r.headers.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
        "end": end,
        "end_detail": end_detail,
        "events": r.records.iter().filter(|x| !matches!(x.what, Arrival::Heartbeat | Arrival::Comment(_))).count(),
        "messages": r.messages(),
        "heartbeats": r.heartbeats(),
        "heartbeat_every_s": r.heartbeat_every().map(|d| d.as_secs_f64()),
        "longest_silence_s": gap.as_secs_f64(),
        "longest_silence_from_s": from.as_secs_f64(),
        "final_silence_s": r.final_silence().as_secs_f64(),
        "pings": r.pings.as_ref().map(|p| json!({
            "sent": p.sent, "answered": p.answered, "slowest_ms": p.slowest.map(|d| d.as_millis() as u64),
        })),
        "notes": r.notes,
        "timeline": timeline,
        "verdict_kind": v.kind.as_str(),
        "verdict": v.text,
    })
}

#[cfg(test)]
mod tests {
    use super::super::report::tests::report;
    use super::*;

    #[test]
    fn timeline_collapses_heartbeat_runs_and_shows_gaps() {
        let r = report(Some(2_000), 20_003, 30_003, End::Error("reset".into()));
        let text = render_text(&r);
        assert!(text.contains("heartbeat ×10, about every 2.0 s, until 20.003"), "{text}");
        assert!(text.contains("… 10.0 s of silence …"), "{text}");
        assert!(text.contains("endpoint /sse/x/message?sessionId=1"), "{text}");
        let j = to_json(&r);
        assert_eq!(j["heartbeats"], 10);
        assert_eq!(j["verdict_kind"], "idle_cut");
        assert_eq!(j["timeline"].as_array().map(Vec::len), Some(3));
        assert_eq!(j["end"], "error");
    }
}
