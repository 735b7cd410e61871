//! The load generator's HTTP side: one hyper HTTP/1.1 connection per use (no pool, so each
//! session owns its sockets and latencies carry no pool bookkeeping), optionally bound to a
//! chosen 127.0.0.x source address, and an SSE reader over a response body.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

use crate::sse::{Event, Item, Parser};

/// An `http://host:port/path?query` URL split into what a raw client needs.
#[derive(Debug, Clone)]
pub struct Url {
    pub addr: SocketAddr,
    /// `host:port` as written, for the Host header.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> anyhow::Result<Url> {
        let rest = s.strip_prefix("http://").ok_or_else(|| anyhow!("{s}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = authority
            .to_socket_addrs()
            .with_context(|| format!("{s}: cannot resolve {authority}"))?
            .find(|a| a.is_ipv4())
            .ok_or_else(|| anyhow!("{s}: {authority} has no IPv4 address"))?;
        Ok(Url { addr, authority: authority.to_string(), path: path.to_string() })
    }

    /// The URL written out again, for commands in the report.
    pub fn path_url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }

    /// Resolves an endpoint a server announced: absolute (`http://…`) or a path.
    pub fn join(&self, endpoint: &str) -> anyhow::Result<Url> {
        if endpoint.starts_with("http://") {
            return Url::parse(endpoint);
        }
        if !endpoint.starts_with('/') {
            let base = self.path.rsplit_once('/').map_or("", |(b, _)| b);
            return Ok(Url { path: format!("{base}/{endpoint}"), ..self.clone() });
        }
        Ok(Url { path: endpoint.to_string(), ..self.clone() })
    }
}

/// One HTTP/1.1 connection; dropping it closes the socket.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to `addr`, from `source` if given (any port).
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<Conn> {
    let stream = tcp(addr, source).await?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.context("http handshake")?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender, task })
}

/// A TCP connection with Nagle off, bound to `source` first when given.
pub async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().context("socket")?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("bind {ip}"))?;
    }
    let stream = socket.connect(addr).await.with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Conn {
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<Response<Incoming>> {
        self.sender.ready().await.context("connection closed")?;
        Ok(self.sender.send_request(req).await?)
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// A request with the headers every MCP POST carries.
pub fn post(url: &Url, body: Vec<u8>, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::post(&url.path)
        .header("host", &url.authority)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body))).expect("a request from valid parts")
}

pub fn get_sse(url: &Url, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(&url.path).header("host", &url.authority).header("accept", "text/event-stream");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).expect("a request from valid parts")
}

/// Reads a whole (finite) body, bounded in time.
pub async fn body_bytes(resp: Response<Incoming>, limit: Duration) -> anyhow::Result<Bytes> {
    match tokio::time::timeout(limit, resp.into_body().collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("body not complete within {limit:?}"),
    }
}

/// SSE events of a response body, parsed as they arrive.
pub struct SseReader {
    body: Incoming,
    parser: Parser,
    ended: bool,
}

impl SseReader {
    pub fn new(resp: Response<Incoming>) -> SseReader {
        SseReader { body: resp.into_body(), parser: Parser::default(), ended: false }
    }

    /// The next event or comment; `None` at the end of the body.
    pub async fn next_item(&mut self) -> anyhow::Result<Option<Item>> {
        loop {
            if let Some(item) = self.parser.next_item()? {
                return Ok(Some(item));
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.parser.feed(&data);
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => self.ended = true,
            }
        }
    }

    /// The next event, skipping comments.
    pub async fn next_event(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            match self.next_item().await? {
                Some(Item::Event(ev)) => return Ok(Some(ev)),
                Some(Item::Comment) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Reads the rest of the body so the connection can carry the next request.
    pub async fn drain(mut self, limit: Duration) -> bool {
        if self.ended {
            return true;
        }
        let rest = async {
            while let Some(f) = self.body.frame().await {
                if f.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(limit, rest).await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_endpoints() {
        let u = Url::parse("http://127.0.0.1:8051/sse/echo").unwrap();
        assert_eq!(u.addr, "127.0.0.1:8051".parse().unwrap());
        assert_eq!(u.path, "/sse/echo");
        assert_eq!(u.join("/sse/echo/message?sessionId=1").unwrap().path, "/sse/echo/message?sessionId=1");
        assert_eq!(u.join("message?sessionId=1").unwrap().path, "/sse/message?sessionId=1");
        assert_eq!(u.join("http://localhost:9/m?x=1").unwrap().addr.port(), 9);
        assert_eq!(Url::parse("http://127.0.0.1:1").unwrap().path, "/");
        assert!(Url::parse("https://x").is_err());
    }
}
