//! Fencing, on one real redis-server and two instances addressed directly: the owner of a legacy
//! SSE session is paused (SIGSTOP) past its 2 s instance lease, the other instance takes the
//! session over on the next request, and the client resumes there with `Last-Event-ID`. Then the
//! old owner is resumed (SIGCONT) with a POST for the session arriving at once: it must not
//! touch its old upstream again, and the client must see that answer (and every other) once.
//! The upstream is the bundled echo server behind a shell loop that appends every line it
//! receives, with the shell's pid, to a file: the proof of who wrote to which child, and when.

mod cluster_support;
mod common;
mod support_nginx;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster_support::{poll, Cluster, Redis};
use common::{alive, echo_call, toml_str, Bridge, Legacy, TempDir, LEGACY_PROTOCOL};
use nix::sys::signal::Signal;
use serde_json::Value;

/// How long the owner stays paused: past its 2 s lease, with room for the last renewal.
const PAUSE: Duration = Duration::from_millis(3500);
/// Pause/resume cycles (the issue saw the POST lost in 3 of 6 before fencing).
const CYCLES: u64 = 6;
/// Bound on any one answer: an echo takes milliseconds, a takeover well under a second.
const ANSWER: Duration = Duration::from_secs(10);

/// `[servers.rec]`: mcp-echo-server behind `sh`, which appends `<sh pid> <line>` to `record`
/// for every line it passes on (the bridge kills the whole process group).
fn recording_echo(record: &Path) -> String {
    let script = format!(
        r#"while IFS= read -r line; do printf '%s %s\n' "$$" "$line" >> "$0"; printf '%s\n' "$line"; done | exec {}"#,
        env!("CARGO_BIN_EXE_mcp-echo-server")
    );
    format!(
        "[servers.rec]\ncommand = \"sh\"\nargs = [\"-c\", {}, {}]\n",
        toml_str(&script),
        toml_str(&record.display().to_string())
    )
}

/// Every `(pid, message)` the upstream children received, in order.
fn received(record: &Path) -> Vec<(u32, Value)> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (pid, msg) = l.split_once(' ')?;
            Some((pid.parse().ok()?, serde_json::from_str(msg).ok()?))
        })
        .collect()
}

/// The pid of the child that received the echo of `message`.
fn child_of(record: &Path, message: &str) -> Option<u32> {
    received(record).into_iter().find(|(_, m)| m["params"]["arguments"]["message"] == message).map(|(pid, _)| pid)
}

/// How many messages child `pid` has received.
fn count_for(record: &Path, pid: u32) -> usize {
    received(record).iter().filter(|(p, _)| *p == pid).count()
}

/// The owner named in a session's record.
fn owner(redis: &Redis, sid: &str) -> String {
    redis.cli_raw(&["HGET", &format!("mcpb:{{{sid}}}:rec"), "owner"])
}

/// b1's log lines that say it was fenced: `instance fenced: its lease lapsed (epoch
/// superseded); rejoined with a new epoch` (src/cluster/lease.rs).
fn fenced_lines(b: &Bridge) -> Vec<String> {
    b.lines_with(&["instance fenced", "superseded"])
}

/// One cycle: a session owned by b1, b1 paused, taken over by b2, b1 resumed with a POST for
/// the session arriving at once (`queued`: sent while b1 is still stopped, waiting in its
/// listen backlog, so it is the first thing b1 sees; otherwise sent right after SIGCONT).
async fn cycle(c: &Cluster, record: &Path, k: u64, queued: bool) -> (Legacy, Vec<u64>) {
    let (b1, b2) = (&c.instances[0], &c.instances[1]);
    let mut s = Legacy::open_as(&b1.base(), "rec", None, LEGACY_PROTOCOL).await;
    assert_eq!(owner(&c.redis, &s.sid), "b1", "cycle {k}: the instance that opened the session owns it");
    let before = format!("before-{k}");
    assert_eq!(s.echo_via(&b1.base(), 2, &before).await, before);
    let old = child_of(record, &before).expect("b1's child received the echo");
    // Once b1's writes of that answer are in Redis (its request no longer pending there): an
    // answer sent in the instant before an owner stops, not yet written, is answered again as
    // lost by the next owner (README, "what each survives").
    let pending = format!("mcpb:{{{}}}:pend", s.sid);
    let written = poll(ANSWER, || (c.redis.cli_raw(&["HEXISTS", &pending, "2"]).trim() == "0").then_some(())).await;
    assert!(written.is_some(), "cycle {k}: b1 wrote that request 2 was answered");

    b1.signal(Signal::SIGSTOP);
    let paused = Instant::now();
    tokio::time::sleep(PAUSE).await;

    // b2 finds b1's lease lapsed, takes the session over, and answers (into the event log:
    // the client's stream is still on the paused b1).
    let taken = format!("takeover-{k}");
    let (status, body) = s.post_via(&b2.base(), &echo_call(3, &taken)).await.expect("POST via b2");
    assert_eq!(status, 202, "cycle {k}: the POST to b2 is accepted: {body}");
    let took = paused.elapsed();
    assert_eq!(owner(&c.redis, &s.sid), "b2", "cycle {k}: b2 took the session over");
    s.resume(&b2.base()).await.unwrap_or_else(|e| panic!("cycle {k}: the stream resumes on b2: {e:?}"));
    let answer = s.answer(3, ANSWER).await;
    assert_eq!(common::echo_text(&answer), taken, "cycle {k}");
    let new = child_of(record, &taken).expect("a child received the takeover's echo");
    assert_ne!(new, old, "cycle {k}: the takeover's echo went to b2's own child, not b1's");

    // b1 comes back, and a POST for the session reaches it at once.
    let resumed = format!("resumed-{k}");
    let seen_by_old = count_for(record, old);
    let post = s.post_via(&b1.base(), &echo_call(4, &resumed));
    let post = if queued {
        let post = tokio::spawn(post);
        tokio::time::sleep(Duration::from_millis(100)).await;
        b1.signal(Signal::SIGCONT);
        post.await.expect("the POST task")
    } else {
        b1.signal(Signal::SIGCONT);
        post.await
    };
    let (status, body) = post.expect("POST via the resumed b1");
    assert_eq!(status, 202, "cycle {k} (queued {queued}): the POST to the resumed b1 is accepted: {body}");
    let answer = s.answer(4, ANSWER).await;
    assert_eq!(common::echo_text(&answer), resumed, "cycle {k} (queued {queued}): answered on the stream on b2");
    assert_eq!(child_of(record, &resumed), Some(new), "cycle {k}: the new owner's child answered it");
    // One more through b1 (forwarded now, not a stale delivery) and one on b2.
    for (id, via) in [(5, b1), (6, b2)] {
        let m = format!("later-{k}-{id}");
        assert_eq!(s.echo_via(&via.base(), id, &m).await, m, "cycle {k}: echo {id} via {}", via.name);
    }
    assert_eq!(count_for(record, old), seen_by_old, "cycle {k}: b1's old child received nothing after SIGCONT");
    eprintln!("cycle {k} (queued {queued}): taken over {} ms after SIGSTOP", took.as_millis());
    (s, vec![1, 2, 3, 4, 5, 6])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_fenced_and_never_touches_its_old_upstream() {
    let dir = TempDir::new("fencing");
    let record: PathBuf = dir.path().join("received.log");
    let c = Cluster::start(&recording_echo(&record), 2, false).await;
    let started = Instant::now();
    let mut sessions = Vec::new();
    let mut old_children = Vec::new();
    for k in 0..CYCLES {
        let fenced_before = fenced_lines(&c.instances[0]).len();
        let (s, ids) = cycle(&c, &record, k, k % 2 == 1).await;
        let old = child_of(&record, &format!("before-{k}")).expect("b1's child");
        old_children.push((k, old, count_for(&record, old)));
        // b1 says it was fenced (once per pause at least).
        let said = poll(ANSWER, || (fenced_lines(&c.instances[0]).len() > fenced_before).then_some(())).await;
        assert!(said.is_some(), "cycle {k}: b1 logs that it was fenced; its log:\n{}", c.instances[0].log());
        sessions.push((s, ids));
    }

    // Nothing more arrives on any stream: every answer came exactly once.
    for (s, ids) in &mut sessions {
        while let Ok(Some(m)) = s.next(Duration::from_millis(300)).await {
            assert!(m.get("method").is_some(), "session {}: no answer after the last one: {m}", s.sid);
        }
        for id in ids.iter() {
            assert_eq!(s.responses_to(*id), 1, "session {}: answer {id} exactly once: {:?}", s.sid, s.received);
        }
    }
    // b1's old children got nothing after their cycle, and b1 ended them.
    for (k, pid, seen) in &old_children {
        assert_eq!(count_for(&record, *pid), *seen, "cycle {k}: b1's old child {pid} received nothing later");
        let gone = poll(ANSWER, || (!alive(i32::try_from(*pid).unwrap_or(0))).then_some(())).await;
        assert!(gone.is_some(), "cycle {k}: the fenced b1 ended its old child {pid}");
    }
    for i in &c.instances {
        let log = i.log();
        assert!(!log.contains("panicked"), "instance {} panicked:\n{log}", i.name);
    }
    let fenced = fenced_lines(&c.instances[0]);
    eprintln!("b1 fenced lines ({}):\n{}", fenced.len(), fenced.join("\n"));
    eprintln!("{CYCLES} cycles in {} ms", started.elapsed().as_millis());
    assert!(started.elapsed() < Duration::from_secs(60), "the cycles stay within a minute");
}
