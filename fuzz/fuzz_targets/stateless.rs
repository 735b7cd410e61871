//! Fuzz target: what the bridge reads and rewrites of 2026-07-28 traffic
//! (`stateless::parse_request`, `decode_header_value`, `RequestState::verify`, `final_response`,
//! `with_meta`, `check_param_headers`, and `transport::mirrored::once` on headers read from the
//! input's lines). Any input is read or refused without a panic; a
//! rewritten message is still one JSON object that carries the id it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_bridge::fuzzing::stateless::{self, RequestState};

fuzz_target!(|data: &[u8]| {
    let _ = stateless::decode_header_value(data);
    // `name: value` lines as request headers: a repeated routing header is always found.
    let mut headers = axum::http::HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let name = axum::http::HeaderName::from_bytes(&line[..colon]);
        let value = axum::http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (name, value) {
            headers.append(n, v);
        }
    }
    let repeated = headers.keys().any(|k| {
        let k = k.as_str();
        (matches!(k, "mcp-protocol-version" | "mcp-method" | "mcp-name") || k.starts_with("mcp-param-"))
            && headers.get_all(k).iter().count() > 1
    });
    assert_eq!(mcp_bridge::fuzzing::mirrored::once(&headers).is_err(), repeated, "a repeated routing header is refused");
    if let Ok(text) = std::str::from_utf8(data) {
        const KEY: [u8; 32] = [9; 32];
        if let Some(st) = RequestState::verify(text, Some("p"), &KEY) {
            assert_eq!(RequestState::verify(&st.sign(Some("p"), &KEY), Some("p"), &KEY), Some(st), "a verified requestState round-trips");
        }
    }
    if let Ok(req) = stateless::parse_request(data) {
        let caps = stateless::ClientCaps::of(&req.meta);
        let _ = caps.allows(&req.method);
        let tools = stateless::param_headers(data);
        let headers = axum::http::HeaderMap::new();
        let arguments: serde_json::Value =
            req.arguments.as_ref().and_then(|a| serde_json::from_str(a.get()).ok()).unwrap_or_default();
        for wanted in tools.values() {
            let _ = stateless::check_param_headers(&headers, &arguments, wanted);
        }
    }
    if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data).is_ok() {
        for out in [stateless::final_response(data, "\"fz\"", true), stateless::with_meta(data, "k", "1")] {
            let v: serde_json::Value = serde_json::from_slice(&out).expect("a rewritten object is JSON");
            assert!(v.is_object(), "a rewritten object stays an object");
        }
        let v: serde_json::Value = serde_json::from_slice(&stateless::final_response(data, "\"fz\"", false)).expect("JSON");
        assert_eq!(v["id"], "fz", "the final response carries the id it was given");
    }
});
