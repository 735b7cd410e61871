//! Credentials for remote servers without secrets in the file: `${env:NAME}` and
//! `${file:PATH}` in a server's `headers`, and `[servers.NAME.oauth2]`, OAuth 2.0 client
//! credentials (`token_url`, `client_id`, `client_secret` as `${env:…}` or `${file:…}`, never
//! inline; `scope`, `audience`). Read when the file is loaded (and again on reload); the token
//! itself is fetched and kept by `upstream::oauth`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[servers.NAME.oauth2]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OAuthModel {
    pub token_url: String,
    pub client_id: String,
    /// `${env:NAME}` or `${file:PATH}`.
    pub client_secret: String,
    pub scope: Option<String>,
    pub audience: Option<String>,
}

/// `[servers.NAME.oauth2]` after validation, its secret read.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuth {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    pub audience: Option<String>,
}

impl std::fmt::Debug for OAuth {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth").field("token_url", &self.token_url).field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

/// One `${env:NAME}` or `${file:PATH}` (a file's content with its trailing newline trimmed).
fn secret(reference: &str) -> Result<String, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        return std::env::var(name).map_err(|_| format!("the environment has no `{name}`"));
    }
    if let Some(path) = reference.strip_prefix("file:") {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_string());
    }
    Err(format!("`${{{reference}}}` is neither `${{env:NAME}}` nor `${{file:PATH}}`"))
}

/// `value` with each `${env:NAME}` and `${file:PATH}` replaced; other text stays.
pub(crate) fn expand(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| "a `${` without its `}`".to_string())?;
        out.push_str(&secret(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A server's `headers` expanded; `Err((key, reason))`.
pub(crate) fn expand_headers(
    headers: BTreeMap<String, String>,
    server_key: &str,
) -> Result<BTreeMap<String, String>, (String, String)> {
    headers
        .into_iter()
        .map(|(k, v)| {
            let v = expand(&v).map_err(|r| (format!("{server_key}.headers.{k}"), r))?;
            if reqwest::header::HeaderValue::from_str(&v).is_err() {
                return Err((format!("{server_key}.headers.{k}"), "is not a valid header value once expanded".into()));
            }
            Ok((k, v))
        })
        .collect()
}

/// A server's `oauth2` table, validated (`remote`: only a remote server takes a token).
pub(crate) fn oauth2(
    m: Option<OAuthModel>,
    remote: bool,
    server_key: &str,
) -> Result<Option<std::sync::Arc<OAuth>>, (String, String)> {
    m.map(|o| o.validate(remote, server_key).map(std::sync::Arc::new)).transpose()
}

impl OAuthModel {
    /// `remote`: whether the server is a remote one (a stdio server has no use for a token).
    pub(crate) fn validate(self, remote: bool, server_key: &str) -> Result<OAuth, (String, String)> {
        let key = |k: &str| format!("{server_key}.oauth2{}{k}", if k.is_empty() { "" } else { "." });
        if !remote {
            return Err((key(""), "only a remote server (`url`) takes a token".into()));
        }
        if !(self.token_url.starts_with("https://") || self.token_url.starts_with("http://")) {
            return Err((key("token_url"), format!("`{}` is not an http(s) URL", self.token_url)));
        }
        if self.client_id.is_empty() {
            return Err((key("client_id"), "must not be empty".into()));
        }
        let reference = self.client_secret.strip_prefix("${").and_then(|r| r.strip_suffix('}')).ok_or_else(|| {
            (key("client_secret"), "must be `${env:NAME}` or `${file:PATH}`: a secret is never written in the file".to_string())
        })?;
        let client_secret = secret(reference).map_err(|r| (key("client_secret"), r))?;
        Ok(OAuth {
            token_url: self.token_url,
            client_id: self.client_id,
            client_secret,
            scope: self.scope,
            audience: self.audience,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_and_secrets_stay_out_of_the_file() {
        let dir = std::env::temp_dir().join(format!("mcpb-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "from-file\n").unwrap();
        let path = file.display().to_string();
        assert_eq!(expand(&format!("Bearer ${{file:{path}}}")).unwrap(), "Bearer from-file");
        assert_eq!(expand("plain").unwrap(), "plain");
        assert!(expand("${env:MCPB_SURELY_UNSET_VAR}").is_err());
        assert!(expand("${nope}").is_err() && expand("${env:X").is_err());
        let m = |secret: &str| OAuthModel {
            token_url: "https://idp/token".into(),
            client_id: "c".into(),
            client_secret: secret.into(),
            scope: None,
            audience: None,
        };
        assert_eq!(m(&format!("${{file:{path}}}")).validate(true, "servers.x").unwrap().client_secret, "from-file");
        assert_eq!(m("inline").validate(true, "servers.x").err().map(|e| e.0).as_deref(), Some("servers.x.oauth2.client_secret"));
        assert_eq!(m("inline").validate(false, "servers.x").err().map(|e| e.0).as_deref(), Some("servers.x.oauth2"));
        assert!(!format!("{:?}", m(&format!("${{file:{path}}}")).validate(true, "s").unwrap()).contains("from-file"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
