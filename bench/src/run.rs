//! `mcp-bench run`: the whole benchmark in one command. Starts the bridge, the HTTP ceiling
//! and each installed peer itself (every process in a Drop guard), runs every workload with
//! repeats interleaved, and writes one markdown report with the commands that made it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cost::Tree;
use crate::http::Url;
use crate::idle;
use crate::peers;
use crate::procs::{self, shell_word, Proc};
use crate::report::{self, thousands, us};
use crate::resume;
use crate::stats::{self, Point};
use crate::summary::{self, Series, RELAY, SHARED, STATELESS};
use crate::throughput::{self, Target};

mod plan;
use plan::{bridge_config, check, generator_command, load, metered, perf_pass, slug};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds-long run with tiny N and no peers (for CI): checks that every mode ran and that
    /// no reply reached the wrong session. Asserts no timing.
    #[arg(long)]
    smoke: bool,
    #[arg(long, default_value = "target/release/mcp-bridge")]
    bridge: PathBuf,
    #[arg(long, default_value = "target/release/mcp-echo-server")]
    echo: PathBuf,
    /// Where scripts/bench-peers installed the peers.
    #[arg(long, default_value = "bench/.peers")]
    peers: PathBuf,
    /// The committed peer pins and helpers (listen-loopback.cjs).
    #[arg(long, default_value = "bench/peers")]
    pins: PathBuf,
    #[arg(long)]
    no_peers: bool,
    /// Logs, configs and the report go here.
    #[arg(long, default_value = "target/mcp-bench")]
    work: PathBuf,
    /// The report file (default: WORK/results.md, or WORK/smoke.md with --smoke).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Concurrent sessions per throughput point [1,16,64,256; smoke 1,4].
    #[arg(long, value_delimiter = ',')]
    sessions: Option<Vec<usize>>,
    /// Length of each throughput run [5s; smoke 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Runs per point; the report gives the median [3; smoke 1].
    #[arg(long)]
    repeat: Option<usize>,
    /// Idle SSE stream counts, each on a fresh bridge [10000; smoke 50]. Clamped to the fd limit.
    #[arg(long, value_delimiter = ',')]
    idle_streams: Option<Vec<usize>>,
    /// The heartbeat interval the idle bridge runs with [5s; smoke 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_interval: Option<Duration>,
    /// How long idle streams are watched once all are open [20s; smoke 4s].
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_window: Option<Duration>,
    /// Requests answered while disconnected, replayed per resume cycle [200; smoke 20].
    #[arg(long)]
    resume_events: Option<usize>,
    #[arg(long)]
    resume_cycles: Option<usize>,
    /// Sessions in the peer comparison.
    #[arg(long, default_value_t = 16)]
    peer_sessions: usize,
    /// Phases to leave out: throughput, logging, resume, idle, peers, syscalls (the `perf stat`
    /// pass: mcp-bridge against the Rust peer).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Throughput targets to run [all]: stdio, ceiling, relay, sse, streamable, streamable-json, shared, stateless.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Worker threads of every tokio target (the bridge, the ceiling, the relay floor, the Rust
    /// peer), given to each as `TOKIO_WORKER_THREADS` [unset: tokio's default, one per CPU].
    #[arg(long)]
    worker_threads: Option<std::num::NonZeroUsize>,
}

/// The throughput targets' names for `--only`.
const TARGET_SLUGS: &[&str] = &["stdio", "ceiling", "relay", "sse", "streamable", "streamable-json", "shared", "stateless"];

struct Settings {
    sessions: Vec<usize>,
    duration: Duration,
    repeat: usize,
    idle_streams: Vec<usize>,
    idle_interval: Duration,
    idle_window: Duration,
    resume_events: usize,
    resume_cycles: usize,
    peers: bool,
}

impl Settings {
    fn from(a: &Args) -> Settings {
        let smoke = a.smoke;
        let mut sessions = a.sessions.clone().unwrap_or(if smoke { vec![1, 4] } else { vec![1, 16, 64, 256] });
        let peers = !smoke && !a.no_peers && !a.skip.iter().any(|s| s == "peers");
        if peers && !sessions.contains(&a.peer_sessions) {
            sessions.push(a.peer_sessions);
        }
        Settings {
            sessions,
            duration: a.duration.unwrap_or(Duration::from_secs(if smoke { 1 } else { 5 })),
            repeat: a.repeat.unwrap_or(if smoke { 1 } else { 3 }).max(1),
            idle_streams: a.idle_streams.clone().unwrap_or(if smoke { vec![50] } else { vec![10_000] }),
            idle_interval: a.idle_interval.unwrap_or(Duration::from_secs(if smoke { 1 } else { 5 })),
            idle_window: a.idle_window.unwrap_or(Duration::from_secs(if smoke { 4 } else { 20 })),
            resume_events: a.resume_events.unwrap_or(if smoke { 20 } else { 200 }),
            resume_cycles: a.resume_cycles.unwrap_or(if smoke { 3 } else { 100 }),
            peers,
        }
    }
}

struct Harness {
    work: PathBuf,
    bridge: PathBuf,
    config: PathBuf,
    commands: Vec<String>,
    failures: Vec<String>,
    /// `TOKIO_WORKER_THREADS` for every target started, from `--worker-threads`.
    workers: Option<String>,
}

impl Harness {
    /// `env` and, with `--worker-threads`, `TOKIO_WORKER_THREADS`.
    fn env<'a>(&'a self, env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut all = env.to_vec();
        all.extend(self.workers.as_deref().map(|n| ("TOKIO_WORKER_THREADS", n)));
        all
    }

    fn start_bridge(&mut self, name: &str, extra: &[String], env: &[(&str, &str)]) -> anyhow::Result<(Proc, u16)> {
        let port = procs::free_port()?;
        let mut args = vec!["serve".into(), "--config".into(), self.config.display().to_string()];
        args.extend(["--listen".into(), format!("127.0.0.1:{port}")]);
        args.extend(extra.iter().cloned());
        let log = self.work.join("logs").join(format!("{name}.log"));
        let mut p = Proc::start(name, &self.bridge, &args, &self.env(env), &log)?;
        p.wait_listening(format!("127.0.0.1:{port}").parse()?, Duration::from_secs(20))?;
        self.commands.push(format!("{}    # {name}, stdout to {}", p.command, log.display()));
        Ok((p, port))
    }
}

pub async fn main(a: Args) -> anyhow::Result<()> {
    let s = Settings::from(&a);
    if let Some(bad) = a.only.iter().find(|o| !TARGET_SLUGS.contains(&o.as_str())) {
        bail!("--only {bad}: not a throughput target (one of {})", TARGET_SLUGS.join(", "));
    }
    let skip = |phase: &str| a.skip.iter().any(|x| x == phase);
    std::fs::create_dir_all(a.work.join("logs"))?;
    let work = std::fs::canonicalize(&a.work)?;
    let bridge = std::fs::canonicalize(&a.bridge)
        .with_context(|| format!("{} missing: run `cargo build --release` (scripts/bench does)", a.bridge.display()))?;
    let echo = std::fs::canonicalize(&a.echo)
        .with_context(|| format!("{} missing: run `cargo build --release` (scripts/bench does)", a.echo.display()))?;
    let nofile = procs::raise_nofile();
    let config = work.join("bridge.toml");
    std::fs::write(&config, bridge_config(&echo))?;
    let workers = a.worker_threads.map(|n| n.to_string());
    let mut h = Harness { work: work.clone(), bridge, config, commands: Vec::new(), failures: Vec::new(), workers };
    let invocation: Vec<String> = std::env::args().map(|a| shell_word(&a)).collect();
    h.commands.push(invocation.join(" "));

    let mut doc = String::new();
    let title = if a.smoke { "mcp-bench smoke run" } else { "mcp-bench results" };
    writeln!(doc, "# {title}\n\n{}", summary::machine(nofile))?;
    let workers =
        h.workers.as_deref().map_or("tokio's default (one per CPU)".into(), |n| format!("{n} (`TOKIO_WORKER_THREADS`)"));
    writeln!(doc, "Runtime worker threads of the bridge, the ceiling, the relay floor and the Rust peer: {workers}.\n")?;
    writeln!(doc, "Bridge config (`{}`):\n\n```toml\n{}```\n", h.config.display(), std::fs::read_to_string(&h.config)?)?;

    // ---- throughput and latency: the bridge and both baselines, repeats interleaved
    let mut series: Vec<Series> = Vec::new();
    let mut syscall_rows: Vec<(String, String, String, Point)> = Vec::new();
    if !skip("throughput") {
        let ceiling_port = procs::free_port()?;
        let me = std::env::current_exe()?;
        let ceiling_log = work.join("logs/ceiling.log");
        let mut ceiling = Proc::start(
            "ceiling",
            &me,
            &["ceiling".into(), "--listen".into(), format!("127.0.0.1:{ceiling_port}")],
            &h.env(&[]),
            &ceiling_log,
        )?;
        ceiling.wait_listening(format!("127.0.0.1:{ceiling_port}").parse()?, Duration::from_secs(10))?;
        h.commands.push(format!("{}    # the HTTP ceiling", ceiling.command));
        let relay_port = procs::free_port()?;
        let relay_args = [
            "relay".into(),
            "--listen".into(),
            format!("127.0.0.1:{relay_port}"),
            "--command".into(),
            echo.display().to_string(),
        ];
        let mut relay = Proc::start("relay", &me, &relay_args, &h.env(&[]), &work.join("logs/relay.log"))?;
        relay.wait_listening(format!("127.0.0.1:{relay_port}").parse()?, Duration::from_secs(10))?;
        h.commands.push(format!("{}    # the relay floor", relay.command));
        let (mut bridge, port) = h.start_bridge("bridge", &[], &[])?;
        let b = format!("http://127.0.0.1:{port}");
        // Whose process tree each target's CPU is read from: the bridge (with its echo
        // children), the ceiling, or the echo children the generator spawns for stdio.
        let (bt, ct, rt) = (Tree::Pid(bridge.pid()), Tree::Pid(ceiling.pid()), Tree::Pid(relay.pid()));
        let all = vec![
            ("stdio", "stdio, no bridge", "stdio", Target::Stdio { command: echo.clone(), args: vec![] }, Tree::Sessions),
            (
                "ceiling",
                "HTTP ceiling (bare hyper)",
                "streamable, JSON answers",
                Target::Streamable(Url::parse(&format!("http://127.0.0.1:{ceiling_port}/mcp"))?),
                ct,
            ),
            (
                "relay",
                RELAY,
                "streamable, JSON answers",
                Target::Streamable(Url::parse(&format!("http://127.0.0.1:{relay_port}/mcp"))?),
                rt,
            ),
            ("sse", "mcp-bridge", "sse", Target::Sse(Url::parse(&format!("{b}/sse/echo"))?), bt.clone()),
            (
                "streamable",
                "mcp-bridge",
                "streamable, SSE answers",
                Target::Streamable(Url::parse(&format!("{b}/mcp/echo"))?),
                bt.clone(),
            ),
            (
                "streamable-json",
                "mcp-bridge",
                "streamable, JSON answers",
                Target::Streamable(Url::parse(&format!("{b}/mcp/echo-json"))?),
                bt.clone(),
            ),
            // One child shared by every session (`sharing = "shared"`): how the Rust peer runs
            // its stdio backend, so the like-for-like row against it.
            ("shared", "mcp-bridge", SHARED, Target::Streamable(Url::parse(&format!("{b}/mcp/echo-shared"))?), bt.clone()),
            // The 2026-07-28 revision on the same endpoint: each request served by a backing
            // session from the bridge's idle pool (answered as JSON before the heartbeat is due).
            ("stateless", "mcp-bridge", STATELESS, Target::Stateless(Url::parse(&format!("{b}/mcp/echo"))?), bt.clone()),
        ];
        let targets: Vec<_> = all
            .into_iter()
            .filter(|(slug, ..)| a.only.is_empty() || a.only.iter().any(|o| o == slug))
            .map(|(_, t, tr, target, tree)| (t, tr, target, tree))
            .collect();
        for (t, _, target, _) in &targets {
            h.commands.push(generator_command(target, &s, "echo", t));
        }
        series = targets
            .iter()
            .map(|(t, tr, ..)| Series {
                target: t.to_string(),
                transport: tr.to_string(),
                checked: true,
                points: BTreeMap::new(),
            })
            .collect();
        for &k in &s.sessions {
            for _ in 0..s.repeat {
                for (i, (name, tr, target, tree)) in targets.iter().enumerate() {
                    let load = load(k, s.duration, "echo", metered(tree, false));
                    let p = throughput::run(target, &load).await.point();
                    eprintln!("[mcp-bench] {k:>4} sessions  {name:<26} {tr:<26} {:>9} req/s  p50 {:>7} µs  p99 {:>7} µs  CPU {:>6} µs/req  errors {}  wrong {}", thousands(p.rps), us(p.p50_us), us(p.p99_us), report::cpu_us(&p), p.errors, p.wrong);
                    series[i].points.entry(k).or_default().push(p);
                }
                if !bridge.alive() {
                    bail!("the bridge died during the throughput runs; see {}", bridge.log.display());
                }
                if !ceiling.alive() {
                    bail!("the ceiling server died; see {}", ceiling.log.display());
                }
                if !relay.alive() {
                    bail!("the relay floor died; see {}", relay.log.display());
                }
            }
        }
        // The `perf stat` pass: the bridge's legacy SSE and Streamable JSON answers, at the peer
        // comparison's session count, with every syscall counted (the Rust peer gets the same
        // pass below).
        if !a.smoke && !skip("syscalls") {
            let k = a.peer_sessions;
            for (_, tr, target, tree) in
                targets.iter().filter(|(t, tr, ..)| *t == "mcp-bridge" && (*tr == "sse" || *tr == "streamable, JSON answers"))
            {
                let m = perf_pass(target, k, &s, "echo", tree).await;
                eprintln!(
                    "[mcp-bench] perf pass mcp-bridge {tr}: {} syscalls/req",
                    report::per_req(m.cost.as_ref().and_then(|c| c.syscalls))
                );
                syscall_rows.push(("mcp-bridge".to_string(), "this run".to_string(), tr.to_string(), m));
            }
        }
        drop(bridge);
        drop(ceiling);
        drop(relay);
        summary::write_throughput(&mut doc, &series, &s.sessions, s.duration, s.repeat)?;
    }

    // ---- what the bridge's per-stream log lines cost
    if !a.smoke && !skip("logging") && !skip("throughput") {
        let k = a.peer_sessions;
        let (mut bridge, port) = h.start_bridge("bridge-quiet", &[], &[("MCP_BRIDGE_LOG", "warn")])?;
        let b = format!("http://127.0.0.1:{port}");
        let tree = Tree::Pid(bridge.pid());
        let targets = [
            ("sse", Target::Sse(Url::parse(&format!("{b}/sse/echo"))?)),
            ("streamable, SSE answers", Target::Streamable(Url::parse(&format!("{b}/mcp/echo"))?)),
            ("streamable, JSON answers", Target::Streamable(Url::parse(&format!("{b}/mcp/echo-json"))?)),
        ];
        writeln!(doc, "### The cost of logging: mcp-bridge at {k} sessions with `MCP_BRIDGE_LOG=warn`\n")?;
        writeln!(doc, "Same workload; the default (`info`) writes an open and a close line for every SSE stream, and a Streamable POST answered over SSE is one stream.\n")?;
        writeln!(doc, "{}", report::throughput_header())?;
        for (tr, target) in &targets {
            let mut pts = Vec::new();
            for _ in 0..s.repeat {
                pts.push(throughput::run(target, &load(k, s.duration, "echo", metered(&tree, false))).await.point());
            }
            let m = stats::median(&pts);
            let with_logs = series.iter().find(|x| x.target == "mcp-bridge" && x.transport == *tr).and_then(|x| x.median(k));
            eprintln!("[mcp-bench] quiet bridge {tr}: {} req/s", thousands(m.rps));
            writeln!(doc, "{}", report::throughput_row(k, "mcp-bridge, logs at warn", tr, &m))?;
            if let Some(w) = with_logs {
                writeln!(
                    doc,
                    "| | (info logs, from above) | {tr} | {} | {} | {} | | | | {} | {} |",
                    thousands(w.rps),
                    us(w.p50_us),
                    us(w.p99_us),
                    report::cpu_us(&w),
                    report::cpu_pct(&w)
                )?;
            }
            check(&mut h.failures, &format!("quiet bridge {tr} at {k}"), &m);
        }
        writeln!(doc)?;
        if !bridge.alive() {
            h.failures.push("the quiet bridge died".into());
        }
    }

    // ---- resume with Last-Event-ID
    let mut resume_out = None;
    if !skip("resume") {
        let (_bridge, port) = h.start_bridge("bridge-resume", &[], &[])?;
        let o = resume::Opts {
            url: Url::parse(&format!("http://127.0.0.1:{port}/sse/echo"))?,
            events: s.resume_events,
            cycles: s.resume_cycles,
            size: 100,
            tool: "echo".into(),
            settle: Duration::from_millis(100),
        };
        h.commands.push(format!(
            "target/release/mcp-bench resume --url {} --events {} --cycles {}",
            o.url.path_url(),
            o.events,
            o.cycles
        ));
        let r = resume::run(&o).await;
        eprintln!("[mcp-bench] resume: first event p99 {:.2} ms, {} events/s", r.first_p99_ms, thousands(r.replay_per_s));
        writeln!(doc, "## Resume: legacy SSE reconnect with `Last-Event-ID`\n")?;
        writeln!(doc, "Each cycle, on a fresh session: initialize, drop the stream, POST the events' requests while disconnected, wait 100 ms, reconnect with the last seen event id. Time runs from the reconnect's TCP connect to the first replayed answer; the rate is events over reconnect-to-last-event.\n")?;
        writeln!(doc, "{}\n{}\n", report::resume_header(), report::resume_row(&o, &r))?;
        if let Some(e) = &r.error {
            writeln!(doc, "Error: {e}\n")?;
            h.failures.push(format!("resume: {e}"));
        }
        if r.cycles != o.cycles || r.wrong != 0 || r.missing != 0 {
            h.failures.push(format!("resume: {} of {} cycles, {} wrong, {} missing", r.cycles, o.cycles, r.wrong, r.missing));
        }
        resume_out = Some(r);
    }

    // ---- peers side by side
    let mut peer_rows: Vec<(String, String, String, Point)> = Vec::new();
    let mut peer_notes: Vec<String> = Vec::new();
    if s.peers {
        let k = a.peer_sessions;
        let peers_dir = std::fs::canonicalize(&a.peers).unwrap_or(a.peers.clone());
        let pins = std::fs::canonicalize(&a.pins).unwrap_or(a.pins.clone());
        for peer in peers::all(&peers_dir, &pins, &echo, 0, &work) {
            let peer = match peer {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("[mcp-bench] {e}");
                    peer_notes.push(e);
                    continue;
                }
            };
            let port = procs::free_port()?;
            // Every peer gets a port of its own, picked just before it starts.
            let peer = peers::all(&peers_dir, &pins, &echo, port, &work)
                .into_iter()
                .flatten()
                .find(|p| p.name == peer.name)
                .unwrap_or(peer);
            if let Some((path, text)) = &peer.config {
                std::fs::write(path, text)?;
            }
            let log = work.join("logs").join(format!("peer-{}.log", slug(peer.name)));
            let env: Vec<(&str, &str)> = peer.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut proc = match Proc::start(peer.name, &peer.program, &peer.args, &h.env(&env), &log) {
                Ok(p) => p,
                Err(e) => {
                    peer_notes.push(format!("{}: {e:#}", peer.name));
                    continue;
                }
            };
            if let Err(e) = proc.wait_listening(format!("127.0.0.1:{port}").parse()?, Duration::from_secs(30)) {
                peer_notes.push(format!("{}: {e:#}", peer.name));
                continue;
            }
            // Let a Node or Python server finish its start-up before the clock runs.
            tokio::time::sleep(Duration::from_millis(500)).await;
            h.commands.push(format!("{}    # {} {}", proc.command, peer.name, peer.version));
            for ep in &peer.endpoints {
                let url = Url::parse(&format!("http://127.0.0.1:{port}{}", ep.path))?;
                let target = if ep.transport == "sse" { Target::Sse(url) } else { Target::Streamable(url) };
                h.commands.push(generator_command(
                    &target,
                    &Settings { sessions: vec![k], ..s.clone_light() },
                    peer.tool,
                    peer.name,
                ));
                let tree = Tree::Pid(proc.pid());
                let mut pts = Vec::new();
                for _ in 0..s.repeat {
                    pts.push(throughput::run(&target, &load(k, s.duration, peer.tool, metered(&tree, false))).await.point());
                }
                let m = stats::median(&pts);
                eprintln!(
                    "[mcp-bench] peer {} {}: {} req/s, CPU {} µs/req, errors {}, wrong {}",
                    peer.name,
                    ep.transport,
                    thousands(m.rps),
                    report::cpu_us(&m),
                    m.errors,
                    m.wrong
                );
                if peer.name.starts_with("Rust mcp-proxy") && !skip("syscalls") {
                    let p = perf_pass(&target, k, &s, peer.tool, &tree).await;
                    eprintln!(
                        "[mcp-bench] perf pass {}: {} syscalls/req",
                        peer.name,
                        report::per_req(p.cost.as_ref().and_then(|c| c.syscalls))
                    );
                    syscall_rows.push((peer.name.to_string(), peer.version.clone(), ep.transport.to_string(), p));
                }
                peer_rows.push((peer.name.to_string(), peer.version.clone(), ep.transport.to_string(), m));
            }
            if !proc.alive() {
                peer_notes.push(format!("{} exited during its run; see {}", peer.name, log.display()));
            }
        }
        summary::write_peers(&mut doc, &series, &peer_rows, &peer_notes, k)?;
    }
    if !syscall_rows.is_empty() {
        summary::write_syscalls(&mut doc, &series, &peer_rows, &syscall_rows, a.peer_sessions, s.duration)?;
    }

    // ---- idle streams, each count on a fresh bridge
    let mut idle_out = Vec::new();
    if !skip("idle") {
        writeln!(doc, "## Idle SSE streams\n")?;
        writeln!(
            doc,
            "Legacy SSE streams (`GET /sse/echo`: a session each, no child until a POST), opened 128 at a time from 127.0.0.1–127.0.0.16, each count on a fresh bridge with `--heartbeat-interval {}`. RSS per stream is (RSS with all held − RSS before) ÷ held, after 2 s of settling; CPU is the bridge's user+system time over a {}-s window in which only heartbeats flow; lateness is each heartbeat's gap since the stream's previous byte minus the interval, for beats inside the window. A drop is a stream that ended, or got no heartbeat inside the window. Open-file limit: {nofile} (the hard limit here; the bridge inherits it), so a count above that is clamped.\n",
            humantime::format_duration(s.idle_interval),
            s.idle_window.as_secs()
        )?;
        writeln!(doc, "{}", report::idle_header())?;
        for &n in &s.idle_streams {
            let held = n.min((nofile as usize).saturating_sub(300));
            let interval = humantime::format_duration(s.idle_interval).to_string();
            let (mut bridge, port) =
                h.start_bridge(&format!("bridge-idle-{n}"), &["--heartbeat-interval".into(), interval.clone()], &[])?;
            let o = idle::Opts {
                url: Url::parse(&format!("http://127.0.0.1:{port}/sse/echo"))?,
                streams: held,
                sources: 16,
                interval: s.idle_interval,
                window: s.idle_window,
                pid: Some(bridge.pid()),
            };
            h.commands.push(format!(
                "target/release/mcp-bench idle --url {} --streams {held} --sources 16 --interval {interval} --window {}s --pid {}",
                o.url.path_url(),
                s.idle_window.as_secs(),
                bridge.pid()
            ));
            let mut r = idle::run(&o).await?;
            r.requested = n;
            eprintln!(
                "[mcp-bench] idle {n}: held {} ({:.1} KiB/stream), CPU {:.2}%, lateness p99 {:.1} ms, drops {}",
                r.opened,
                r.kib_per_stream(),
                r.cpu_percent,
                r.late_p99_ms,
                r.drops
            );
            writeln!(doc, "{}", report::idle_row(&r))?;
            if let Some(e) = &r.first_error {
                peer_notes.push(format!("idle {n}: first open error: {e}"));
            }
            if r.opened != held || r.ended != 0 {
                h.failures.push(format!("idle {n}: held {} of {held}, {} ended early", r.opened, r.ended));
            }
            if !bridge.alive() {
                h.failures.push(format!("idle {n}: the bridge died"));
            }
            idle_out.push(r);
        }
        writeln!(doc)?;
        for r in &idle_out {
            if let Some(e) = &r.first_error {
                writeln!(doc, "- {} streams: {} failed to open; first error: {e}", r.requested, r.open_failed)?;
            }
        }
        writeln!(doc)?;
    }

    summary::write_targets(&mut doc, &series, &peer_rows, &idle_out, resume_out.as_ref(), a.peer_sessions)?;

    for x in series.iter().filter(|x| x.checked) {
        for k in x.points.keys() {
            if let Some(m) = x.median(*k) {
                let what = format!("{} / {} at {k} sessions", x.target, x.transport);
                check(&mut h.failures, &what, &m);
                // The walk finds the children: the bridge's echo children (one per session, or
                // its pool for stateless), and every child the generator spawned for stdio.
                let want = match x.target.as_str() {
                    "mcp-bridge" => 2,
                    "stdio, no bridge" => *k,
                    _ => 1,
                };
                if let Some(c) = m.cost.as_ref().filter(|c| c.processes < want) {
                    h.failures.push(format!("{what}: the metered tree held {} processes, expected ≥ {want}", c.processes));
                }
            }
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    writeln!(doc, "Load average at the end: {}.\n", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "))?;
    writeln!(doc, "## Commands\n\nEvery process the harness started and the generator's equivalent stand-alone commands (ports were picked free for this run):\n\n```sh")?;
    for c in &h.commands {
        writeln!(doc, "{c}")?;
    }
    writeln!(doc, "```\n\nLogs: `{}`.\n", work.join("logs").display())?;
    writeln!(doc, "## Checks\n")?;
    if h.failures.is_empty() {
        writeln!(doc, "All passed: every mode ran, no reply reached the wrong session, no errors, no dropped stream.")?;
    } else {
        for f in &h.failures {
            writeln!(doc, "- FAILED: {f}")?;
        }
    }
    let out = a.out.clone().unwrap_or_else(|| work.join(if a.smoke { "smoke.md" } else { "results.md" }));
    std::fs::write(&out, &doc)?;
    println!("{doc}");
    eprintln!("[mcp-bench] report written to {}", out.display());
    if !h.failures.is_empty() {
        bail!("{} check(s) failed: {}", h.failures.len(), h.failures.join("; "));
    }
    Ok(())
}

impl Settings {
    fn clone_light(&self) -> Settings {
        Settings { sessions: self.sessions.clone(), idle_streams: self.idle_streams.clone(), ..*self }
    }
}
