//! The rmcp cell of the client matrix: rmcp's Streamable HTTP client (reqwest backend) runs
//! the scripted session and reports the same JSON fields as the other clients.
// Sampling and logging are deprecated by SEP-2577 in rmcp; the 2025-11-25 session still uses them.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientCapabilities, ClientInfo, ClientRequest, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationCapability, Implementation,
    LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, ProtocolVersion, SamplingCapability,
    SamplingMessage, SetLevelRequestParams,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestContext};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Handler {
    logs: Arc<Mutex<Vec<Value>>>,
    progress: Arc<Mutex<Vec<f64>>>,
    sampled: Arc<Mutex<Vec<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The text of every `text` item under `key` of a serialized result or message list.
fn texts(v: &Value) -> String {
    match v {
        Value::Object(o) if o.get("type") == Some(&json!("text")) => {
            o.get("text").and_then(Value::as_str).unwrap_or("").to_string()
        }
        Value::Object(o) => o.values().map(texts).collect::<Vec<_>>().join(""),
        Value::Array(a) => a.iter().map(texts).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

impl ClientHandler for Handler {
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let prompt = texts(&serde_json::to_value(&params.messages).unwrap_or_default());
        lock(&self.sampled).push(prompt.clone());
        Ok(CreateMessageResult::new(SamplingMessage::assistant_text(format!("sampled: {prompt}")), "matrix".into())
            .with_stop_reason("endTurn"))
    }

    async fn create_elicitation(&self, _: ElicitRequestParams, _: RequestContext<RoleClient>) -> Result<ElicitResult, ErrorData> {
        Ok(ElicitResult::new(ElicitationAction::Accept)
            .with_content(json!({"username": "matrix", "email": "matrix@example.com"})))
    }

    async fn on_progress(&self, params: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        lock(&self.progress).push(params.progress);
    }

    async fn on_logging_message(&self, params: LoggingMessageNotificationParam, _: NotificationContext<RoleClient>) {
        lock(&self.logs).push(params.data);
    }

    fn get_info(&self) -> ClientInfo {
        let mut caps = ClientCapabilities::default();
        caps.sampling = Some(SamplingCapability::default());
        caps.elicitation = Some(ElicitationCapability::default());
        let mut info = ClientInfo::new(caps, Implementation::new("mcp-bridge-matrix-rmcp", "0.0.0"));
        info.protocol_version = ProtocolVersion::V_2025_11_25;
        info
    }
}

fn call(name: &'static str, args: Value) -> CallToolRequestParams {
    let args = match args {
        Value::Object(m) => m,
        _ => Default::default(),
    };
    CallToolRequestParams::new(name).with_arguments(args)
}

async fn wait_for(n: usize, len: impl Fn() -> usize) {
    for _ in 0..20 {
        if len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The scripted session; `Err` carries what went wrong.
pub(crate) async fn session(url: &str) -> Result<Value, String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: rmcp::ServiceError| format!("{what}: {err}")
    };
    let handler = Handler::default();
    let transport = StreamableHttpClientTransport::from_uri(url.to_string());
    let client = handler.clone().serve(transport).await.map_err(|err| format!("initialize: {err}"))?;
    let mut out = json!({"ok": false, "client": "rmcp", "transport": "streamable"});
    out["protocolVersion"] = json!(client.peer_info().map(|i| i.protocol_version.to_string()));
    let mut tools: Vec<String> =
        client.list_all_tools().await.map_err(e("tools/list"))?.into_iter().map(|t| t.name.into()).collect();
    tools.sort();
    out["tools"] = json!(tools);
    let mut resources: Vec<String> =
        client.list_all_resources().await.map_err(e("resources/list"))?.into_iter().map(|r| r.uri.clone()).collect();
    resources.sort();
    out["resources"] = json!(resources);
    let mut prompts: Vec<String> =
        client.list_all_prompts().await.map_err(e("prompts/list"))?.into_iter().map(|p| p.name.clone()).collect();
    prompts.sort();
    out["prompts"] = json!(prompts);
    let text = |r: rmcp::model::CallToolResult| texts(&serde_json::to_value(&r).unwrap_or_default()["content"]);
    out["echo"] = json!(text(client.call_tool(call("echo", json!({"message": "hello"}))).await.map_err(e("echo"))?));

    client.set_level(SetLevelRequestParams::new(LoggingLevel::Info)).await.map_err(e("logging/setLevel"))?;
    client.call_tool(call("test_tool_with_logging", json!({}))).await.map_err(e("test_tool_with_logging"))?;
    wait_for(3, || lock(&handler.logs).len()).await;
    out["logs"] = json!(lock(&handler.logs).len());

    client.call_tool(call("test_tool_with_progress", json!({}))).await.map_err(e("test_tool_with_progress"))?;
    wait_for(3, || lock(&handler.progress).len()).await;
    out["progress"] = json!(lock(&handler.progress).iter().map(|p| *p as i64).collect::<Vec<_>>());

    let slow = ClientRequest::CallToolRequest(CallToolRequest::new(call("test_slow", json!({"ms": 30000}))));
    let handle = client.send_cancellable_request(slow, PeerRequestOptions::no_options()).await.map_err(e("test_slow"))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.cancel(Some("matrix cancels".into())).await.map_err(e("cancel"))?;
    out["cancelCallRejected"] = json!(true);
    out["cancelled"] =
        json!(text(client.call_tool(call("test_cancellations", json!({}))).await.map_err(e("test_cancellations"))?));

    out["sampling"] =
        json!(text(client.call_tool(call("test_sampling", json!({"prompt": "matrix"}))).await.map_err(e("sampling"))?));
    out["samplingRequests"] = json!(lock(&handler.sampled).len());
    out["elicitation"] = json!(text(
        client.call_tool(call("test_elicitation", json!({"message": "who are you?"}))).await.map_err(e("elicitation"))?
    ));
    let _ = client.cancel().await;
    out["ok"] = json!(true);
    Ok(out)
}
