//! `Accept: text/event-stream` on a REST tool call: `progress` and `log` events, then the
//! `result` event; a caller that goes away cancels the call upstream.

use std::time::Duration;

use serde_json::json;

use super::support::*;
use crate::common::{self, everything_stdio, require_node, Bridge};

const MINUTE: Duration = Duration::from_secs(60);

async fn stream(bridge: &Bridge, tool: &str, args: &str) -> Events {
    let resp = common::http()
        .post(bridge.url(&format!("/rest/everything/tools/{tool}")))
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .body(args.to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "content-type"), "text/event-stream");
    Events::new(resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_log_events_then_the_result() {
    require_node();
    let bridge = Bridge::start(&everything_stdio("everything"), &[]).await;
    let mut events = stream(&bridge, "trigger-long-running-operation", r#"{"duration": 2, "steps": 4}"#).await;
    let mut progress = Vec::new();
    let result = loop {
        let e = events.next(MINUTE).await.expect("a result event before the end");
        match e.name.as_str() {
            "progress" => progress.push(e.data["progress"].as_f64().unwrap()),
            "result" => break e.data,
            other => panic!("unexpected {other} event: {:?}", e.data),
        }
    };
    assert_eq!(progress, [1.0, 2.0, 3.0, 4.0], "every step's progress, in order");
    assert!(result["content"][0]["text"].as_str().unwrap().contains("completed"), "{result}");
    assert!(events.next(MINUTE).await.is_none(), "the stream ends after the result");

    // Simulated logging (every 5 s) on the same warm session shows as `log` events.
    let (status, _, v) = post(&bridge, "/rest/everything/tools/toggle-simulated-logging", "{}", None).await;
    assert_eq!(status, 200, "{v}");
    let mut events = stream(&bridge, "trigger-long-running-operation", r#"{"duration": 7, "steps": 7}"#).await;
    let mut logs = Vec::new();
    loop {
        let e = events.next(MINUTE).await.expect("a result event before the end");
        match e.name.as_str() {
            "log" => logs.push(e.data),
            "progress" => {}
            "result" => break,
            other => panic!("unexpected {other} event: {:?}", e.data),
        }
    }
    assert!(!logs.is_empty() && logs.iter().all(|l| l["level"].is_string() && l.get("data").is_some()), "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_cancels_the_call_upstream() {
    require_node();
    let bridge = Bridge::start(&everything_stdio("everything"), &[]).await;
    let mut events = stream(&bridge, "trigger-long-running-operation", r#"{"duration": 60, "steps": 60}"#).await;
    let first = events.next(MINUTE).await.expect("a progress event");
    assert_eq!((first.name.as_str(), &first.data["progress"]), ("progress", &json!(1)), "{:?}", first.data);
    assert_eq!(rest_sessions(&bridge, "everything").await.len(), 1);
    drop(events);
    let line =
        bridge.wait_for_log_line("the cancellation", MINUTE, |l| l.contains("REST call cancelled before its answer")).await;
    assert!(line.contains("request="), "{line}");
    bridge
        .wait_for_log_line("the backing session's end", MINUTE, |l| {
            l.contains("session ended") && l.contains("reason=cancelled") && l.contains("REST call was cancelled")
        })
        .await;
    assert!(rest_sessions(&bridge, "everything").await.is_empty(), "the session with work still running upstream ended");
    // The next call gets a fresh session and works.
    let (status, _, v) = post(&bridge, "/rest/everything/tools/echo", r#"{"message": "again"}"#, None).await;
    assert_eq!(status, 200, "{v}");
}
