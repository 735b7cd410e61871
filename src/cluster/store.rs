//! The connection to Redis in each deployment mode, behind one type the rest of the cluster
//! queries ([`Conn`]): one server; a Redis Cluster (commands routed by slot by the redis
//! crate's cluster client, inbox on sharded pub/sub, resubscribed when slots move); or the
//! primary that Sentinel names, followed through failovers.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, RedisFuture, RedisResult, TlsCertificates, Value};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::RedisTarget;

/// How long connecting, and each answer, may take before the call fails.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How often the sentinels are asked which server is the primary.
const FOLLOW: Duration = Duration::from_millis(500);

/// A connection to whichever Redis the mode names; cheap to clone.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipe: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipe, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipe, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// This instance's way to Redis: commands, and its inbox channel, whose messages arrive on
/// the push sender given to [`Store::connect`].
pub(crate) struct Store {
    mode: Mode,
    /// The instance lease's own connection in a Redis Cluster (see [`Store::lease_conn`]).
    lease: Option<ClusterConnection>,
    channel: String,
}

enum Mode {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<Followed>),
}

/// The primary Sentinel names now, replaced when it names another.
struct Followed {
    current: RwLock<(String, ConnectionManager)>,
    sentinel: tokio::sync::Mutex<SentinelClient>,
    push: UnboundedSender<PushInfo>,
    channel: String,
}

impl Store {
    /// Connects and subscribes to `channel` (sharded in a Redis Cluster). `ca`: PEM roots for
    /// `rediss://` servers whose CA is not in the system's.
    pub(crate) async fn connect(
        target: &RedisTarget,
        ca: Option<&[u8]>,
        channel: String,
        push: UnboundedSender<PushInfo>,
    ) -> RedisResult<Store> {
        let mut lease = None;
        let mode = match target {
            RedisTarget::Single(url) => {
                let client = crate::config::tls::redis_client(&resp3(url), ca)?;
                Mode::Single(manager(client, push, &channel).await?)
            }
            RedisTarget::Cluster(urls) => {
                let builder = || {
                    let b = ClusterClientBuilder::new(urls.clone())
                        .use_protocol(ProtocolVersion::RESP3)
                        .connection_timeout(TIMEOUT)
                        .response_timeout(TIMEOUT);
                    match ca {
                        Some(pem) => b.certs(TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) }),
                        None => b,
                    }
                };
                let mut conn = builder().push_sender(push).build()?.get_async_connection().await?;
                conn.ssubscribe(&channel).await?;
                lease = Some(builder().build()?.get_async_connection().await?);
                Mode::Cluster(conn)
            }
            RedisTarget::Sentinel { master, sentinels } => {
                let mut sentinel = sentinel_client(master, sentinels, ca)?;
                let client = sentinel.async_get_client().await?;
                let addr = client.get_connection_info().addr().to_string();
                let current = manager(client, push.clone(), &channel).await?;
                let followed = Arc::new(Followed {
                    current: RwLock::new((addr, current)),
                    sentinel: tokio::sync::Mutex::new(sentinel),
                    push,
                    channel: channel.clone(),
                });
                tokio::spawn(follow(Arc::downgrade(&followed)));
                Mode::Sentinel(followed)
            }
        };
        Ok(Store { mode, lease, channel })
    }

    /// The connection the instance lease is renewed on. In a Redis Cluster it is a connection
    /// of its own: while the client refreshes its view of the cluster after a node failed
    /// (which holds up the requests on that connection), the lease, whose primary is alive,
    /// is still renewed.
    pub(crate) fn lease_conn(&self) -> Conn {
        match &self.lease {
            Some(c) => Conn::Cluster(c.clone()),
            None => self.conn(),
        }
    }

    /// Subscribes to the inbox channel again: Redis drops a sharded subscription when its
    /// slot moves, and a probe that did not come back says the subscription is gone.
    pub(crate) async fn resubscribe(&self) -> RedisResult<()> {
        match &self.mode {
            Mode::Single(c) => c.clone().subscribe(&self.channel).await,
            Mode::Cluster(c) => c.clone().ssubscribe(&self.channel).await,
            Mode::Sentinel(f) => {
                let mut c = f.current.read().unwrap_or_else(|e| e.into_inner()).1.clone();
                c.subscribe(&self.channel).await
            }
        }
    }

    /// This instance's inbox channel.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// A connection for one or more commands.
    pub(crate) fn conn(&self) -> Conn {
        match &self.mode {
            Mode::Single(c) => Conn::Single(c.clone()),
            Mode::Cluster(c) => Conn::Cluster(c.clone()),
            Mode::Sentinel(f) => Conn::Single(f.current.read().unwrap_or_else(|e| e.into_inner()).1.clone()),
        }
    }

    /// A Redis Cluster: a pipeline holds keys of one slot only, and pub/sub is sharded.
    pub(crate) fn sharded(&self) -> bool {
        matches!(self.mode, Mode::Cluster(_))
    }

    /// The command that publishes to an instance's inbox channel.
    pub(crate) fn publish_command(&self) -> &'static str {
        if self.sharded() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }
}

/// `url` asking for RESP3 (pushes on the command connection), unless it says otherwise.
fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_string()
    } else {
        format!("{url}{}protocol=resp3", if url.contains('?') { '&' } else { '?' })
    }
}

/// A reconnecting connection to one server, subscribed to `channel` (again after reconnects).
async fn manager(client: redis::Client, push: UnboundedSender<PushInfo>, channel: &str) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_push_sender(push)
        .set_automatic_resubscription()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_max_delay(Duration::from_secs(1));
    let mut conn = ConnectionManager::new_with_config(client, config).await?;
    conn.subscribe(channel).await?;
    Ok(conn)
}

fn sentinel_client(master: &str, sentinels: &[String], ca: Option<&[u8]>) -> RedisResult<SentinelClient> {
    let infos = sentinels.iter().map(|u| u.as_str().into_connection_info()).collect::<RedisResult<Vec<_>>>()?;
    let tls = sentinels.iter().any(|u| u.starts_with("rediss://"));
    let mut b = SentinelClientBuilder::new(infos.iter().map(|i| i.addr().clone()), master, SentinelServerType::Master)?
        .set_client_to_redis_protocol(ProtocolVersion::RESP3);
    if let Some(info) = infos.first() {
        let settings = info.redis_settings();
        if let Some(user) = settings.username() {
            b = b.set_client_to_redis_username(user).set_client_to_sentinel_username(user);
        }
        if let Some(password) = settings.password() {
            b = b.set_client_to_redis_password(password).set_client_to_sentinel_password(password);
        }
    }
    if tls {
        b = b.set_client_to_redis_tls_mode(redis::TlsMode::Secure).set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
        if let Some(pem) = ca {
            let certs = || TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) };
            b = b.set_client_to_redis_certificates(certs()).set_client_to_sentinel_certificates(certs());
        }
    }
    b.build()
}

/// Asks the sentinels for the primary every [`FOLLOW`]; when they name another server (a
/// failover), connects to it, subscribes, and makes it the connection every caller gets.
async fn follow(followed: Weak<Followed>) {
    let mut tick = tokio::time::interval(FOLLOW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(f) = followed.upgrade() else { return };
        let asked = tokio::time::timeout(TIMEOUT, async { f.sentinel.lock().await.async_get_client().await }).await;
        let Ok(Ok(client)) = asked else { continue };
        let addr = client.get_connection_info().addr().to_string();
        if f.current.read().unwrap_or_else(|e| e.into_inner()).0 == addr {
            continue;
        }
        match tokio::time::timeout(TIMEOUT * 2, manager(client, f.push.clone(), &f.channel)).await {
            Ok(Ok(conn)) => {
                tracing::warn!(primary = %addr, "redis primary changed (sentinel failover); following it");
                *f.current.write().unwrap_or_else(|e| e.into_inner()) = (addr, conn);
            }
            Ok(Err(e)) => tracing::warn!(primary = %addr, error = %e, "cannot connect to the primary sentinel names"),
            Err(_) => tracing::warn!(primary = %addr, "connecting to the primary sentinel names timed out"),
        }
    }
}
