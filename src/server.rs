//! The HTTP server: the accept loop and graceful shutdown. `run` takes a bound listener and a
//! shutdown future, so tests can bind port 0 and stop it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::{AppState, Lifecycle};
use crate::cluster::Cluster;
use crate::http::router::router;
use crate::ids::CloseReason;
use crate::session::registry::Registry;

/// On shutdown, how long requests already sent upstream may take to be answered before the
/// sessions end (in cluster mode it must stay well inside the lease).
const SETTLE: Duration = Duration::from_secs(2);

/// Serves until `shutdown` resolves, then ends every session with reason `shutdown` (which
/// closes their streams and kills their children) and waits (bounded) for connections to finish.
pub async fn run(
    listener: TcpListener,
    app: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = app.locator.registry.clone();
    let cluster = app.locator.cluster.clone();
    let addr = listener.local_addr()?;
    let timeouts = (app.config.limits.header_read_timeout, app.config.limits.write_timeout);
    let lifecycle = app.lifecycle.clone();
    let drain = Drain { grace: app.config.sessions.drain_grace, lifecycle: lifecycle.clone(), registry: registry.clone() };
    let retired = app.locator.retired.clone();
    tracing::info!(listen = %addr, instance = %app.instance, servers = app.config.servers.len(), "mcp-bridge listening");
    if !addr.ip().is_loopback() && app.config.auth.is_none() {
        tracing::warn!(listen = %addr, "listening beyond loopback without [auth]: anyone who reaches this port may use every server");
    }
    let router = router(app);
    // Orphaned grandchildren are reparented to the bridge, and swept while it runs.
    let reaper = crate::upstream::reaper::start();
    let graceful = GracefulShutdown::new();
    accept(&listener, router, &graceful, timeouts, drain, shutdown).await;
    drop(listener);
    // Close the idle keep-alive connections (nginx pools them) and let busy ones finish their
    // current request, before the sessions end. Otherwise a request read after that finds this
    // instance's own lease on a session it no longer holds, takes the session over again just
    // before the process exits, and its answer is lost (the next owner fails it after the lease
    // lapses). The first poll sends the signal; the wait comes last.
    let mut connections = std::pin::pin!(graceful.shutdown());
    let all_closed = futures_util::FutureExt::now_or_never(&mut connections).is_some();
    hand_over(&registry, cluster.as_deref(), &retired, &lifecycle).await;
    // No child, grandchild or orphan outlives the bridge.
    crate::upstream::reaper::finish().await;
    reaper.abort();
    if !all_closed {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), connections).await;
    }
    Ok(())
}

/// What the drain after the shutdown signal needs.
struct Drain {
    grace: Duration,
    /// Draining is set on it when the drain starts: `/readyz` answers 503.
    lifecycle: Arc<Lifecycle>,
    registry: Arc<Registry>,
}

/// Accepts connections until the drain after `shutdown` is over. `timeouts`: for a client's
/// request headers, and for a client that stops reading.
async fn accept(
    listener: &TcpListener,
    router: crate::http::router::Routes,
    graceful: &GracefulShutdown,
    (header_timeout, write_timeout): (Duration, Duration),
    drain: Drain,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    // A client must finish its request headers in time (slow-loris guard).
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    // Set once the shutdown signal came: the end of the drain.
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        let drain_end = async {
            match drain_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown, if drain_until.is_none() => {
                // Drain: say so on /readyz, keep serving (a load balancer moves new work
                // elsewhere meanwhile), then end the streams when the grace period is over.
                drain.lifecycle.start_draining();
                tracing::info!(grace_ms = drain.grace.as_millis() as u64, sessions = drain.registry.len(), "draining");
                drain_until = Some(tokio::time::Instant::now() + drain.grace);
                continue;
            }
            _ = drain_end => return,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let routes = router.clone();
            // Boxed: hyper keeps a box the size of the service's future for the whole life of
            // the connection (about 570 bytes per idle event stream otherwise).
            let fut: futures_util::future::BoxFuture<'static, Result<_, std::convert::Infallible>> =
                Box::pin(async move { Ok(routes.serve(req.map(axum::body::Body::new)).await) });
            fut
        });
        // A client that stops reading is cut after the write timeout (its events wait in the log).
        let io = crate::timed_io::TimedIo::new(stream, write_timeout);
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// Ends every session held here, letting requests already read reach their sessions and
/// requests already upstream be answered first (both bounded); in cluster mode the sessions
/// are handed over.
async fn hand_over(registry: &Registry, cluster: Option<&Cluster>, retired: &AtomicBool, lifecycle: &Lifecycle) {
    tracing::info!("shutting down: ending every session");
    // Requests already read still reach their sessions.
    let quiet = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    while lifecycle.in_flight() > 0 && tokio::time::Instant::now() < quiet {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Out of the registry, no new request reaches a session (a forwarded one is told the
    // session moved and waits for the next owner; one still being handled here gets 503 rather
    // than a take-over by this dying instance); requests already sent upstream get their
    // answers before the children are killed, instead of a "session ended" error. Bounded
    // well inside the lease, which is no longer renewed.
    retired.store(true, Ordering::Relaxed);
    let sessions = registry.all();
    for s in &sessions {
        registry.remove(s.id);
    }
    let settle = tokio::time::Instant::now() + SETTLE;
    while sessions.iter().any(|s| s.summary().pending > 0) && tokio::time::Instant::now() < settle {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for s in &sessions {
        s.end(CloseReason::Shutdown, "the bridge is shutting down");
    }
    if let Some(c) = cluster {
        // Hand the sessions over: their records stay, this instance's lease goes, so the
        // next instance a client reaches takes them over at once.
        c.flush().await;
        c.release().await;
    }
}
