//! The 2026-07-28 (stateless) revision as data: what a request says about itself in
//! `params._meta`, the revision's error codes, the methods that may ask for input (MRTR), and
//! the messages the bridge writes in its terms (final responses, `InputRequiredResult`s, listen
//! acknowledgements). No I/O.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::method;
use super::rewrite::{self, raw, Members};

/// The `_meta` key that names a request's protocol version.
pub(crate) const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// What the bridge asks a legacy upstream for when it opens a backing session.
pub(crate) const UPSTREAM_VERSION: &str = super::V2025_11_25;

/// The requests that may answer with an `InputRequiredResult` (MRTR).
pub(crate) const MRTR_METHODS: &[&str] = &[method::TOOLS_CALL, method::PROMPTS_GET, method::RESOURCES_READ];
/// Results that say how long they may be cached (`ttlMs`, `cacheScope`).
pub(crate) const CACHEABLE: &[&str] = &[
    method::SERVER_DISCOVER,
    method::TOOLS_LIST,
    method::PROMPTS_LIST,
    method::RESOURCES_LIST,
    method::RESOURCES_TEMPLATES_LIST,
    method::RESOURCES_READ,
];

/// JSON-RPC error codes of the 2026-07-28 revision.
pub(crate) mod code {
    pub(crate) const HEADER_MISMATCH: i64 = -32020;
    pub(crate) const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    pub(crate) const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
    pub(crate) const INVALID_PARAMS: i64 = -32602;
}

/// What a modern request says about itself in `params._meta`.
#[derive(Debug, Default, Deserialize)]
pub struct RequestMeta {
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    pub version: Option<String>,
    #[serde(rename = "io.modelcontextprotocol/clientInfo")]
    pub client_info: Option<Box<RawValue>>,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
    pub capabilities: Option<Box<RawValue>>,
    #[serde(rename = "io.modelcontextprotocol/logLevel")]
    pub log_level: Option<String>,
}

/// The parts of a modern request the bridge reads; the request itself travels as sent.
#[derive(Debug)]
pub struct ModernRequest {
    /// The id's JSON text.
    pub id: Box<str>,
    pub method: String,
    /// `params.name` (tools/call, prompts/get) or `params.uri` (resources/read).
    pub name: Option<String>,
    pub meta: RequestMeta,
    pub request_state: Option<String>,
    pub input_responses: BTreeMap<String, Box<RawValue>>,
    /// `tools/call`'s arguments (for the `Mcp-Param-*` checks), as they came.
    pub arguments: Option<Box<RawValue>>,
    /// `subscriptions/listen`'s filter.
    pub notifications: Option<ListenFilter>,
}

#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenFilter {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tools_list_changed: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prompts_list_changed: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resources_list_changed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_subscriptions: Vec<String>,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<String>,
    #[serde(default)]
    params: Option<WireParams>,
}

#[derive(Deserialize)]
struct WireParams {
    name: Option<serde_json::Value>,
    uri: Option<serde_json::Value>,
    #[serde(rename = "_meta")]
    meta: Option<RequestMeta>,
    #[serde(rename = "requestState")]
    request_state: Option<String>,
    #[serde(rename = "inputResponses")]
    input_responses: Option<BTreeMap<String, Box<RawValue>>>,
    notifications: Option<ListenFilter>,
    arguments: Option<Box<RawValue>>,
}

/// Reads a modern request; the error is the message of an `Invalid params` answer.
pub fn parse_request(raw: &[u8]) -> Result<ModernRequest, String> {
    let w: Wire = serde_json::from_slice(raw).map_err(|e| format!("Invalid params: {e}"))?;
    let id = w.id.map(|i| i.get()).ok_or("Invalid Request: a request needs an id")?;
    let method = w.method.ok_or("Invalid Request: a request needs a method")?;
    let p = w.params;
    let field = |v: &Option<serde_json::Value>| v.as_ref().and_then(|v| v.as_str()).map(str::to_string);
    let name = match (method.as_str(), &p) {
        (method::TOOLS_CALL | method::PROMPTS_GET, Some(p)) => field(&p.name),
        (method::RESOURCES_READ, Some(p)) => field(&p.uri),
        _ => None,
    };
    let p = p.unwrap_or(WireParams {
        name: None,
        uri: None,
        meta: None,
        request_state: None,
        input_responses: None,
        notifications: None,
        arguments: None,
    });
    Ok(ModernRequest {
        id: id.into(),
        method,
        name,
        meta: p.meta.unwrap_or_default(),
        request_state: p.request_state,
        input_responses: p.input_responses.unwrap_or_default(),
        notifications: p.notifications,
        arguments: p.arguments,
    })
}

/// Which server-to-client requests a modern client declared it can answer.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientCaps {
    pub sampling: bool,
    pub elicitation: bool,
    pub roots: bool,
}

impl ClientCaps {
    pub fn of(meta: &RequestMeta) -> ClientCaps {
        #[derive(Deserialize)]
        struct Caps<'a> {
            #[serde(borrow)]
            sampling: Option<&'a RawValue>,
            #[serde(borrow)]
            elicitation: Option<&'a RawValue>,
            #[serde(borrow)]
            roots: Option<&'a RawValue>,
        }
        let Some(raw) = &meta.capabilities else { return ClientCaps::default() };
        match serde_json::from_str::<Caps>(raw.get()) {
            Ok(c) => {
                ClientCaps { sampling: c.sampling.is_some(), elicitation: c.elicitation.is_some(), roots: c.roots.is_some() }
            }
            Err(_) => ClientCaps::default(),
        }
    }

    /// The capability a server-to-client request needs, and whether the client has it.
    pub fn allows(&self, method: &str) -> Option<(&'static str, bool)> {
        match method {
            method::SAMPLING_CREATE_MESSAGE => Some(("sampling", self.sampling)),
            method::ELICITATION_CREATE => Some(("elicitation", self.elicitation)),
            method::ROOTS_LIST => Some(("roots", self.roots)),
            _ => None,
        }
    }
}

/// Whether valid JSON text is an object nested no deeper than `max_depth` (a byte scan, no
/// allocation: it runs on every request's `_meta`).
pub(crate) fn shallow_object(json: &str, max_depth: usize) -> bool {
    let json = json.trim_start();
    if !json.starts_with('{') {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Log levels in order (RFC 5424 as MCP names them).
const LEVELS: &[&str] = &["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// Whether a `notifications/message` at `level` reaches a client that asked for `wanted`:
/// without a requested level, none does.
pub(crate) fn log_wanted(wanted: Option<&str>, message: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct M {
        params: Option<P>,
    }
    #[derive(Deserialize)]
    struct P {
        level: Option<String>,
    }
    let Some(wanted) = wanted.and_then(|w| LEVELS.iter().position(|l| *l == w)) else { return false };
    let level = serde_json::from_slice::<M>(message).ok().and_then(|m| m.params).and_then(|p| p.level);
    level.and_then(|l| LEVELS.iter().position(|x| *x == l)).is_some_and(|l| l >= wanted)
}

/// The upstream's final response as the modern client gets it: its id is the id of the
/// request being answered (a retry's, after MRTR rounds), and a result says `resultType`
/// and, for a `cacheable` method, that it may not be cached (the bridge cannot know for how
/// long a legacy upstream's answer holds). Only the top-level members of the message and of
/// its result are re-written; everything inside them passes as it came.
pub fn final_response(upstream: &[u8], id: &str, cacheable: bool) -> Bytes {
    final_result_in_place(upstream, id, cacheable).unwrap_or_else(|| final_response_rewritten(upstream, id, cacheable))
}

/// `final_response` by reading the members and writing the changed ones anew (errors, and
/// whatever the in-place path declines).
fn final_response_rewritten(upstream: &[u8], id: &str, cacheable: bool) -> Bytes {
    let Ok(mut m) = serde_json::from_slice::<Members>(upstream) else { return Bytes::copy_from_slice(upstream) };
    m.insert("id".into(), raw(id.to_string()));
    // A missing resource is -32602 since 2026-07-28 (it was -32002).
    if let Some(error) = m.get("error") {
        if let Ok(mut e) = serde_json::from_str::<Members>(error.get()) {
            if e.get("code").is_some_and(|c| c.get() == "-32002") {
                e.insert("code".into(), raw(code::INVALID_PARAMS.to_string()));
                m.insert("error".into(), rewrite::nested(&e));
            }
        }
    }
    if let Some(result) = m.get("result") {
        if let Ok(mut r) = serde_json::from_str::<Members>(result.get()) {
            let mut add = vec![("resultType", "\"complete\"")];
            if cacheable {
                add.extend([("ttlMs", "0"), ("cacheScope", "\"private\"")]);
            }
            let before = r.len();
            for (k, v) in add {
                r.entry(k.to_string()).or_insert_with(|| raw(v.to_string()));
            }
            if r.len() != before {
                m.insert("result".into(), rewrite::nested(&r));
            }
        }
    }
    rewrite::to_bytes(&m)
}

/// `final_response` for the common case, a result object: the id and the added members are
/// spliced into the upstream's bytes, which are otherwise copied as they came. `None` (and the
/// general path) for an error, a result that is not an object, a repeated member, or anything
/// that does not read as a response.
fn final_result_in_place(upstream: &[u8], id: &str, cacheable: bool) -> Option<Bytes> {
    #[derive(Deserialize)]
    struct Top<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
        #[serde(borrow)]
        result: &'a RawValue,
        error: Option<serde::de::IgnoredAny>,
    }
    /// Whether a member is there, whatever its value (`null` too, which an `Option` would
    /// read as missing).
    #[derive(Default)]
    struct Present(bool);
    impl<'de> Deserialize<'de> for Present {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Present, D::Error> {
            serde::de::IgnoredAny::deserialize(d).map(|_| Present(true))
        }
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Marks {
        #[serde(default)]
        result_type: Present,
        #[serde(default)]
        ttl_ms: Present,
        #[serde(default)]
        cache_scope: Present,
    }
    // An object only: serde would also read an array as the struct's fields in order.
    if !upstream.trim_ascii_start().starts_with(b"{") {
        return None;
    }
    let top: Top = serde_json::from_slice(upstream).ok().filter(|t: &Top| t.error.is_none())?;
    let result = top.result.get();
    if !result.starts_with('{') {
        return None;
    }
    let marks: Marks = serde_json::from_str(result).ok()?;
    let mut add = String::new();
    let mut mark = |missing: bool, member: &str| {
        if missing {
            add.push_str(if add.is_empty() { "" } else { "," });
            add.push_str(member);
        }
    };
    mark(!marks.result_type.0, r#""resultType":"complete""#);
    mark(cacheable && !marks.ttl_ms.0, r#""ttlMs":0"#);
    mark(cacheable && !marks.cache_scope.0, r#""cacheScope":"private""#);
    let id_at = rewrite::span(upstream, top.id)?;
    let open = rewrite::span(upstream, top.result)?.start + 1;
    if !add.is_empty() && !result[1..].trim_start().starts_with('}') {
        add.push(',');
    }
    rewrite::splice(upstream, vec![(id_at, id.as_bytes()), (open..open, add.as_bytes())])
}

/// The -32021 answer for a request whose upstream needed a capability the client lacks.
pub(crate) fn missing_capability(id: &str, capability: &str, method: &str) -> Bytes {
    let message = format!(
        "Missing required client capability: the server sent {method}, which needs `{capability}` in io.modelcontextprotocol/clientCapabilities"
    );
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{},"message":{},"data":{{"requiredCapabilities":{{{}:{{}}}}}}}}}}"#,
        code::MISSING_CLIENT_CAPABILITY,
        serde_json::to_string(&message).unwrap_or_default(),
        serde_json::to_string(capability).unwrap_or_default()
    ))
}

/// A notification with `params._meta[key] = value` added (a listen stream's subscription id).
pub fn with_meta(notification: &[u8], key: &str, value: &str) -> Bytes {
    let edited = rewrite::edit_params(notification, |_, meta| {
        meta.insert(key.into(), raw(value.to_string()));
    });
    edited.map_or_else(|| Bytes::copy_from_slice(notification), |m| rewrite::to_bytes(&m))
}

/// An `InputRequiredResult` answering request `id`: the upstream's server-to-client requests
/// (each keyed by its id's JSON text), and the state the retry brings back.
pub(crate) fn input_required(id: &str, asks: &[(String, Bytes)], state: &str) -> Bytes {
    #[derive(Deserialize)]
    struct Req<'a> {
        method: &'a str,
        #[serde(borrow)]
        params: Option<&'a RawValue>,
    }
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let requests: Vec<String> = asks
        .iter()
        .filter_map(|(key, msg)| {
            let r = serde_json::from_slice::<Req>(msg).ok()?;
            let params = r.params.map_or("{}", |p| p.get());
            Some(format!(r#"{}:{{"method":{},"params":{params}}}"#, q(key), q(r.method)))
        })
        .collect();
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"resultType":"input_required","inputRequests":{{{}}},"requestState":{}}}}}"#,
        requests.join(","),
        q(state)
    ))
}

/// The upstream's initialize result, for `server/discover` and listen filters.
#[derive(Debug, Deserialize)]
pub struct Init {
    #[serde(rename = "protocolVersion")]
    pub protocol_version: Option<String>,
    pub capabilities: Option<Box<RawValue>>,
    #[serde(rename = "serverInfo")]
    pub server_info: Option<Box<RawValue>>,
    pub instructions: Option<String>,
}

impl Init {
    /// The subset of `wanted` this upstream can deliver.
    pub fn honored(&self, wanted: &ListenFilter) -> ListenFilter {
        let caps: serde_json::Value =
            self.capabilities.as_ref().and_then(|c| serde_json::from_str(c.get()).ok()).unwrap_or_default();
        let flag = |area: &str, f: &str| caps.get(area).and_then(|a| a.get(f)).and_then(|v| v.as_bool()).unwrap_or(false);
        ListenFilter {
            tools_list_changed: wanted.tools_list_changed && flag("tools", "listChanged"),
            prompts_list_changed: wanted.prompts_list_changed && flag("prompts", "listChanged"),
            resources_list_changed: wanted.resources_list_changed && flag("resources", "listChanged"),
            resource_subscriptions: if flag("resources", "subscribe") {
                wanted.resource_subscriptions.clone()
            } else {
                Vec::new()
            },
        }
    }
}

/// The `notifications/subscriptions/acknowledged` that opens a listen stream.
pub(crate) fn acknowledged(subscription: &str, honored: &ListenFilter) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{{"notifications":{},"_meta":{{"io.modelcontextprotocol/subscriptionId":{subscription}}}}}}}"#,
        serde_json::to_string(honored).unwrap_or_else(|_| "{}".into())
    ))
}

/// Whether a listen stream with filter `f` wants this upstream notification.
pub(crate) fn listen_wants(f: &ListenFilter, method: &str, raw: &[u8]) -> bool {
    match method {
        method::TOOLS_LIST_CHANGED => f.tools_list_changed,
        method::PROMPTS_LIST_CHANGED => f.prompts_list_changed,
        method::RESOURCES_LIST_CHANGED => f.resources_list_changed,
        method::RESOURCES_UPDATED => {
            #[derive(Deserialize)]
            struct U {
                params: Option<P>,
            }
            #[derive(Deserialize)]
            struct P {
                uri: Option<String>,
            }
            let uri = serde_json::from_slice::<U>(raw).ok().and_then(|u| u.params).and_then(|p| p.uri);
            uri.is_some_and(|u| f.resource_subscriptions.iter().any(|s| u.starts_with(s.as_str())))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_modern_request() {
        let r = parse_request(
            br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{},"requestState":"s",
            "inputResponses":{"0":{"action":"accept"}},
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}},"io.modelcontextprotocol/logLevel":"info"}}}"#,
        )
        .unwrap();
        assert_eq!((&*r.id, r.method.as_str(), r.name.as_deref()), ("\"a\"", "tools/call", Some("echo")));
        assert_eq!(r.meta.version.as_deref(), Some("2026-07-28"));
        assert_eq!(r.request_state.as_deref(), Some("s"));
        assert_eq!(r.input_responses.get("0").map(|v| v.get()), Some(r#"{"action":"accept"}"#));
        let caps = ClientCaps::of(&r.meta);
        assert!(caps.sampling && !caps.elicitation && !caps.roots);
        let r = parse_request(br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://a"}}"#).unwrap();
        assert_eq!(r.name.as_deref(), Some("demo://a"));
        assert!(parse_request(br#"{"jsonrpc":"2.0","method":"tools/list"}"#).is_err());
    }

    #[test]
    fn final_response_gets_the_callers_id_and_a_result_type() {
        let up = br#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"hi \u00e9"}]}}"#;
        let v: serde_json::Value = serde_json::from_slice(&final_response(up, "\"r2\"", false)).unwrap();
        assert_eq!(v["id"], "r2");
        assert_eq!(v["result"]["resultType"], "complete");
        assert!(v["result"].get("ttlMs").is_none());
        assert_eq!(v["result"]["content"][0]["text"], "hi é");
        let list = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"ttlMs":5000}}"#;
        let v: serde_json::Value = serde_json::from_slice(&final_response(list, "1", true)).unwrap();
        assert_eq!((v["result"]["ttlMs"].as_i64(), v["result"]["cacheScope"].as_str()), (Some(5000), Some("private")));
        let v: serde_json::Value =
            serde_json::from_slice(&missing_capability("4", "sampling", "sampling/createMessage")).unwrap();
        assert_eq!((v["id"].as_i64(), v["error"]["code"].as_i64()), (Some(4), Some(-32021)));
        assert!(v["error"]["data"]["requiredCapabilities"]["sampling"].is_object());
        let gone = br#"{"jsonrpc":"2.0","id":5,"error":{"code":-32002,"message":"no such resource","data":{"uri":"x"}}}"#;
        let v: serde_json::Value = serde_json::from_slice(&final_response(gone, "5", true)).unwrap();
        assert_eq!((v["error"]["code"].as_i64(), v["error"]["data"]["uri"].as_str()), (Some(-32602), Some("x")));
        let err = br#"{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"no"}}"#;
        let v: serde_json::Value = serde_json::from_slice(&final_response(err, "9", true)).unwrap();
        assert_eq!((v["id"].as_i64(), v["error"]["code"].as_i64()), (Some(9), Some(-32601)));
    }

    #[test]
    fn the_in_place_answer_reads_as_the_rewritten_one() {
        let cases: &[&[u8]] = &[
            br#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"hi \u00e9"}]}}"#,
            br#"{"result":{},"id":"x","jsonrpc":"2.0"}"#,
            br#" { "jsonrpc" : "2.0" , "id" : 1 , "result" : {  } } "#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"ttlMs":5000,"resultType":"complete"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"public"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":null,"ttlMs":null,"x":1}}"#,
        ];
        for up in cases {
            for cacheable in [false, true] {
                let fast = final_result_in_place(up, "\"r\"", cacheable).expect("a result object is spliced");
                let slow = final_response_rewritten(up, "\"r\"", cacheable);
                let (f, s): (serde_json::Value, serde_json::Value) =
                    (serde_json::from_slice(&fast).unwrap(), serde_json::from_slice(&slow).unwrap());
                assert_eq!(f, s, "{}", String::from_utf8_lossy(&fast));
                // No marker twice (a strict reader refuses that; `Value` would hide it).
                for name in [&br#""resultType""#[..], br#""ttlMs""#, br#""cacheScope""#] {
                    let n = fast.windows(name.len()).filter(|w| w == &name).count();
                    assert!(n <= 1, "{}", String::from_utf8_lossy(&fast));
                }
            }
        }
        let kept = final_response(cases[0], "7", false);
        assert!(kept.windows(11).any(|w| w == br#""hi \u00e9""#), "untouched bytes are kept: {kept:?}");
        // Declined: an error, a result that is no object, a repeated member, no JSON at all.
        for up in [
            &br#"{"jsonrpc":"2.0","id":5,"error":{"code":-32002,"message":"gone"}}"#[..],
            br#"{"jsonrpc":"2.0","id":5,"result":[1]}"#,
            br#"[1,{"a":1},null]"#,
            br#"{"jsonrpc":"2.0","id":5,"result":{"resultType":"complete","resultType":null}}"#,
            br#"{"jsonrpc":"2.0","id":5,"id":6,"result":{}}"#,
            br#"{"jsonrpc":"2.0","id":5,"result":{},"error":{"code":1,"message":"both"}}"#,
            b"not json",
        ] {
            assert!(final_result_in_place(up, "1", true).is_none(), "{}", String::from_utf8_lossy(up));
        }
    }

    #[test]
    fn shallow_objects() {
        assert!(shallow_object(r#"{"sampling":{},"elicitation":{"form":{}}}"#, 32));
        assert!(shallow_object(r#" {"a":"}}}{{{[[[","b":"\\\"{"}"#, 2), "brackets in strings do not count");
        assert!(!shallow_object("[]", 32));
        assert!(!shallow_object("\"x\"", 32));
        let deep = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
        assert!(!shallow_object(&deep, 32));
        assert!(shallow_object(&deep, 40));
    }

    #[test]
    fn log_levels_filter() {
        let m = br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"warning","data":"x"}}"#;
        assert!(log_wanted(Some("info"), m));
        assert!(!log_wanted(Some("error"), m));
        assert!(!log_wanted(None, m), "no requested level: no log messages");
    }

    #[test]
    fn listen_filters_and_meta() {
        let f =
            ListenFilter { tools_list_changed: true, resource_subscriptions: vec!["demo://r/1".into()], ..Default::default() };
        assert!(listen_wants(&f, "notifications/tools/list_changed", b"{}"));
        assert!(!listen_wants(&f, "notifications/prompts/list_changed", b"{}"));
        let upd = br#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"demo://r/1"}}"#;
        assert!(listen_wants(&f, "notifications/resources/updated", upd));
        let v: serde_json::Value =
            serde_json::from_slice(&with_meta(upd, "io.modelcontextprotocol/subscriptionId", "7")).unwrap();
        assert_eq!(v["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 7);
        assert_eq!(v["params"]["uri"], "demo://r/1");
    }
}
