//! The 2026-07-28 revision's mirrored headers: the `x-mcp-header` annotations of tools
//! (`Mcp-Param-*`), checked against a request's arguments, and the header value encoding
//! (plain visible ASCII, or the `=?base64?…?=` sentinel). No I/O.

use std::collections::HashMap;

/// Where a tool wants an argument mirrored into a header (`x-mcp-header`): the argument's
/// path through `properties`, and the header's name part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    pub path: Vec<String>,
    pub header: String,
}

/// The `x-mcp-header` annotations of every tool in a `tools/list` answer, by tool name.
pub fn param_headers(tools_list: &[u8]) -> ToolHeaders {
    fn walk(schema: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<ParamHeader>) {
        let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else { return };
        for (name, prop) in props {
            path.push(name.clone());
            if let Some(h) = prop.get("x-mcp-header").and_then(|h| h.as_str()) {
                out.push(ParamHeader { path: path.clone(), header: h.to_string() });
            }
            walk(prop, path, out);
            path.pop();
        }
    }
    let v: serde_json::Value = serde_json::from_slice(tools_list).unwrap_or_default();
    let mut map = HashMap::new();
    for tool in v["result"]["tools"].as_array().into_iter().flatten() {
        let Some(name) = tool["name"].as_str() else { continue };
        let mut out = Vec::new();
        walk(&tool["inputSchema"], &mut Vec::new(), &mut out);
        if !out.is_empty() {
            map.insert(name.to_string(), out);
        }
    }
    map
}

/// Checks a `tools/call`'s `Mcp-Param-*` headers against its arguments: a mirrored argument
/// needs its header with the same value (numbers compared as numbers), an absent one none.
pub fn check_param_headers(
    headers: &axum::http::HeaderMap,
    arguments: &serde_json::Value,
    wanted: &[ParamHeader],
) -> Result<(), String> {
    for p in wanted {
        let name = format!("mcp-param-{}", p.header.to_ascii_lowercase());
        let value = p.path.iter().try_fold(arguments, |v, k| v.get(k)).filter(|v| !v.is_null());
        let header = headers.get(&name);
        let (value, header) = match (value, header) {
            (None, None) => continue,
            (Some(_), None) => {
                return Err(format!(
                    "the Mcp-Param-{} header is required: the body has argument `{}`",
                    p.header,
                    p.path.join(".")
                ))
            }
            (None, Some(_)) => {
                return Err(format!("Mcp-Param-{} is set but the body has no argument `{}`", p.header, p.path.join(".")))
            }
            (Some(v), Some(h)) => (v, h),
        };
        let Some(decoded) = decode_header_value(header.as_bytes()) else {
            return Err(format!(
                "the Mcp-Param-{} header value has invalid characters or a malformed =?base64?…?= encoding",
                p.header
            ));
        };
        let same = match value {
            serde_json::Value::String(s) => *s == decoded,
            serde_json::Value::Bool(b) => decoded == if *b { "true" } else { "false" },
            serde_json::Value::Number(n) => decoded.trim().parse::<f64>().ok().zip(n.as_f64()).is_some_and(|(a, b)| a == b),
            _ => false,
        };
        if !same {
            let d: String = decoded.chars().take(128).collect();
            return Err(format!("Mcp-Param-{} header value '{d}' does not match body value {value}", p.header));
        }
    }
    Ok(())
}

/// Each tool's `x-mcp-header` annotations, by tool name.
pub(crate) type ToolHeaders = HashMap<String, Vec<ParamHeader>>;

/// Decodes an `Mcp-Name` / `Mcp-Param-*` value: plain visible ASCII as it is, or the
/// `=?base64?…?=` sentinel form. `None` if the value is malformed.
pub fn decode_header_value(v: &[u8]) -> Option<String> {
    use base64::Engine;
    if !v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        return None;
    }
    let s = std::str::from_utf8(v).ok()?;
    match s.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        Some(enc) => String::from_utf8(base64::engine::general_purpose::STANDARD.decode(enc).ok()?).ok(),
        None => Some(s.to_string()),
    }
}

/// A header value as the revision encodes it: plain visible ASCII, else the Base64 sentinel.
pub(crate) fn header_value(s: &str) -> String {
    use base64::Engine;
    let sentinel = s.starts_with("=?base64?") && s.ends_with("?=");
    let visible = s.bytes().all(|b| (0x20..0x7f).contains(&b));
    let plain = visible && !s.is_empty() && !s.starts_with(' ') && !s.ends_with(' ') && !sentinel;
    if plain {
        s.to_string()
    } else {
        format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_headers_are_learned_and_checked() {
        let list = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"sql","inputSchema":{"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},"n":{"type":"integer","x-mcp-header":"N"},
            "opt":{"type":"object","properties":{"flag":{"type":"boolean","x-mcp-header":"Flag"}}},"q":{"type":"string"}}}},
            {"name":"plain","inputSchema":{"type":"object"}}]}}"#;
        let map = param_headers(list);
        assert_eq!(map.len(), 1);
        let wanted = &map["sql"];
        assert!(wanted.contains(&ParamHeader { path: vec!["opt".into(), "flag".into()], header: "Flag".into() }));
        let mut h = axum::http::HeaderMap::new();
        let args = serde_json::json!({"region": "us-west1", "n": 42, "q": "x"});
        assert!(check_param_headers(&h, &args, wanted).unwrap_err().contains("header is required"));
        h.insert("mcp-param-region", "us-west1".parse().unwrap());
        h.insert("mcp-param-n", "42.0".parse().unwrap());
        assert_eq!(check_param_headers(&h, &args, wanted), Ok(()), "integers compare as numbers");
        h.insert("mcp-param-region", "=?base64?dXMtd2VzdDE=?=".parse().unwrap());
        assert_eq!(check_param_headers(&h, &args, wanted), Ok(()), "the Base64 form decodes first");
        h.insert("mcp-param-region", "=?base64?dXMtd2VzdDE?=".parse().unwrap());
        assert!(check_param_headers(&h, &args, wanted).is_err(), "bad padding");
        h.insert("mcp-param-region", "eu-west1".parse().unwrap());
        assert!(check_param_headers(&h, &args, wanted).unwrap_err().contains("does not match"));
        h.insert("mcp-param-region", "us-west1".parse().unwrap());
        h.insert("mcp-param-flag", "true".parse().unwrap());
        assert!(check_param_headers(&h, &args, wanted).unwrap_err().contains("no argument `opt.flag`"));
    }

    #[test]
    fn header_values_decode() {
        assert_eq!(decode_header_value(b"get_weather").as_deref(), Some("get_weather"));
        assert_eq!(decode_header_value(b"=?base64?SGVsbG8sIOS4lueVjA==?=").as_deref(), Some("Hello, 世界"));
        assert_eq!(decode_header_value(b"=?base64?!!?="), None);
        assert_eq!(decode_header_value("é".as_bytes()), None);
    }

    #[test]
    fn header_values_encode_as_the_revision_says_and_decode_back() {
        for s in ["get_weather", "Hello, 世界", " padded ", "line1\nline2", "=?base64?literal?=", "file:///a b"] {
            let h = header_value(s);
            assert!(h.bytes().all(|b| (0x20..0x7f).contains(&b)), "{h:?} is a valid header value");
            assert_eq!(decode_header_value(h.as_bytes()).as_deref(), Some(s), "{s:?} round-trips");
        }
        assert_eq!(header_value("us-west1"), "us-west1");
        assert_eq!(header_value("Hello, 世界"), "=?base64?SGVsbG8sIOS4lueVjA==?=");
    }
}
