//! A REST tool call answered as an SSE stream (`Accept: text/event-stream`): `progress` and
//! `log` events as the upstream sends them (the notification's `params`), then one `result`
//! event (the `CallToolResult`) or one `error` event (the problem document a JSON answer would
//! have had). Heartbeat comments keep quiet streams open. Closing the stream drops the
//! [`Call`], which cancels it upstream.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};

use super::call::{Call, Event};
use crate::{http, sse};

/// The body's state between events.
struct Body {
    call: Call,
    heartbeat: Option<tokio::time::Interval>,
    done: bool,
}

/// The `params` of a notification, or the whole message if it has none.
fn params(raw: &[u8]) -> Bytes {
    #[derive(serde::Deserialize)]
    struct Msg<'a> {
        #[serde(borrow)]
        params: Option<&'a serde_json::value::RawValue>,
    }
    match serde_json::from_slice::<Msg>(raw) {
        Ok(Msg { params: Some(p) }) => Bytes::copy_from_slice(p.get().as_bytes()),
        _ => Bytes::copy_from_slice(raw),
    }
}

/// The SSE answer to a call already sent upstream.
pub(super) fn respond(call: Call, heartbeat: Option<Duration>) -> Response {
    let heartbeat = heartbeat.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
    let body = Body { call, heartbeat, done: false };
    let stream = futures_util::stream::unfold(body, |mut b| async move {
        if b.done {
            return None;
        }
        let next = match &mut b.heartbeat {
            Some(hb) => tokio::select! {
                next = b.call.next() => Some(next),
                _ = hb.tick() => None,
            },
            None => Some(b.call.next().await),
        };
        let frame = match next {
            None => sse::comment("heartbeat"),
            Some(Ok(Event::Progress(raw))) => sse::event(None, Some("progress"), &params(&raw)),
            Some(Ok(Event::Log(raw))) => sse::event(None, Some("log"), &params(&raw)),
            Some(Ok(Event::Result(result))) => {
                b.done = true;
                sse::event(None, Some("result"), &result)
            }
            Some(Err(e)) => {
                b.done = true;
                let problem = axum::body::to_bytes(e.into_response().into_body(), 1 << 20).await.unwrap_or_default();
                sse::event(None, Some("error"), &problem)
            }
        };
        Some((Ok::<Bytes, Infallible>(frame), b))
    });
    http::sse_response(stream, &[])
}
