//! The application state, by concern: the configuration as started and how to reload it; the
//! sessions (the [`Locator`]: registry, live server set, upstream context, cluster); the
//! stateless pool; and the [`Lifecycle`] that shutdown drives.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::locator::Locator;
use crate::session::registry::Registry;
use crate::upstream;

/// Loads the configuration again (with the command line's overrides), for reload.
pub type Reloader = Arc<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// What every handler is given: one `Arc`, so axum's per-request `State` clone (and each
/// middleware's) is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

pub struct App {
    /// The configuration as started. Its `servers` are the starting set: read the live set
    /// through [`Locator::server`] and [`Locator::servers`].
    pub config: Arc<Config>,
    pub reloader: Option<Reloader>,
    /// Draining and the requests in flight: what shutdown sets and waits for.
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// The sessions: this instance's registry, the live server set, the upstream context.
    pub(crate) locator: Locator,
    /// Upstream sessions serving 2026-07-28 (stateless) requests, idle between requests.
    pub stateless: Arc<crate::stateless::Pool>,
    pub instance: Arc<str>,
}

impl AppState {
    /// Builds the state; with a Redis URL in the config, joins the cluster first.
    /// `reloader` loads the configuration again for reload (`None`: started without a file).
    pub async fn connect(
        config: Config,
        instance: String,
        reloader: Option<Reloader>,
    ) -> Result<AppState, crate::cluster::ClusterError> {
        // The registry comes first: the cluster serves forwarded requests from it.
        let registry = Arc::<Registry>::default();
        let cluster = match &config.redis {
            Some(target) => {
                let s = &config.sessions;
                let ttl = s.idle_timeout.max(s.event_log_age) + std::time::Duration::from_secs(60);
                Some(
                    Cluster::connect(
                        target,
                        config.redis_ca.as_deref(),
                        instance.as_str().into(),
                        (s.event_log_size, ttl),
                        &registry,
                    )
                    .await?,
                )
            }
            None => None,
        };
        crate::metrics::init(&instance);
        let app = AppState::new(config, instance, reloader, registry, cluster);
        if let Some(c) = &app.locator.cluster {
            app.stateless.set_secret(c.shared_secret().await?);
        }
        Ok(app)
    }

    fn new(
        config: Config,
        instance: String,
        reloader: Option<Reloader>,
        registry: Arc<Registry>,
        cluster: Option<Arc<Cluster>>,
    ) -> AppState {
        let children = upstream::ChildSlots::new(config.limits.max_children);
        let pump = config.limits.pump;
        let http = crate::config::tls::shared_client();
        let instance: Arc<str> = instance.into();
        let config = Arc::new(config);
        let upstream = upstream::Context {
            http,
            children,
            pools: Arc::default(),
            shared: Arc::default(),
            eras: Arc::default(),
            pump,
            oauth: None,
            direct: None,
        };
        let env = crate::session::Env {
            upstream,
            health: Arc::default(),
            changes: Arc::default(),
            journal: None,
            registry: std::sync::Weak::new(),
        };
        AppState(Arc::new(App {
            reloader,
            lifecycle: Arc::default(),
            locator: Locator::new(config.clone(), registry, env, cluster),
            config,
            stateless: Arc::default(),
            instance,
        }))
    }

    /// Reloads the server list: added servers appear, removed ones take no new sessions
    /// (their live sessions go on), changed settings apply to new sessions and streams.
    /// Other settings need a restart. Returns what changed.
    pub fn reload(&self) -> anyhow::Result<serde_json::Value> {
        let Some(reloader) = &self.reloader else { anyhow::bail!("this bridge was started without a config file to reload") };
        let new = reloader()?;
        let old = self.locator.servers();
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
        self.locator.replace_servers(new.servers.clone());
        tracing::info!(%summary, "configuration reloaded");
        Ok(summary)
    }
}

/// What shutdown sets and waits for.
#[derive(Default)]
pub(crate) struct Lifecycle {
    /// Set on SIGTERM: `/readyz` answers 503 from then on, and responses close their
    /// connection.
    draining: AtomicBool,
    /// Requests whose handler is running (an SSE response counts until its head is ready), so
    /// that shutdown lets them finish before the sessions go.
    in_flight: AtomicUsize,
    /// POSTs whose SSE answer stream is open (the head sent or not): other requests being
    /// served, which `streamable::post` reads to decide whether to wait for the first event.
    answering: AtomicUsize,
}

impl Lifecycle {
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Counts a request in flight until the guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> Counted {
        Counted::new(self, |l| &l.in_flight)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a POST's SSE answer stream until the guard (kept by the stream) is dropped.
    pub(crate) fn answering(self: &Arc<Self>) -> Counted {
        Counted::new(self, |l| &l.answering)
    }

    /// POST answer streams open now, this one's included once its guard exists.
    pub(crate) fn answers_open(&self) -> usize {
        self.answering.load(Ordering::Relaxed)
    }
}

/// Counted in one of the lifecycle's gauges (a request in flight, a POST answer open) until it
/// is dropped.
pub(crate) struct Counted(Arc<Lifecycle>, fn(&Lifecycle) -> &AtomicUsize);

impl Counted {
    fn new(lifecycle: &Arc<Lifecycle>, gauge: fn(&Lifecycle) -> &AtomicUsize) -> Counted {
        gauge(lifecycle).fetch_add(1, Ordering::Relaxed);
        Counted(lifecycle.clone(), gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.1)(&self.0).fetch_sub(1, Ordering::Relaxed);
    }
}
