//! The application state: the live server set (replaced on reload), the session registry,
//! the stateless pool, the upstream context, and the flags shutdown sets.

use std::sync::Arc;

use crate::config::{Config, ServerConfig, SessionSettings};
use crate::session::registry::Registry;
use crate::upstream;

/// The configured servers; replaced whole on reload.
pub(crate) type Servers = Arc<std::collections::BTreeMap<String, Arc<ServerConfig>>>;

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
    /// over: from then on this instance takes no session over (`locator::find`).
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
