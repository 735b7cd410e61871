//! The relay floor: the thinnest Streamable HTTP to stdio relay this harness can build on the
//! bridge's own stack (hyper, tokio). Each session is one child; a POST's connection task
//! writes the message to the child's stdin and reads the child's stdout itself until the
//! answer comes, so there is no task hand-off, no queue, no event log and no routing. It
//! serves one request at a time per session and knows nothing of MCP beyond a message's `id`.
//! What it costs per request is the least a bridge that relays HTTP to a stdio child can cost
//! here: the HTTP ceiling, the child, and the pipe I/O and wake-ups between them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

/// One session's child and its pipes.
struct Pipes {
    _child: Child,
    io: Io,
}

/// Who touches the child's pipes.
enum Io {
    /// The request's own task writes stdin and reads stdout.
    Direct { stdin: ChildStdin, stdout: BufReader<ChildStdout>, line: Vec<u8> },
    /// `--tasks`, the bridge's shape: a writer task owns stdin and a reader task owns stdout;
    /// the request hands its line to the one and waits for the other's answer, two task
    /// hand-offs per request, to price them.
    Tasks { to_child: mpsc::Sender<Vec<u8>>, answers: mpsc::Receiver<Vec<u8>> },
}

#[derive(Default)]
struct Relay {
    command: PathBuf,
    tasks: bool,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Pipes>>>>,
    next: AtomicU64,
}

/// Serves until the process is killed; each session's child exits on the EOF of its stdin.
pub async fn serve(listen: SocketAddr, command: PathBuf, tasks: bool) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("relay listening on {}", listener.local_addr()?);
    let relay = Arc::new(Relay { command, tasks, ..Default::default() });
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let relay = relay.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(relay.clone(), req));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The message's `id`, when it has one: the one thing a relay must know to wait for an answer.
#[derive(serde::Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    id: Option<&'a serde_json::value::RawValue>,
}

async fn answer(relay: Arc<Relay>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let sid = req.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if req.method() == Method::DELETE {
        let gone = sid.and_then(|s| relay.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&s));
        return Ok(status(if gone.is_some() { StatusCode::OK } else { StatusCode::NOT_FOUND }));
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    // One line per message on the pipe: a body with a newline is refused before any child starts.
    if body.contains(&b'\n') {
        return Ok(status(StatusCode::BAD_REQUEST));
    }
    let Ok(peek) = serde_json::from_slice::<Peek>(&body) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let expects_answer = peek.id.is_some_and(|id| id.get() != "null");
    let (sid, pipes) = match sid {
        Some(s) => match relay.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(&s) {
            Some(p) => (s, p.clone()),
            None => return Ok(status(StatusCode::NOT_FOUND)),
        },
        None => match spawn(&relay.command, relay.tasks) {
            Ok(p) => {
                let s = format!("relay-{}", relay.next.fetch_add(1, Ordering::Relaxed));
                let p = Arc::new(tokio::sync::Mutex::new(p));
                relay.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(s.clone(), p.clone());
                (s, p)
            }
            Err(_) => return Ok(status(StatusCode::INTERNAL_SERVER_ERROR)),
        },
    };
    let mut p = pipes.lock().await;
    let mut msg = Vec::with_capacity(body.len() + 1);
    msg.extend_from_slice(&body);
    msg.push(b'\n');
    let answer = match &mut p.io {
        Io::Direct { stdin, stdout, line } => {
            if stdin.write_all(&msg).await.is_err() {
                return Ok(status(StatusCode::BAD_GATEWAY));
            }
            if !expects_answer {
                return Ok(with_session(status(StatusCode::ACCEPTED), &sid));
            }
            match next_answer(stdout, line).await {
                Some(()) => Bytes::copy_from_slice(line.trim_ascii_end()),
                None => return Ok(status(StatusCode::BAD_GATEWAY)),
            }
        }
        Io::Tasks { to_child, answers } => {
            if to_child.send(msg).await.is_err() {
                return Ok(status(StatusCode::BAD_GATEWAY));
            }
            if !expects_answer {
                return Ok(with_session(status(StatusCode::ACCEPTED), &sid));
            }
            match answers.recv().await {
                Some(line) => Bytes::from(line),
                None => return Ok(status(StatusCode::BAD_GATEWAY)),
            }
        }
    };
    let r = Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(answer))
        .expect("a response from valid parts");
    Ok(with_session(r, &sid))
}

/// Reads the child's lines into `line` until one is a response (has an id); `None` at EOF.
async fn next_answer(stdout: &mut BufReader<ChildStdout>, line: &mut Vec<u8>) -> Option<()> {
    loop {
        line.clear();
        match stdout.read_until(b'\n', line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if serde_json::from_slice::<Peek>(line).is_ok_and(|m| m.id.is_some()) {
            return Some(());
        }
    }
}

fn spawn(command: &PathBuf, tasks: bool) -> std::io::Result<Pipes> {
    let mut child = Command::new(command).stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(std::io::Error::other("no pipes"));
    };
    let (stdout, line) = (BufReader::new(stdout), Vec::with_capacity(1024));
    if !tasks {
        return Ok(Pipes { _child: child, io: Io::Direct { stdin, stdout, line } });
    }
    // Both tasks end when the session's channels close (the session is dropped) or at EOF.
    let (to_child, mut from_request) = mpsc::channel::<Vec<u8>>(16);
    let (answered, answers) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(msg) = from_request.recv().await {
            if stdin.write_all(&msg).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let (mut stdout, mut line) = (stdout, line);
        while next_answer(&mut stdout, &mut line).await.is_some() {
            if answered.send(line.trim_ascii_end().to_vec()).await.is_err() {
                return;
            }
        }
    });
    Ok(Pipes { _child: child, io: Io::Tasks { to_child, answers } })
}

fn with_session(mut r: Response<Full<Bytes>>, sid: &str) -> Response<Full<Bytes>> {
    if let Ok(v) = sid.parse() {
        r.headers_mut().insert("mcp-session-id", v);
    }
    r
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peek_tells_requests_from_notifications() {
        let req = serde_json::from_slice::<Peek>(br#"{"jsonrpc":"2.0","id":7,"method":"x"}"#).unwrap();
        assert_eq!(req.id.map(|i| i.get().to_string()), Some("7".into()));
        let note = serde_json::from_slice::<Peek>(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(note.id.is_none());
    }
}
