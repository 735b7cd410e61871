//! Fuzz target: the checks on request headers every client controls. The input is a control
//! line (`PEER_IP TRUSTED,NETS PATH`) and then one `name: value` header a line (repeats allowed,
//! values may hold non-ASCII bytes; a name `0`..`5` is short for a checked header). It drives
//! the Host/Origin check (`Policy::admit`), the client address behind a proxy
//! (`transport::client_addr`), the `X-Forwarded-Prefix` sanitizer (`transport::public_prefix`)
//! and the bearer parser (`auth::bearer`), and asserts what each promises, not only that
//! nothing panics.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use mcp_bridge::fuzzing::Edge;
use mcp_bridge::fuzzing::{self as transport, Policy};

/// The headers checked here: a one-digit name `0`..`5` stands for one of them, so the fuzzer
/// reaches repeats and combinations without having to guess the names.
const NAMES: [&str; 6] = ["host", "origin", "x-forwarded-for", "x-real-ip", "x-forwarded-prefix", "authorization"];

/// The headers of the input, in order, and the control line.
fn parse(data: &[u8]) -> (&[u8], HeaderMap) {
    let mut lines = data.split(|&b| b == b'\n');
    let control = lines.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let value = line[colon + 1..].strip_prefix(b" ").unwrap_or(&line[colon + 1..]);
        let name = match &line[..colon] {
            [d @ b'0'..=b'5'] => NAMES[usize::from(d - b'0')].as_bytes(),
            name => name,
        };
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    (control, headers)
}

/// A `Host` value whose name is local: `localhost`, `*.localhost`, `127.x.y.z`, `[::1]`.
fn local_host(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.starts_with("localhost") || v.starts_with("127.") || v.starts_with("[::1]") || v.contains(".localhost")
}

/// An `Origin` on a local page.
fn local_origin(value: &str) -> bool {
    value.split_once("://").is_some_and(|(_, rest)| local_host(rest))
}

fn check_host_and_origin(headers: &HeaderMap, path: &str) {
    let hosts: Vec<&HeaderValue> = headers.get_all(header::HOST).iter().collect();
    let bad_host = hosts.len() > 1 || hosts.iter().any(|h| h.to_str().is_err());
    let host = hosts.first().and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).map(|o| o.to_str().unwrap_or("\u{0}"));
    let app = "https://app.example.com".to_string();
    let policies = [
        ("loopback", Policy::new("127.0.0.1:8051".parse().unwrap(), &[])),
        ("loopback+app", Policy::new("127.0.0.1:8051".parse().unwrap(), std::slice::from_ref(&app))),
        ("public", Policy::new("0.0.0.0:8051".parse().unwrap(), &[])),
        ("any", Policy::new("127.0.0.1:8051".parse().unwrap(), &["*".to_string()])),
    ];
    for (name, p) in &policies {
        let verdict = p.admit(path, headers);
        if bad_host {
            assert!(
                matches!(verdict, Err((StatusCode::BAD_REQUEST, _))),
                "{name}: a repeated or non-ASCII Host was not refused with 400: {hosts:?} -> {verdict:?}"
            );
            continue;
        }
        if verdict.is_err() || path == "/healthz" || path == "/readyz" {
            continue;
        }
        // Admitted: on loopback the Host must be local (or the configured origin's host), and
        // unless `*` is configured the Origin must be local (or configured).
        let app_host = |h: &str| h.trim().to_ascii_lowercase().starts_with("app.example.com");
        match *name {
            "loopback" | "any" => assert!(host.is_none_or(local_host), "{name}: Host {host:?} passed on loopback"),
            "loopback+app" => {
                assert!(host.is_none_or(|h| local_host(h) || app_host(h)), "{name}: Host {host:?} passed on loopback")
            }
            _ => {}
        }
        let configured = |o: &str| *name == "loopback+app" && o.trim().trim_end_matches('/').eq_ignore_ascii_case(&app);
        if *name != "any" {
            assert!(origin.is_none_or(|o| local_origin(o) || configured(o)), "{name}: Origin {origin:?} passed");
        }
    }
}

fn check_client_addr(control: &str, headers: &HeaderMap) {
    let mut words = control.split(' ');
    let peer_ip = words.next().and_then(|w| w.parse::<IpAddr>().ok()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let peer = SocketAddr::new(peer_ip, 40000);
    let nets: Vec<String> = words.next().unwrap_or("").split(',').filter(|n| !n.is_empty()).map(str::to_string).collect();
    let edge = Edge::validate(Some(&nets), None, None).unwrap_or_default();
    let got = transport::client_addr(&edge, headers, peer).to_string();
    if !edge.is_trusted(peer_ip) {
        assert_eq!(got, peer.to_string(), "a peer that is not a trusted proxy is the client, whatever it sends");
        return;
    }
    if got == peer.to_string() {
        return;
    }
    // Anything else is one address, never text a client could shape into a log line.
    let ip: IpAddr = got.parse().unwrap_or_else(|_| panic!("client_addr gave {got:?}, not an IP address"));
    let mut real = headers.get_all("x-real-ip").iter();
    if let (Some(v), None) = (real.next(), real.next()) {
        if v.to_str().ok().and_then(|v| v.trim().parse::<IpAddr>().ok()) == Some(ip) {
            return;
        }
    }
    // From X-Forwarded-For: the address is a hop, and every hop right of it was added by a
    // trusted proxy that is one itself.
    let hops: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    let believed = (0..hops.len()).any(|i| {
        hops[i].trim().parse::<IpAddr>() == Ok(ip)
            && hops[i + 1..].iter().all(|h| h.trim().parse::<IpAddr>().is_ok_and(|h| edge.is_trusted(h)))
    });
    assert!(believed, "client_addr gave {ip}, which no trusted proxy vouched for: {hops:?}");
}

fn check_prefix(headers: &HeaderMap) {
    let p = transport::public_prefix(headers, None);
    if p.is_empty() {
        return;
    }
    assert!(p.starts_with('/') && !p.starts_with("//"), "prefix {p:?} is not a plain absolute path");
    assert!(!p.ends_with('/'), "prefix {p:?} keeps a trailing /");
    let segments: Vec<&str> = p[1..].split('/').collect();
    assert!(segments.iter().all(|s| !matches!(*s, "" | "." | "..")), "prefix {p:?} has an empty, . or .. segment");
    assert!(p.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b)), "prefix {p:?} has a reserved character");
    let sent = headers.get("x-forwarded-prefix").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(sent.starts_with(&p), "prefix {p:?} is not what the proxy sent ({sent:?})");
}

fn check_bearer(headers: &HeaderMap) {
    let got = mcp_bridge::fuzzing::bearer(headers);
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let want = value.and_then(|v| {
        let (scheme, rest) = (v.get(..6)?, v.get(6..)?);
        (scheme.eq_ignore_ascii_case("bearer") && rest.starts_with(' ')).then(|| rest.trim()).filter(|t| !t.is_empty())
    });
    assert_eq!(got, want, "bearer({value:?})");
}

/// `Bearer` in the case the input's first byte picks, then the token the rest gives, must be read.
fn check_bearer_any_case(data: &[u8]) {
    let Some((&mask, token)) = data.split_first() else { return };
    let scheme: String =
        "bearer".chars().enumerate().map(|(i, c)| if mask >> i & 1 == 1 { c.to_ascii_uppercase() } else { c }).collect();
    let Ok(token) = std::str::from_utf8(token) else { return };
    if !token.is_ascii() {
        return; // obs-text is a valid header value but not text: `bearer` rightly reads nothing
    }
    let Ok(v) = HeaderValue::from_str(&format!("{scheme} {token}")) else { return };
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, v);
    let want = Some(token.trim()).filter(|t| !t.is_empty());
    assert_eq!(mcp_bridge::fuzzing::bearer(&h), want, "the scheme {scheme:?} is bearer in another case");
}

fuzz_target!(|data: &[u8]| {
    let (control, headers) = parse(data);
    let control = String::from_utf8_lossy(control);
    let path = control.split(' ').nth(2).unwrap_or("/mcp/x");
    check_host_and_origin(&headers, path);
    check_client_addr(&control, &headers);
    check_prefix(&headers);
    check_bearer(&headers);
    check_bearer_any_case(data);
});
