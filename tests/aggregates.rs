//! Aggregates (`[aggregates.NAME]`, issue 14) with real clients and real servers: the official
//! Python and TypeScript SDK clients over `/mcp` and `/sse`; members are server-everything, the
//! bundled echo server, a member whose process exits at once (`false`), and the paged fixture
//! (tests/fixtures/paged_server.py: paginated lists, `list_changed`, elicitation, a slow
//! initialize). Config-time collisions run `check-config`; a takeover in cluster mode is in
//! `aggregates/cluster.rs`.

#[path = "aggregates/cluster.rs"]
mod cluster;
mod cluster_support;
mod common;
#[path = "aggregates/support.rs"]
mod support;
mod support_nginx;

use std::time::{Duration, Instant};

use common::{echo_server, everything_stdio, run_client, Bridge, Sdk};
use serde_json::{json, Value};
use support::{dead, names, paged, steps};

/// Everything, the echo server (only its `add`) and a dead member, names unprefixed: the
/// SDKs' own full scenario (tools, sum, progress, sampling) runs through the aggregate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_full_scenarios_run_through_an_aggregate_over_both_transports() {
    let config = format!(
        "{}{}{}[aggregates.all]\nservers = [\"everything\", \"echo\", \"dead\"]\nprefix = \"none\"\n\
         [aggregates.all.members.echo]\ninclude = [\"add\"]\n",
        everything_stdio("everything"),
        echo_server("echo"),
        dead("dead"),
    );
    let bridge = Bridge::start(&config, &[]).await;
    let (sse, mcp) = (bridge.url("/sse/all"), bridge.url("/mcp/all"));
    let runs = tokio::join!(
        run_client(Sdk::Py, "streamable", &mcp, &["--scenario", "full"]),
        run_client(Sdk::Ts, "sse", &sse, &["--scenario", "full"]),
    );
    let more = tokio::join!(
        run_client(Sdk::Py, "sse", &sse, &["--scenario", "full"]),
        run_client(Sdk::Ts, "streamable", &mcp, &["--scenario", "full"]),
    );
    for run in [runs.0, runs.1, more.0, more.1] {
        let v = run.ok();
        let tools: Vec<&str> = v["tools"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        for t in ["echo", "get-sum", "trigger-sampling-request", "add"] {
            assert!(tools.contains(&t), "{}: `{t}` is listed: {tools:?}", run.label);
        }
        assert!(!tools.contains(&"echo__add"), "prefix = none: {tools:?}");
        assert_eq!(v["sum"].to_string().trim_matches('"'), "5", "{}: {v}", run.label);
        assert_eq!(v["samplingRequests"], json!(1), "{}: sampling went through: {v}", run.label);
        assert!(v["progress"].as_u64().unwrap_or(0) >= 3, "{}: progress went through: {v}", run.label);
    }
    assert!(bridge.log().contains("member left out of initialize"), "the dead member is logged");
}

/// Prefixed names from each member, calls routed to each, include/exclude, prompts and
/// resources merged and routed, sampling relayed, an unknown tool refused, the dead member
/// counted, and the aggregate's tools over REST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_members_are_merged_and_routed_over_both_transports() {
    let config = format!(
        "{}{}{}[aggregates.all]\nservers = [\"everything\", \"echo\", \"dead\"]\n\
         [aggregates.all.members.everything]\ninclude = [\"get-*\", \"echo\", \"trigger-sampling-request\"]\nexclude = [\"get-env\"]\n",
        everything_stdio("everything"),
        echo_server("echo"),
        dead("dead"),
    );
    let bridge = Bridge::start(&config, &[]).await;
    let plan = json!([
        {"op": "tools"},
        {"op": "call", "name": "echo__add", "args": {"a": 2, "b": 3}},
        {"op": "call", "name": "everything__get-sum", "args": {"a": 2, "b": 3}},
        {"op": "call", "name": "everything__echo", "args": {"message": "hi"}},
        {"op": "call", "name": "everything__trigger-sampling-request", "args": {"prompt": "what now", "maxTokens": 20}},
        {"op": "call", "name": "everything__get-env", "args": {}},
        {"op": "prompts"},
        {"op": "resources"},
        {"op": "read", "uri": "demo://resource/static/document/architecture.md"},
    ]);
    for transport in ["streamable", "sse"] {
        let path = if transport == "sse" { "/sse/all" } else { "/mcp/all" };
        let v = steps(&bridge, transport, path, plan.clone()).await;
        let r = &v["results"];
        let tools = names(&r[0]);
        for t in ["echo__echo", "echo__add", "everything__get-sum", "everything__echo", "everything__trigger-sampling-request"] {
            assert!(tools.contains(&t.to_string()), "{transport}: `{t}` listed: {tools:?}");
        }
        assert!(!tools.iter().any(|t| t == "everything__get-env" || t.starts_with("dead")), "{transport}: filters: {tools:?}");
        assert!(!tools.contains(&"everything__toggle-simulated-logging".to_string()), "{transport}: include: {tools:?}");
        assert_eq!(r[1], json!({"text": "5"}), "{transport}: routed to the echo server");
        assert_eq!(r[2], json!({"text": "The sum of 2 and 3 is 5."}), "{transport}: routed to server-everything");
        assert_eq!(r[3], json!({"text": "Echo: hi"}), "{transport}");
        let sampled = r[4]["text"].as_str().unwrap_or_default();
        assert!(sampled.contains("sampled: ") && sampled.contains("what now"), "{transport}: sampling relayed: {}", r[4]);
        assert_eq!(v["samplings"], json!(1), "{transport}");
        assert_eq!(r[5]["error"]["code"], json!(-32602), "{transport}: an excluded tool is unknown: {}", r[5]);
        let prompts = names(&r[6]);
        assert!(!prompts.is_empty() && prompts.iter().all(|p| p.starts_with("everything__")), "{transport}: {prompts:?}");
        assert!(names(&r[7]).contains(&"demo://resource/static/document/architecture.md".to_string()), "{transport}: {}", r[7]);
        assert!(r[8].as_str().is_some_and(|t| !t.is_empty()), "{transport}: resource read routed: {}", r[8]);
    }
    let left_out = bridge
        .metrics()
        .await
        .value_or_zero("mcp_bridge_aggregate_members_left_out_total", &[("aggregate", "all"), ("member", "dead")]);
    assert!(left_out >= 2.0, "the dead member is counted once per session: {left_out}");

    // The aggregate over REST, like any server.
    let http = reqwest::Client::new();
    let resp =
        http.post(bridge.url("/rest/all/tools/echo__add")).header("content-type", "application/json").body(r#"{"a": 4, "b": 5}"#);
    let resp = resp.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body, json!({"content": [{"type": "text", "text": "9"}]}));
    let list = http.get(bridge.url("/rest/all/tools")).send().await.unwrap().bytes().await.unwrap();
    let list: Value = serde_json::from_slice(&list).unwrap();
    assert!(list["tools"].as_array().unwrap().iter().any(|t| t["name"] == "everything__get-sum"), "{list}");
}

/// Two members with the same tools under `prefix = "none"`: `first` keeps the first,
/// `round-robin` spreads calls over both, `error` publishes neither and logs what collides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collisions_follow_on_conflict() {
    let mut config = format!("{}{}", paged("a", &[]), paged("b", &[("TOOLS", "7")]));
    for (name, policy) in [("first", "first"), ("rr", "round-robin"), ("err", "error")] {
        config += &format!("[aggregates.{name}]\nservers = [\"a\", \"b\"]\nprefix = \"none\"\non_conflict = \"{policy}\"\n");
    }
    let bridge = Bridge::start(&config, &[]).await;
    let who = json!({"op": "call", "name": "whoami"});
    let plan = json!([{"op": "tools"}, who, who, who, who]);
    let texts =
        |v: &Value| -> Vec<String> { (1..5).map(|i| v["results"][i]["text"].as_str().unwrap_or("?").to_string()).collect() };

    let first = steps(&bridge, "streamable", "/mcp/first", plan.clone()).await;
    assert_eq!(texts(&first), ["a", "a", "a", "a"], "{first}");
    assert_eq!(names(&first["results"][0]).len(), 10, "t1..t7, whoami, grow, ask once each: {first}");

    let rr = steps(&bridge, "sse", "/sse/rr", plan.clone()).await;
    let served = texts(&rr);
    assert_eq!(served.iter().filter(|s| *s == "a").count(), 2, "round-robin alternates: {served:?}");
    assert_eq!(served.iter().filter(|s| *s == "b").count(), 2, "round-robin alternates: {served:?}");

    let err = steps(&bridge, "streamable", "/mcp/err", plan).await;
    assert_eq!(names(&err["results"][0]), ["t6", "t7"], "only what does not collide: {err}");
    assert_eq!(err["results"][1]["error"]["code"], json!(-32602), "{err}");
    let log = bridge.log();
    assert!(log.contains("tools `whoami` is published by `a` (whoami), `b` (whoami)"), "the collision is named:\n{log}");
}

/// Collisions and clashes the file alone shows are refused by `check-config`, naming the key.
#[test]
fn knowable_collisions_fail_at_load() {
    let dir = common::TempDir::new("aggregates-load");
    let check = |config: String| {
        let path = dir.path().join("bridge.toml");
        std::fs::write(&path, config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-bridge")).arg("check-config").arg(&path).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout))
    };
    let servers = format!("{}{}", echo_server("a"), echo_server("b"));
    let (ok, text) = check(format!(
        "{servers}[aggregates.x]\nservers = [\"a\", \"b\"]\nprefix = \"none\"\n[aggregates.x.members.a]\ninclude = [\"echo\"]\n[aggregates.x.members.b]\ninclude = [\"echo\"]\n"
    ));
    assert!(!ok && text.contains("aggregates.x") && text.contains("`echo` is included from both `a` and `b`"), "{text}");
    let (ok, text) = check(format!("{servers}[aggregates.a]\nservers = [\"b\"]\n"));
    assert!(!ok && text.contains("aggregates.a") && text.contains("share one namespace"), "{text}");
    let (ok, text) =
        check(format!("{servers}[aggregates.x]\nservers = [\"a\", \"b\"]\n[aggregates.x.members.a]\nprefix = \"b__c\"\n"));
    assert!(!ok && text.contains("can publish the same name"), "{text}");
    let (ok, text) = check(format!("{servers}[aggregates.x]\nservers = [\"a\", \"nope\"]\n"));
    assert!(!ok && text.contains("`nope` is not a server"), "{text}");
    let (ok, text) =
        check(format!("{servers}[aggregates.x]\nservers = [\"a\", \"b\"]\nprefix = \"none\"\non_conflict = \"first\"\n"));
    assert!(ok, "a policy other than error accepts it: {text}");
}

/// A member listing in pages is listed to the end; `?tools=` narrows what one client sees and
/// may call, over both transports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paginated_members_are_listed_to_the_end_and_clients_narrowed() {
    let config = format!("{}{}[aggregates.all]\nservers = [\"a\", \"echo\"]\n", paged("a", &[]), echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let plan = json!([
        {"op": "tools"}, {"op": "resources"}, {"op": "prompts"},
        {"op": "read", "uri": "paged://a/r5"}, {"op": "prompt", "name": "a__p3"},
    ]);
    let v = steps(&bridge, "streamable", "/mcp/all", plan).await;
    let r = &v["results"];
    let tools = names(&r[0]);
    assert_eq!(tools.len(), 10, "8 tools in 4 pages, and the echo server's 2: {tools:?}");
    assert!(tools.contains(&"a__t5".to_string()) && tools.contains(&"a__ask".to_string()), "{tools:?}");
    assert_eq!(names(&r[1]), (1..=5).map(|i| format!("paged://a/r{i}")).collect::<Vec<_>>(), "5 resources in 3 pages");
    assert_eq!(names(&r[2]), ["a__p1", "a__p2", "a__p3"]);
    assert_eq!(r[3], json!("a has paged://a/r5"));
    assert_eq!(r[4], json!("a prompt p3"));

    let plan = json!([
        {"op": "tools"},
        {"op": "call", "name": "a__t2"},
        {"op": "call", "name": "echo__echo", "args": {"message": "x"}},
    ]);
    let v = steps(&bridge, "streamable", "/mcp/all?tools=a__t*,echo__add", plan.clone()).await;
    let r = &v["results"];
    assert_eq!(names(&r[0]), ["a__t1", "a__t2", "a__t3", "a__t4", "a__t5", "echo__add"]);
    assert_eq!(r[1], json!({"text": "a:t2"}));
    assert_eq!(r[2]["error"]["code"], json!(-32602), "a tool outside the narrowing is refused: {}", r[2]);
    let v = steps(&bridge, "sse", "/sse/all?tools=echo__*", plan).await;
    assert_eq!(names(&v["results"][0]), ["echo__echo", "echo__add"], "{v}");
    assert_eq!(v["results"][2], json!({"text": "x"}), "{v}");
}

/// A member slower than `member_timeout` and a dead one do not hold up the list; the slow one
/// joins when it answers, and the client hears the tools changed. A `required` member that
/// fails fails the initialize.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_dead_members_do_not_break_the_list() {
    let config = format!(
        "{}{}{}[aggregates.all]\nservers = [\"echo\", \"slow\", \"dead\"]\nmember_timeout = \"1s\"\n",
        echo_server("echo"),
        paged("slow", &[("SLOW_INIT", "4")]),
        dead("dead"),
    );
    let bridge = Bridge::start(&config, &[]).await;
    let started = Instant::now();
    let plan = json!([{"op": "tools"}, {"op": "wait_tools_changed", "ms": 15000}, {"op": "tools"}, {"op": "call", "name": "slow__whoami"}]);
    let v = steps(&bridge, "streamable", "/mcp/all", plan).await;
    let r = &v["results"];
    assert_eq!(names(&r[0]), ["echo__echo", "echo__add"], "the list came without the slow and dead members");
    assert_eq!(r[1], json!(true), "tools/list_changed when the slow member joined");
    assert!(names(&r[2]).contains(&"slow__whoami".to_string()), "{}", r[2]);
    assert_eq!(r[3], json!({"text": "slow"}));
    assert!(started.elapsed() < Duration::from_secs(40), "{:?}", started.elapsed());
    let log = bridge.log();
    assert!(log.contains("did not answer within member_timeout") && log.contains("aggregate member joined late"), "{log}");

    // A required member that fails fails the aggregate's initialize, saying which.
    let config = format!(
        "{}{}[aggregates.strict]\nservers = [\"echo\", \"dead\"]\n[aggregates.strict.members.dead]\nrequired = true\n",
        echo_server("echo"),
        dead("dead"),
    );
    let bridge = Bridge::start(&config, &[]).await;
    let resp = common::post_initialize(&reqwest::Client::new(), &bridge.url("/mcp/strict")).await;
    let answers = common::responses(resp).await;
    let error = answers.iter().find(|m| m["id"] == 1).map(|m| m["error"].clone()).unwrap_or_default();
    assert!(error["message"].as_str().is_some_and(|m| m.contains("required members failed: dead")), "{answers:?}");
}

/// A member's `list_changed` reaches the client and the re-merged list has the new tool; a
/// member's elicitation reaches the client and its answer the member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_changed_and_elicitation_are_relayed() {
    let config = format!("{}{}[aggregates.all]\nservers = [\"a\", \"echo\"]\n", paged("a", &[]), echo_server("echo"));
    let bridge = Bridge::start(&config, &[]).await;
    let plan = json!([
        {"op": "tools"},
        {"op": "call", "name": "a__grow"},
        {"op": "wait_tools_changed", "ms": 10000},
        {"op": "tools"},
        {"op": "call", "name": "a__grown"},
        {"op": "call", "name": "a__ask"},
    ]);
    for (transport, path) in [("streamable", "/mcp/all"), ("sse", "/sse/all")] {
        let v = steps(&bridge, transport, path, plan.clone()).await;
        let r = &v["results"];
        assert!(!names(&r[0]).contains(&"a__grown".to_string()), "{transport}: {v}");
        assert_eq!(r[2], json!(true), "{transport}: list_changed relayed: {v}");
        assert!(names(&r[3]).contains(&"a__grown".to_string()), "{transport}: re-listed: {v}");
        assert_eq!(r[4], json!({"text": "a:grown"}), "{transport}: {v}");
        let answer: Value = serde_json::from_str(r[5]["text"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        assert_eq!(answer, json!({"action": "accept", "content": {"answer": "yes"}}), "{transport}: elicitation relayed: {v}");
        assert_eq!(v["elicitations"], json!(1), "{transport}");
    }
}

/// A call the client gives up is cancelled at the member that has it, under the member's id,
/// and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_follow_their_request() {
    let config = format!(
        "{}{}[aggregates.all]\nservers = [\"slow\", \"echo\"]\n",
        common::python_fixture("slow", "stall_and_flood.py"),
        echo_server("echo")
    );
    let bridge = Bridge::start(&config, &[]).await;
    let plan = json!([
        {"op": "tools"},
        {"op": "call_abort", "name": "slow__hang", "ms": 500},
        {"op": "call", "name": "slow__echo", "args": {"message": "still here"}},
    ]);
    let v = steps(&bridge, "streamable", "/mcp/all", plan).await;
    let r = &v["results"];
    assert!(r[1]["error"].is_object(), "the aborted call failed at the client: {v}");
    assert_eq!(r[2], json!({"text": "still here"}), "{v}");
    // The fixture writes `cancelled <requestId>` to stderr, which the bridge logs.
    let line = bridge.wait_log(&["cancelled "], Duration::from_secs(10)).await;
    let id = line.split("cancelled ").nth(1).unwrap_or("").split_whitespace().next().unwrap_or("");
    assert!(id.parse::<u64>().is_ok(), "the member got the cancellation under its own (numeric) id: {line}");
}
