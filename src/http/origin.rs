//! Origin and Host validation (MCP 2025-11-25 transport security, DNS rebinding protection):
//! a request whose `Origin` is not allowed gets 403; when the bridge listens on a loopback
//! address, a request whose `Host` is not a local name (or the host of a configured origin)
//! gets 403 too. A request without `Origin` (every non-browser client) passes the first check.
//! An `Origin` is allowed if it is configured or a local page; one that merely equals the
//! request's `Host` is not (on a public listener, DNS rebinding makes both the attacker's).
//! Allowed origins also get CORS: preflights are answered here, and responses name the origin,
//! so a browser page on another origin can use `EventSource` and `fetch` against the bridge.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Error;
use crate::config::edge::normalize_origin;

/// What the middleware allows, built once from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `allowed_origins` as configured (normalized: lowercase, no trailing `/`).
    origins: Vec<String>,
    /// `allowed_origins` contains `*`.
    any_origin: bool,
    /// The bridge listens on loopback only, so `Host` is checked (DNS rebinding).
    check_host: bool,
}

impl Policy {
    pub fn new(listen: SocketAddr, allowed_origins: &[String]) -> Arc<Policy> {
        Arc::new(Policy {
            origins: allowed_origins.iter().map(|o| normalize_origin(o)).collect(),
            any_origin: allowed_origins.iter().any(|o| o == "*"),
            check_host: listen.ip().is_loopback(),
        })
    }

    /// Both checks the middleware makes on a request to `path`: [`Error::BadHost`] for a
    /// repeated or non-ASCII `Host`, on every path; [`Error::OriginRefused`] for a refused
    /// `Host` or `Origin`, on every path but the probes.
    pub(crate) fn refusal(&self, path: &str, headers: &HeaderMap) -> Result<(), Error> {
        one_host(headers).map_err(|r| Error::BadHost(r.to_string()))?;
        if path == "/healthz" || path == "/readyz" {
            return Ok(());
        }
        self.verdict(headers).map_err(Error::OriginRefused)
    }

    /// [`Policy::refusal`] as the status it is answered with (400 or 403) and the reason.
    /// Public for the `headers` fuzz target.
    pub fn admit(&self, path: &str, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
        self.refusal(path, headers).map_err(|e| {
            let why = reason(&e).to_string();
            (e.into_response().status(), why)
        })
    }

    /// `Err(reason)` if the request must be refused.
    pub fn verdict(&self, headers: &HeaderMap) -> Result<(), String> {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        if self.check_host {
            if let Some(h) = host {
                let name = hostname(h);
                if !is_local(&name) && !self.origins.iter().any(|o| origin_host(o).is_some_and(|oh| oh == name)) {
                    return Err(format!(
                        "Host `{}` is not a local name and the bridge listens on loopback (DNS rebinding protection); \
                         add the public origin to `allowed_origins` in the config",
                        clip(h)
                    ));
                }
            }
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = normalize_origin(origin.to_str().unwrap_or("\u{0}"));
        if self.any_origin || self.origins.contains(&origin) {
            return Ok(());
        }
        // A local page (the bridge's own origin on loopback among them). Not "the origin the
        // Host names": a rebound name makes Host and Origin both the attacker's.
        if origin_host(&origin).is_some_and(|oh| is_local(&oh)) {
            Ok(())
        } else {
            Err(format!("Origin `{}` is not allowed; add it to `allowed_origins` in the config", clip(&origin)))
        }
    }
}

/// What the check makes of a request it lets through.
pub(crate) enum Screened {
    /// Route it; an allowed `Origin` is named in its answer's CORS headers ([`cors`]).
    Route(Option<HeaderValue>),
    /// A CORS preflight, answered here.
    Preflight(Response),
}

/// The check, before a request is routed (`router::gate`): 403 with a JSON-RPC error body for
/// a refused request; CORS for an allowed origin.
pub(crate) fn screen(policy: &Policy, req: &Request) -> Result<Screened, Error> {
    let path = req.uri().path();
    if let Err(refused) = policy.refusal(path, req.headers()) {
        tracing::warn!(path, reason = %reason(&refused), "refused a request");
        return Err(refused);
    }
    // The admin API serves only its own page: no CORS (admin::screen checks the origin).
    let Some(origin) = req.headers().get(header::ORIGIN).cloned().filter(|_| !path.starts_with("/admin")) else {
        return Ok(Screened::Route(None));
    };
    if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return Ok(Screened::Preflight(preflight(origin, req.headers())));
    }
    Ok(Screened::Route(Some(origin)))
}

/// Why [`Policy::refusal`] refused, without the status words the client's message starts with.
fn reason(e: &Error) -> &str {
    match e {
        Error::BadHost(r) | Error::OriginRefused(r) => r,
        _ => "",
    }
}

/// A request has at most one `Host`, and it is text (RFC 9112 section 3.2: else 400). A second
/// or a non-ASCII one would slip past the Host check, which reads the first as text.
fn one_host(h: &HeaderMap) -> Result<(), &'static str> {
    let mut hosts = h.get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    if first.is_some_and(|v| v.to_str().is_err()) {
        return Err("the Host header is not ASCII text");
    }
    Ok(())
}

/// Headers a browser client needs to read: the session id and the negotiated version.
const EXPOSED: &str = "mcp-session-id, mcp-protocol-version";
const ALLOWED_HEADERS: &str = "content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id, authorization";

/// CORS headers of an answer to an allowed origin.
pub(crate) fn cors(h: &mut HeaderMap, origin: HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
    h.append(header::VARY, HeaderValue::from_static("origin"));
}

/// The answer to a CORS preflight from an allowed origin.
fn preflight(origin: HeaderValue, req: &HeaderMap) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    cors(h, origin);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE, OPTIONS"));
    let asked = req.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.unwrap_or(HeaderValue::from_static(ALLOWED_HEADERS)));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    resp
}

/// `host[:port]` of an origin.
fn origin_authority(origin: &str) -> Option<String> {
    let (_, rest) = origin.split_once("://")?;
    Some(rest.to_string()).filter(|r| !r.is_empty())
}

/// The host name of an origin, without the port.
fn origin_host(origin: &str) -> Option<String> {
    origin_authority(origin).map(|a| hostname(&a))
}

/// The host name of a `Host` header value or an authority: brackets kept for IPv6, port and a
/// trailing dot dropped, lowercase.
fn hostname(authority: &str) -> String {
    let a = authority.trim();
    let name = if a.starts_with('[') { a.split_inclusive(']').next().unwrap_or(a) } else { a.split(':').next().unwrap_or("") };
    // Lowercased last, once: the cuts above look only at ASCII punctuation.
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn is_local(name: &str) -> bool {
    matches!(name, "localhost" | "[::1]") || name.ends_with(".localhost") || is_loopback_v4(name)
}

fn is_loopback_v4(name: &str) -> bool {
    name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_port_and_trailing_dot_and_case() {
        for (authority, name) in [
            ("LOCALHOST:8080", "localhost"),
            (" Example.COM.:443 ", "example.com"),
            ("[::1]:80", "[::1]"),
            ("[FE80::1]", "[fe80::1]"),
            ("127.0.0.1", "127.0.0.1"),
            ("", ""),
        ] {
            assert_eq!(hostname(authority), name, "{authority:?}");
        }
    }

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, v.parse().unwrap());
        }
        if let Some(v) = origin {
            h.insert(header::ORIGIN, v.parse().unwrap());
        }
        h
    }

    fn loopback(origins: &[&str]) -> Arc<Policy> {
        Policy::new("127.0.0.1:8051".parse().unwrap(), &origins.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn requests_without_origin_pass_when_host_is_local() {
        let p = loopback(&[]);
        for host in ["127.0.0.1:8051", "localhost:8051", "LOCALHOST", "[::1]:8051", "127.0.0.2", "localhost."] {
            assert!(p.verdict(&headers(Some(host), None)).is_ok(), "{host}");
        }
        assert!(p.verdict(&headers(None, None)).is_ok());
    }

    #[test]
    fn dns_rebinding_is_refused_on_loopback() {
        let p = loopback(&[]);
        let e = p.verdict(&headers(Some("evil.example.com"), Some("http://evil.example.com"))).unwrap_err();
        assert!(e.contains("evil.example.com") && e.contains("allowed_origins"), "{e}");
        assert!(p.verdict(&headers(Some("evil.example.com:8051"), None)).is_err());
        assert!(p.verdict(&headers(Some("127.0.0.1.evil.example"), None)).is_err());
        assert!(p.verdict(&headers(Some("[::2]:8051"), None)).is_err());
    }

    #[test]
    fn bad_origins_get_refused_and_local_origins_pass() {
        let p = loopback(&[]);
        assert!(p.verdict(&headers(Some("127.0.0.1:8051"), Some("http://127.0.0.1:8051"))).is_ok());
        assert!(p.verdict(&headers(Some("127.0.0.1:8051"), Some("http://localhost:3000"))).is_ok());
        assert!(p.verdict(&headers(Some("127.0.0.1:8051"), Some("https://evil.example.com"))).is_err());
        assert!(p.verdict(&headers(Some("127.0.0.1:8051"), Some("null"))).is_err());
        assert!(p.verdict(&headers(Some("127.0.0.1:8051"), Some("http://localhost.evil.example"))).is_err());
    }

    #[test]
    fn configured_origins_allow_their_origin_and_host() {
        let p = loopback(&["https://App.Example.com/"]);
        assert!(p.verdict(&headers(Some("app.example.com"), Some("https://app.example.com"))).is_ok());
        assert!(p.verdict(&headers(Some("app.example.com"), Some("https://other.example.com"))).is_err());
        assert!(p.verdict(&headers(Some("other.example.com"), None)).is_err());
        let any = loopback(&["*"]);
        assert!(any.verdict(&headers(Some("127.0.0.1"), Some("https://anything.example"))).is_ok());
    }

    #[test]
    fn public_listener_allows_only_configured_or_local_origins() {
        let p = Policy::new("0.0.0.0:8051".parse().unwrap(), &[]);
        assert!(p.verdict(&headers(Some("bridge.example.com"), None)).is_ok());
        assert!(p.verdict(&headers(Some("evil.example:8051"), Some("http://evil.example:8051"))).is_err(), "rebinding");
        assert!(p.verdict(&headers(Some("bridge.example.com"), Some("https://evil.example.com"))).is_err());
        assert!(p.verdict(&headers(Some("10.0.0.5:8051"), Some("http://localhost:3000"))).is_ok());
        let configured = Policy::new("0.0.0.0:8051".parse().unwrap(), &["https://bridge.example.com".into()]);
        assert!(configured.verdict(&headers(Some("bridge.example.com"), Some("https://bridge.example.com"))).is_ok());
    }

    #[test]
    fn preflight_and_answers_name_the_origin() {
        let origin = HeaderValue::from_static("http://127.0.0.1:3000");
        let mut req = HeaderMap::new();
        req.insert(header::ACCESS_CONTROL_REQUEST_HEADERS, HeaderValue::from_static("content-type, mcp-session-id"));
        let resp = preflight(origin.clone(), &req);
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let h = resp.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://127.0.0.1:3000");
        assert!(h[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap().contains("POST"));
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_HEADERS], "content-type, mcp-session-id");
        let mut answer = HeaderMap::new();
        cors(&mut answer, origin);
        assert_eq!(answer[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://127.0.0.1:3000");
        assert!(answer[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap().contains("mcp-session-id"));
    }
}
