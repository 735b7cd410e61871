//! Where a session is found: in this instance's registry (memory mode, or a session owned
//! here), or, in cluster mode, at its owner, reached through Redis. Handlers work with a
//! [`Handle`] and never care which; a request for a session owned elsewhere is forwarded, and
//! a session whose owner died is taken over.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::cluster::wire::{Reply, Request};
use crate::cluster::{restore, Cluster, ClusterError, LEASE};
use crate::config::{Config, ServerConfig, SessionSettings};
use crate::protocol::jsonrpc::Peek;
use crate::session;
use crate::session::event_log::Entry;
use crate::session::journal::Journal;
use crate::session::registry::Registry;
use crate::session::{AttachError, Attached, CloseReason, Opened, SendError, Session, SessionId, Target, Transport};

/// The configured servers; replaced whole on reload.
pub(crate) type Servers = Arc<std::collections::BTreeMap<String, Arc<ServerConfig>>>;

/// What finding, creating and taking over sessions needs: this instance's registry, the live
/// server set, the settings as started, the sessions' environment, and the cluster.
#[derive(Clone)]
pub(crate) struct Locator {
    pub(crate) registry: Arc<Registry>,
    /// One for every session here (a copy in each would cost 136 bytes a session).
    pub(crate) env: Arc<session::Env>,
    /// Set in cluster mode (and then it is the sessions' journal too).
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// The configuration as started: limits and session settings.
    pub(crate) config: Arc<Config>,
    servers: Arc<std::sync::RwLock<Servers>>,
    /// Set on shutdown when the sessions are taken out of the registry to be ended or handed
    /// over: from then on this instance takes no session over (`find`).
    pub(crate) retired: Arc<std::sync::atomic::AtomicBool>,
    /// Each server's session settings, shared by its sessions (a copy in each would cost
    /// 152 bytes a session): by server name, made again when they differ (a reload).
    settings: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<SessionSettings>>>>,
}

impl Locator {
    /// `registry` is the one `cluster` serves (see `Cluster::connect`).
    pub(crate) fn new(
        config: Arc<Config>,
        registry: Arc<Registry>,
        mut env: session::Env,
        cluster: Option<Arc<Cluster>>,
    ) -> Locator {
        env.journal = cluster.clone().map(|c| c as Arc<dyn Journal>);
        env.registry = Arc::downgrade(&registry);
        Locator {
            registry,
            env: Arc::new(env),
            cluster,
            servers: Arc::new(std::sync::RwLock::new(Arc::new(config.servers.clone()))),
            config,
            retired: Arc::default(),
            settings: Arc::default(),
        }
    }

    pub(crate) fn server(&self, name: &str) -> Option<Arc<ServerConfig>> {
        self.servers().get(name).cloned()
    }

    /// The servers configured now.
    pub(crate) fn servers(&self) -> Servers {
        self.servers.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the server set (reload).
    pub(crate) fn replace_servers(&self, servers: std::collections::BTreeMap<String, Arc<ServerConfig>>) {
        *self.servers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(servers);
    }

    /// Session settings with the server's own heartbeat.
    pub(crate) fn settings_for(&self, server: &ServerConfig) -> Arc<SessionSettings> {
        let settings = SessionSettings {
            heartbeat: server.heartbeat,
            request_timeout: self.config.limits.request_timeout,
            max_pending: self.config.limits.max_pending_per_session,
            ..self.config.sessions
        };
        let mut shared = self.settings.lock().unwrap_or_else(|e| e.into_inner());
        match shared.get(&server.name) {
            Some(s) if **s == settings => s.clone(),
            _ => {
                let s = Arc::new(settings);
                shared.insert(server.name.clone(), s.clone());
                s
            }
        }
    }
}

/// A session as a handler sees it.
#[derive(Clone)]
pub(crate) enum Handle {
    Local(Arc<Session>),
    Remote(Remote),
}

/// A session owned by another instance.
#[derive(Clone)]
pub(crate) struct Remote {
    pub id: SessionId,
    pub owner: String,
    /// The owner's epoch: streams held for it end when its lease no longer holds it.
    pub epoch: u64,
    pub server: String,
    pub transport: Transport,
    pub protocol_version: Option<String>,
    pub principal: Option<Arc<str>>,
    cluster: Arc<Cluster>,
}

/// Why an operation on a session failed, as the HTTP layer needs to tell it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpError {
    #[error("session not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("events were lost: {0}")]
    Gap(String),
    #[error("cluster unavailable: {0}")]
    Unavailable(#[source] ClusterError),
    /// A limit refused a new session: 503 for the instance's, 429 for the principal's.
    #[error("{message}")]
    Limit { per_principal: bool, message: String },
    /// The session's cap on requests in flight: 429.
    #[error(transparent)]
    TooManyPending(#[from] crate::session::pending::PendingError),
    /// The session's upstream is not taking messages (its queue stayed full): 503.
    #[error("{0}")]
    Busy(String),
    /// The owner answered a forwarded request with a reply to another kind of request (an
    /// inter-instance protocol error): not a missing session.
    #[error("instance {owner} answered a forwarded `{request}` request out of protocol")]
    Protocol { owner: String, request: &'static str },
    /// The owner could not read the messages it was forwarded (an inter-instance protocol
    /// error): not a missing session.
    #[error("instance {owner} could not read the forwarded messages: {detail}")]
    Unreadable { owner: String, detail: String },
}

impl From<SendError> for OpError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Busy(_) => OpError::Busy(e.to_string()),
            SendError::Ended(_) => OpError::NotFound(e.to_string()),
        }
    }
}

impl From<AttachError> for OpError {
    fn from(e: AttachError) -> Self {
        match e {
            AttachError::Conflict => OpError::Conflict(e.to_string()),
            AttachError::Gap(_) => OpError::Gap(e.to_string()),
            _ => OpError::NotFound(e.to_string()),
        }
    }
}

impl From<ClusterError> for OpError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Remote { failure, .. } if failure.conflict => OpError::Conflict(failure.message),
            ClusterError::Remote { failure, .. } if failure.busy => OpError::Busy(failure.message),
            ClusterError::Remote { owner, failure } if failure.unreadable => {
                OpError::Unreadable { owner, detail: failure.message }
            }
            ClusterError::Remote { failure, .. } => OpError::NotFound(failure.message),
            e => OpError::Unavailable(e),
        }
    }
}

/// How the body of a stream held here lets go of it when the client leaves.
pub(crate) enum Detach {
    Local(Arc<Session>),
    Remote(Arc<Cluster>, u64),
}

/// Creates a session owned here; in cluster mode it is registered in Redis before anyone
/// learns its id.
pub(crate) async fn create(
    app: &Locator,
    server: Arc<ServerConfig>,
    transport: Transport,
    principal: Option<Arc<str>>,
) -> Result<Arc<Session>, OpError> {
    let limits = app.config.limits;
    if app.registry.len() >= limits.max_sessions {
        let message = format!("this instance holds its maximum of {} sessions; try again later", limits.max_sessions);
        return Err(OpError::Limit { per_principal: false, message });
    }
    if let Some(p) = &principal {
        if app.registry.count_for(p) >= limits.max_sessions_per_principal {
            let message = format!("client `{p}` holds its maximum of {} sessions", limits.max_sessions_per_principal);
            return Err(OpError::Limit { per_principal: true, message });
        }
    }
    if let Err(left) = app.env.health.admit(&server.name) {
        let message =
            format!("server `{}` keeps crashing; new sessions are refused for {} more s", server.name, left.as_secs() + 1);
        return Err(OpError::Limit { per_principal: false, message });
    }
    let settings = app.settings_for(&server);
    let session = Session::new(SessionId::random(), server, transport, settings, app.env.clone(), principal, None);
    // A legacy SSE session's stream attaches at once, and in one process nothing else needs
    // its task until the upstream starts or the stream goes (an idle stream then costs no task).
    let session = if transport == Transport::Sse && app.cluster.is_none() {
        app.registry.start_idle(session)
    } else {
        app.registry.start(session)
    };
    if let Some(cluster) = &app.cluster {
        if let Err(e) = cluster.register(&session).await {
            app.registry.remove(session.id);
            session.end(CloseReason::Error, "the cluster store is unavailable");
            return Err(OpError::Unavailable(e));
        }
    }
    Ok(session)
}

/// Finds a session for `principal`. A session bound to someone else is "not found", exactly
/// like an unknown one, and the attempt is logged.
pub(crate) async fn find_for(app: &Locator, id: SessionId, principal: Option<&str>) -> Result<Option<Handle>, ClusterError> {
    let Some(h) = find(app, id).await? else { return Ok(None) };
    let owner = match &h {
        Handle::Local(s) => s.principal.as_deref(),
        Handle::Remote(r) => r.principal.as_deref(),
    };
    if owner != principal {
        tracing::warn!(session = %id, requested_by = principal.unwrap_or("-"), "refused a session that belongs to another client");
        return Ok(None);
    }
    Ok(Some(h))
}

/// Finds a session: here, at its owner, or by taking it over from a dead owner (one whose
/// instance lease no longer holds the epoch the session's record names).
pub(crate) async fn find(app: &Locator, id: SessionId) -> Result<Option<Handle>, ClusterError> {
    if app.registry.contains(id) {
        if let Some(cluster) = &app.cluster {
            // A session held here is served only while this instance's lease is surely valid
            // (a rejoin meanwhile may have ended it here: it moved).
            cluster.fence().await?;
        }
    }
    if let Some(s) = app.registry.get(id) {
        return Ok(Some(Handle::Local(s)));
    }
    let Some(cluster) = &app.cluster else { return Ok(None) };
    for attempt in 0..3 {
        // A takeover (the second attempt on) always reads the record afresh.
        let record = if attempt == 0 { cluster.record_to_forward(id).await? } else { cluster.record(id).await? };
        let Some((owner, epoch)) = record.owner.clone() else { return Ok(None) };
        let mine = owner == *cluster.instance && epoch == cluster.epoch();
        if !mine && cluster.alive(&owner, epoch).await? {
            let (Some(server), Some(transport)) = (record.server, record.transport) else { return Ok(None) };
            let transport = Transport::parse(&transport).unwrap_or(Transport::Streamable);
            return Ok(Some(Handle::Remote(Remote {
                id,
                owner,
                epoch,
                server,
                transport,
                protocol_version: record.protocol_version,
                principal: record.principal.filter(|p| !p.is_empty()).map(Arc::from),
                cluster: cluster.clone(),
            })));
        }
        if app.retired.load(std::sync::atomic::Ordering::Relaxed) {
            // Shutting down: this instance's sessions were just handed over; never take one
            // (back) over here, the next instance a client reaches will.
            return Err(ClusterError::ShuttingDown);
        }
        // A lapse during an outage of Redis may be the outage's: the owner may claim it back.
        if !mine && cluster.owner_rejoined(id, &owner, epoch).await? {
            continue;
        }
        // The owner's lease lapsed (or the record names this instance, which no longer holds
        // the session: another request here is taking it over right now, or it just ended).
        // One takeover of a session at a time on this instance, so two requests for it never
        // build two copies of it.
        let asked = std::time::Instant::now();
        let _one = cluster.takeover(id).await;
        if let Some(s) = app.registry.get(id) {
            return Ok(Some(Handle::Local(s)));
        }
        if let Some(s) = take_over(app, cluster, id, &record, asked).await? {
            return Ok(Some(Handle::Local(s)));
        }
    }
    Ok(None)
}

/// Takes `id` over from a dead owner (see `cluster::restore`) and starts it here.
async fn take_over(
    app: &Locator,
    cluster: &Cluster,
    id: SessionId,
    record: &crate::cluster::Record,
    asked: std::time::Instant,
) -> Result<Option<Arc<Session>>, ClusterError> {
    let locked = asked.elapsed();
    let server = |name: &str| app.server(name).map(|s| (s.clone(), app.settings_for(&s)));
    // The epoch the record is claimed with stays this instance's until the session is in the
    // registry, where a rejoin's reclaim finds it.
    let epoch = cluster.epoch_held().await?;
    let Some(t) = restore::take_over(cluster, id, record, server).await? else { return Ok(None) };
    let session = Session::new(id, t.server, t.transport, t.settings, app.env.clone(), t.principal, Some(t.restored));
    let session = app.registry.start(session);
    cluster.index(&session);
    drop(epoch);
    let (claimed, lost) = (asked.elapsed(), t.lost.len());
    session.answered_before(t.done);
    session.fail_lost(t.lost);
    session.replay_initialize().await;
    tracing::info!(
        session = %id, server = %session.server.name, lost, instance = %cluster.instance, epoch = cluster.epoch(),
        lock_ms = locked.as_millis() as u64, claim_ms = (claimed - locked).as_millis() as u64,
        initialize_ms = (asked.elapsed() - claimed).as_millis() as u64, "session taken over"
    );
    Ok(Some(session))
}

/// After `failed` stopped answering for a session: waits for its lease to lapse, then finds
/// the session again (taken over here, or by another live instance).
async fn recover(app: &Locator, id: SessionId, failed: &str) -> Result<Handle, OpError> {
    let deadline = tokio::time::Instant::now() + LEASE * 2;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Some(cluster) = &app.cluster {
            // What was read before the owner failed the request is not used again.
            cluster.forget_forwarding(id);
        }
        match find(app, id).await {
            Ok(Some(Handle::Remote(r))) if r.owner == failed => {}
            Ok(Some(h)) => return Ok(h),
            Ok(None) => return Err(OpError::NotFound(format!("session {id} is gone"))),
            // Redis or the takeover failed this time; try again, and keep the cause.
            Err(e) => last = Some(Box::new(e)),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(OpError::Unavailable(ClusterError::OwnerGone { id, last }))
}

/// The owner did not answer, or no longer holds the session: find it again.
fn owner_gone(e: &ClusterError) -> bool {
    matches!(e, ClusterError::Timeout(_)) || matches!(e, ClusterError::Remote { failure, .. } if failure.moved)
}

fn strings(messages: &[(Bytes, Peek)]) -> Vec<String> {
    messages.iter().map(|(raw, _)| String::from_utf8_lossy(raw).into_owned()).collect()
}

impl Handle {
    pub(crate) fn id(&self) -> SessionId {
        match self {
            Handle::Local(s) => s.id,
            Handle::Remote(r) => r.id,
        }
    }

    pub(crate) fn server_name(&self) -> &str {
        match self {
            Handle::Local(s) => &s.server.name,
            Handle::Remote(r) => &r.server,
        }
    }

    pub(crate) fn transport(&self) -> Transport {
        match self {
            Handle::Local(s) => s.transport,
            Handle::Remote(r) => r.transport,
        }
    }

    pub(crate) fn protocol_version(&self) -> Option<String> {
        match self {
            Handle::Local(s) => s.protocol_version(),
            Handle::Remote(r) => r.protocol_version.clone(),
        }
    }

    /// Sends client messages; requests answer on `stream`.
    pub(crate) async fn send(
        &self,
        app: &Locator,
        messages: Vec<(Bytes, Peek)>,
        stream: impl Into<Target>,
    ) -> Result<(), OpError> {
        let stream = stream.into();
        match self {
            Handle::Local(s) => {
                s.check_room(&messages)?;
                Ok(s.send(messages, stream).await?)
            }
            Handle::Remote(r) => {
                match r
                    .cluster
                    .call((&r.owner, r.epoch), r.id, Request::Send { stream: stream.to_wire(), messages: strings(&messages) })
                    .await
                {
                    Err(e) if owner_gone(&e) => Box::pin(recover(app, r.id, &r.owner).await?.send(app, messages, stream)).await,
                    other => other.map(|_| ()).map_err(OpError::from),
                }
            }
        }
    }

    /// Opens a POST stream for `requests` requests and sends the messages.
    pub(crate) async fn open(
        &self,
        app: &Locator,
        messages: Vec<(Bytes, Peek)>,
        requests: usize,
        json: bool,
    ) -> Result<(Opened, Attached, Detach), OpError> {
        match self {
            Handle::Local(s) => open_local(s, messages, requests, json).await,
            Handle::Remote(r) => {
                let (token, rx, reason) = r.cluster.hold(&r.owner, r.epoch, r.id);
                let body = Request::Open { requests, json, token, messages: strings(&messages) };
                match r.cluster.call((&r.owner, r.epoch), r.id, body).await {
                    Ok(Reply::Opened { stream, priming, polling }) => {
                        r.cluster.held_stream(token, stream, None);
                        let attached = Attached { stream, replay: Vec::new(), rx, reason };
                        Ok((Opened { stream, priming, polling }, attached, Detach::Remote(r.cluster.clone(), token)))
                    }
                    Err(e) if owner_gone(&e) => {
                        r.cluster.release_held(token);
                        Box::pin(recover(app, r.id, &r.owner).await?.open(app, messages, requests, json)).await
                    }
                    Err(e) => {
                        r.cluster.release_held(token);
                        Err(e.into())
                    }
                    Ok(_) => Err(OpError::Protocol { owner: r.owner.clone(), request: "open" }),
                }
            }
        }
    }

    /// Attaches a client to `stream`, replaying after `after`; also says whether the client
    /// negotiated polling.
    pub(crate) async fn attach(
        &self,
        app: &Locator,
        stream: u32,
        after: Option<u64>,
        replace: bool,
    ) -> Result<(Attached, bool, Detach), OpError> {
        match self {
            Handle::Local(s) => attach_local(s, stream, after, replace),
            Handle::Remote(r) => {
                let (token, rx, reason) = r.cluster.hold(&r.owner, r.epoch, r.id);
                match r.cluster.call((&r.owner, r.epoch), r.id, Request::Attach { stream, after, replace, token }).await {
                    Ok(Reply::Attached { stream, replay, done, polling }) => {
                        r.cluster.held_stream(token, stream, replay.last().map(|(seq, _)| *seq).or(after));
                        let replay = replay.into_iter().map(|(seq, data)| Entry::replayed(seq, Bytes::from(data))).collect();
                        if done {
                            let _ = reason.set(CloseReason::Completed);
                            r.cluster.release_held(token);
                        }
                        Ok((Attached { stream, replay, rx, reason }, polling, Detach::Remote(r.cluster.clone(), token)))
                    }
                    Err(e) if owner_gone(&e) => {
                        r.cluster.release_held(token);
                        Box::pin(recover(app, r.id, &r.owner).await?.attach(app, stream, after, replace)).await
                    }
                    Err(e) => {
                        r.cluster.release_held(token);
                        Err(e.into())
                    }
                    Ok(_) => Err(OpError::Protocol { owner: r.owner.clone(), request: "attach" }),
                }
            }
        }
    }

    /// Ends the session wherever it lives.
    pub(crate) async fn end(&self, app: &Locator, reason: CloseReason, detail: &str) -> Result<(), OpError> {
        match self {
            Handle::Local(s) => {
                app.registry.remove(s.id);
                s.end(reason, detail);
                Ok(())
            }
            Handle::Remote(r) => {
                r.cluster.call((&r.owner, r.epoch), r.id, Request::End { reason: reason.as_str().to_string() }).await?;
                Ok(())
            }
        }
    }
}

async fn open_local(
    s: &Arc<Session>,
    messages: Vec<(Bytes, Peek)>,
    requests: usize,
    json: bool,
) -> Result<(Opened, Attached, Detach), OpError> {
    s.check_room(&messages)?;
    let (opened, attached) = s.open_stream(requests, json)?;
    s.send(messages, opened.stream).await?;
    Ok((opened, attached, Detach::Local(s.clone())))
}

fn attach_local(s: &Arc<Session>, stream: u32, after: Option<u64>, replace: bool) -> Result<(Attached, bool, Detach), OpError> {
    let attached = s.attach(stream, after, replace)?;
    Ok((attached, s.negotiated_polling(), Detach::Local(s.clone())))
}
