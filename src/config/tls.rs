//! Outbound TLS and proxy settings: a remote server's `ca_file`, `client_cert`/`client_key`
//! and `proxy`, turned at load time into that server's own HTTP client, and the Redis
//! `redis_ca_file`. Certificate verification is always on; there is no switch to turn it off.

use std::path::{Path, PathBuf};

use super::error::ConfigError;

/// A remote server's outbound settings, as written in the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundOptions {
    /// PEM bundle of CA certificates trusted for this server, besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) and key presented for mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Outbound proxy for this server only (`http://…`, `https://…`); replaces
    /// `HTTPS_PROXY`/`HTTP_PROXY` for it.
    pub proxy: Option<String>,
}

impl OutboundOptions {
    pub fn is_empty(&self) -> bool {
        *self == OutboundOptions::default()
    }
}

/// A remote server's own HTTP client, built from its [`OutboundOptions`].
#[derive(Clone)]
pub struct Outbound {
    pub options: OutboundOptions,
    pub client: reqwest::Client,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.options.fmt(f)
    }
}

impl PartialEq for Outbound {
    fn eq(&self, other: &Outbound) -> bool {
        self.options == other.options
    }
}

/// The builder every upstream HTTP client starts from. rustls, trusting the platform's roots
/// (or `SSL_CERT_FILE`/`SSL_CERT_DIR` when set) and Mozilla's; proxies from `HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`; and no redirects: an MCP endpoint that answers
/// 3xx gets an error naming the `Location`, so configured headers and the client's messages
/// never go to another origin.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().use_rustls_tls().redirect(reqwest::redirect::Policy::none())
}

/// The shared upstream HTTP client (servers without outbound settings, probes).
pub(crate) fn shared_client() -> reqwest::Client {
    client_builder().build().expect("the HTTP client builds with default settings")
}

/// Builds a remote server's client; errors name the key and the file.
pub(super) fn outbound(
    options: OutboundOptions,
    remote: bool,
    key: &str,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Option<Outbound>, ConfigError> {
    if options.is_empty() {
        return Ok(None);
    }
    if !remote {
        return Err(invalid(key, "`ca_file`, `client_cert`, `client_key` and `proxy` are for remote servers (`url`)".into()));
    }
    let mut b = client_builder();
    if let Some(path) = &options.ca_file {
        for cert in read_certs(path).map_err(|r| invalid(&format!("{key}.ca_file"), r))? {
            b = b.add_root_certificate(cert);
        }
    }
    match (&options.client_cert, &options.client_key) {
        (Some(cert), Some(k)) => {
            let cert_key = format!("{key}.client_cert");
            let certs = read(cert).map_err(|r| invalid(&cert_key, r))?;
            if reqwest::Certificate::from_pem_bundle(&certs).map_or(true, |c| c.is_empty()) {
                return Err(invalid(&cert_key, format!("{}: no PEM certificate in it", cert.display())));
            }
            let pem = read(k).map_err(|r| invalid(&format!("{key}.client_key"), r))?;
            let mut both = pem;
            both.push(b'\n');
            both.extend_from_slice(&certs);
            let id = reqwest::Identity::from_pem(&both)
                .map_err(|e| invalid(&format!("{key}.client_key"), format!("{}: not a PEM private key ({e})", k.display())))?;
            b = b.identity(id);
        }
        (None, None) => {}
        _ => return Err(invalid(key, "`client_cert` and `client_key` go together".into())),
    }
    if let Some(p) = &options.proxy {
        let proxy =
            reqwest::Proxy::all(p).map_err(|e| invalid(&format!("{key}.proxy"), format!("`{p}` is not a proxy URL ({e})")))?;
        b = b.proxy(proxy);
    }
    let client = b.build().map_err(|e| invalid(key, format!("cannot build its HTTP client: {e:?}")))?;
    Ok(Some(Outbound { options, client }))
}

/// Reads a PEM bundle of certificates; at least one must be in it.
pub(super) fn read_certs(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = read(path)?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(format!("{}: no PEM certificate in it", path.display())),
        Err(e) => Err(format!("{}: not a PEM certificate bundle ({e})", path.display())),
    }
}

/// The Redis `redis_ca_file`: its PEM, checked to hold a certificate.
pub(super) fn redis_ca(path: &Path) -> Result<Vec<u8>, String> {
    read_certs(path)?;
    read(path)
}

/// The Redis client for `url`; with `ca` (the `redis_ca_file` PEM), a `rediss://` server is
/// verified against those roots instead of the system's.
pub(crate) fn redis_client(url: &str, ca: Option<&[u8]>) -> redis::RedisResult<redis::Client> {
    match ca {
        Some(pem) => {
            redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) })
        }
        None => redis::Client::open(url),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}
