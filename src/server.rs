//! The HTTP server: routes, shared state, and graceful shutdown. `run` takes a bound
//! listener and a shutdown future, so tests can bind port 0 and stop it.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use tokio::net::TcpListener;
use tower::Service;

use crate::config::{Config, ServerConfig, SessionSettings};
use crate::session::registry::Registry;
use crate::session::CloseReason;
use crate::transport::{origin, sse, streamable};
use crate::upstream;

/// The configured servers; replaced whole on reload.
pub type Servers = Arc<std::collections::BTreeMap<String, Arc<ServerConfig>>>;

/// Loads the configuration again (with the command line's overrides), for reload.
pub type Reloader = Arc<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

#[derive(Clone)]
pub struct AppState {
    /// The configuration as started. Its `servers` are the starting set: read the live set
    /// through [`AppState::server`] and [`AppState::servers`].
    pub config: Arc<Config>,
    servers: Arc<std::sync::RwLock<Servers>>,
    pub reloader: Option<Reloader>,
    /// Set on SIGTERM: `/readyz` answers 503 from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Set on shutdown when the sessions are taken out of the registry to be ended or handed
    /// over: from then on this instance takes no session over (`store::find`).
    pub retired: Arc<std::sync::atomic::AtomicBool>,
    /// Requests whose handler is running (an SSE response counts until its head is ready), so
    /// that shutdown lets them finish before the sessions go.
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
    pub registry: Arc<Registry>,
    /// Upstream sessions serving 2026-07-28 (stateless) requests, idle between requests.
    pub stateless: Arc<crate::stateless::Pool>,
    pub ctx: upstream::Context,
    pub instance: Arc<str>,
}

impl AppState {
    /// Builds the state; with a Redis URL in the config, joins the cluster first.
    pub async fn connect(config: Config, instance: String) -> Result<AppState, crate::cluster::ClusterError> {
        let cluster = match &config.redis {
            Some(url) => {
                let s = &config.sessions;
                let ttl = s.idle_timeout.max(s.event_log_age) + std::time::Duration::from_secs(60);
                Some(
                    crate::cluster::Cluster::connect(
                        url,
                        config.redis_ca.as_deref(),
                        instance.as_str().into(),
                        s.event_log_size,
                        ttl,
                    )
                    .await?,
                )
            }
            None => None,
        };
        crate::metrics::init(&instance);
        let app = AppState::new(config, instance, cluster);
        if let Some(c) = &app.ctx.cluster {
            c.set_registry(&app.registry);
            app.stateless.set_secret(c.shared_secret().await?);
        }
        Ok(app)
    }

    pub fn new(config: Config, instance: String, cluster: Option<Arc<crate::cluster::Cluster>>) -> AppState {
        let children = upstream::ChildSlots::new(config.limits.max_children);
        let pump = config.limits.pump;
        let http = crate::config::tls::shared_client();
        let instance: Arc<str> = instance.into();
        AppState {
            servers: Arc::new(std::sync::RwLock::new(Arc::new(config.servers.clone()))),
            reloader: None,
            draining: Arc::default(),
            retired: Arc::default(),
            in_flight: Arc::default(),
            config: Arc::new(config),
            registry: Arc::default(),
            stateless: Arc::default(),
            ctx: upstream::Context {
                http,
                cluster,
                children,
                health: Arc::default(),
                pools: Arc::default(),
                shared: Arc::default(),
                eras: Arc::default(),
                changes: Arc::default(),
                pump,
            },
            instance,
        }
    }

    pub fn server(&self, name: &str) -> Option<Arc<ServerConfig>> {
        self.servers().get(name).cloned()
    }

    /// The servers configured now.
    pub fn servers(&self) -> Servers {
        self.servers.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reloads the server list: added servers appear, removed ones take no new sessions
    /// (their live sessions go on), changed settings apply to new sessions and streams.
    /// Other settings need a restart. Returns what changed.
    pub fn reload(&self) -> anyhow::Result<serde_json::Value> {
        let Some(reloader) = &self.reloader else { anyhow::bail!("this bridge was started without a config file to reload") };
        let new = reloader()?;
        let old = self.servers();
        let added: Vec<&String> = new.servers.keys().filter(|k| !old.contains_key(*k)).collect();
        let removed: Vec<&String> = old.keys().filter(|k| !new.servers.contains_key(*k)).collect();
        let changed: Vec<&String> = new
            .servers
            .iter()
            .filter(|(k, v)| {
                old.get(*k).is_some_and(|o| {
                    o.upstream != v.upstream
                        || o.heartbeat != v.heartbeat
                        || o.json_response != v.json_response
                        || o.outbound != v.outbound
                })
            })
            .map(|(k, _)| k)
            .collect();
        let summary = serde_json::json!({ "added": added, "removed": removed, "changed": changed });
        *self.servers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new.servers.clone());
        tracing::info!(%summary, "configuration reloaded");
        Ok(summary)
    }

    /// Session settings with the server's own heartbeat.
    pub fn settings_for(&self, server: &ServerConfig) -> SessionSettings {
        SessionSettings {
            heartbeat: server.heartbeat,
            request_timeout: self.config.limits.request_timeout,
            max_pending: self.config.limits.max_pending_per_session,
            ..self.config.sessions
        }
    }
}

pub fn router(app: AppState) -> Router {
    let origin_policy = origin::Policy::new(app.config.listen, &app.config.allowed_origins);
    let auth = app.config.auth.clone().map(|m| {
        let names: Vec<&str> = app.config.servers.keys().map(String::as_str).collect();
        // Clients may name servers added by a later reload only after a restart.
        Arc::new(crate::auth::Auth::from_model(m, &names).expect("the config was validated when it was loaded"))
    });
    let router = Router::new()
        .route("/sse/{name}", get(sse::open))
        .route("/sse/{name}/message", post(sse::message))
        .route("/message", post(sse::message))
        .route("/messages", post(sse::message))
        .route(
            "/mcp/{name}",
            get(streamable::get).post(streamable::post).delete(streamable::delete).fallback(streamable::not_allowed),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(crate::probes::readyz))
        .route("/metrics", get(crate::probes::metrics))
        .merge(crate::admin::router())
        .fallback(any(|| async { (StatusCode::NOT_FOUND, "not found: the bridge serves /sse/{server} and /mcp/{server}") }))
        .layer(DefaultBodyLimit::max(app.config.limits.max_body));
    let router = match auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(auth, crate::auth::check)),
        None => router,
    };
    router
        .layer(axum::middleware::from_fn_with_state(app.clone(), crate::admin::guard))
        .layer(axum::middleware::from_fn_with_state(origin_policy, origin::check))
        .layer(axum::middleware::from_fn_with_state(app.clone(), count_in_flight))
        .with_state(app)
}

/// Counts the request in [`AppState::in_flight`] while its handler runs. While draining, every
/// answer says `Connection: close`, so a proxy stops reusing its pooled connections to this
/// instance before they are closed: a request written to a connection just as the bridge
/// closes it fails (nginx answers 502 and does not retry a POST).
async fn count_in_flight(State(app): State<AppState>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    struct Done(Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for Done {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    app.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _done = Done(app.in_flight.clone());
    let mut resp = next.run(req).await;
    if app.draining.load(std::sync::atomic::Ordering::Relaxed) {
        resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    resp
}

/// On shutdown, how long requests already sent upstream may take to be answered before the
/// sessions end (in cluster mode it must stay well inside the lease).
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves until `shutdown` resolves, then ends every session with reason `shutdown` (which
/// closes their streams and kills their children) and waits (bounded) for connections to finish.
pub async fn run(
    listener: TcpListener,
    app: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = app.registry.clone();
    let cluster = app.ctx.cluster.clone();
    let addr = listener.local_addr()?;
    let header_timeout = app.config.limits.header_read_timeout;
    let write_timeout = app.config.limits.write_timeout;
    let grace = app.config.sessions.drain_grace;
    let draining = app.draining.clone();
    let (retired, in_flight) = (app.retired.clone(), app.in_flight.clone());
    tracing::info!(listen = %addr, instance = %app.instance, servers = app.config.servers.len(), "mcp-bridge listening");
    if !addr.ip().is_loopback() && app.config.auth.is_none() {
        tracing::warn!(listen = %addr, "listening beyond loopback without [auth]: anyone who reaches this port may use every server");
    }
    let router = router(app);
    // Orphaned grandchildren are reparented to the bridge, and swept while it runs.
    let reaper = crate::upstream::reaper::start();
    let mut http = hyper::server::conn::http1::Builder::new();
    // A client must finish its request headers in time (slow-loris guard).
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
                draining.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(grace_ms = grace.as_millis() as u64, sessions = registry.len(), "draining");
                drain_until = Some(tokio::time::Instant::now() + grace);
                continue;
            }
            _ = drain_end => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move { router.call(req.map(axum::body::Body::new)).await }
        });
        // A client that stops reading is cut after the write timeout (its events wait in the log).
        let io = crate::timed_io::TimedIo::new(stream, write_timeout);
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    // Close the idle keep-alive connections (nginx pools them) and let busy ones finish their
    // current request, before the sessions end. Otherwise a request read after that finds this
    // instance's own lease on a session it no longer holds, takes the session over again just
    // before the process exits, and its answer is lost (the next owner fails it after the lease
    // lapses). The first poll sends the signal; the wait comes last.
    let mut connections = std::pin::pin!(graceful.shutdown());
    let all_closed = futures_util::FutureExt::now_or_never(&mut connections).is_some();
    tracing::info!("shutting down: ending every session");
    // Requests already read still reach their sessions.
    let quiet = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    while in_flight.load(std::sync::atomic::Ordering::Relaxed) > 0 && tokio::time::Instant::now() < quiet {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Out of the registry, no new request reaches a session (a forwarded one is told the
    // session moved and waits for the next owner; one still being handled here gets 503 rather
    // than a take-over by this dying instance); requests already sent upstream get their
    // answers before the children are killed, instead of a "session ended" error. Bounded
    // well inside the lease, which is no longer renewed.
    retired.store(true, std::sync::atomic::Ordering::Relaxed);
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
    if let Some(c) = &cluster {
        // Hand the sessions over: their records stay, their leases go, so the next
        // instance a client reaches takes them over at once.
        let ids: Vec<_> = sessions.iter().map(|s| s.id).collect();
        c.flush().await;
        c.release(&ids).await;
    }
    // No child, grandchild or orphan outlives the bridge.
    crate::upstream::reaper::finish().await;
    reaper.abort();
    if !all_closed {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), connections).await;
    }
    Ok(())
}
