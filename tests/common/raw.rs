//! Raw HTTP: a pool-less reqwest client, and single HTTP/1.1 requests sent byte for byte over a
//! fresh connection, their chunked bodies decoded; and JSON requests (with a bearer token).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// A reqwest client without a connection pool, so every request is independent.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("reqwest client")
}

/// A response read by [`raw_request`].
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    /// Lower-cased names.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request exactly as given (no default headers) over a fresh connection
/// and reads the whole response (`Connection: close`; bodies must be finite).
pub(crate) fn raw_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> RawResponse {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("set timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    RawResponse { status, headers, body }
}

/// [`raw_request`] on a blocking thread, for async tests.
pub(crate) async fn raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> RawResponse {
    let (method, path, body) = (method.to_string(), path.to_string(), body.to_string());
    let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        raw_request(port, &method, &path, &h, &body)
    })
    .await
    .expect("raw request task")
}

/// The data of a chunked body, as far as it was read (a body cut short keeps what came).
pub(crate) fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 {
            break;
        }
        let take = n.min(rest.len());
        out.push_str(rest.get(..take).unwrap_or(rest));
        s = rest.get(take..).unwrap_or("").strip_prefix("\r\n").unwrap_or("");
    }
    out
}

/// GET `url` (with a bearer token and extra headers): status and body as JSON (`Value::String`
/// of the text if it is not JSON).
pub(crate) async fn get_json(url: &str, token: Option<&str>, headers: &[(&str, &str)]) -> (u16, Value) {
    request_json(reqwest::Method::GET, url, token, headers).await
}

pub(crate) async fn request_json(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = http().request(method.clone(), url).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}
