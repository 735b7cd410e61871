//! The `mcp-bridge` command: parse the CLI, call the library.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mcp_bridge::{diagnose, parse_seconds, DiagnoseOptions};
use mcp_bridge::{server, AppState, Reloader};
use mcp_bridge::{Config, HeartbeatFormat, RedisTarget, DEFAULT_SENTINEL_MASTER};

/// jemalloc, not glibc's malloc: a request makes about 60 small allocations, and glibc's
/// allocator functions were 9.3 % of the bridge's samples at 16 sessions (jemalloc's: 1.9 %).
/// Measured in one run (issue 16, BENCHMARKS.md): 3-15 % less CPU per request, and less RSS per
/// idle stream.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The bundled echo server, also run as `mcp-bridge echo-server`: `cargo run` builds only
/// this binary, and the example config must work after it.
#[path = "bin/mcp-echo-server.rs"]
mod echo_server;

#[derive(Parser)]
#[command(name = "mcp-bridge", version, about = "Puts named MCP servers on the network over SSE and Streamable HTTP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// Address to listen on (overrides `listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Names this instance in logs (default: host:port).
        #[arg(long)]
        instance_id: Option<String>,
        /// Heartbeat interval for every server, e.g. `15s`, or `off`.
        #[arg(long, value_parser = parse_interval)]
        heartbeat_interval: Option<Interval>,
        #[arg(long, value_enum)]
        heartbeat_format: Option<HeartbeatFormat>,
        /// Also write logs to DIR/mcp-bridge.log.
        #[arg(long)]
        log_dir: Option<PathBuf>,
        /// Share sessions with other instances through this Redis (`redis://127.0.0.1:6379`).
        #[arg(long, group = "redis_mode")]
        redis: Option<String>,
        /// ... through this Redis Cluster: seed nodes, comma-separated (`redis://h1:7000,redis://h2:7000`).
        #[arg(long, group = "redis_mode")]
        redis_cluster: Option<String>,
        /// ... through the primary these Sentinels name, comma-separated (`redis://s1:26379,…`).
        #[arg(long, group = "redis_mode")]
        redis_sentinel: Option<String>,
        /// The master name the Sentinels monitor.
        #[arg(long, requires = "redis_sentinel", default_value = DEFAULT_SENTINEL_MASTER)]
        redis_sentinel_master: String,
        /// The runtime's worker threads (overrides `worker_threads`; default: the CPUs).
        #[arg(long)]
        worker_threads: Option<NonZeroUsize>,
    },
    /// Validate a config file without starting.
    CheckConfig { file: PathBuf },
    /// Run the bundled stdio echo server (`mcp-echo-server`): `echo` and `add`.
    #[command(hide = true)]
    EchoServer,
    /// Hold an SSE stream open like a client and report how long it lasted and why it ended.
    Diagnose {
        /// The stream, e.g. http://mcp-bridge.test/sse/mcp-server-v6 or …/mcp/NAME (with --mcp).
        url: String,
        /// How long to hold the stream: seconds, or a duration like `10m`.
        #[arg(long, default_value = "600", value_parser = parse_seconds)]
        duration: Duration,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Run the MCP handshake and send pings, checking that their answers arrive.
        #[arg(long)]
        mcp: bool,
        /// Seconds between pings with --mcp.
        #[arg(long, default_value = "10", value_parser = parse_seconds)]
        ping_interval: Duration,
        /// Hold a 2026-07-28 `subscriptions/listen` stream (POST …/mcp/NAME) instead of a GET.
        #[arg(long, conflicts_with = "mcp")]
        listen: bool,
    },
}

#[derive(Clone, Copy)]
struct Interval(Option<Duration>);

fn parse_interval(s: &str) -> Result<Interval, String> {
    mcp_bridge::parse_interval(s).map(Interval)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Diagnose { url, duration, json, mcp, ping_interval, listen } => {
            let code = diagnose(DiagnoseOptions { url, duration, json, mcp, ping_interval, listen })?;
            std::process::exit(code)
        }
        Command::EchoServer => Ok(echo_server::main()?),
        Command::CheckConfig { file } => {
            let c = Config::load(&file)?;
            println!(
                "{}: ok, {} server(s): {}",
                file.display(),
                c.servers.len(),
                c.servers.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            Ok(())
        }
        Command::Serve {
            config,
            listen,
            instance_id,
            heartbeat_interval,
            heartbeat_format,
            log_dir,
            redis,
            redis_cluster,
            redis_sentinel,
            redis_sentinel_master,
            worker_threads,
        } => {
            let mut c = Config::load(&config)?;
            if let Some(r) = redis {
                c.redis = Some(RedisTarget::Single(r));
            }
            if let Some(r) = redis_cluster {
                c.redis = Some(RedisTarget::Cluster(RedisTarget::split(&r)));
            }
            if let Some(r) = redis_sentinel {
                c.redis = Some(RedisTarget::Sentinel { master: redis_sentinel_master, sentinels: RedisTarget::split(&r) });
            }
            c.worker_threads = worker_threads.or(c.worker_threads);
            if let Some(l) = listen {
                c.listen = l;
            }
            if let Some(d) = log_dir {
                c.log_dir = Some(d);
            }
            // Flags override the config everywhere, per-server settings included, and again
            // on every reload.
            let overrides = move |c: &mut Config| {
                let servers = std::mem::take(&mut c.servers);
                for (name, s) in servers {
                    let mut s = (*s).clone();
                    if let Some(Interval(i)) = heartbeat_interval {
                        s.heartbeat.interval = i;
                    }
                    if let Some(f) = heartbeat_format {
                        s.heartbeat.format = f;
                    }
                    c.servers.insert(name, s.into());
                }
            };
            overrides(&mut c);
            let reloader: Reloader = Arc::new(move || {
                let mut c = Config::load(&config)?;
                overrides(&mut c);
                Ok(c)
            });
            let _logs = mcp_bridge::init_logging(c.log_dir.as_deref())?;
            let instance = instance_id.or(c.instance_id.clone()).unwrap_or_else(|| default_instance(c.listen));
            let rt = runtime(c.worker_threads)?;
            rt.block_on(async move {
                let listener = bind_listener(c.listen).with_context(|| format!("cannot listen on {}", c.listen))?;
                let app = AppState::connect(c, instance, Some(reloader)).await.context("cannot join the cluster")?;
                tokio::spawn(reload_on_sighup(app.clone()));
                server::run(listener, app, shutdown_signal()).await.context("server failed")
            })
        }
    }
}

/// The multi-thread runtime, with `workers` worker threads or tokio's default: one per CPU, or
/// `TOKIO_WORKER_THREADS`. Fewer workers than CPUs cost less CPU per request where the stdio
/// children share the cores: at 16 sessions on 2 cores, one worker took 13-19 % less than two
/// (BENCHMARKS.md, issue 16), and it caps the bridge's own work at one core.
fn runtime(workers: Option<NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n.get());
    }
    let rt = b.enable_all().build()?;
    tracing::info!(workers = rt.metrics().num_workers(), "runtime started");
    Ok(rt)
}

/// Connections the kernel queues before the bridge accepts them (capped by
/// `net.core.somaxconn`, 4096 by default). Tokio's own bind asks for 1,024, which thousands of
/// clients resuming at once after an instance died overflowed: the dropped SYNs came back
/// only after the client's 1 s, 3 s, 7 s retransmission times.
const LISTEN_BACKLOG: u32 = 16_384;

/// Binds `addr` (with `SO_REUSEADDR`, as tokio's bind does) and listens with [`LISTEN_BACKLOG`].
fn bind_listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn default_instance(listen: SocketAddr) -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", listen.port())
}

/// SIGHUP reloads the server list from the config file.
async fn reload_on_sighup(app: AppState) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        if let Err(e) = app.reload() {
            tracing::warn!("SIGHUP: reload refused, the running configuration is unchanged: {e:#}");
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
