//! Log set-up: human-readable lines on stdout, and optionally the same lines in a log
//! directory (`mcp-bridge.log`), so that `grep "SSE connection" logs/*.log` finds every
//! stream's open and close.

use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Keeps the file writer flushing; hold it for the life of the process.
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

pub fn init(log_dir: Option<&Path>) -> anyhow::Result<LogGuard> {
    let filter = || EnvFilter::try_from_env("MCP_BRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: redirected stdout (a file, journald, `docker logs`) must stay
    // greppable as `reason=client_closed`.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let stdout = fmt::layer().with_ansi(ansi).with_target(false).with_filter(filter());
    let (file, guard) = match log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let appender = tracing_appender::rolling::never(dir, "mcp-bridge.log");
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = fmt::layer().with_ansi(false).with_target(false).with_writer(writer).with_filter(filter());
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(stdout).with(file).try_init()?;
    Ok(LogGuard(guard))
}
