//! Words for why a request to a remote upstream failed: the TLS error under reqwest's
//! "error sending request", or the refused redirect. What these return reaches the client's
//! JSON-RPC error and the log.

use std::error::Error as StdError;

/// The cause of a failed request: `TLS: invalid peer certificate: UnknownIssuer` when rustls
/// refused, else every distinct message of the `source()` chain, outermost first.
pub(crate) fn cause(e: &reqwest::Error) -> String {
    let mut messages: Vec<String> = Vec::new();
    let mut next: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return format!("TLS: {tls}");
        }
        // `io::Error::source()` skips the error it wraps, and that is where rustls's is.
        let inner = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|e| e as &(dyn StdError + 'static));
        if let Some(tls) = inner.and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return format!("TLS: {tls}");
        }
        let text = err.to_string();
        if !messages.iter().any(|m| m.contains(&text)) {
            messages.push(text);
        }
        next = inner.or_else(|| err.source());
    }
    messages.join(": ")
}

/// For a 3xx answer: where it pointed, and that it was not followed.
pub(crate) fn redirect(resp: &reqwest::Response) -> Option<String> {
    if !resp.status().is_redirection() {
        return None;
    }
    let location = resp.headers().get(reqwest::header::LOCATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let location: String = location.as_deref().unwrap_or("(none)").chars().take(200).collect();
    Some(format!(
        "a redirect to {location}, not followed: the bridge never sends MCP traffic or its configured headers \
         to another URL (configure the final URL)"
    ))
}
