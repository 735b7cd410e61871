//! Sessions whose owner died and that no client came back for: their records have no expiry
//! while an owner holds them (idle sessions cost Redis nothing), so when an instance's epoch
//! lapses, one live instance gives the records of that epoch's sessions their expiry, and a
//! takeover within it clears it again.

use super::keys::{key_index, key_lease, key_pending, key_session, parse_epoch_member, KEY_EPOCHS};
use super::Cluster;
use crate::ids::SessionId;

/// Sweeps run every this many renewals.
pub(super) const EVERY: u64 = 10;
/// Sessions expired per round trip.
const BATCH: usize = 256;

/// Sets the expiry of a session's record and pending requests if the dead epoch still owns it.
const EXPIRE_IF_OWNED: &str = r#"
local o = redis.call('HMGET', KEYS[1], 'owner', 'epoch')
if o[1] == ARGV[1] and o[2] == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0"#;

/// Finds the epochs whose lease lapsed; the instance that removes one from the list sweeps it.
pub(super) async fn sweep(c: &Cluster) {
    let mut conn = c.conn();
    let Ok(members) = redis::cmd("SMEMBERS").arg(KEY_EPOCHS).query_async::<Vec<String>>(&mut conn).await else { return };
    for member in members {
        let Some((instance, epoch)) = parse_epoch_member(&member).map(|(i, e)| (i.to_string(), e)) else { continue };
        let Ok(lease) = redis::cmd("GET").arg(key_lease(&instance)).query_async::<Option<u64>>(&mut conn).await else { return };
        if lease == Some(epoch) {
            continue;
        }
        let Ok(1) = redis::cmd("SREM").arg(KEY_EPOCHS).arg(&member).query_async::<i64>(&mut conn).await else { continue };
        let ttl = c.ttl.as_millis() as u64;
        let conn = c.conn();
        tokio::spawn(async move {
            let expired = expire_epoch(conn, &instance, epoch, ttl).await;
            tracing::info!(instance = %instance, epoch, expired, "swept the sessions of a lapsed instance epoch");
        });
    }
}

/// Gives every session still owned by (`instance`, `epoch`) its expiry; returns how many.
async fn expire_epoch(mut conn: super::Conn, instance: &str, epoch: u64, ttl: u64) -> usize {
    let index = key_index(instance, epoch);
    let Ok(ids) = redis::cmd("SMEMBERS").arg(&index).query_async::<Vec<String>>(&mut conn).await else { return 0 };
    let script = redis::Script::new(EXPIRE_IF_OWNED);
    let mut expired = 0;
    for chunk in ids.chunks(BATCH) {
        let calls = chunk.iter().filter_map(|id| SessionId::parse(id)).map(|sid| {
            let mut conn = conn.clone();
            let mut call = script.key(key_session(sid));
            call.key(key_pending(sid)).arg(instance).arg(epoch).arg(ttl);
            async move { call.invoke_async::<i64>(&mut conn).await }
        });
        expired += futures_util::future::join_all(calls).await.into_iter().filter(|r| matches!(r, Ok(1))).count();
    }
    let _: Result<(), _> = redis::cmd("DEL").arg(&index).query_async(&mut conn).await;
    expired
}
