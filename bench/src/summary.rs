//! The report's sections that compare numbers: the machine, throughput against the
//! baselines, peers side by side, and the targets with a verdict each.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::idle;
use crate::report::{self, ratio, thousands, us};
use crate::resume;
use crate::stats::{self, Point};

/// The transport label of the bridge's 2026-07-28 (stateless) rows.
pub(crate) const STATELESS: &str = "stateless (2026-07-28)";
/// The target label of the relay floor (`relay.rs`).
pub(crate) const RELAY: &str = "relay floor (hyper + child, no hand-off)";
/// The transport label of the bridge's rows on one child shared by every session.
pub(crate) const SHARED: &str = "streamable, JSON answers, one shared child";
/// Every transport the bridge's throughput rows are measured on, in the tables' order.
const BRIDGE_TRANSPORTS: [&str; 5] = ["sse", "streamable, SSE answers", "streamable, JSON answers", SHARED, STATELESS];

/// One throughput series: who, over what, and the points per session count.
pub(crate) struct Series {
    pub(crate) target: String,
    pub(crate) transport: String,
    /// Counts toward the checks (the bridge and the baselines; peers are only reported).
    pub(crate) checked: bool,
    pub(crate) points: BTreeMap<usize, Vec<Point>>,
}

impl Series {
    pub(crate) fn median(&self, k: usize) -> Option<Point> {
        self.points.get(&k).map(|p| stats::median(p))
    }
}

pub(crate) fn machine(nofile: u64) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|l| l.trim_start_matches([' ', '\t', ':'])).unwrap_or("?");
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or("?".to_string(), |k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "Machine: {cpus} CPUs ({model}), {mem} RAM, Linux {}, open-file limit {nofile}. Load average at start: {} (other engineers build and test on the same cores; numbers are medians of repeats).\n",
        kernel.trim(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

pub(crate) fn write_throughput(
    doc: &mut String,
    series: &[Series],
    sessions: &[usize],
    duration: std::time::Duration,
    repeat: usize,
) -> anyhow::Result<()> {
    writeln!(doc, "## Throughput and latency\n")?;
    writeln!(
        doc,
        "K sessions, each sending sequential `tools/call` echo requests with a 100-byte message for {} (after set-up), median of {} runs; runs of the different targets are interleaved. Latency is from writing the request to reading the matching answer. A wrong-session delivery is any answer with another session's payload or an id not in flight.\n",
        humantime::format_duration(duration),
        repeat
    )?;
    writeln!(doc, "{CPU_NOTE} CPU % of a core is that CPU time over the window's wall time.\n")?;
    if series.iter().any(|x| x.transport == STATELESS) {
        writeln!(doc, "The {STATELESS} rows send the same requests without initialize or a session: every POST carries `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` and `params._meta` (version, capabilities, clientInfo), and the bridge serves it on a backing session from its idle pool (one pool key for all K workers: same principal, clientInfo and capabilities). Each answer must carry the request's id, the worker's tag and `resultType: \"complete\"`.\n")?;
    }
    writeln!(doc, "{}", report::throughput_header())?;
    for &k in sessions {
        for x in series {
            if let Some(m) = x.median(k) {
                writeln!(doc, "{}", report::throughput_row(k, &x.target, &x.transport, &m))?;
            }
        }
    }
    writeln!(doc)?;
    let get = |t: &str, tr: &str, k: usize| series.iter().find(|x| x.target == t && x.transport == tr).and_then(|x| x.median(k));
    writeln!(doc, "### The bridge against the baselines\n")?;
    writeln!(doc, "| sessions | bridge transport | ÷ stdio (no bridge) | ÷ HTTP ceiling | added p50 µs over stdio | added p99 µs over stdio |\n|---:|---|---:|---:|---:|---:|")?;
    for &k in sessions {
        let (Some(stdio), Some(ceil)) =
            (get("stdio, no bridge", "stdio", k), get("HTTP ceiling (bare hyper)", "streamable, JSON answers", k))
        else {
            continue;
        };
        for tr in BRIDGE_TRANSPORTS {
            if let Some(b) = get("mcp-bridge", tr, k) {
                writeln!(
                    doc,
                    "| {k} | {tr} | {} | {} | {} | {} |",
                    ratio(b.rps, stdio.rps),
                    ratio(b.rps, ceil.rps),
                    us(b.p50_us - stdio.p50_us),
                    us(b.p99_us - stdio.p99_us)
                )?;
            }
        }
    }
    writeln!(doc)?;
    Ok(())
}

pub(crate) fn write_peers(
    doc: &mut String,
    series: &[Series],
    rows: &[(String, String, String, Point)],
    notes: &[String],
    k: usize,
) -> anyhow::Result<()> {
    writeln!(doc, "## Peers side by side at {k} sessions\n")?;
    writeln!(doc, "Each peer fronts the same `mcp-echo-server`, bound to 127.0.0.1, driven by the same generator; peers run with request logging off where they have a switch (generous to them), the bridge with its default `info` logs. The req/s ratio column is mcp-bridge over the same transport (Streamable: the bridge's default SSE answers) ÷ the peer; the CPU ratio is mcp-bridge's CPU µs/req over that same transport ÷ the peer's (below 1: the bridge spends less per request). {CPU_NOTE}\n")?;
    writeln!(doc, "| peer | version | transport | req/s | p50 µs | p99 µs | max µs | errors | wrong-session | CPU µs/req | CPU % of a core | mcp-bridge ÷ peer, req/s | mcp-bridge ÷ peer, CPU µs/req |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let bridge = |tr: &str| {
        let t = if tr == "sse" { "sse" } else { "streamable, SSE answers" };
        series.iter().find(|x| x.target == "mcp-bridge" && x.transport == t).and_then(|x| x.median(k))
    };
    for tr in ["sse", "streamable, SSE answers", "streamable, JSON answers"] {
        if let Some(b) = series.iter().find(|x| x.target == "mcp-bridge" && x.transport == tr).and_then(|x| x.median(k)) {
            writeln!(
                doc,
                "| **mcp-bridge** | this run | {tr} | {} | {} | {} | {} | {} | {} | {} | {} | 1.00× | 1.00× |",
                thousands(b.rps),
                us(b.p50_us),
                us(b.p99_us),
                us(b.max_us),
                b.errors,
                b.wrong,
                report::cpu_us(&b),
                report::cpu_pct(&b)
            )?;
        }
    }
    for (name, version, tr, p) in rows {
        let r = bridge(tr).map_or("–".to_string(), |b| ratio(b.rps, p.rps));
        let c = bridge(tr).map_or("–".to_string(), |b| cpu_ratio(&b, p));
        writeln!(
            doc,
            "| {name} | {version} | {tr} | {} | {} | {} | {} | {} | {} | {} | {} | {r} | {c} |",
            thousands(p.rps),
            us(p.p50_us),
            us(p.p99_us),
            us(p.max_us),
            p.errors,
            p.wrong,
            report::cpu_us(p),
            report::cpu_pct(p)
        )?;
    }
    writeln!(doc)?;
    // Every bridge transport against every peer row, on CPU per request.
    let ours: Vec<(&str, Point)> = BRIDGE_TRANSPORTS
        .into_iter()
        .filter_map(|tr| {
            series.iter().find(|x| x.target == "mcp-bridge" && x.transport == tr).and_then(|x| x.median(k)).map(|p| (tr, p))
        })
        .collect();
    if !ours.is_empty() && !rows.is_empty() {
        writeln!(doc, "### CPU per request at {k} sessions: mcp-bridge ÷ peer\n")?;
        writeln!(doc, "Each cell is the bridge's CPU µs/req on the column's transport ÷ the row's; the issue's target is ≤ 0.4× the Rust peer.\n")?;
        let head: Vec<String> = ours.iter().map(|(tr, p)| format!("mcp-bridge {tr} ({} µs)", report::cpu_us(p))).collect();
        writeln!(doc, "| peer | transport | peer CPU µs/req | {} |", head.join(" | "))?;
        writeln!(doc, "|---|---|---:|{}", "---:|".repeat(ours.len()))?;
        for (name, _, tr, p) in rows {
            let cells: Vec<String> = ours.iter().map(|(_, b)| cpu_ratio(b, p)).collect();
            writeln!(doc, "| {name} | {tr} | {} | {} |", report::cpu_us(p), cells.join(" | "))?;
        }
        writeln!(doc)?;
    }
    for (name, _, tr, p) in rows {
        if !p.samples.is_empty() {
            writeln!(doc, "- {name} ({tr}) errors, first: {}", p.samples.join(" | ").chars().take(300).collect::<String>())?;
        }
    }
    for n in notes {
        writeln!(doc, "- {n}")?;
    }
    writeln!(doc)?;
    Ok(())
}

/// How the CPU columns are measured, for the tables that show them.
pub(crate) const CPU_NOTE: &str = "CPU is user + system time of the target's whole process tree (the target and all its live descendants, found by /proc ppid links at the window's start and end; children it waited for inside the window count through its cutime/cstime), never the generator's, over the measured window, divided by the requests answered in it; clock-tick (10 ms) resolution per process. For the stdio baseline the tree is the echo children the generator spawned.";

/// mcp-bridge's CPU µs/req ÷ the other's, or "–" when either was not metered.
fn cpu_ratio(bridge: &Point, other: &Point) -> String {
    match (&bridge.cost, &other.cost) {
        (Some(b), Some(o)) => ratio(b.cpu_us, o.cpu_us),
        _ => "–".to_string(),
    }
}

/// The `perf stat`-style table: syscalls and context switches per request over one window.
pub(crate) fn write_syscalls(
    doc: &mut String,
    series: &[Series],
    peers: &[(String, String, String, Point)],
    rows: &[(String, String, String, Point)],
    k: usize,
    duration: std::time::Duration,
) -> anyhow::Result<()> {
    writeln!(doc, "## Syscalls and context switches per request at {k} sessions\n")?;
    writeln!(doc, "A separate pass (the same workload, {}, median of repeats) with `perf stat -e raw_syscalls:sys_enter -p PIDS` attached to the target's process tree (every syscall of every thread; perf follows threads and children created later); its window starts after perf's start-up and ends 0.5 s before the run's, and the count is divided by the run's rate × that window. Context switches are the sums of `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` from /proc/PID/task/*/status over the tree's threads, and read+write syscalls are /proc/PID/io syscr + syscw (read- and write-family calls only), both over the run's window; a thread or child that exits inside the window is not counted by these two. perf's tracing slows the target, so this pass's req/s is lower than the main table's; the CPU µs/req column is the main table's (no perf attached).\n", humantime::format_duration(duration))?;
    writeln!(doc, "| target | version | transport | req/s (this pass) | syscalls/req (perf, all) | read+write syscalls/req (/proc io) | voluntary ctx switches/req | involuntary ctx switches/req | CPU µs/req (main table) |\n|---|---|---|---:|---:|---:|---:|---:|---:|")?;
    for (name, version, tr, p) in rows {
        let main = if name == "mcp-bridge" {
            series.iter().find(|x| x.target == "mcp-bridge" && x.transport == *tr).and_then(|x| x.median(k))
        } else {
            peers.iter().find(|x| x.0 == *name && x.2 == *tr).map(|x| x.3.clone())
        };
        let c = p.cost.as_ref();
        writeln!(
            doc,
            "| {name} | {version} | {tr} | {} | {} | {} | {} | {} | {} |",
            thousands(p.rps),
            report::per_req(c.and_then(|c| c.syscalls)),
            report::per_req(c.map(|c| c.rw_syscalls)),
            report::per_req(c.map(|c| c.voluntary)),
            report::per_req(c.map(|c| c.involuntary)),
            main.as_ref().map_or("–".to_string(), report::cpu_us)
        )?;
    }
    writeln!(doc)?;
    for (name, _, tr, p) in rows {
        if let Some(e) = p.cost.as_ref().and_then(|c| c.perf_error.as_ref()) {
            writeln!(doc, "- {name} ({tr}): perf gave no count: {e}")?;
        }
    }
    writeln!(doc)?;
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

pub(crate) fn write_targets(
    doc: &mut String,
    series: &[Series],
    peers: &[(String, String, String, Point)],
    idle: &[idle::Outcome],
    resume: Option<&resume::Outcome>,
    k: usize,
) -> anyhow::Result<()> {
    writeln!(doc, "## Targets (issue 8)\n\n| target | goal | measured | verdict |\n|---|---|---|---|")?;
    let get = |t: &str, tr: &str, k: usize| series.iter().find(|x| x.target == t && x.transport == tr).and_then(|x| x.median(k));
    let best_bridge = ["sse", "streamable, SSE answers", "streamable, JSON answers"]
        .iter()
        .filter_map(|tr| get("mcp-bridge", tr, k).map(|p| (tr.to_string(), p)))
        .max_by(|a, b| a.1.rps.total_cmp(&b.1.rps));
    if let Some((btr, b)) = &best_bridge {
        // As issue 8 counts them: no wrong-session delivery, no error, and not the Rust gateway,
        // which loses progress notifications and server-to-client requests (not measured here).
        let correct = peers
            .iter()
            .filter(|(name, _, _, p)| !name.starts_with("Rust mcp-proxy") && p.wrong == 0 && p.errors == 0 && p.requests > 0);
        if let Some((name, _, tr, p)) = correct.max_by(|a, b| a.3.rps.total_cmp(&b.3.rps)) {
            let r = b.rps / p.rps;
            writeln!(doc, "| throughput at {k} sessions vs the fastest correct peer | ≥ 10× | {:.1}× ({} req/s {btr} vs {name} {tr} {}) | {} |", r, thousands(b.rps), thousands(p.rps), verdict(r >= 10.0))?;
        }
        if let Some((_, _, tr, p)) =
            peers.iter().filter(|x| x.0.starts_with("Rust mcp-proxy")).max_by(|a, b| a.3.rps.total_cmp(&b.3.rps))
        {
            let r = b.rps / p.rps;
            writeln!(
                doc,
                "| throughput at {k} sessions vs the Rust gateway | ≥ 3× | {:.1}× ({} vs {} req/s, {tr}) | {} |",
                r,
                thousands(b.rps),
                thousands(p.rps),
                verdict(r >= 3.0)
            )?;
        }
        if let Some(c) = get("HTTP ceiling (bare hyper)", "streamable, JSON answers", k) {
            let r = b.rps / c.rps;
            writeln!(
                doc,
                "| throughput at {k} sessions vs the HTTP ceiling | ≥ 50% | {:.0}% ({} vs {} req/s) | {} |",
                r * 100.0,
                thousands(b.rps),
                thousands(c.rps),
                verdict(r >= 0.5)
            )?;
        }
    }
    // Issue 16: CPU per request on every transport, alone and against the Rust peer's builds.
    let cpu: Vec<(&str, f64)> = BRIDGE_TRANSPORTS
        .into_iter()
        .filter_map(|tr| get("mcp-bridge", tr, k).and_then(|p| p.cost).map(|c| (tr, c.cpu_us)))
        .collect();
    for (tr, c) in &cpu {
        writeln!(doc, "| CPU per request at {k} sessions, {tr} (issue 16) | ≤ 25 µs | {c:.1} µs | {} |", verdict(*c <= 25.0))?;
    }
    // What the thinnest relay to the same child costs in the same run: the bound under the target.
    if let Some(c) = get(RELAY, "streamable, JSON answers", k).and_then(|p| p.cost) {
        writeln!(
            doc,
            "| the relay floor at {k} sessions: least CPU per request of an HTTP relay to this child (issue 16) | measured | {:.1} µs | bound |",
            c.cpu_us
        )?;
    }
    if let Some((worst_tr, worst)) = cpu.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        for (name, _, tr, p) in peers.iter().filter(|x| x.0.starts_with("Rust mcp-proxy")) {
            if let Some(c) = &p.cost {
                let r = worst / c.cpu_us;
                writeln!(
                    doc,
                    "| CPU per request at {k} sessions vs {name} (issue 16) | ≤ 0.4× on every transport | {r:.2}× (worst: {worst_tr}, {worst:.1} µs vs {:.1} µs, {tr}) | {} |",
                    c.cpu_us,
                    verdict(r <= 0.4)
                )?;
            }
        }
    }
    if let Some(stdio) = get("stdio, no bridge", "stdio", 1) {
        for tr in ["sse", "streamable, SSE answers", "streamable, JSON answers"] {
            if let Some(b) = get("mcp-bridge", tr, 1) {
                let (d50, d99) = (b.p50_us - stdio.p50_us, b.p99_us - stdio.p99_us);
                writeln!(
                    doc,
                    "| added latency at 1 session, {tr} | p50 < 100 µs, p99 < 1 ms | p50 +{} µs, p99 +{} µs | {} |",
                    us(d50),
                    us(d99),
                    verdict(d50 < 100.0 && d99 < 1000.0)
                )?;
            }
        }
    }
    if let Some(r) = idle.iter().max_by_key(|r| r.opened) {
        let why = if r.requested > r.opened { " (clamped by the open-file limit)" } else { "" };
        writeln!(
            doc,
            "| idle SSE streams held | 100,000 | {}{why} | {} |",
            thousands(r.opened as f64),
            verdict(r.opened >= 100_000)
        )?;
        writeln!(
            doc,
            "| bridge RSS per idle stream | < 10 KiB | {:.1} KiB at {} streams | {} |",
            r.kib_per_stream(),
            r.opened,
            verdict(r.kib_per_stream() < 10.0)
        )?;
        writeln!(doc, "| dropped idle streams | 0 | {} | {} |", r.drops, verdict(r.drops == 0))?;
        writeln!(doc, "| heartbeat lateness p99 | < 1 s | {:.1} ms | {} |", r.late_p99_ms, verdict(r.late_p99_ms < 1000.0))?;
    }
    if let Some(r) = resume {
        writeln!(
            doc,
            "| resume to first replayed event, p99 | < 10 ms | {:.2} ms over {} reconnects | {} |",
            r.first_p99_ms,
            r.cycles,
            verdict(r.first_p99_ms < 10.0 && r.cycles > 0 && r.error.is_none())
        )?;
    }
    writeln!(
        doc,
        "| forwarded request overhead (cluster) | < 1 ms p50 | not measured by this harness yet (cluster forwarding through Redis is the next workload) | – |\n"
    )?;
    Ok(())
}
