//! The `[auth]` table: named clients, each with a token (or its SHA-256) and the servers it
//! may use, and (in `jwt`) the JWTs of an identity provider. Validated here; `http::auth`
//! builds the checks from it.

pub(crate) mod audit;
pub(crate) mod jwt;
pub(crate) mod ratelimit;

use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The `[auth]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthModel {
    #[serde(default = "default_realm")]
    pub realm: String,
    #[serde(default)]
    pub clients: Vec<ClientModel>,
    /// RFC 9728 protected-resource metadata, served at `/.well-known/oauth-protected-resource`
    /// and named in `WWW-Authenticate`.
    pub resource_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// `[auth.jwt]`: bearer JWTs from an identity provider, beside the named clients.
    pub jwt: Option<jwt::JwtModel>,
    /// `[auth.rate_limits]`: token buckets and in-flight caps per principal, server and tool.
    pub(crate) rate_limits: Option<ratelimit::RateLimitsModel>,
    /// `[auth.audit]`: one JSON line per tool call, resource read and prompt get.
    pub(crate) audit: Option<audit::AuditModel>,
}

fn default_realm() -> String {
    "mcp-bridge".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientModel {
    pub name: String,
    /// The token in clear (prefer `token_sha256`).
    pub token: Option<String>,
    /// Hex SHA-256 of the token: `printf %s "$TOKEN" | sha256sum`.
    pub token_sha256: Option<String>,
    /// Servers this client may reach; `*` for all.
    #[serde(default = "all_servers")]
    pub servers: Vec<String>,
}

fn all_servers() -> Vec<String> {
    vec!["*".into()]
}

/// What a JWT principal's name starts with (`jwt:ISS#SUB`), so that it never equals a named
/// client's.
pub(crate) const JWT_PREFIX: &str = "jwt:";

/// A client of `[auth]` after validation.
pub struct CheckedClient {
    pub name: Arc<str>,
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    pub servers: Vec<String>,
}

impl AuthModel {
    /// Validates the clients against the configured server names; `Err((key, reason))` names
    /// what is wrong.
    pub fn check(&self, servers: &[&str]) -> Result<Vec<CheckedClient>, (String, String)> {
        let mut clients: Vec<CheckedClient> = Vec::new();
        for (i, c) in self.clients.iter().enumerate() {
            let key = format!("auth.clients[{i}]");
            if c.name.starts_with(JWT_PREFIX) {
                return Err((format!("{key}.name"), format!("`{JWT_PREFIX}` starts the names of JWT principals")));
            }
            if clients.iter().any(|o| *o.name == *c.name) {
                return Err((format!("{key}.name"), format!("duplicate client name `{}`", c.name)));
            }
            let hash = match (&c.token, &c.token_sha256) {
                (Some(t), None) if !t.is_empty() => Sha256::digest(t.as_bytes()).into(),
                (None, Some(h)) => parse_hex32(h).ok_or((format!("{key}.token_sha256"), "is not 64 hex digits".to_string()))?,
                _ => return Err((key, "needs exactly one of `token` and `token_sha256`".into())),
            };
            if clients.iter().any(|o| o.hash == hash) {
                return Err((key, "two clients share a token".into()));
            }
            for s in &c.servers {
                if s != "*" && !servers.contains(&s.as_str()) {
                    return Err((format!("{key}.servers"), format!("no server named `{s}`")));
                }
            }
            clients.push(CheckedClient { name: c.name.as_str().into(), hash, servers: c.servers.clone() });
        }
        if let Some(j) = &self.jwt {
            j.check(servers)?;
        }
        self.rate_limits()?;
        self.audit(servers)?;
        Ok(clients)
    }

    /// `[auth.rate_limits]`, validated (none when absent).
    pub fn rate_limits(&self) -> Result<ratelimit::RateLimits, (String, String)> {
        self.rate_limits.clone().unwrap_or_default().validate()
    }

    /// `[auth.audit]`, validated.
    pub fn audit(&self, servers: &[&str]) -> Result<Option<audit::AuditSettings>, (String, String)> {
        self.audit.clone().map(|a| a.validate(servers)).transpose()
    }
}

/// 64 hex digits (either case, surrounding space allowed) as 32 bytes.
pub(crate) fn parse_hex32(h: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(h.trim(), &mut out).ok()?;
    Some(out)
}
