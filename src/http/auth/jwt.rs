//! Bearer JWTs from an identity provider (`[auth.jwt]`): the signature against the issuer's
//! JWKS, then `iss`, `aud`, `exp` and `nbf` (with the configured leeway) and the algorithm,
//! which must be one the table allows (never `none`, never HMAC: an `oct` key in the JWKS is
//! ignored, so a public key can never serve as an HMAC secret). A JWKS from a URL is kept for
//! `jwks_ttl` and fetched again on a `kid` it does not hold, at most once per
//! `jwks_refetch_interval`, one fetch at a time. A leaf: the middleware in `http/auth.rs`
//! turns a [`Refusal`] into its 401.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::auth::jwt::{JwksSource, JwtSettings};
use crate::config::auth::JWT_PREFIX;

/// The longest token read at all: a JWT carrying a principal and its roles fits in far less.
const MAX_TOKEN: usize = 8 * 1024;
/// The largest JWKS document read from a URL.
const MAX_JWKS: usize = 1024 * 1024;
/// The longest `sub` taken: it becomes the principal, in logs and session records.
const MAX_SUB: usize = 256;
/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a token was refused: logged (never the token), answered with 401 `invalid_token`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("the token is longer than {MAX_TOKEN} bytes")]
    TooLong,
    #[error("the token's header does not parse: {0}")]
    Header(jsonwebtoken::errors::Error),
    #[error("algorithm {0:?} is not allowed")]
    Algorithm(Algorithm),
    #[error("no key in the JWKS matches kid {0:?}")]
    UnknownKey(Option<String>),
    #[error("{0}")]
    Invalid(jsonwebtoken::errors::Error),
    #[error("the token's `sub` is empty, longer than {MAX_SUB} bytes, or holds a control character")]
    BadSubject,
}

/// A validated token's principal and roles.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// `jwt:ISS#SUB`.
    pub principal: Arc<str>,
    pub roles: Vec<String>,
}

struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct Cache {
    keys: Vec<Key>,
    /// When the keys were last fetched successfully.
    fetched: Option<Instant>,
    /// When a fetch was last tried, successful or not: the rate limit.
    tried: Option<Instant>,
}

/// The checks of `[auth.jwt]`, built once at start.
pub(crate) struct Verifier {
    s: JwtSettings,
    algorithms: Vec<Algorithm>,
    cache: RwLock<Cache>,
    fetching: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

impl Verifier {
    pub(crate) fn new(s: JwtSettings) -> Verifier {
        let algorithms = s.algorithms.iter().filter_map(|a| a.parse().ok()).collect();
        let mut cache = Cache::default();
        if let JwksSource::File(path) = &s.source {
            match std::fs::read(path) {
                Ok(bytes) => cache.keys = parse_jwks(&bytes),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "auth.jwt.jwks_file cannot be read: every JWT is refused")
                }
            }
        }
        Verifier {
            s,
            algorithms,
            cache: RwLock::new(cache),
            fetching: tokio::sync::Mutex::new(()),
            http: crate::config::tls::shared_client(),
        }
    }

    /// Whether a presented credential has a JWT's shape (three dot-separated parts): only
    /// those are read as JWTs once no named client's token matched.
    pub(crate) fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3
    }

    /// Checks `token`; the principal and its roles, or why not.
    pub(crate) async fn verify(&self, token: &str) -> Result<Identity, Refusal> {
        if token.len() > MAX_TOKEN {
            return Err(Refusal::TooLong);
        }
        let header = jsonwebtoken::decode_header(token).map_err(Refusal::Header)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(Refusal::Algorithm(header.alg));
        }
        self.refresh(false).await;
        let claims = match self.decode(token, &header) {
            Some(r) => r?,
            None => {
                self.refresh(true).await;
                self.decode(token, &header).ok_or_else(|| Refusal::UnknownKey(header.kid.clone()))??
            }
        };
        let sub = claims.get("sub").and_then(|s| s.as_str());
        let sub =
            sub.filter(|s| !s.is_empty() && s.len() <= MAX_SUB && !s.chars().any(char::is_control)).ok_or(Refusal::BadSubject)?;
        let roles = match claims.get(&self.s.roles_claim) {
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(String::from).collect(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
            _ => Vec::new(),
        };
        Ok(Identity { principal: format!("{JWT_PREFIX}{}#{sub}", self.s.issuer).into(), roles })
    }

    /// The claims if a key of the set matches the header (`None`: no key does).
    fn decode(&self, token: &str, header: &jsonwebtoken::Header) -> Option<Result<serde_json::Value, Refusal>> {
        let mut v = Validation::new(header.alg);
        v.leeway = self.s.leeway.as_secs();
        v.validate_nbf = true;
        v.set_issuer(&[&self.s.issuer]);
        v.set_audience(&[&self.s.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let mut last = None;
        for k in cache.keys.iter().filter(|k| header.kid.is_none() || k.kid == header.kid) {
            if k.alg.is_some_and(|a| a != header.alg) {
                continue;
            }
            match jsonwebtoken::decode::<serde_json::Value>(token, &k.key, &v) {
                Ok(data) => return Some(Ok(data.claims)),
                Err(e) => last = Some(Err(Refusal::Invalid(e))),
            }
        }
        last
    }

    /// Fetches a URL's JWKS when it was never fetched or is older than `jwks_ttl`, or (with
    /// `unknown_kid`) when a token named a key it lacks, at most once per refetch interval.
    async fn refresh(&self, unknown_kid: bool) {
        let JwksSource::Url(url) = &self.s.source else { return };
        let due = |c: &Cache| {
            let stale = c.fetched.is_none_or(|t| t.elapsed() >= self.s.jwks_ttl);
            let allowed = c.tried.is_none_or(|t| t.elapsed() >= self.s.refetch_interval);
            allowed && (stale || unknown_kid)
        };
        if !due(&self.cache.read().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        let _one = self.fetching.lock().await;
        if !due(&self.cache.read().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        self.cache.write().unwrap_or_else(|e| e.into_inner()).tried = Some(Instant::now());
        match fetch(&self.http, url).await {
            Ok(keys) => {
                tracing::info!(url, keys = keys.len(), "fetched the JWKS");
                let mut c = self.cache.write().unwrap_or_else(|e| e.into_inner());
                c.keys = keys;
                c.fetched = Some(Instant::now());
            }
            Err(e) => tracing::warn!(url, error = %e, "could not fetch the JWKS; the keys held are kept"),
        }
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<Vec<Key>, String> {
    let mut resp = tokio::time::timeout(FETCH_TIMEOUT, http.get(url).send())
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let mut body = Vec::new();
    let read = async {
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS {
                return Err(format!("larger than {MAX_JWKS} bytes"));
            }
        }
        Ok(())
    };
    tokio::time::timeout(FETCH_TIMEOUT, read).await.map_err(|_| "timed out".to_string())??;
    let keys = parse_jwks(&body);
    if keys.is_empty() {
        return Err("no usable key".into());
    }
    Ok(keys)
}

/// The asymmetric keys of a JWKS; a key that does not parse, or an `oct` (HMAC) key, is left
/// out.
fn parse_jwks(bytes: &[u8]) -> Vec<Key> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(bytes) else { return Vec::new() };
    let Some(list) = doc.get("keys").and_then(|k| k.as_array()) else { return Vec::new() };
    list.iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|jwk| !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)))
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            let alg = jwk.common.key_algorithm.and_then(|a| a.to_string().parse().ok());
            Some(Key { kid: jwk.common.key_id.clone(), alg, key })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_keys_are_left_out_and_junk_is_ignored() {
        let jwks = br#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"},{"kty":"EC","crv":"P-256","kid":"e",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},7]}"#;
        let keys = parse_jwks(jwks);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("e"));
        assert!(parse_jwks(b"{\"keys\":").is_empty());
        assert!(parse_jwks(b"[]").is_empty());
    }

    #[test]
    fn jwt_shape() {
        assert!(Verifier::looks_like_jwt("eyJh.eyJ.sig"));
        assert!(!Verifier::looks_like_jwt("static-token"));
        assert!(!Verifier::looks_like_jwt("a.b.c.d"));
    }
}
