//! Reading the cluster's session records: one session's (to forward to its owner, or to take
//! it over), and every session's (the admin list, from the instances' indexes).

use std::time::Duration;

use super::keys::{key_index, key_session, parse_epoch_member, KEY_EPOCHS};
use super::recent::Recent;
use super::{Cluster, ClusterError, Listed};
use crate::ids::SessionId;

/// The most sessions the admin list reads.
const LIST_MAX: usize = 100_000;

/// What a session's record says, for an instance that forwards to its owner.
#[derive(Clone)]
pub(crate) struct Record {
    pub server: Option<String>,
    pub transport: Option<String>,
    pub protocol_version: Option<String>,
    pub principal: Option<String>,
    /// The owner instance and the epoch it owns the session in.
    pub owner: Option<(String, u64)>,
}

/// How long a record read to forward a request is used again for the next ones: a client
/// that sends one request after another to a session owned elsewhere costs one read of
/// its record per period, not one per request. A record that changed meanwhile (the session
/// moved or ended) only sends a request to its old owner, which refuses or does not answer
/// (then `locator::recover` reads it again).
const FORWARD_FOR: Duration = Duration::from_millis(250);
/// The most records kept for forwarding.
const FORWARD_MAX: usize = 16_384;

/// Records recently read to forward requests.
pub(super) struct Forwarding(Recent<SessionId, Record>);

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding(Recent::new(FORWARD_MAX))
    }
}

impl Cluster {
    /// The record of `sid` as read for a request less than [`FORWARD_FOR`] ago, or read now.
    /// Only for forwarding: a takeover reads the record afresh ([`Cluster::record`]).
    pub(crate) async fn record_to_forward(&self, sid: SessionId) -> Result<Record, ClusterError> {
        if let Some(r) = self.forwarding.0.get(&sid) {
            return Ok(r);
        }
        let r = self.record(sid).await?;
        if r.owner.is_some() {
            self.forwarding.0.insert(sid, r.clone(), FORWARD_FOR);
        }
        Ok(r)
    }

    /// Forgets what [`Cluster::record_to_forward`] kept of `sid` (its owner failed it).
    pub(crate) fn forget_forwarding(&self, sid: SessionId) {
        self.forwarding.0.remove(&sid);
    }

    /// The record of `sid` (every field `None` when there is none).
    pub(crate) async fn record(&self, sid: SessionId) -> Result<Record, ClusterError> {
        let mut conn = self.conn();
        let (server, transport, protocol_version, principal, owner, epoch): (_, _, _, _, Option<String>, Option<u64>) =
            redis::cmd("HMGET")
                .arg(key_session(sid))
                .arg(&["server", "transport", "proto", "principal", "owner", "epoch"])
                .query_async(&mut conn)
                .await?;
        Ok(Record { server, transport, protocol_version, principal, owner: owner.zip(epoch) })
    }

    /// Every session in the cluster, from the indexes of the epochs that may own sessions.
    pub(crate) async fn list_sessions(&self) -> Result<Vec<Listed>, ClusterError> {
        let mut conn = self.conn();
        let epochs: Vec<String> = redis::cmd("SMEMBERS").arg(KEY_EPOCHS).query_async(&mut conn).await?;
        let mut out = Vec::new();
        for member in epochs {
            let Some((instance, epoch)) = parse_epoch_member(&member) else { continue };
            let ids: Vec<String> = redis::cmd("SMEMBERS").arg(key_index(instance, epoch)).query_async(&mut conn).await?;
            for id in ids.iter().filter_map(|id| SessionId::parse(id)) {
                if out.len() >= LIST_MAX {
                    return Ok(out);
                }
                let r = self.record(id).await?;
                // Listed under the epoch that owns it now (a session taken over is in two indexes).
                if r.owner.as_ref().is_none_or(|(i, e)| i != instance || *e != epoch) {
                    continue;
                }
                out.push(Listed {
                    id: id.to_string(),
                    server: r.server.unwrap_or_default(),
                    transport: r.transport.unwrap_or_default(),
                    principal: r.principal.filter(|p| !p.is_empty()),
                    owner: Some(instance.to_string()),
                });
            }
        }
        Ok(out)
    }
}
