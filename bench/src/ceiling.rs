//! The HTTP ceiling: a bare hyper HTTP/1.1 server that answers every Streamable HTTP POST
//! itself, with no session, no upstream and no streaming. Driven by the same generator code
//! path as the bridge, it shows what HTTP alone allows on this machine. Its GETs are endless
//! legacy SSE streams (an endpoint event, then `: heartbeat` each interval, from a timer per
//! stream), so `mcp-bench idle` can measure what an idle stream costs in hyper alone.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Serves until the process is killed; GET streams beat every `beat`.
pub async fn serve(listen: SocketAddr, beat: Duration) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("ceiling listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(|r| answer(r, beat))).await;
        });
    }
}

async fn answer(req: Request<Incoming>, beat: Duration) -> Result<Response<Either<Full<Bytes>, Beats>>, Infallible> {
    if req.method() == hyper::Method::GET {
        return Ok(Response::builder()
            .header("content-type", "text/event-stream")
            .body(Either::Right(Beats::new(beat)))
            .expect("a response from valid parts"));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST).map(Either::Left)),
    };
    Ok(reply(&body).map(Either::Left))
}

/// An endless legacy SSE body: the endpoint event, then a heartbeat comment every interval.
pub struct Beats {
    first: Option<Bytes>,
    tick: tokio::time::Interval,
}

impl Beats {
    fn new(every: Duration) -> Beats {
        let first = Bytes::from_static(b"event: endpoint\ndata: /message?sessionId=ceiling\n\n");
        Beats { first: Some(first), tick: tokio::time::interval_at(tokio::time::Instant::now() + every, every) }
    }
}

impl hyper::body::Body for Beats {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        self.tick.poll_tick(cx).map(|_| Some(Ok(Frame::data(Bytes::from_static(b": heartbeat\n\n")))))
    }
}

/// The canned answer to one JSON-RPC message: initialize gets a result and a session id,
/// notifications get 202, and anything else gets its `message` argument echoed back.
pub fn reply(body: &[u8]) -> Response<Full<Bytes>> {
    let Ok(msg) = serde_json::from_slice::<Value>(body) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Some(id) = msg.get("id").filter(|id| !id.is_null()) else {
        return status(StatusCode::ACCEPTED);
    };
    let result = match msg.get("method").and_then(Value::as_str) {
        Some("initialize") => json!({
            "protocolVersion": msg.pointer("/params/protocolVersion").cloned().unwrap_or(json!("2025-06-18")),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "mcp-bench-ceiling", "version": "0.1.0"}
        }),
        _ => {
            let text = msg.pointer("/params/arguments/message").cloned().unwrap_or(json!(""));
            json!({"content": [{"type": "text", "text": text}]})
        }
    };
    let out = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    Response::builder()
        .header("content-type", "application/json")
        .header("mcp-session-id", "ceiling")
        .body(Full::new(Bytes::from(out)))
        .expect("a response from valid parts")
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn text(r: Response<Full<Bytes>>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn echoes_calls_and_accepts_notifications() {
        let r = reply(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#);
        assert_eq!(r.status(), StatusCode::OK);
        let t = text(r).await;
        assert_eq!(crate::mcp::check(t.as_bytes(), 3, "hi"), crate::mcp::Verdict::Ok, "{t}");
        assert_eq!(reply(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).status(), StatusCode::ACCEPTED);
        assert_eq!(reply(b"nope").status(), StatusCode::BAD_REQUEST);
    }

    /// A GET stream starts with the endpoint event the idle harness waits for, then beats.
    #[tokio::test]
    async fn a_get_stream_sends_its_endpoint_then_beats() {
        let every = Duration::from_millis(50);
        let mut body = Beats::new(every);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(first.starts_with(b"event: endpoint\n"), "{first:?}");
        let start = tokio::time::Instant::now();
        let beat = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.expect("a beat").unwrap().unwrap();
        assert_eq!(&beat.into_data().unwrap()[..], b": heartbeat\n\n");
        assert!(start.elapsed() >= every, "the first beat comes one interval in, not at once: {:?}", start.elapsed());
    }
}
