//! What a principal may use: servers and, on each, tools. A named client may use its servers
//! and every tool on them; a JWT principal what the grants of its roles give. On a server where
//! some tool is withheld, a `tools/call` naming it is refused (403 with a JSON-RPC error that
//! names the request id) and every tool list (a `tools/list` result on an SSE stream or in a
//! JSON body, `/rest/{server}/tools`) shows only the tools that may be called. A leaf: the
//! middleware in `http/auth.rs` applies it.

use bytes::Bytes;

use crate::config::auth::jwt::GrantModel;
use crate::protocol::method;

/// One grant: these servers, and on them these tools (`*` for all).
#[derive(Debug, Clone)]
struct Grant {
    servers: Vec<String>,
    tools: Vec<String>,
}

/// What a principal may use.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    grants: Vec<Grant>,
}

fn any(list: &[String], name: &str) -> bool {
    list.iter().any(|s| s == "*" || s == name)
}

impl Rules {
    /// A named client: its servers, every tool.
    pub(crate) fn servers(servers: &[String]) -> Rules {
        Rules { grants: vec![Grant { servers: servers.to_vec(), tools: vec!["*".into()] }] }
    }

    /// A JWT principal: the grants its roles name; none, nothing.
    pub(crate) fn from_roles(grants: &[GrantModel], roles: &[String]) -> Rules {
        let grants = grants
            .iter()
            .filter(|g| roles.contains(&g.role))
            .map(|g| Grant { servers: g.servers.clone(), tools: g.tools.clone() })
            .collect();
        Rules { grants }
    }

    /// The servers any grant names (`*` included), for `http::auth::Allowed`.
    pub(crate) fn server_list(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.grants.iter().flat_map(|g| g.servers.iter()) {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }

    pub(crate) fn permits_server(&self, server: &str) -> bool {
        self.grants.iter().any(|g| any(&g.servers, server))
    }

    /// `server` is `None` on the legacy `/message` endpoint, whose path names no server: then
    /// a tool is permitted only by a grant for every server.
    pub(crate) fn permits_tool(&self, server: Option<&str>, tool: &str) -> bool {
        self.grants.iter().any(|g| match server {
            Some(s) => any(&g.servers, s) && any(&g.tools, tool),
            None => g.servers.iter().any(|s| s == "*") && any(&g.tools, tool),
        })
    }

    /// Whether some tool on `server` may be withheld: only then are bodies read and lists cut.
    pub(crate) fn narrows(&self, server: Option<&str>) -> bool {
        !self.permits_tool(server, "*")
    }

    /// The first `tools/call` in a JSON-RPC body (one message or a batch) naming a tool this
    /// principal may not call: its raw id and the tool.
    pub(crate) fn refused_call(&self, server: Option<&str>, body: &[u8]) -> Option<(Option<String>, String)> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let messages: Vec<&serde_json::Value> = match &v {
            serde_json::Value::Array(a) => a.iter().collect(),
            m => vec![m],
        };
        messages.into_iter().find_map(|m| {
            if m.get("method").and_then(|x| x.as_str()) != Some(method::TOOLS_CALL) {
                return None;
            }
            let tool = m.pointer("/params/name").and_then(|n| n.as_str()).unwrap_or("");
            (!self.permits_tool(server, tool)).then(|| (m.get("id").map(|id| id.to_string()), tool.to_string()))
        })
    }

    /// A JSON body (one message, a batch, or REST's `{"tools": […]}`) with every tool list cut
    /// to the permitted tools; `None` when nothing was cut.
    pub(crate) fn narrow_json(&self, server: Option<&str>, body: &[u8]) -> Option<Vec<u8>> {
        if !contains(body, b"tools") {
            return None;
        }
        let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let changed = match &mut v {
            serde_json::Value::Array(a) => a.iter_mut().fold(false, |c, m| self.narrow_message(server, m) | c),
            m => self.narrow_message(server, m),
        };
        changed.then(|| serde_json::to_vec(&v).unwrap_or_default())
    }

    fn narrow_message(&self, server: Option<&str>, m: &mut serde_json::Value) -> bool {
        let openapi = m.get("openapi").is_some();
        if let Some(serde_json::Value::Object(paths)) = m.get_mut("paths").filter(|_| openapi) {
            // An OpenAPI document (`/rest/openapi.json`): one path per tool.
            let before = paths.len();
            paths.retain(|p, _| match p.strip_prefix("/rest/").and_then(|r| r.split_once("/tools/")) {
                Some((s, t)) => self.permits_tool(Some(&percent_decode(s)), &percent_decode(t)),
                None => true,
            });
            return paths.len() != before;
        }
        let list = match m.get("result").is_some() {
            true => m.pointer_mut("/result/tools"),
            false => m.get_mut("tools"),
        };
        let Some(serde_json::Value::Array(tools)) = list else { return false };
        let before = tools.len();
        tools.retain(|t| t.get("name").and_then(|n| n.as_str()).is_some_and(|n| self.permits_tool(server, n)));
        tools.len() != before
    }
}

/// `%XX` escapes decoded (a path segment as the OpenAPI document and REST paths write it).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// An SSE body's events with their tool lists cut: events are taken whole (up to the blank
/// line) and passed on at once; one holding a tool list is written again with the cut list.
pub(crate) struct SseNarrow {
    rules: Rules,
    server: Option<String>,
    buf: Vec<u8>,
}

impl SseNarrow {
    pub(crate) fn new(rules: Rules, server: Option<String>) -> SseNarrow {
        SseNarrow { rules, server, buf: Vec::new() }
    }

    /// The complete events `chunk` finishes, cut where needed; a partial event waits.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.buf.len());
        let mut start = 0;
        while let Some(end) = self.buf[start..].windows(2).position(|w| w == b"\n\n").map(|p| start + p + 2) {
            self.event(&self.buf[start..end], &mut out);
            start = end;
        }
        self.buf.drain(..start);
        Bytes::from(out)
    }

    fn event(&self, ev: &[u8], out: &mut Vec<u8>) {
        let data: Vec<&[u8]> = ev.split(|&b| b == b'\n').filter_map(|l| l.strip_prefix(b"data:")).collect();
        let joined: Vec<u8> = data.iter().map(|d| d.strip_prefix(b" ").unwrap_or(d)).collect::<Vec<_>>().join(&b'\n');
        let Some(cut) = (!data.is_empty()).then(|| self.rules.narrow_json(self.server.as_deref(), &joined)).flatten() else {
            out.extend_from_slice(ev);
            return;
        };
        for line in ev.split(|&b| b == b'\n').filter(|l| !l.is_empty() && !l.starts_with(b"data:")) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&cut);
        out.extend_from_slice(b"\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(servers: &[&str], tools: &[&str]) -> GrantModel {
        GrantModel {
            role: "r".into(),
            servers: servers.iter().map(|s| s.to_string()).collect(),
            tools: tools.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn grants_give_servers_and_tools() {
        let r = Rules::from_roles(&[grant(&["a"], &["echo"]), grant(&["b"], &["*"])], &["r".into()]);
        assert!(r.permits_server("a") && r.permits_server("b") && !r.permits_server("c"));
        assert!(r.permits_tool(Some("a"), "echo") && !r.permits_tool(Some("a"), "add") && r.permits_tool(Some("b"), "add"));
        assert!(r.narrows(Some("a")) && !r.narrows(Some("b")) && r.narrows(None));
        assert!(!r.permits_tool(None, "echo"));
        let none = Rules::from_roles(&[grant(&["a"], &["*"])], &["other".into()]);
        assert!(!none.permits_server("a") && none.server_list().is_empty());
        assert!(!Rules::servers(&["*".into()]).narrows(None));
    }

    #[test]
    fn calls_are_refused_and_lists_cut() {
        let r = Rules::from_roles(&[grant(&["a"], &["echo"])], &["r".into()]);
        let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add"}}"#;
        assert_eq!(r.refused_call(Some("a"), call), Some((Some("7".into()), "add".into())));
        assert_eq!(
            r.refused_call(Some("a"), br#"[{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"echo"}}]"#),
            None
        );
        let list = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},{"name":"add"}]}}"#;
        let cut: serde_json::Value = serde_json::from_slice(&r.narrow_json(Some("a"), list).unwrap()).unwrap();
        assert_eq!(cut["result"]["tools"].as_array().map(Vec::len), Some(1));
        let doc = br#"{"openapi":"3.1.0","paths":{"/rest/a/tools/echo":{},"/rest/a/tools/a%64d":{}}}"#;
        let cut: serde_json::Value = serde_json::from_slice(&r.narrow_json(Some("a"), doc).unwrap()).unwrap();
        assert_eq!(
            cut["paths"].as_object().map(|p| p.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["/rest/a/tools/echo".to_string()])
        );
        let mut sse = SseNarrow::new(r, Some("a".into()));
        let mut ev = b"id: s-1-1\ndata: ".to_vec();
        ev.extend_from_slice(list);
        ev.extend_from_slice(b"\n\n: ping\n\n");
        let (first, rest) = ev.split_at(20);
        let mut out = sse.push(first).to_vec();
        out.extend_from_slice(&sse.push(rest));
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("id: s-1-1\ndata: {") && text.ends_with("\n\n: ping\n\n"), "{text}");
        assert!(text.contains("echo") && !text.contains("add"), "{text}");
    }
}
