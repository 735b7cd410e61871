//! [`Eras`]: which protocol versions a remote URL serves, probed once with `server/discover`
//! (the probe both directions share), and [`first_json`], the first JSON object of a body.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use super::super::with_headers;
use crate::protocol::MODERN_VERSIONS;

/// What remote URLs answered to a `server/discover` probe: the versions they serve, or
/// `None` for a server that does not know the method (a legacy one).
#[derive(Default)]
pub struct Eras {
    known: Mutex<HashMap<String, Option<Vec<String>>>>,
}

impl Eras {
    /// The versions `url` serves, probed once (a failed connection is not remembered).
    pub async fn supported(&self, http: &reqwest::Client, url: &str, headers: &BTreeMap<String, String>) -> Option<Vec<String>> {
        self.probe(http, url, headers).await.unwrap_or(None)
    }

    /// The versions `url` serves (`Ok(None)`: a legacy server), probed once; `Err` when the
    /// probe said nothing (no connection, or an answer that is no JSON-RPC, such as a 502 page
    /// from a balancer in between), which is not remembered: the next call asks again.
    pub(crate) async fn probe(
        &self,
        http: &reqwest::Client,
        url: &str,
        headers: &BTreeMap<String, String>,
    ) -> Result<Option<Vec<String>>, String> {
        if let Some(known) = self.known.lock().unwrap_or_else(|e| e.into_inner()).get(url) {
            return Ok(known.clone());
        }
        let version = MODERN_VERSIONS[0];
        let probe = format!(
            r#"{{"jsonrpc":"2.0","id":"mcp-bridge-probe","method":"server/discover","params":{{"_meta":{{"io.modelcontextprotocol/protocolVersion":"{version}","io.modelcontextprotocol/clientCapabilities":{{}},"io.modelcontextprotocol/clientInfo":{{"name":"mcp-bridge","version":"{}"}}}}}}}}"#,
            env!("CARGO_PKG_VERSION")
        );
        let req = with_headers(http.post(url), headers)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", version)
            .header("mcp-method", "server/discover")
            .timeout(Duration::from_secs(10))
            .body(probe);
        let resp = req.send().await.map_err(|e| format!("POST {url}: {}", super::super::cause(&e)))?;
        let status = resp.status();
        let ok = status.is_success();
        let text = resp.text().await.unwrap_or_default();
        let v = first_json(&text);
        // Only an answer that says something is remembered: a result, or a JSON-RPC
        // error (a modern server that does not serve the probe's version still lists
        // its own, -32022; a legacy one does not know the method). A 502 page from a
        // balancer in between says nothing: ask again next time.
        let says = (ok && v["result"].is_object()) || v["error"].is_object();
        if !says {
            return Err(format!("POST {url} answered {status} without a JSON-RPC message"));
        }
        let list = if ok { &v["result"]["supportedVersions"] } else { &v["error"]["data"]["supported"] };
        let versions: Option<Vec<String>> =
            list.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect());
        tracing::info!(url, versions = ?versions, "probed the upstream's protocol versions with server/discover");
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(url.to_string(), versions.clone());
        Ok(versions)
    }
}

/// The first JSON object of a body that is JSON or an SSE stream.
pub(super) fn first_json(text: &str) -> serde_json::Value {
    let json = text.lines().find_map(|l| l.strip_prefix("data:")).map(str::trim).unwrap_or(text.trim());
    serde_json::from_str(json).unwrap_or_default()
}
