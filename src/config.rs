//! The configuration file: TOML (`mcp-bridge.toml`) or the `mcpServers` JSON of desktop MCP
//! clients, parsed strictly into typed values. Every error names the file, the key and why.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

pub(crate) mod aggregates;
pub(crate) mod auth;
pub(crate) mod credentials;
mod duration;
pub(crate) mod edge;
mod error;
pub(crate) mod limits;
pub(crate) mod pump;
mod redis;
pub(crate) mod rest;
mod sessions;
pub(crate) mod tls;

pub use duration::parse_interval;
use duration::{duration, duration_or};
pub(crate) use error::ConfigError;
pub(crate) use limits::Limits;
pub use redis::{RedisTarget, DEFAULT_SENTINEL_MASTER};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Names this instance in logs; defaults to `host:port`.
    pub instance_id: Option<String>,
    /// Path prefix under which a reverse proxy publishes the bridge, when it does not send
    /// `X-Forwarded-Prefix` itself.
    pub public_base_path: Option<String>,
    pub log_dir: Option<PathBuf>,
    /// `worker_threads`: the runtime's worker threads; `None` is tokio's default (the CPUs).
    pub worker_threads: Option<std::num::NonZeroUsize>,
    /// Where the Redis is: run as one instance of a cluster sharing sessions through it.
    pub redis: Option<RedisTarget>,
    /// `redis_ca_file`: PEM roots trusted for a `rediss://` Redis, instead of the system's.
    pub redis_ca: Option<Vec<u8>>,
    /// Browser origins allowed besides local pages and the bridge's own origin (`*` for any);
    /// their hosts are also accepted in `Host` when the bridge listens on loopback.
    pub allowed_origins: Vec<String>,
    pub sessions: SessionSettings,
    pub limits: Limits,
    /// `[auth]`, validated; `None` leaves the bridge open (fine on loopback).
    pub auth: Option<auth::AuthModel>,
    /// `trusted_proxies`, the `[admin]` and `[metrics]` tokens, checked.
    pub edge: edge::Edge,
    pub servers: BTreeMap<String, Arc<ServerConfig>>,
}

/// Heartbeat settings; `interval: None` switches heartbeats off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub interval: Option<Duration>,
    pub format: HeartbeatFormat,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self { interval: Some(Duration::from_secs(15)), format: HeartbeatFormat::Comment }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HeartbeatFormat {
    /// `: heartbeat` — invisible to clients, resets every idle timer on the path.
    Comment,
    /// `event: heartbeat` with a JSON timestamp, for clients that want to see it.
    Event,
}

/// How sessions are kept and bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionSettings {
    /// A session with no stream attached and no request for this long is ended.
    pub idle_timeout: Duration,
    /// Most events kept per stream for `Last-Event-ID` replay.
    pub event_log_size: usize,
    /// Oldest event kept for replay.
    pub event_log_age: Duration,
    /// Most bytes one session's logs hold, across its streams (see `config/sessions.rs`).
    pub event_log_bytes: u64,
    /// Most bytes all sessions' logs hold together.
    pub max_event_log_memory: u64,
    /// The `retry:` hint sent on every SSE stream.
    pub retry: Duration,
    /// If set, POST and GET streams of clients that negotiated 2025-11-25 or later are closed
    /// after this long (after a `retry:` hint), and the client polls back.
    pub max_stream_lifetime: Option<Duration>,
    /// On SIGTERM, open streams keep flowing this long (with `/readyz` answering 503) before
    /// they are closed and their sessions handed over or ended.
    pub drain_grace: Duration,
    pub heartbeat: Heartbeat,
    /// From `limits.request_timeout`: an upstream request unanswered this long gets an error.
    pub request_timeout: Option<Duration>,
    /// From `limits.max_pending_per_session`.
    pub max_pending: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            event_log_size: 4096,
            event_log_age: Duration::from_secs(600),
            event_log_bytes: sessions::EVENT_LOG_BYTES,
            max_event_log_memory: sessions::MAX_EVENT_LOG_MEMORY,
            retry: Duration::from_secs(1),
            max_stream_lifetime: None,
            drain_grace: Duration::from_secs(1),
            heartbeat: Heartbeat::default(),
            request_timeout: None,
            max_pending: limits::DEFAULT_MAX_PENDING_PER_SESSION,
        }
    }
}

/// One named MCP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub upstream: UpstreamSpec,
    pub heartbeat: Heartbeat,
    /// Answer Streamable HTTP POSTs with one JSON body instead of an SSE stream.
    pub json_response: bool,
    /// A remote server with several instances (`urls`): how sessions are spread over them.
    pub pool: Option<PoolSpec>,
    /// `sharing = "shared"`: one long-lived child serves every session of a stdio server.
    pub shared: bool,
    /// A remote server's `ca_file`, `client_cert`/`client_key`, `proxy`, and its own client.
    pub outbound: Option<tls::Outbound>,
    /// `[servers.NAME.rest]`: how its tools behave over `/rest/` (`config/rest.rs`).
    pub rest: rest::Rest,
    pub oauth2: Option<Arc<credentials::OAuth>>,
}

impl ServerConfig {
    /// The HTTP client for this server: its own when it has outbound settings, else `shared`.
    pub fn http<'a>(&'a self, shared: &'a reqwest::Client) -> &'a reqwest::Client {
        self.outbound.as_ref().map_or(shared, |o| &o.client)
    }

    fn aggregate(name: &str, heartbeat: Heartbeat, v: aggregates::Validated<ServerConfig>) -> ServerConfig {
        let (json_response, rest, upstream) = (v.json_response, v.rest, UpstreamSpec::Aggregate(Arc::new(v.aggregate)));
        let (pool, outbound, oauth2) = (None, None, None);
        ServerConfig { name: name.into(), upstream, heartbeat, json_response, pool, shared: false, outbound, rest, oauth2 }
    }
}

/// Several instances of one remote MCP server. A session sticks to the instance it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    pub urls: Vec<String>,
    pub balance: Balance,
    /// Probe each instance (an MCP initialize) this often; passive checks always run.
    pub health_check_interval: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastSessions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSpec {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
    },
    StreamableHttp {
        url: String,
        headers: BTreeMap<String, String>,
    },
    Sse {
        url: String,
        headers: BTreeMap<String, String>,
    },
    /// `[aggregates.NAME]`: one endpoint merging several servers (`config/aggregates.rs`).
    Aggregate(Arc<aggregates::Aggregate<ServerConfig>>),
}

// ---- the file model -------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileModel {
    listen: Option<String>,
    instance_id: Option<String>,
    public_base_path: Option<String>,
    log_dir: Option<PathBuf>,
    worker_threads: Option<usize>,
    redis: Option<String>,
    #[serde(default)]
    redis_cluster: Vec<String>,
    #[serde(default)]
    redis_sentinel: Vec<String>,
    redis_sentinel_master: Option<String>,
    redis_ca_file: Option<PathBuf>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    heartbeat: Option<HeartbeatModel>,
    sessions: Option<SessionsModel>,
    limits: Option<LimitsModel>,
    auth: Option<auth::AuthModel>,
    admin: Option<edge::TokenModel>,
    metrics: Option<edge::TokenModel>,
    trusted_proxies: Option<Vec<String>>,
    #[serde(default, deserialize_with = "unique_map")]
    servers: Option<Vec<(String, ServerModel)>>,
    #[serde(default, rename = "mcpServers", deserialize_with = "unique_map")]
    mcp_servers: Option<Vec<(String, ServerModel)>>,
    aggregates: Option<BTreeMap<String, aggregates::AggregateModel>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct HeartbeatModel {
    interval: Option<String>,
    format: Option<HeartbeatFormat>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsModel {
    max_body: Option<usize>,
    max_sessions: Option<usize>,
    max_sessions_per_principal: Option<usize>,
    max_children: Option<usize>,
    max_pending_per_session: Option<usize>,
    request_timeout: Option<String>,
    header_read_timeout: Option<String>,
    write_timeout: Option<String>,
    upstream_stall: Option<String>,
    max_message: Option<usize>,
    upstream_queue_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SessionsModel {
    idle_timeout: Option<String>,
    event_log_size: Option<usize>,
    event_log_age: Option<String>,
    event_log_bytes: Option<sessions::ByteSize>,
    max_event_log_memory: Option<sessions::ByteSize>,
    retry: Option<String>,
    max_stream_lifetime: Option<String>,
    drain_grace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerModel {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    /// Several instances of the same remote server.
    #[serde(default)]
    urls: Vec<String>,
    balance: Option<String>,
    health_check_interval: Option<String>,
    #[serde(rename = "type", alias = "transport")]
    kind: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    heartbeat: Option<HeartbeatModel>,
    #[serde(default)]
    json_response: bool,
    /// `per-session` (default) or `shared`, for stdio servers.
    sharing: Option<String>,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    proxy: Option<String>,
    rest: Option<rest::RestModel>,
    oauth2: Option<credentials::OAuthModel>,
}

/// Deserializes a map into ordered pairs, rejecting a name given twice (JSON parsers would
/// otherwise keep the last one silently).
fn unique_map<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<(String, ServerModel)>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(String, ServerModel)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of server names to server definitions")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(String, ServerModel)> = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                if out.iter().any(|(n, _)| *n == name) {
                    return Err(de::Error::custom(format!("duplicate server name `{name}`")));
                }
                let server = map.next_value()?;
                out.push((name, server));
            }
            Ok(out)
        }
    }
    d.deserialize_map(V).map(Some)
}

// ---- loading --------------------------------------------------------------------------

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        let is_json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
        Self::parse(&text, &file, is_json)
    }

    /// Parses config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str, is_json: bool) -> Result<Config, ConfigError> {
        let parse_err = |message: String| ConfigError::Parse { file: file.to_string(), message };
        let model: FileModel = if is_json {
            serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| parse_err(e.to_string().trim_end().to_string()))?
        };
        model.validate(file)
    }
}

impl FileModel {
    fn validate(self, file: &str) -> Result<Config, ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid { file: file.to_string(), key: key.to_string(), reason };
        let listen = match self.listen.as_deref() {
            None => SocketAddr::from(([127, 0, 0, 1], 8051)),
            Some(s) => s.parse().map_err(|e| invalid("listen", format!("`{s}` is not ADDR:PORT ({e})")))?,
        };
        let heartbeat = heartbeat(self.heartbeat.clone().unwrap_or_default(), Heartbeat::default(), "heartbeat", &invalid)?;
        let sessions = self.sessions.unwrap_or_default().validate(heartbeat, &invalid)?;
        if let Some(p) = &self.public_base_path {
            if !p.starts_with('/') {
                return Err(invalid("public_base_path", format!("`{p}` must start with `/`")));
            }
        }
        for o in &self.allowed_origins {
            edge::validate_origin(o).map_err(|r| invalid("allowed_origins", r))?;
        }
        let entries = match (self.servers, self.mcp_servers) {
            (Some(_), Some(_)) => {
                return Err(invalid("mcpServers", "give servers either as `servers` or as `mcpServers`, not both".into()))
            }
            (Some(s), None) | (None, Some(s)) => s,
            (None, None) => return Err(invalid("servers", "no MCP servers are configured".into())),
        };
        let limits = self.limits.unwrap_or_default().validate(&invalid)?;
        if self.worker_threads == Some(0) {
            return Err(invalid("worker_threads", "must be at least 1".into()));
        }
        let mut servers = servers(entries, heartbeat, &invalid)?;
        let is_aggregate = |s: &ServerConfig| matches!(s.upstream, UpstreamSpec::Aggregate(_));
        aggregates::add(self.aggregates, &mut servers, is_aggregate, |name, v| ServerConfig::aggregate(name, heartbeat, v))
            .map_err(|(key, reason)| invalid(&key, reason))?;
        if let Some(auth) = &self.auth {
            let names: Vec<&str> = servers.keys().map(String::as_str).collect();
            auth.check(&names).map_err(|(key, reason)| invalid(&key, reason))?;
        }
        let edge = edge::Edge::validate(self.trusted_proxies.as_deref(), self.admin.as_ref(), self.metrics.as_ref());
        Ok(Config {
            edge: edge.map_err(|(key, reason)| invalid(&key, reason))?,
            listen,
            instance_id: self.instance_id,
            public_base_path: self.public_base_path.map(|p| p.trim_end_matches('/').to_string()),
            log_dir: self.log_dir,
            worker_threads: self.worker_threads.and_then(std::num::NonZeroUsize::new),
            redis_ca: self.redis_ca_file.map(|p| tls::redis_ca(&p).map_err(|r| invalid("redis_ca_file", r))).transpose()?,
            redis: RedisTarget::from_keys(self.redis, self.redis_cluster, self.redis_sentinel, self.redis_sentinel_master)
                .map_err(|(key, reason)| invalid(key, reason))?,
            allowed_origins: self.allowed_origins,
            sessions,
            limits,
            auth: self.auth,
            servers,
        })
    }
}

/// Makes the error for a key of the file; the file's name is in it.
type Invalid<'a> = dyn Fn(&str, String) -> ConfigError + 'a;

impl SessionsModel {
    /// The `[sessions]` section, its absent keys at their defaults.
    fn validate(self, heartbeat: Heartbeat, invalid: &Invalid<'_>) -> Result<SessionSettings, ConfigError> {
        let (s, defaults) = (self, SessionSettings::default());
        let dur = |key: &str, v: &Option<String>, d: Duration| duration_or(key, v, d, invalid);
        let (event_log_bytes, max_event_log_memory) =
            sessions::log_memory(s.event_log_bytes, s.max_event_log_memory).map_err(|(k, r)| invalid(k, r))?;
        Ok(SessionSettings {
            event_log_bytes,
            max_event_log_memory,
            idle_timeout: dur("sessions.idle_timeout", &s.idle_timeout, defaults.idle_timeout)?,
            event_log_size: s.event_log_size.unwrap_or(defaults.event_log_size).max(1),
            event_log_age: dur("sessions.event_log_age", &s.event_log_age, defaults.event_log_age)?,
            retry: dur("sessions.retry", &s.retry, defaults.retry)?,
            drain_grace: dur("sessions.drain_grace", &s.drain_grace, defaults.drain_grace)?,
            max_stream_lifetime: s
                .max_stream_lifetime
                .as_deref()
                .map(|v| duration(v).map_err(|r| invalid("sessions.max_stream_lifetime", r)))
                .transpose()?
                .filter(|d| !d.is_zero()),
            heartbeat,
            request_timeout: None,
            max_pending: defaults.max_pending,
        })
    }
}

impl LimitsModel {
    /// The `[limits]` section, its absent keys at their defaults.
    fn validate(self, invalid: &Invalid<'_>) -> Result<Limits, ConfigError> {
        let (l, d) = (self, Limits::default());
        Ok(Limits {
            max_body: l.max_body.unwrap_or(d.max_body),
            max_sessions: l.max_sessions.unwrap_or(d.max_sessions),
            max_sessions_per_principal: l.max_sessions_per_principal.unwrap_or(d.max_sessions_per_principal),
            max_children: l.max_children.unwrap_or(d.max_children),
            max_pending_per_session: limits::max_pending_per_session(l.max_pending_per_session)
                .map_err(|r| invalid("limits.max_pending_per_session", r))?,
            request_timeout: match l.request_timeout.as_deref() {
                None => d.request_timeout,
                Some(v) => parse_interval(v).map_err(|r| invalid("limits.request_timeout", r))?,
            },
            header_read_timeout: duration_or(
                "limits.header_read_timeout",
                &l.header_read_timeout,
                d.header_read_timeout,
                invalid,
            )?,
            write_timeout: duration_or("limits.write_timeout", &l.write_timeout, d.write_timeout, invalid)?,
            pump: pump::PumpLimits::parse(l.upstream_stall.as_deref(), l.max_message, l.upstream_queue_bytes)
                .map_err(|(k, r)| invalid(k, r))?,
        })
    }
}

/// The `servers` (or `mcpServers`) table, each name checked and each server validated in order.
fn servers(
    entries: Vec<(String, ServerModel)>,
    heartbeat: Heartbeat,
    invalid: &Invalid<'_>,
) -> Result<BTreeMap<String, Arc<ServerConfig>>, ConfigError> {
    let mut servers = BTreeMap::new();
    for (name, model) in entries {
        let key = format!("servers.{name}");
        if !valid_name(&name) {
            return Err(invalid(&key, "a server name may only hold letters, digits, `.`, `_` and `-`".into()));
        }
        let server = model.validate(&name, heartbeat, &key, invalid)?;
        servers.insert(name, Arc::new(server));
    }
    Ok(servers)
}

impl ServerModel {
    fn validate(self, name: &str, global: Heartbeat, key: &str, invalid: &Invalid<'_>) -> Result<ServerConfig, ConfigError> {
        let kind = self.kind.as_deref();
        let pool = self.pool(kind, key, invalid)?;
        let shared = match self.sharing.as_deref() {
            None | Some("per-session") => false,
            Some("shared") if self.command.is_some() => true,
            Some("shared") => {
                return Err(invalid(&format!("{key}.sharing"), "only a stdio server (`command`) can be shared".into()))
            }
            Some(o) => return Err(invalid(&format!("{key}.sharing"), format!("`{o}` is not `per-session` or `shared`"))),
        };
        let (ca_file, client_cert, client_key, proxy) = (self.ca_file, self.client_cert, self.client_key, self.proxy);
        let outbound = tls::outbound(
            tls::OutboundOptions { ca_file, client_cert, client_key, proxy },
            self.command.is_none(),
            key,
            invalid,
        )?;
        let url = self.url.or_else(|| self.urls.first().cloned());
        let upstream = match (self.command, url) {
            (Some(_), Some(_)) => return Err(invalid(key, "has both `command` and `url`; give one".into())),
            (None, None) => return Err(invalid(key, "needs `command` (a stdio server) or `url` (a remote server)".into())),
            (Some(command), None) => {
                if !matches!(kind, None | Some("stdio")) {
                    return Err(invalid(&format!("{key}.type"), "a server with `command` is `stdio`".into()));
                }
                if command.trim().is_empty() {
                    return Err(invalid(&format!("{key}.command"), "is empty".into()));
                }
                UpstreamSpec::Stdio { command, args: self.args, env: self.env, cwd: self.cwd }
            }
            (None, Some(url)) => remote(url, self.headers, kind, key, invalid)?,
        };
        let heartbeat = heartbeat(self.heartbeat.unwrap_or_default(), global, &format!("{key}.heartbeat"), invalid)?;
        let rest = self.rest.unwrap_or_default().validate().map_err(|(k, r)| invalid(&format!("{key}.{k}"), r))?;
        let remote = matches!(upstream, UpstreamSpec::StreamableHttp { .. } | UpstreamSpec::Sse { .. });
        let oauth2 = credentials::oauth2(self.oauth2, remote, key).map_err(|(k, r)| invalid(&k, r))?;
        Ok(ServerConfig {
            name: name.to_string(),
            upstream,
            heartbeat,
            json_response: self.json_response,
            pool,
            shared,
            outbound,
            rest,
            oauth2,
        })
    }

    /// The pool of `urls` with its balance and health checks, if the server has one.
    fn pool(&self, kind: Option<&str>, key: &str, invalid: &Invalid<'_>) -> Result<Option<PoolSpec>, ConfigError> {
        if self.urls.is_empty() {
            if self.balance.is_some() || self.health_check_interval.is_some() {
                return Err(invalid(key, "`balance` and `health_check_interval` go with `urls`".into()));
            }
            return Ok(None);
        }
        if self.url.is_some() || self.command.is_some() {
            return Err(invalid(key, "`urls` replaces `url` and `command`; give only `urls`".into()));
        }
        for u in &self.urls {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(invalid(&format!("{key}.urls"), format!("`{u}` is not an http(s) URL")));
            }
        }
        let balance = match self.balance.as_deref() {
            None | Some("round-robin") => Balance::RoundRobin,
            Some("least-sessions") => Balance::LeastSessions,
            Some(o) => return Err(invalid(&format!("{key}.balance"), format!("`{o}` is not `round-robin` or `least-sessions`"))),
        };
        let health_check_interval = match self.health_check_interval.as_deref() {
            None => None,
            Some(v) => parse_interval(v).map_err(|r| invalid(&format!("{key}.health_check_interval"), r))?,
        };
        if kind == Some("sse") {
            return Err(invalid(
                &format!("{key}.urls"),
                "pools are for Streamable HTTP servers; a legacy SSE server takes one `url`".into(),
            ));
        }
        Ok(Some(PoolSpec { urls: self.urls.clone(), balance, health_check_interval }))
    }
}

/// A remote server at `url`: Streamable HTTP unless `type` says legacy SSE.
fn remote(
    url: String,
    headers: BTreeMap<String, String>,
    kind: Option<&str>,
    key: &str,
    invalid: &Invalid<'_>,
) -> Result<UpstreamSpec, ConfigError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(invalid(&format!("{key}.url"), format!("`{url}` is not an http(s) URL")));
    }
    let headers = credentials::expand_headers(headers, key).map_err(|(k, r)| invalid(&k, r))?;
    match kind {
        None | Some("streamable-http" | "streamableHttp" | "http") => Ok(UpstreamSpec::StreamableHttp { url, headers }),
        Some("sse") => Ok(UpstreamSpec::Sse { url, headers }),
        Some(other) => Err(invalid(&format!("{key}.type"), format!("`{other}` is not one of `sse`, `streamable-http`"))),
    }
}

fn heartbeat(m: HeartbeatModel, base: Heartbeat, key: &str, invalid: &Invalid<'_>) -> Result<Heartbeat, ConfigError> {
    let interval = match m.interval.as_deref() {
        None => base.interval,
        Some(v) => parse_interval(v).map_err(|r| invalid(&format!("{key}.interval"), r))?,
    };
    Ok(Heartbeat { interval, format: m.format.unwrap_or(base.format) })
}

/// Server names appear in URL paths and logs; keep them to a safe alphabet.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests;
