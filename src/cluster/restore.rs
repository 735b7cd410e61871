//! Taking over a session whose owner died: claim its lease, and read back from its record, its
//! pending requests and its event logs in Redis what the session starts from. The locator
//! then installs the session, answers what was lost with errors, and re-creates the upstream
//! side by replaying the client's own initialize.

use std::collections::HashMap;
use std::sync::Arc;

use super::keys::{key_done, key_log_prefix};
use super::records::Record;
use super::{key_pending, key_session, Cluster, ClusterError};
use crate::config::{ServerConfig, SessionSettings};
use crate::ids::{SessionId, Transport};
use crate::session::event_log::memory::Budget;
use crate::session::event_log::EventLog;
use crate::session::Restored;
use bytes::Bytes;

/// Names this instance (and its epoch) as the owner if the record still names the lapsed
/// owner, clears any expiry the janitor gave it, and returns in the same round trip what the
/// session starts from: the record, the pending requests, the latest answered ones and each
/// stream's event log (`{stream, members}` pairs); nil when the record names another owner.
/// Every key shares the session's hash tag, so in a Redis Cluster they are in one slot.
const CLAIM: &str = r#"
local o = redis.call('HMGET', KEYS[1], 'owner', 'epoch')
if o[1] ~= ARGV[1] or o[2] ~= ARGV[2] then return false end
redis.call('HSET', KEYS[1], 'owner', ARGV[3], 'epoch', ARGV[4])
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
local record = redis.call('HGETALL', KEYS[1])
local logs = {}
for i = 1, #record, 2 do
  local n = string.match(record[i], '^seq(%d+)$')
  if n then logs[#logs + 1] = {n, redis.call('ZRANGE', ARGV[5] .. n, 0, -1)} end
end
return {record, redis.call('HGETALL', KEYS[2]), redis.call('LRANGE', KEYS[3], 0, -1), logs}"#;

/// What [`CLAIM`] returns: the record, the pending requests (id → stream), the answered
/// ones (`"<stream> <id>"`) and the event logs by stream.
type Claimed = (HashMap<String, Vec<u8>>, HashMap<String, u32>, Vec<String>, Vec<(u32, Vec<Vec<u8>>)>);

/// How far a taken-over stream's numbering jumps past the last event written to Redis: more
/// than an owner can send between writing an event and the writer getting it to Redis.
const SEQ_GAP: u64 = 1 << 20;

/// A session claimed here, read back from Redis, for the locator to start.
pub(crate) struct Taken {
    pub server: Arc<ServerConfig>,
    pub transport: Transport,
    pub settings: Arc<SessionSettings>,
    pub principal: Option<Arc<str>>,
    pub restored: Restored,
    /// Requests that were in flight on the dead owner, and the streams they answer on.
    pub lost: Vec<(Box<str>, u32)>,
    /// The latest requests the dead owner answered, and the streams the answers went to.
    pub done: Vec<(Box<str>, u32)>,
}

/// Takes `sid` over from `from`, the owner (instance, epoch) its record names and whose lease
/// lapsed: a compare-and-set on the record, so that of several instances trying at once one
/// wins. `record` is the session's record as read just before, and `server` gives the server
/// config and session settings of a server name. `Ok(None)`: the server is unknown here, or
/// the record changed meanwhile (another instance took it first, or its owner claimed it back).
pub(crate) async fn take_over(
    cluster: &Cluster,
    sid: SessionId,
    record: &Record,
    server: impl Fn(&str) -> Option<(Arc<ServerConfig>, Arc<SessionSettings>)>,
) -> Result<Option<Taken>, ClusterError> {
    let Some((from, from_epoch)) = &record.owner else { return Ok(None) };
    let Some((server, settings)) = record.server.as_deref().and_then(server) else { return Ok(None) };
    let Some(transport) = record.transport.as_deref().and_then(Transport::parse) else { return Ok(None) };
    let mut conn = cluster.conn();
    let claimed: Option<Claimed> = redis::Script::new(CLAIM)
        .key(key_session(sid))
        .key(key_pending(sid))
        .key(key_done(sid))
        .arg(from)
        .arg(from_epoch)
        .arg(&*cluster.instance)
        .arg(cluster.epoch())
        .arg(key_log_prefix(sid))
        .invoke_async(&mut conn)
        .await?;
    let Some((record, pending, done, logs)) = claimed else { return Ok(None) };
    crate::metrics::get().takeovers.inc();
    let text = |k: &str| record.get(k).map(|v| String::from_utf8_lossy(v).into_owned());
    let mut streams = Vec::new();
    // The session's own budget takes these logs' charges over when it adopts them.
    let budget = Budget::new(settings.event_log_bytes, settings.max_event_log_memory);
    for (n, members) in logs {
        let last_seq = text(&format!("seq{n}")).and_then(|v| v.parse().ok()).unwrap_or(0);
        let evicted = text(&format!("evicted{n}")).and_then(|v| v.parse().ok()).unwrap_or(0);
        let entries = members
            .into_iter()
            .filter_map(|m| {
                let split = m.iter().position(|&b| b == b' ')?;
                let seq = std::str::from_utf8(&m[..split]).ok()?.parse().ok()?;
                Some((seq, Bytes::copy_from_slice(&m[split + 1..])))
            })
            .collect();
        // Numbering goes on past a gap: events the dead owner sent its client but had not yet
        // written here keep their numbers, and a client resuming after one of them still gets
        // every event numbered here (none shares a number with one it already has).
        let next_from = last_seq + SEQ_GAP;
        streams.push((
            n,
            EventLog::restore(settings.event_log_size, settings.event_log_age, budget.clone(), entries, next_from, evicted),
        ));
    }
    let done = done.iter().filter_map(|d| d.split_once(' ').and_then(|(n, id)| Some((Box::from(id), n.parse().ok()?)))).collect();
    let restored = Restored {
        protocol_version: text("proto"),
        initialize: record.get("init").map(|v| Bytes::copy_from_slice(v)),
        upstream_session: text("upstream_session").and_then(|v| v.split_once(' ').map(|(u, i)| (u.to_string(), i.to_string()))),
        next_stream: text("next_stream").and_then(|v| v.parse().ok()).unwrap_or(1),
        streams,
    };
    let principal = text("principal").filter(|p| !p.is_empty()).map(Arc::from);
    let lost = pending.into_iter().map(|(id, stream)| (Box::from(id.as_str()), stream)).collect();
    Ok(Some(Taken { server, transport, settings, principal, restored, lost, done }))
}
