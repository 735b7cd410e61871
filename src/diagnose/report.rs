//! What `diagnose` learned about one stream, and what it means: the timeline of what arrived,
//! how the stream ended, and a verdict in plain words. Pure (no I/O), so the verdict logic is
//! unit-tested over recorded timelines.

use std::fmt::Write as _;
use std::time::Duration;

/// One thing that arrived on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// A `retry:` hint (milliseconds), in an event of its own.
    Retry(u64),
    /// The legacy transport's `endpoint` event, with the message URI it announced.
    Endpoint(String),
    /// A JSON-RPC message event; the label says what it was (`response to ping`, a method).
    Message(String),
    /// `: heartbeat` or `event: heartbeat`.
    Heartbeat,
    /// Any other comment line.
    Comment(String),
    /// Any other event (a priming event, an unknown name).
    Other(String),
}

impl Arrival {
    /// The row label; consecutive arrivals with the same label collapse into one row.
    pub(super) fn label(&self) -> String {
        match self {
            Arrival::Retry(ms) => format!("retry hint {ms} ms"),
            Arrival::Endpoint(uri) => format!("endpoint {uri}"),
            Arrival::Message(what) => format!("message: {what}"),
            Arrival::Heartbeat => "heartbeat".into(),
            Arrival::Comment(c) => format!("comment `: {c}`"),
            Arrival::Other(what) => what.clone(),
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Arrival::Retry(_) => "retry",
            Arrival::Endpoint(_) => "endpoint",
            Arrival::Message(_) => "message",
            Arrival::Heartbeat => "heartbeat",
            Arrival::Comment(_) => "comment",
            Arrival::Other(_) => "event",
        }
    }
}

/// An arrival and when it came, measured from sending the GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub at: Duration,
    pub what: Arrival,
}

/// How the stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Still up when the duration ran out.
    Lasted,
    /// The body ended cleanly (a final chunk): someone closed it on purpose.
    Eof,
    /// The connection was reset or the body broke off.
    Error(String),
    /// An HTTP error status instead of a stream (with the start of the body).
    Status(u16, String),
    /// No connection, or the request could not be sent.
    Connect(String),
}

/// Pings sent during an `--mcp` run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pings {
    pub sent: u32,
    pub answered: u32,
    pub slowest: Option<Duration>,
}

/// Everything one run recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub url: String,
    /// `stream`, `sse` (legacy MCP handshake) or `streamable` (MCP handshake).
    pub mode: &'static str,
    /// The duration asked for.
    pub duration: Duration,
    /// How long the stream was up (the duration, if it lasted).
    pub lasted: Duration,
    pub status: Option<u16>,
    /// Response headers worth showing (content type, buffering, encoding).
    pub headers: Vec<(String, String)>,
    pub records: Vec<Record>,
    pub end: End,
    pub pings: Option<Pings>,
    /// Problems along the way that did not end the stream (a failed POST, …).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerdictKind {
    StayedUp,
    IdleCut,
    Capped,
    Closed,
    HttpError,
    ConnectFailed,
}

impl VerdictKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            VerdictKind::StayedUp => "stayed_up",
            VerdictKind::IdleCut => "idle_cut",
            VerdictKind::Capped => "capped",
            VerdictKind::Closed => "closed",
            VerdictKind::HttpError => "http_error",
            VerdictKind::ConnectFailed => "connect_failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub kind: VerdictKind,
    pub text: String,
}

/// Gaps shorter than this are one burst (an endpoint right after the retry hint).
const BURST: Duration = Duration::from_millis(200);

pub(super) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

impl Report {
    pub(crate) fn heartbeats(&self) -> usize {
        self.records.iter().filter(|r| r.what == Arrival::Heartbeat).count()
    }

    pub(crate) fn messages(&self) -> usize {
        self.records.iter().filter(|r| matches!(r.what, Arrival::Message(_))).count()
    }

    /// The typical gap before a heartbeat: the bridge's idle interval as seen by the client.
    pub(crate) fn heartbeat_every(&self) -> Option<Duration> {
        let gaps = self.records.windows(2).filter(|w| w[1].what == Arrival::Heartbeat).map(|w| w[1].at - w[0].at).collect();
        median(gaps)
    }

    /// The typical gap between arrivals of any kind, ignoring bursts: how often bytes flow.
    pub(crate) fn cadence(&self) -> Option<Duration> {
        let gaps = self.records.windows(2).map(|w| w[1].at - w[0].at).filter(|g| *g >= BURST).collect();
        median(gaps)
    }

    /// Silence from the last arrival (or the request) to the end.
    pub(crate) fn final_silence(&self) -> Duration {
        self.lasted.saturating_sub(self.records.last().map_or(Duration::ZERO, |r| r.at))
    }

    /// The longest silence and when it began, the stretch up to the end included.
    pub(crate) fn longest_silence(&self) -> (Duration, Duration) {
        longest_gap(&self.records, self.lasted)
    }
}

/// The longest gap between arrivals (from the request, up to `until`) and when it began.
pub(crate) fn longest_gap(records: &[Record], until: Duration) -> (Duration, Duration) {
    let mut best = (Duration::ZERO, Duration::ZERO);
    let mut prev = Duration::ZERO;
    for at in records.iter().map(|r| r.at).chain(std::iter::once(until)) {
        let gap = at.saturating_sub(prev);
        if gap > best.0 {
            best = (gap, prev);
        }
        prev = prev.max(at);
    }
    best
}

/// What the run means, in plain words.
pub(crate) fn verdict(r: &Report) -> Verdict {
    let v = |kind, text: String| Verdict { kind, text };
    let flow = match (r.heartbeat_every(), r.cadence()) {
        (Some(h), _) => Some(("heartbeats", h)),
        (None, Some(c)) => Some(("data", c)),
        (None, None) => None,
    };
    match &r.end {
        End::Connect(e) => v(VerdictKind::ConnectFailed, format!("could not reach the server: {e}")),
        End::Status(code, body) => http_error(r, *code, body),
        End::Lasted => with_pings(stayed_up(r, flow), r),
        End::Eof | End::Error(_) => with_pings(broke_off(r, flow, &how_it_ended(&r.end)), r),
    }
}

/// The server answered something other than a 2xx event stream.
fn http_error(r: &Report, code: u16, body: &str) -> Verdict {
    let mut s = format!("the server answered HTTP {code} instead of an event stream");
    if !body.is_empty() {
        let _ = write!(s, ": {body}");
    }
    if r.mode == "stream" && r.url.contains("/mcp") {
        s.push_str(" (a Streamable HTTP endpoint needs a session first: add --mcp)");
    }
    Verdict { kind: VerdictKind::HttpError, text: s }
}

/// The stream lasted the whole duration: say what kept it flowing, if anything.
fn stayed_up(r: &Report, flow: Option<(&str, Duration)>) -> Verdict {
    let mut s = format!("stayed up for the full {}", secs(r.duration));
    match flow {
        Some(("heartbeats", h)) => {
            let _ = write!(s, "; heartbeats every {}", secs(h));
        }
        Some((_, c)) => {
            let _ = write!(s, "; no heartbeats, but data arrived about every {}", secs(c));
        }
        None => {
            let (gap, _) = r.longest_silence();
            let _ = write!(
                s,
                "; nothing arrived after the start, so no layer on this path cuts idle streams within {} (a layer with a shorter idle timeout would, with heartbeats off)",
                secs(gap)
            );
        }
    }
    Verdict { kind: VerdictKind::StayedUp, text: s }
}

/// How a stream that ended early was closed, from its end (`Eof` or `Error` only).
fn how_it_ended(end: &End) -> String {
    match end {
        End::Eof => "the stream was closed cleanly (a final chunk), so something chose to end it".to_string(),
        End::Error(e) if e.contains("EOF") => {
            "the connection was closed mid-stream without a final chunk, as a proxy does when it gives up".to_string()
        }
        End::Error(e) if e.contains("reset") => "the connection was reset".to_string(),
        End::Error(e) => format!("the connection broke off ({e})"),
        _ => unreachable!("handled above"),
    }
}

/// The stream ended early: capped while flowing, cut after a silence, or closed on purpose.
fn broke_off(r: &Report, flow: Option<(&str, Duration)>, how: &str) -> Verdict {
    let (t, silence) = (r.lasted, r.final_silence());
    let mut text = String::new();
    let flowing = flow.is_some_and(|(_, every)| silence <= every.mul_f64(1.5) + Duration::from_secs(1));
    let kind = if flowing {
        let (what, every) = flow.expect("flowing implies a cadence");
        let _ = write!(
            text,
            "cut at {} while {what} arrived every {}: a layer caps total stream time at about {:.0} s; {how}",
            secs(t),
            secs(every),
            t.as_secs_f64()
        );
        VerdictKind::Capped
    } else if silence >= Duration::from_secs(1) {
        idle_cut(r, &mut text, how);
        VerdictKind::IdleCut
    } else {
        let _ = write!(
            text,
            "ended at {} right after data arrived: the server or a layer closed it on purpose, not an idle timer; {how}",
            secs(t)
        );
        VerdictKind::Closed
    };
    Verdict { kind, text }
}

/// Writes the verdict on a stream cut after a silence: the idle timeout and why heartbeats did not help.
fn idle_cut(r: &Report, text: &mut String, how: &str) {
    let (t, silence) = (r.lasted, r.final_silence());
    let _ = write!(
        text,
        "cut at {} after {} of silence: a layer on the path has an idle timeout of about {:.0} s (idle cut near {:.0} s); ",
        secs(t),
        secs(silence),
        silence.as_secs_f64(),
        silence.as_secs_f64()
    );
    if r.heartbeats() == 0 {
        let _ = write!(
            text,
            "the bridge's heartbeat was not reaching you (heartbeats off, or an interval longer than that timeout: keep it well under {:.0} s)",
            silence.as_secs_f64()
        );
    } else {
        let every = r.heartbeat_every().map_or(String::new(), |h| format!(" every {}", secs(h)));
        let _ = write!(text, "heartbeats had arrived{every}, then stopped {} before the cut", secs(silence));
    }
    let _ = write!(text, "; {how}");
}

fn with_pings(mut v: Verdict, r: &Report) -> Verdict {
    if let Some(p) = &r.pings {
        if p.sent > 0 && p.answered < p.sent {
            let _ = write!(v.text, "; only {} of {} pings were answered", p.answered, p.sent);
        }
    }
    v
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A legacy stream: retry hint and endpoint at once, then heartbeats every `every` ms
    /// until `until` ms, ending at `end_ms` with `end`.
    pub(in crate::diagnose) fn report(every: Option<u64>, until: u64, end_ms: u64, end: End) -> Report {
        let mut records = vec![
            Record { at: ms(3), what: Arrival::Retry(1000) },
            Record { at: ms(3), what: Arrival::Endpoint("/sse/x/message?sessionId=1".into()) },
        ];
        if let Some(every) = every {
            let mut t = every + 3;
            while t <= until {
                records.push(Record { at: ms(t), what: Arrival::Heartbeat });
                t += every;
            }
        }
        Report {
            url: "http://127.0.0.1:1/sse/x".into(),
            mode: "stream",
            duration: ms(600_000),
            lasted: ms(end_ms),
            status: Some(200),
            headers: vec![],
            records,
            end,
            pings: None,
            notes: vec![],
        }
    }

    #[test]
    fn silent_stream_cut_at_30s_is_an_idle_cut() {
        let r = report(
            None,
            0,
            30_010,
            End::Error("error reading a body from connection: unexpected EOF during chunk size line".into()),
        );
        let v = verdict(&r);
        assert_eq!(v.kind, VerdictKind::IdleCut);
        assert!(v.text.starts_with("cut at 30.0 s after 30.0 s of silence"), "{}", v.text);
        assert!(v.text.contains("idle cut near 30 s"), "{}", v.text);
        assert!(v.text.contains("heartbeat was not reaching you") && v.text.contains("keep it well under 30 s"), "{}", v.text);
        assert!(v.text.ends_with("without a final chunk, as a proxy does when it gives up"), "{}", v.text);
    }

    #[test]
    fn cut_while_heartbeats_flow_is_a_cap() {
        let r = report(Some(15_000), 59_000, 60_002, End::Eof);
        let v = verdict(&r);
        assert_eq!(v.kind, VerdictKind::Capped, "{}", v.text);
        assert!(v.text.starts_with("cut at 60.0 s while heartbeats arrived every 15.0 s"), "{}", v.text);
        assert!(v.text.contains("caps total stream time at about 60 s"), "{}", v.text);
    }

    #[test]
    fn full_duration_with_heartbeats_stayed_up() {
        let mut r = report(Some(15_000), 600_000, 600_000, End::Lasted);
        r.pings = Some(Pings { sent: 60, answered: 60, slowest: Some(ms(4)) });
        let v = verdict(&r);
        assert_eq!(v.kind, VerdictKind::StayedUp);
        assert_eq!(v.text, "stayed up for the full 600.0 s; heartbeats every 15.0 s");
        r.pings = Some(Pings { sent: 60, answered: 58, slowest: None });
        assert!(verdict(&r).text.ends_with("only 58 of 60 pings were answered"));
    }

    #[test]
    fn heartbeats_that_stop_then_a_cut_is_idle() {
        // Beats every 2 s up to 10 s, then nothing until a cut at 40 s.
        let r = report(Some(2_000), 10_003, 40_003, End::Error("reset".into()));
        let v = verdict(&r);
        assert_eq!(v.kind, VerdictKind::IdleCut, "{}", v.text);
        assert!(v.text.contains("idle cut near 30 s") && v.text.contains("then stopped 30.0 s before the cut"), "{}", v.text);
    }

    #[test]
    fn heartbeat_longer_than_the_idle_timeout_never_arrives() {
        // The note's case: a 30 s beat behind a 30 s idle timer; the cut wins the race.
        let r = report(Some(30_000), 29_000, 30_001, End::Error("reset".into()));
        assert_eq!(r.heartbeats(), 0);
        assert!(verdict(&r).text.contains("idle cut near 30 s"));
    }

    #[test]
    fn clean_close_right_after_data_is_on_purpose() {
        let r = report(None, 0, 200, End::Eof);
        let v = verdict(&r);
        assert_eq!(v.kind, VerdictKind::Closed, "{}", v.text);
        assert!(v.text.contains("closed it on purpose") && v.text.contains("closed cleanly"), "{}", v.text);
    }

    #[test]
    fn http_errors_and_connect_failures() {
        let mut r = report(None, 0, 0, End::Status(400, "Bad Request: Mcp-Session-Id header is required".into()));
        r.url = "http://h/mcp/x".into();
        let v = verdict(&r);
        assert_eq!(v.kind, VerdictKind::HttpError);
        assert!(v.text.contains("HTTP 400") && v.text.contains("add --mcp"), "{}", v.text);
        r.end = End::Connect("connection refused".into());
        assert_eq!(verdict(&r).kind, VerdictKind::ConnectFailed);
    }

    #[test]
    fn longest_silence_counts_the_tail() {
        let r = report(Some(1_000), 3_003, 9_003, End::Eof);
        assert_eq!(r.longest_silence(), (ms(6_000), ms(3_003)));
        assert_eq!(r.cadence(), Some(ms(1_000)));
    }
}
