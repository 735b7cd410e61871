//! The writer task: applies queued writes and publishes in order, as pipelines, and turns each
//! session's journal entries into the Redis records `restore` reads back.

use std::sync::atomic::Ordering;
use std::sync::Weak;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::keys::{key_lease, key_log, key_pending, key_session, Op};
use super::Cluster;
use crate::ids::SessionId;
use crate::session::journal::Entry;

/// Applies queued writes and publishes in order, as pipelines.
pub(super) async fn writer(cluster: Weak<Cluster>, mut conn: ConnectionManager, mut rx: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let Some(c) = cluster.upgrade() else { return };
        let ttl = c.ttl.as_millis() as i64;
        let mut pipe = redis::pipe();
        let mut flushed = Vec::new();
        for op in batch.drain(..) {
            match op {
                Op::Publish { channel, envelope } => {
                    pipe.publish(channel, serde_json::to_string(&envelope).unwrap_or_default()).ignore();
                }
                Op::Session { sid, entry } => write(&mut pipe, sid, entry, c.log_size, ttl),
                Op::Flush(done) => flushed.push(done),
            }
        }
        let ok = pipe.query_async::<()>(&mut conn).await.is_ok();
        flushed.into_iter().for_each(|done| {
            let _ = done.send(());
        });
        if !ok {
            tracing::warn!("redis write failed; sessions keep working locally");
        }
        c.healthy.store(ok, Ordering::Relaxed);
    }
}

/// Adds the Redis writes of one journal entry of session `sid` to `pipe`.
fn write(pipe: &mut redis::Pipeline, sid: SessionId, entry: Entry, log_size: usize, ttl: i64) {
    let field = |pipe: &mut redis::Pipeline, field: &str, value: &[u8]| {
        pipe.hset(key_session(sid), field, value).ignore().pexpire(key_session(sid), ttl).ignore();
    };
    match entry {
        Entry::Event { stream, seq, data, evicted_upto } => {
            let key = key_log(sid, stream);
            let mut member = format!("{seq} ").into_bytes();
            member.extend_from_slice(&data);
            pipe.zadd(&key, member, seq)
                .ignore()
                .zremrangebyrank(&key, 0, -(log_size as isize) - 1)
                .ignore()
                .pexpire(&key, ttl)
                .ignore()
                .hset_multiple(key_session(sid), &[(format!("seq{stream}"), seq), (format!("evicted{stream}"), evicted_upto)])
                .ignore();
        }
        Entry::Reserve { stream, seq } => {
            pipe.hset(key_session(sid), format!("seq{stream}"), seq).ignore();
        }
        Entry::Pending { id, stream } => {
            pipe.hset(key_pending(sid), &*id, stream).ignore().pexpire(key_pending(sid), ttl).ignore();
        }
        Entry::Answered { id } => {
            pipe.hdel(key_pending(sid), &*id).ignore();
        }
        Entry::Initialize(raw) => field(pipe, "init", &raw),
        Entry::ProtocolVersion(v) => field(pipe, "proto", v.as_bytes()),
        Entry::NextStream(n) => field(pipe, "next_stream", n.to_string().as_bytes()),
        Entry::UpstreamSession { url, id } => field(pipe, "upstream_session", format!("{url} {id}").as_bytes()),
        Entry::Forget => {
            pipe.del(&[key_session(sid), key_pending(sid), key_lease(sid)]).ignore();
        }
    }
}
