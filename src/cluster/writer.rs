//! The writer task: applies queued writes and publishes in order, as pipelines, and turns each
//! session's journal entries into the Redis records `restore` reads back. In a Redis Cluster a
//! pipeline may only hold keys of one slot, so a batch becomes one pipeline per hash tag (one
//! session's keys, or one instance's), sent together.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::mpsc;

use super::keys::{channel, key_done, key_index, key_log, key_pending, key_session, Op};
use super::Cluster;
use crate::ids::SessionId;
use crate::session::journal::Entry;

/// Ops taken from the queue per round.
const BATCH: usize = 256;
/// Answered requests a session's record keeps (`Entry::Done`), for its next owner.
pub(super) const DONE_KEPT: isize = 256;
/// How long a failed write or publish is tried again before it is given up (and logged):
/// longer than a Redis Cluster or Sentinel failover takes here (about 2.5 s).
pub(super) const RETRY_FOR: Duration = Duration::from_secs(5);
/// The longest pause between two tries.
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// The ops of one hash tag: the writes, and the publishes (frames, closes and detaches for
/// other instances), sent after them.
#[derive(Default)]
struct Group {
    writes: redis::Pipeline,
    publishes: redis::Pipeline,
}

/// Applies queued writes and publishes in order, as pipelines.
pub(super) async fn writer(cluster: Weak<Cluster>, mut rx: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let Some(c) = cluster.upgrade() else { return };
        // Nothing of a session is written by an instance whose lease may have lapsed before
        // it knows it still owns the session (see `lease`).
        // (Unreachable, they are tried and fail like any write then.)
        let _ = c.fence().await;
        let ttl = c.ttl.as_millis() as i64;
        let publish = c.store.publish_command();
        let sharded = c.store.sharded();
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let mut flushed = Vec::new();
        for op in batch.drain(..) {
            if let Op::Flush(done) = op {
                flushed.push(done);
                continue;
            }
            if let Op::Session { sid, entry: Entry::Forget } = &op {
                // An ended session leaves this instance's index too.
                let tag = if sharded { format!("i:{}", c.instance) } else { String::new() };
                groups.entry(tag).or_default().writes.srem(key_index(&c.instance, c.epoch()), sid.to_string()).ignore();
            }
            let tag = if sharded { op.tag() } else { String::new() };
            let group = groups.entry(tag).or_default();
            match op {
                Op::Publish { to, envelope } => {
                    let payload = serde_json::to_string(&envelope).unwrap_or_default();
                    group.publishes.cmd(publish).arg(channel(&to)).arg(payload).ignore();
                }
                Op::Session { sid, entry } => write(&mut group.writes, sid, entry, c.log_size, ttl),
                Op::Index { instance, epoch, sid } => {
                    group.writes.sadd(key_index(&instance, epoch), sid.to_string()).ignore();
                }
                Op::Flush(_) => {}
            }
        }
        let sends = groups.into_values().map(|group| send(&c, group));
        let ok = futures_util::future::join_all(sends).await.into_iter().all(|ok| ok);
        if !ok {
            c.lost_writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!("redis write failed; sessions keep working locally");
        }
        flushed.into_iter().for_each(|done| {
            let _ = done.send(());
        });
        c.set_healthy(ok);
    }
}

/// Publishes requests, replies and probes (see `Envelope::is_rpc`) as they come, pipelined,
/// once each: nothing here waits behind the journal writes.
pub(super) async fn publisher(cluster: Weak<Cluster>, mut rx: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let Some(c) = cluster.upgrade() else { return };
        let (publish, sharded) = (c.store.publish_command(), c.store.sharded());
        let mut groups: BTreeMap<String, redis::Pipeline> = BTreeMap::new();
        for op in batch.drain(..) {
            let tag = if sharded { op.tag() } else { String::new() };
            if let Op::Publish { to, envelope } = op {
                let payload = serde_json::to_string(&envelope).unwrap_or_default();
                groups.entry(tag).or_default().cmd(publish).arg(channel(&to)).arg(payload).ignore();
            }
        }
        let sends = groups.into_values().map(|pipe| {
            let mut conn = c.conn();
            async move { pipe.query_async::<()>(&mut conn).await.is_ok() }
        });
        if !futures_util::future::join_all(sends).await.into_iter().all(|ok| ok) {
            tracing::warn!("publishing to another instance failed");
        }
    }
}

/// Sends a group's writes and then its publishes, each pipeline again with backoff for up to
/// [`RETRY_FOR`] (a Redis Cluster failover, a slot moving or a reconnect takes a moment). Both
/// are safe to send twice: the writes are idempotent, and the instance holding a stream drops
/// a frame it already has (by its number, see `inbox`).
async fn send(c: &Cluster, group: Group) -> bool {
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    let written = retried(c, &group.writes, deadline).await;
    let published = retried(c, &group.publishes, deadline).await;
    written && published
}

async fn retried(c: &Cluster, pipe: &redis::Pipeline, deadline: tokio::time::Instant) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        if pipe.is_empty() || pipe.query_async::<()>(&mut c.conn()).await.is_ok() {
            return true;
        }
        if tokio::time::Instant::now() + backoff > deadline {
            return false;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Adds the Redis writes of one journal entry of session `sid` to `pipe`. The record itself
/// never expires while its owner lives; the pending requests and event logs expire `ttl` after
/// their last write.
fn write(pipe: &mut redis::Pipeline, sid: SessionId, entry: Entry, log_size: usize, ttl: i64) {
    let field = |pipe: &mut redis::Pipeline, field: &str, value: &[u8]| {
        pipe.hset(key_session(sid), field, value).ignore();
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
        Entry::Done { id, stream } => {
            let done = key_done(sid);
            pipe.hdel(key_pending(sid), &*id)
                .ignore()
                .lpush(&done, format!("{stream} {id}"))
                .ignore()
                .ltrim(&done, 0, DONE_KEPT - 1)
                .ignore()
                .pexpire(&done, ttl)
                .ignore();
        }
        Entry::Initialize(raw) => field(pipe, "init", &raw),
        Entry::ProtocolVersion(v) => field(pipe, "proto", v.as_bytes()),
        Entry::NextStream(n) => field(pipe, "next_stream", n.to_string().as_bytes()),
        Entry::UpstreamSession { url, id } => field(pipe, "upstream_session", format!("{url} {id}").as_bytes()),
        Entry::Forget => {
            pipe.del(&[key_session(sid), key_pending(sid)]).ignore();
        }
    }
}
