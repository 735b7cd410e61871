//! The 2026-07-28 routing headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`,
//! `Mcp-Param-*`) appear at most once. A proxy routing on the first copy and a server reading
//! another would see different requests; a repeated one is a malformed header (400, -32020).

use axum::http::HeaderMap;

/// The headers that must not repeat, besides every `mcp-param-*`.
const SINGLE: &[&str] = &["mcp-protocol-version", "mcp-method", "mcp-name"];

/// `Err(message)` naming the first header given more than once.
pub fn once(headers: &HeaderMap) -> Result<(), String> {
    let param = headers.keys().map(|k| k.as_str()).filter(|k| k.starts_with("mcp-param-"));
    for name in SINGLE.iter().copied().chain(param) {
        let n = headers.get_all(name).iter().count();
        if n > 1 {
            return Err(format!("the {name} header was given {n} times; it must appear once"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_routing_header_is_refused() {
        let mut h = HeaderMap::new();
        h.append("mcp-method", "tools/call".parse().unwrap());
        h.append("mcp-name", "echo".parse().unwrap());
        h.append("mcp-param-region", "eu".parse().unwrap());
        h.append("accept", "a".parse().unwrap());
        h.append("accept", "b".parse().unwrap());
        assert!(once(&h).is_ok(), "other headers may repeat");
        for name in ["mcp-method", "mcp-name", "mcp-protocol-version", "mcp-param-region"] {
            let mut r = h.clone();
            r.append(name, "x".parse().unwrap());
            r.append(name, "y".parse().unwrap());
            assert!(once(&r).is_err_and(|e| e.contains(name)), "{name}");
        }
    }
}
