//! `mcp-bench`: the load generator and harness behind BENCHMARKS.md. `run` does the whole
//! benchmark (bridge, baselines, peers, idle streams, resume) and writes a markdown report;
//! the other subcommands run one workload against a server you started yourself.

mod ceiling;
mod cost;
mod http;
mod idle;
mod mcp;
mod peers;
mod procs;
mod relay;
mod report;
mod resume;
mod run;
mod sse;
mod stats;
mod summary;
mod throughput;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "mcp-bench", about = "Benchmarks mcp-bridge against baselines and peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole benchmark: starts every server itself, prints markdown, writes --out.
    Run(run::Args),
    /// Serve the HTTP ceiling: a bare hyper server that answers each POST itself, and holds
    /// each GET as an endless SSE stream that beats every --heartbeat.
    Ceiling {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        heartbeat: std::time::Duration,
    },
    /// Serve the relay floor: a bare hyper server whose connection tasks relay each POST to a
    /// stdio child of the session and read its answer themselves.
    Relay {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// The stdio server each session starts.
        #[arg(long)]
        command: PathBuf,
        /// A writer task and a reader task per child, as the bridge has, to price their two
        /// task hand-offs per request (else the request's task does the I/O itself).
        #[arg(long)]
        tasks: bool,
    },
    /// Throughput and latency against a running server (or a stdio command).
    Throughput {
        #[arg(long, value_enum)]
        transport: TransportArg,
        /// http://HOST:PORT/path for sse, streamable and stateless.
        #[arg(long)]
        url: Option<String>,
        /// The stdio server for `--transport stdio`.
        #[arg(long)]
        command: Option<PathBuf>,
        /// Streamable only: initialize at --url, send every later request here (another
        /// instance of the cluster, which forwards it to the owner).
        #[arg(long)]
        forward_url: Option<String>,
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        sessions: Vec<usize>,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        #[arg(long, default_value = "echo")]
        tool: String,
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Stateless only: every worker sends its own `clientInfo.version` (its tag), so the
        /// bridge pools backing sessions per worker rather than one pool for all (diagnostic).
        #[arg(long)]
        client_per_session: bool,
        /// Meter this process and its descendants: CPU per request (stdio: the spawned children).
        #[arg(long)]
        pid: Option<u32>,
        /// With --pid (or stdio): also count every syscall with `perf stat`.
        #[arg(long)]
        perf: bool,
    },
    /// Hold N idle SSE streams against a running bridge.
    Idle {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 1000)]
        streams: usize,
        #[arg(long, default_value_t = 16)]
        sources: u8,
        /// The heartbeat interval the bridge runs with.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        interval: Duration,
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        window: Duration,
        /// The bridge's pid, for RSS and CPU.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Reconnect with Last-Event-ID and time the replay (legacy SSE).
    Resume {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 500)]
        events: usize,
        #[arg(long, default_value_t = 30)]
        cycles: usize,
        #[arg(long, default_value = "echo")]
        tool: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TransportArg {
    Sse,
    Streamable,
    /// The 2026-07-28 revision: no initialize, `_meta` and `Mcp-*` headers on every request.
    Stateless,
    Stdio,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Run(args) => run::main(args).await,
            Command::Ceiling { listen, heartbeat } => ceiling::serve(listen, heartbeat).await,
            Command::Relay { listen, command, tasks } => relay::serve(listen, command, tasks).await,
            Command::Throughput {
                transport,
                url,
                command,
                forward_url,
                sessions,
                duration,
                repeat,
                tool,
                size,
                client_per_session,
                pid,
                perf,
            } => {
                let target = match (transport, url, command) {
                    (TransportArg::Streamable, Some(u), _) if forward_url.is_some() => throughput::Target::Forwarded {
                        init: http::Url::parse(&u)?,
                        rest: http::Url::parse(forward_url.as_deref().unwrap_or_default())?,
                    },
                    (TransportArg::Sse, Some(u), _) => throughput::Target::Sse(http::Url::parse(&u)?),
                    (TransportArg::Streamable, Some(u), _) => throughput::Target::Streamable(http::Url::parse(&u)?),
                    (TransportArg::Stateless, Some(u), _) => throughput::Target::Stateless(http::Url::parse(&u)?),
                    (TransportArg::Stdio, _, Some(c)) => throughput::Target::Stdio { command: c, args: vec![] },
                    _ => anyhow::bail!("sse, streamable and stateless need --url; stdio needs --command"),
                };
                let tree = match (&target, pid) {
                    (_, Some(p)) => Some(cost::Tree::Pid(p)),
                    (throughput::Target::Stdio { .. }, None) => Some(cost::Tree::Sessions),
                    _ => None,
                };
                println!("{}", report::throughput_header());
                for k in sessions {
                    let load = throughput::Load {
                        sessions: k,
                        duration,
                        size,
                        tool: tool.clone(),
                        timeout: Duration::from_secs(10),
                        client_per_session,
                        meter: tree.clone().map(|tree| cost::Meter { tree, perf }),
                    };
                    let mut points = Vec::new();
                    for _ in 0..repeat.max(1) {
                        points.push(throughput::run(&target, &load).await.point());
                    }
                    println!("{}", report::throughput_row(k, "target", transport_name(transport), &stats::median(&points)));
                }
                Ok(())
            }
            Command::Idle { url, streams, sources, interval, window, pid } => {
                procs::raise_nofile();
                let o = idle::Opts { url: http::Url::parse(&url)?, streams, sources, interval, window, pid };
                let out = idle::run(&o).await?;
                println!("{}\n{}", report::idle_header(), report::idle_row(&out));
                Ok(())
            }
            Command::Resume { url, events, cycles, tool } => {
                let o = resume::Opts {
                    url: http::Url::parse(&url)?,
                    events,
                    cycles,
                    size: 100,
                    tool,
                    settle: Duration::from_millis(100),
                };
                let out = resume::run(&o).await;
                println!("{}\n{}", report::resume_header(), report::resume_row(&o, &out));
                Ok(())
            }
        }
    })
}

fn transport_name(t: TransportArg) -> &'static str {
    match t {
        TransportArg::Sse => "sse",
        TransportArg::Streamable => "streamable",
        TransportArg::Stateless => "stateless",
        TransportArg::Stdio => "stdio",
    }
}
