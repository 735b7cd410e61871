//! The checks of a 2026-07-28 request's mirrored headers against its body
//! (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, and the `_meta` keys every request
//! carries), and the -32022 answer for a version the bridge does not serve statelessly.

use axum::http::{HeaderMap, HeaderValue, StatusCode};

use super::reply::{error, mismatch};
use crate::http::Error;
use crate::protocol::headers::decode_header_value;
use crate::protocol::modern::{self as wire, code, ModernRequest, META_VERSION};
use crate::protocol::MODERN_VERSIONS;

/// A header value for an error message: short, and only if it is printable.
fn shown(v: &HeaderValue) -> String {
    match v.to_str() {
        Ok(s) if s.bytes().all(|b| (0x20..0x7f).contains(&b)) => s.chars().take(128).collect(),
        _ => "(invalid characters)".into(),
    }
}

/// Checks the mirrored headers against the body, as a server that reads the body must.
pub(super) fn validate(headers: &HeaderMap, req: &ModernRequest) -> Result<(), Error> {
    let id = &*req.id;
    let Some(hv) = headers.get("mcp-protocol-version") else {
        return Err(mismatch(id, "the MCP-Protocol-Version header is required"));
    };
    let hv = shown(hv);
    let mut missing = Vec::new();
    if req.meta.version.is_none() {
        missing.push(META_VERSION);
    }
    if req.meta.capabilities.is_none() {
        missing.push("io.modelcontextprotocol/clientCapabilities");
    }
    if !missing.is_empty() {
        let msg = format!("Invalid params: missing _meta keys: {} (every 2026-07-28 request carries them)", missing.join(", "));
        return Err(error(StatusCode::BAD_REQUEST, Some(id), code::INVALID_PARAMS, &msg));
    }
    // What the bridge hands an upstream in `initialize` must be plain objects, and shallow (a
    // legitimate one is; a 10,000-deep one would stall the upstream's parser).
    for (key, value) in [
        ("io.modelcontextprotocol/clientCapabilities", &req.meta.capabilities),
        ("io.modelcontextprotocol/clientInfo", &req.meta.client_info),
    ] {
        if value.as_ref().is_some_and(|v| !wire::shallow_object(v.get(), 32)) {
            let msg = format!("Invalid params: _meta[\"{key}\"] must be a JSON object (nested at most 32 deep)");
            return Err(error(StatusCode::BAD_REQUEST, Some(id), code::INVALID_PARAMS, &msg));
        }
    }
    let bv = req.meta.version.as_deref().unwrap_or_default();
    if hv != bv {
        return Err(mismatch(id, &format!("MCP-Protocol-Version header value '{hv}' does not match body value '{bv}'")));
    }
    let method = match headers.get("mcp-method") {
        None => return Err(mismatch(id, "the Mcp-Method header is required")),
        Some(m) => shown(m),
    };
    if method != req.method {
        return Err(mismatch(id, &format!("Mcp-Method header value '{method}' does not match body value '{}'", req.method)));
    }
    if let Some(name) = &req.name {
        let Some(h) = headers.get("mcp-name") else {
            return Err(mismatch(id, &format!("the Mcp-Name header is required for {}", req.method)));
        };
        let Some(decoded) = decode_header_value(h.as_bytes()) else {
            return Err(mismatch(id, "the Mcp-Name header value has invalid characters or a malformed =?base64?…?= encoding"));
        };
        if &decoded != name {
            let d: String = decoded.chars().take(128).collect();
            return Err(mismatch(id, &format!("Mcp-Name header value '{d}' does not match body value '{name}'")));
        }
    }
    Ok(())
}

/// The -32022 refusal of a version the bridge does not serve statelessly.
pub(super) fn unsupported(req: &ModernRequest) -> Result<(), Error> {
    let bv = req.meta.version.as_deref().unwrap_or_default();
    if MODERN_VERSIONS.contains(&bv) {
        return Ok(());
    }
    Err(Error::UnsupportedVersion { id: req.id.clone(), requested: bv.to_string() })
}
