//! OAuth 2.0 client credentials for a remote server (`[servers.NAME.oauth2]`): the access token
//! is fetched from `token_url` (HTTP Basic client authentication, `grant_type=client_credentials`,
//! `scope` and `audience` when set), kept, and fetched again before it expires (when less than a
//! tenth of its life, and at least 30 s, is left). A 401 from the upstream makes the caller ask
//! for a fresh one ([`TokenSource::refresh`]) and retry once. One source per server, shared by
//! its sessions; a reload with other settings gets a new one. Client tokens never go upstream:
//! this is the bridge's own credential.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::config::credentials::OAuth;

/// How long a token request may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The least time left on a token that is still used.
const MARGIN: Duration = Duration::from_secs(30);
/// A token's life when the server does not say (`expires_in`).
const DEFAULT_LIFE: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct Token {
    value: String,
    fetched: Instant,
    life: Duration,
}

impl Token {
    fn fresh(&self) -> bool {
        let left = self.life.saturating_sub(self.fetched.elapsed());
        left > MARGIN.max(self.life / 10)
    }
}

/// The token of one server.
pub(crate) struct TokenSource {
    settings: Arc<OAuth>,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<Token>>,
    /// The last token handed out, for the synchronous request builders.
    current: Mutex<Option<String>>,
}

/// The source for `server`: the one it has, unless its settings changed.
pub(crate) fn source(server: &str, settings: &Arc<OAuth>, http: &reqwest::Client) -> Arc<TokenSource> {
    static SOURCES: OnceLock<Mutex<HashMap<String, Arc<TokenSource>>>> = OnceLock::new();
    let mut map = SOURCES.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = map.get(server).filter(|s| *s.settings == **settings) {
        return s.clone();
    }
    let s = Arc::new(TokenSource {
        settings: settings.clone(),
        http: http.clone(),
        token: tokio::sync::Mutex::new(None),
        current: Mutex::new(None),
    });
    map.insert(server.to_string(), s.clone());
    s
}

impl TokenSource {
    /// A token with time left: the kept one, or a new one.
    pub(crate) async fn token(&self) -> Result<String, String> {
        let mut held = self.token.lock().await;
        if let Some(t) = held.as_ref().filter(|t| t.fresh()) {
            return Ok(t.value.clone());
        }
        self.fetch(&mut held).await
    }

    /// A new token after the upstream refused `stale` (401), unless another request already
    /// replaced it.
    pub(crate) async fn refresh(&self, stale: Option<&str>) -> Result<String, String> {
        let mut held = self.token.lock().await;
        if let Some(t) = held.as_ref().filter(|t| Some(t.value.as_str()) != stale && t.fresh()) {
            return Ok(t.value.clone());
        }
        self.fetch(&mut held).await
    }

    /// The token last handed out, for a request built without waiting.
    pub(crate) fn current(&self) -> Option<String> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn fetch(&self, held: &mut Option<Token>) -> Result<String, String> {
        let s = &self.settings;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &s.scope {
            form.push(("scope", scope));
        }
        if let Some(audience) = &s.audience {
            form.push(("audience", audience));
        }
        let body = form.iter().map(|(k, v)| format!("{k}={}", form_encode(v))).collect::<Vec<_>>().join("&");
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(&s.client_id),
            form_encode(&s.client_secret)
        ));
        let req = self
            .http
            .post(&s.token_url)
            .header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .timeout(FETCH_TIMEOUT);
        let fail = |why: String| format!("oauth2 token from {}: {why}", s.token_url);
        let resp = req.send().await.map_err(|e| fail(super::cause(&e)))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("{status}: {}", String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>())));
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| fail(format!("not JSON: {e}")))?;
        let value = v["access_token"].as_str().filter(|t| !t.is_empty()).ok_or_else(|| fail("no access_token".into()))?;
        let life = v["expires_in"].as_u64().map_or(DEFAULT_LIFE, Duration::from_secs);
        tracing::info!(token_url = %s.token_url, expires_in = life.as_secs(), "fetched an oauth2 token for a remote server");
        *held = Some(Token { value: value.to_string(), fetched: Instant::now(), life });
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(value.to_string());
        Ok(value.to_string())
    }
}

/// `application/x-www-form-urlencoded` for one value (RFC 6749 appendix B also for Basic).
fn form_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_age_and_values_encode() {
        let t = |life: u64, age: u64| Token {
            value: "t".into(),
            fetched: Instant::now() - Duration::from_secs(age),
            life: Duration::from_secs(life),
        };
        assert!(t(3600, 0).fresh() && !t(3600, 3300).fresh() && !t(20, 0).fresh() && t(600, 500).fresh());
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
    }
}
