//! Reading the cluster's session records: one session's (to forward to its owner), whether
//! one exists, and every session's (the admin list).

use redis::AsyncCommands;

use super::{key_lease, key_session, Cluster, ClusterError, Listed};
use crate::ids::SessionId;

/// What a session's record says, for an instance that forwards to its owner.
pub(crate) struct Record {
    pub server: Option<String>,
    pub transport: Option<String>,
    pub protocol_version: Option<String>,
    pub principal: Option<String>,
}

impl Cluster {
    /// The record of `sid` (every field `None` when there is none).
    pub(crate) async fn record(&self, sid: SessionId) -> Result<Record, ClusterError> {
        let mut conn = self.conn();
        let (server, transport, protocol_version, principal) = redis::cmd("HMGET")
            .arg(key_session(sid))
            .arg("server")
            .arg("transport")
            .arg("proto")
            .arg("principal")
            .query_async(&mut conn)
            .await?;
        Ok(Record { server, transport, protocol_version, principal })
    }

    /// Whether `sid` has a record.
    pub(crate) async fn has_record(&self, sid: SessionId) -> Result<bool, ClusterError> {
        let mut conn = self.conn();
        Ok(conn.exists(key_session(sid)).await?)
    }

    /// Deletes the lease of `sid` whoever holds it (this instance's own, on a session it no
    /// longer holds: it restarted).
    pub(crate) async fn drop_lease(&self, sid: SessionId) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        let _: () = conn.del(key_lease(sid)).await?;
        Ok(())
    }

    /// Every session in the cluster, from the records in Redis (bounded scan).
    pub(crate) async fn list_sessions(&self) -> Result<Vec<Listed>, ClusterError> {
        let mut conn = self.conn();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("mcpb:sess:*")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 || keys.len() >= 100_000 {
                break;
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(id) = key.strip_prefix("mcpb:sess:") else { continue };
            let (server, transport, principal): (Option<String>, Option<String>, Option<String>) =
                redis::cmd("HMGET").arg(&key).arg("server").arg("transport").arg("principal").query_async(&mut conn).await?;
            let owner: Option<String> = conn.get(format!("mcpb:lease:{id}")).await?;
            out.push(Listed {
                id: id.to_string(),
                server: server.unwrap_or_default(),
                transport: transport.unwrap_or_default(),
                principal: principal.filter(|p| !p.is_empty()),
                owner,
            });
        }
        Ok(out)
    }
}
