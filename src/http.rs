//! The HTTP layer: the inbound transports, auth, origin, admin and probes, and what they share:
//! the one error type ([`Error`]), SSE responses, reading a JSON-RPC body, and who the client
//! is behind a proxy.

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod auth;
mod error;
pub(crate) mod event_stream;
pub mod mirrored;
pub(crate) mod modern;
mod narrow;
pub(crate) mod origin;
pub(crate) mod probes;
pub(crate) mod ratelimit;
pub(crate) mod rest;
pub(crate) mod router;
pub(crate) mod sse;
pub(crate) mod streamable;

use std::net::{IpAddr, SocketAddr};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

pub(crate) use self::error::{Error, Failure};
use crate::protocol::jsonrpc::{self, Peek};

/// Wraps an event stream in a response with the headers streaming needs on any path:
/// no caching, no proxy buffering (`X-Accel-Buffering` is a *response* header), no compression.
pub(crate) fn sse_response<S>(stream: S, extra: &[(&'static str, String)]) -> Response
where
    S: futures_util::TryStream + Send + 'static,
    S::Ok: Into<axum::body::Bytes>,
    S::Error: Into<axum::BoxError>,
{
    sse_headers(Response::new(Body::from_stream(stream)), extra, 0)
}

/// An SSE answer whose events are all known: one body with a length.
pub(crate) fn sse_whole(events: axum::body::Bytes, extra: &[(&'static str, String)]) -> Response {
    // One more header than a stream: axum adds the body's `content-length`.
    sse_headers(Response::new(Body::from(events)), extra, 1)
}

fn sse_headers(mut resp: Response, extra: &[(&'static str, String)], more: usize) -> Response {
    let h = resp.headers_mut();
    // Sized to fit: hyper keeps this map for the life of the connection (a default-sized one is
    // 650 bytes per idle stream; three headers fit in 330).
    *h = axum::http::HeaderMap::with_capacity(3 + extra.len() + more);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    resp
}

/// Splits and checks a body of JSON-RPC messages (both transports post them); also says
/// whether it was a batch.
pub(crate) fn parse_messages(body: &Bytes) -> Result<(Vec<(Bytes, Peek)>, bool), Error> {
    let (items, batch) = jsonrpc::split(body).map_err(Error::Parse)?;
    let mut out = Vec::with_capacity(items.len());
    for raw in items {
        let peek = jsonrpc::peek(&raw).map_err(Error::Parse)?;
        out.push((raw, peek));
    }
    Ok((out, batch))
}

/// The client as the logs name it. A peer that is not a trusted proxy is the client, whatever
/// it sends. From a trusted proxy: its `X-Real-IP` (one valid address; the shipped nginx sets
/// it), else `X-Forwarded-For` read from the right, skipping trusted proxies, up to the first
/// hop a trusted proxy added that is not one itself. Anything to its left is the client's own
/// claim and is never believed.
pub fn client_addr(edge: &crate::config::edge::Edge, headers: &HeaderMap, peer: SocketAddr) -> ClientAddr {
    if !edge.is_trusted(peer.ip()) {
        return ClientAddr::Peer(peer);
    }
    let mut real = headers.get_all("x-real-ip").iter();
    if let (Some(v), None) = (real.next(), real.next()) {
        if let Some(ip) = v.to_str().ok().and_then(|v| v.trim().parse::<IpAddr>().ok()) {
            return ClientAddr::Forwarded(ip);
        }
    }
    let hops: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    let mut client = None;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else { break };
        client = Some(ip);
        if !edge.is_trusted(ip) {
            break;
        }
    }
    client.map_or(ClientAddr::Peer(peer), ClientAddr::Forwarded)
}

/// Who a stream is for, as its log lines name it: the peer's address, or the client's address
/// as a trusted proxy gave it. Formatted only when a line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddr {
    Peer(SocketAddr),
    Forwarded(IpAddr),
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAddr::Peer(a) => a.fmt(f),
            ClientAddr::Forwarded(ip) => ip.fmt(f),
        }
    }
}

/// The path prefix the client sees: `X-Forwarded-Prefix` if it is a clean absolute path, else
/// the configured public base path.
pub fn public_prefix(headers: &HeaderMap, configured: Option<&str>) -> String {
    let forwarded = headers.get("x-forwarded-prefix").and_then(|v| v.to_str().ok()).filter(|p| clean_path(p));
    forwarded.or(configured).unwrap_or("").trim_end_matches('/').to_string()
}

/// A path that stays a path wherever it is put: `/`, then segments of unreserved characters,
/// none empty (`//evil.example` would make a URI scheme-relative, i.e. another host), `.` or
/// `..`; a trailing `/` is allowed.
fn clean_path(p: &str) -> bool {
    let Some(rest) = p.strip_prefix('/') else { return false };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    p.len() < 256
        && (rest.is_empty()
            || rest.split('/').all(|seg| {
                !matches!(seg, "" | "." | "..") && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            }))
}

/// Whether an `Accept` header names `mime` itself. Wildcards do not count: the spec has
/// clients list both media types, and the official SDK servers answer 406 to `*/*`.
pub(crate) fn accepts(headers: &HeaderMap, mime: &str) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|part| {
        let m = part.split(';').next().unwrap_or("").trim();
        m.eq_ignore_ascii_case(mime)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn accept_parsing() {
        let m = h(&[("accept", "application/json;q=0.9, text/event-stream")]);
        assert!(accepts(&m, "text/event-stream") && accepts(&m, "application/json"));
        assert!(!accepts(&h(&[("accept", "text/html")]), "application/json"));
        assert!(!accepts(&h(&[("accept", "*/*")]), "text/event-stream"), "as the official servers: wildcards are not enough");
        assert!(!accepts(&HeaderMap::new(), "text/event-stream"));
    }

    #[test]
    fn the_client_address_is_what_a_trusted_proxy_saw() {
        let edge = crate::config::edge::Edge::default();
        let proxy: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let forged = h(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7"), ("x-real-ip", "6.6.6.6")]);
        assert_eq!(client_addr(&edge, &forged, stranger).to_string(), "203.0.113.9:5000", "an untrusted peer is the client");
        assert_eq!(client_addr(&edge, &h(&[("x-real-ip", "198.51.100.7")]), proxy).to_string(), "198.51.100.7");
        let xff = h(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 127.0.0.2")]);
        assert_eq!(client_addr(&edge, &xff, proxy).to_string(), "198.51.100.7", "from the right, past trusted proxies");
        let twice = h(&[("x-real-ip", "6.6.6.6"), ("x-real-ip", "1.2.3.4"), ("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(client_addr(&edge, &twice, proxy).to_string(), "198.51.100.7", "a repeated X-Real-IP is not believed");
        assert_eq!(client_addr(&edge, &h(&[("x-forwarded-for", "junk")]), proxy).to_string(), "127.0.0.1:5000");
        assert_eq!(client_addr(&edge, &HeaderMap::new(), proxy).to_string(), "127.0.0.1:5000");
    }

    #[test]
    fn prefix_is_sanitized() {
        assert_eq!(public_prefix(&h(&[("x-forwarded-prefix", "/mcp-bridge/")]), None), "/mcp-bridge");
        assert_eq!(public_prefix(&h(&[("x-forwarded-prefix", "//evil.example\"")]), Some("/p")), "/p");
        for bad in ["//evil.example", "//evil.example/", "/a//b", "/a/../b", "/..", "/./x", "a/b", "/a b", "/%2e%2e"] {
            assert_eq!(public_prefix(&h(&[("x-forwarded-prefix", bad)]), Some("/p")), "/p", "{bad}");
        }
        assert_eq!(public_prefix(&h(&[("x-forwarded-prefix", "/")]), None), "");
        assert_eq!(public_prefix(&h(&[("x-forwarded-prefix", "/a.b/c-d_e~f/")]), None), "/a.b/c-d_e~f");
        assert_eq!(public_prefix(&HeaderMap::new(), None), "");
    }
}
