//! The `[auth.jwt]` table: which issuer's JWTs the bridge accepts, where its keys are (a JWKS
//! file or URL), which algorithms, how much clock skew, and the grants that map a token's
//! scopes or roles to the servers and tools its principal may use. Validated here into
//! [`JwtSettings`]; `http::auth::jwt` checks tokens with them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The algorithms accepted when `algorithms` is not given.
const DEFAULT_ALGORITHMS: [&str; 2] = ["RS256", "ES256"];
/// Asymmetric algorithms only: HMAC (`HS*`) would let anyone holding the public key sign, and
/// `none` is no signature at all.
const ASYMMETRIC: [&str; 9] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// The `[auth.jwt]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtModel {
    /// The `iss` every token must carry; also named in the RFC 9728 metadata document.
    pub issuer: String,
    /// The `aud` every token must carry (one of its values, when it is a list).
    pub audience: String,
    /// A JWKS read once at start.
    pub jwks_file: Option<PathBuf>,
    /// A JWKS fetched when needed, cached, and fetched again on an unknown `kid`.
    pub jwks_url: Option<String>,
    /// Allowed `alg` values (default `["RS256", "ES256"]`).
    pub algorithms: Option<Vec<String>>,
    /// Clock skew allowed on `exp` and `nbf` (default `30s`).
    pub leeway: Option<String>,
    /// How long a fetched JWKS is kept (default `10m`).
    pub jwks_ttl: Option<String>,
    /// The shortest time between two fetches caused by unknown `kid`s (default `10s`).
    pub jwks_refetch_interval: Option<String>,
    /// The claim holding the principal's roles: a space-separated string (`scope`) or a list of
    /// strings (default `scope`).
    pub roles_claim: Option<String>,
    /// What each scope or role gives.
    #[serde(default)]
    pub grants: Vec<GrantModel>,
}

/// One `[[auth.jwt.grants]]`: a principal whose token holds `role` may use these servers, and
/// on them these tools.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantModel {
    pub role: String,
    #[serde(default = "all")]
    pub servers: Vec<String>,
    #[serde(default = "all")]
    pub tools: Vec<String>,
}

fn all() -> Vec<String> {
    vec!["*".into()]
}

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// `[auth.jwt]` after validation.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub source: JwksSource,
    pub algorithms: Vec<String>,
    pub leeway: Duration,
    pub jwks_ttl: Duration,
    pub refetch_interval: Duration,
    pub roles_claim: String,
    pub grants: Vec<GrantModel>,
}

impl JwtModel {
    /// Validates the table against the configured servers; `Err((key, reason))`.
    pub fn check(&self, servers: &[&str]) -> Result<JwtSettings, (String, String)> {
        let err = |k: &str, r: String| (format!("auth.jwt.{k}"), r);
        if self.issuer.is_empty() {
            return Err(err("issuer", "must not be empty".into()));
        }
        if self.audience.is_empty() {
            return Err(err("audience", "must not be empty".into()));
        }
        let source = match (&self.jwks_file, &self.jwks_url) {
            (Some(f), None) => JwksSource::File(f.clone()),
            (None, Some(u)) if u.starts_with("https://") || u.starts_with("http://") => JwksSource::Url(u.clone()),
            (None, Some(u)) => return Err(err("jwks_url", format!("`{u}` is not an http(s) URL"))),
            _ => return Err(("auth.jwt".into(), "needs exactly one of `jwks_file` and `jwks_url`".into())),
        };
        let algorithms = self.algorithms.clone().unwrap_or_else(|| DEFAULT_ALGORITHMS.map(String::from).to_vec());
        if algorithms.is_empty() {
            return Err(err("algorithms", "must name at least one algorithm".into()));
        }
        for a in &algorithms {
            if !ASYMMETRIC.contains(&a.as_str()) {
                return Err(err("algorithms", format!("`{a}` is not allowed (one of {})", ASYMMETRIC.join(", "))));
            }
        }
        let dur = |k: &str, v: &Option<String>, d: Duration| match v {
            None => Ok(d),
            Some(v) => super::super::duration::duration(v).map_err(|r| err(k, r)),
        };
        let leeway = dur("leeway", &self.leeway, Duration::from_secs(30))?;
        if leeway > Duration::from_secs(300) {
            return Err(err("leeway", "is more than 5 minutes".into()));
        }
        let jwks_ttl = dur("jwks_ttl", &self.jwks_ttl, Duration::from_secs(600))?;
        let refetch_interval = dur("jwks_refetch_interval", &self.jwks_refetch_interval, Duration::from_secs(10))?;
        for (i, g) in self.grants.iter().enumerate() {
            if g.role.is_empty() {
                return Err(err(&format!("grants[{i}].role"), "must not be empty".into()));
            }
            for s in &g.servers {
                if s != "*" && !servers.contains(&s.as_str()) {
                    return Err(err(&format!("grants[{i}].servers"), format!("no server named `{s}`")));
                }
            }
        }
        let settings = JwtSettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            source,
            algorithms,
            leeway,
            jwks_ttl,
            refetch_interval,
            roles_claim: self.roles_claim.clone().unwrap_or_else(|| "scope".into()),
            grants: self.grants.clone(),
        };
        if let JwksSource::File(path) = &settings.source {
            let text = std::fs::read_to_string(path).map_err(|e| err("jwks_file", format!("{}: {e}", path.display())))?;
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .filter(|v| v.get("keys").is_some_and(|k| k.is_array()))
                .ok_or_else(|| err("jwks_file", format!("{}: not a JWKS (an object with a `keys` list)", path.display())))?;
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(extra: &str) -> Result<JwtSettings, (String, String)> {
        let m: JwtModel = toml::from_str(&format!("issuer = \"https://i\"\naudience = \"a\"\n{extra}")).unwrap();
        m.check(&["echo"])
    }

    #[test]
    fn the_table_is_validated() {
        let s = check("jwks_url = \"https://i/jwks\"").unwrap();
        assert_eq!(s.algorithms, ["RS256", "ES256"]);
        assert_eq!((s.leeway, s.roles_claim.as_str()), (Duration::from_secs(30), "scope"));
        for (extra, key) in [
            ("jwks_url = \"https://i/jwks\"\nalgorithms = [\"HS256\"]", "auth.jwt.algorithms"),
            ("jwks_url = \"https://i/jwks\"\nalgorithms = [\"none\"]", "auth.jwt.algorithms"),
            ("jwks_url = \"https://i/jwks\"\nalgorithms = []", "auth.jwt.algorithms"),
            ("", "auth.jwt"),
            ("jwks_url = \"https://i/jwks\"\njwks_file = \"/x\"", "auth.jwt"),
            ("jwks_url = \"ftp://i/jwks\"", "auth.jwt.jwks_url"),
            ("jwks_file = \"/nonexistent/jwks.json\"", "auth.jwt.jwks_file"),
            ("jwks_url = \"https://i/jwks\"\nleeway = \"1h\"", "auth.jwt.leeway"),
            ("jwks_url = \"https://i/jwks\"\n[[grants]]\nrole = \"r\"\nservers = [\"nope\"]", "auth.jwt.grants[0].servers"),
        ] {
            assert_eq!(check(extra).err().map(|e| e.0), Some(key.to_string()), "{extra}");
        }
    }
}
