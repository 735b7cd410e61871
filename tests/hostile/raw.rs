//! Raw hostile requests: the bytes of one request sent on a fresh connection and its answer
//! read back (even a truncated or streaming one), and a table of cases run a few at a time with
//! every mismatch reported at once.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::common::dechunk;

/// What came back for one raw request; status 0 if the connection closed without an answer.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `bytes` on a fresh connection and reads the answer: to the end, or, for a GET that
/// opens an event stream, its head and first event.
pub(crate) fn exchange(port: u16, bytes: &[u8]) -> Reply {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    // The server may answer (413, 400) and close before it read everything: not an error here.
    let _ = c.write_all(bytes);
    let opens_stream = bytes.starts_with(b"GET ");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = String::from_utf8_lossy(&buf);
        if let Some(i) = text.find("\r\n\r\n") {
            let is_stream = text[..i].to_ascii_lowercase().contains("content-type: text/event-stream");
            let first_event = text[i..].find("sessionId=").is_some_and(|j| text[i + j..].contains("\n\n"));
            if is_stream && opens_stream && first_event {
                break;
            }
        }
        if Instant::now() > deadline {
            break;
        }
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Reply { status, head: head.to_string(), body }
}

/// A request with `Host`, `Connection: close` and `Content-Length`; `head` holds raw header
/// lines (`Name: value\r\n`), so they may carry any bytes.
pub(crate) fn request(port: u16, method: &str, path: &[u8], head: &[u8], body: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(body.len() + 512);
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(path);
    r.extend_from_slice(format!(" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n").as_bytes());
    r.extend_from_slice(head);
    r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    r.extend_from_slice(body);
    r
}

pub(crate) fn lines(headers: &[(&str, &str)]) -> Vec<u8> {
    headers.iter().flat_map(|(k, v)| format!("{k}: {v}\r\n").into_bytes()).collect()
}

/// One hostile request and the statuses it may get.
pub(crate) struct Case {
    pub(crate) what: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) statuses: &'static [u16],
    /// Text the answer must contain, if any.
    pub(crate) contains: Option<String>,
}

pub(crate) struct Cases {
    pub(crate) port: u16,
    pub(crate) list: Vec<Case>,
}

impl Cases {
    pub(crate) fn raw(&mut self, what: impl Into<String>, bytes: Vec<u8>, statuses: &'static [u16]) -> &mut Case {
        self.list.push(Case { what: what.into(), bytes, statuses, contains: None });
        self.list.last_mut().expect("just pushed")
    }

    pub(crate) fn add(
        &mut self,
        what: impl Into<String>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        statuses: &'static [u16],
    ) -> &mut Case {
        let bytes = request(self.port, method, path.as_bytes(), &lines(headers), body);
        self.raw(what, bytes, statuses)
    }
}

impl Case {
    pub(crate) fn containing(&mut self, text: impl Into<String>) {
        self.contains = Some(text.into());
    }
}

/// Runs every case (a few at a time) and reports all mismatches at once.
pub(crate) async fn run_cases(port: u16, cases: Vec<Case>) -> usize {
    let n = cases.len();
    let results: Vec<(Case, Reply)> = futures_util::stream::iter(cases)
        .map(|c| async move {
            let bytes = c.bytes.clone();
            let reply = tokio::task::spawn_blocking(move || exchange(port, &bytes)).await.expect("exchange task");
            (c, reply)
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let mut failures = Vec::new();
    for (c, r) in &results {
        let status_ok = c.statuses.contains(&r.status);
        let text_ok = c.contains.as_deref().is_none_or(|t| r.head.contains(t) || r.body.contains(t));
        // No answer may carry a header a client smuggled in, whatever the status.
        let injected = r.header("set-cookie").is_some() || r.header("x-injected").is_some();
        if !status_ok || !text_ok || injected {
            let body: String = r.body.chars().take(300).collect();
            failures.push(format!(
                "{}: got {} (expected one of {:?}{}); head: {:?}; body: {body}",
                c.what,
                r.status,
                c.statuses,
                c.contains.as_deref().map(|t| format!(", containing {t:?}")).unwrap_or_default(),
                r.head
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {n} hostile cases got an unexpected answer:\n{}", failures.len(), failures.join("\n"));
    n
}
