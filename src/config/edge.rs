//! The settings at the bridge's front door, checked at load: `trusted_proxies` (whose
//! `X-Real-IP` / `X-Forwarded-For` name the client), and the `[admin]` and `[metrics]` tokens.
//! A token that does not parse is an error, never a silently open endpoint.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A token table (`[admin]`, `[metrics]`): the token in clear, or its SHA-256 in hex.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenModel {
    pub token: Option<String>,
    /// Hex SHA-256 of the token: `printf %s "$TOKEN" | sha256sum`.
    pub token_sha256: Option<String>,
}

impl TokenModel {
    /// The token's SHA-256; `Err((key, reason))` for an empty token, a hash that is not 64 hex
    /// digits, or a table with both or neither.
    fn hash(&self, table: &str) -> Result<[u8; 32], (String, String)> {
        match (&self.token, &self.token_sha256) {
            (Some(t), None) if !t.trim().is_empty() => Ok(Sha256::digest(t.as_bytes()).into()),
            (Some(_), None) => Err((format!("{table}.token"), "is empty".into())),
            (None, Some(h)) => super::auth::parse_hex32(h).ok_or_else(|| {
                (format!("{table}.token_sha256"), "is not 64 hex digits (write the bare hex of sha256(token))".into())
            }),
            _ => Err((table.to_string(), "needs exactly one of `token` and `token_sha256`".into())),
        }
    }
}

/// The validated front-door settings.
#[derive(Debug, Clone)]
pub struct Edge {
    /// Peers whose forwarding headers are believed. Default: loopback, where the shipped
    /// nginx runs; any other peer is the client itself, whatever headers it sends.
    pub trusted_proxies: Vec<IpNet>,
    /// SHA-256 of the admin token, if `[admin]` gives one.
    pub admin_token: Option<[u8; 32]>,
    /// SHA-256 of the `/metrics` token, if `[metrics]` gives one.
    pub metrics_token: Option<[u8; 32]>,
}

impl Default for Edge {
    fn default() -> Self {
        let loopback = ["127.0.0.0/8", "::1/128"].iter().map(|n| n.parse().expect("a valid network")).collect();
        Edge { trusted_proxies: loopback, admin_token: None, metrics_token: None }
    }
}

impl Edge {
    /// Checks the three settings; `Err((key, reason))` names what is wrong.
    pub fn validate(
        trusted_proxies: Option<&[String]>,
        admin: Option<&TokenModel>,
        metrics: Option<&TokenModel>,
    ) -> Result<Edge, (String, String)> {
        let mut edge = Edge::default();
        if let Some(list) = trusted_proxies {
            edge.trusted_proxies = list
                .iter()
                .map(|p| {
                    let p = p.trim();
                    p.parse::<IpNet>().or_else(|_| p.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                        ("trusted_proxies".to_string(), format!("`{p}` is not an IP address or a CIDR network like `10.0.0.0/8`"))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        edge.admin_token = admin.map(|a| a.hash("admin")).transpose()?;
        edge.metrics_token = metrics.map(|m| m.hash("metrics")).transpose()?;
        Ok(edge)
    }

    /// Whether `ip` is a configured proxy (an IPv4-mapped IPv6 address counts as its IPv4).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// Whether `token` hashes to `want`; compares every byte, so the time taken does not tell
/// which matched.
pub(crate) fn token_matches(token: &str, want: &[u8; 32]) -> bool {
    let got: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    got.iter().zip(want.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Checks one configured `allowed_origins` entry: `*`, `null`, or `http(s)://host[:port]`.
pub(crate) fn validate_origin(o: &str) -> Result<(), String> {
    if o == "*" || o == "null" {
        return Ok(());
    }
    let n = normalize_origin(o);
    let rest = n.strip_prefix("http://").or_else(|| n.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(['/', '?', '#', '@', ' ']) => Ok(()),
        _ => Err(format!("`{o}` is not an origin like `https://app.example.com` or `http://localhost:3000` (or `*`)")),
    }
}

pub(crate) fn normalize_origin(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: Option<&str>, h: Option<&str>) -> TokenModel {
        TokenModel { token: t.map(str::to_string), token_sha256: h.map(str::to_string) }
    }

    #[test]
    fn tokens_are_checked() {
        let hex = format!("{:x}", Sha256::digest(b"s3cret"));
        let e = Edge::validate(None, Some(&token(None, Some(&hex))), Some(&token(Some("m"), None))).unwrap();
        assert!(token_matches("s3cret", &e.admin_token.unwrap()) && !token_matches("wrong", &e.admin_token.unwrap()));
        assert!(token_matches("m", &e.metrics_token.unwrap()));
        let bad = format!("sha256:{hex}");
        let err = Edge::validate(None, Some(&token(None, Some(&bad))), None).unwrap_err();
        assert_eq!(err.0, "admin.token_sha256");
        assert_eq!(Edge::validate(None, Some(&token(Some(""), None)), None).unwrap_err().0, "admin.token");
        assert_eq!(Edge::validate(None, None, Some(&token(None, None))).unwrap_err().0, "metrics");
        assert!(Edge::validate(None, Some(&token(Some("a"), Some(&hex))), None).is_err());
    }

    #[test]
    fn trusted_proxies_parse_and_match() {
        let d = Edge::default();
        assert!(d.is_trusted("127.0.0.1".parse().unwrap()) && d.is_trusted("::1".parse().unwrap()));
        assert!(d.is_trusted("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!d.is_trusted("10.0.0.1".parse().unwrap()));
        let e = Edge::validate(Some(&["10.0.0.0/8".into(), "192.168.1.7".into()]), None, None).unwrap();
        assert!(e.is_trusted("10.2.3.4".parse().unwrap()) && e.is_trusted("192.168.1.7".parse().unwrap()));
        assert!(!e.is_trusted("127.0.0.1".parse().unwrap()), "a configured list replaces the default");
        assert!(Edge::validate(Some(&["10.0.0.0/33".into()]), None, None).is_err());
        assert!(Edge::validate(Some(&["proxy.example".into()]), None, None).is_err());
    }

    #[test]
    fn configured_origins_are_validated() {
        for ok in ["*", "null", "https://a.example", "http://localhost:3000", "http://[::1]:8080/"] {
            assert!(validate_origin(ok).is_ok(), "{ok}");
        }
        for bad in ["a.example", "https://", "https://a.example/path", "ftp://a.example", "https://u@a.example"] {
            assert!(validate_origin(bad).is_err(), "{bad}");
        }
    }
}
