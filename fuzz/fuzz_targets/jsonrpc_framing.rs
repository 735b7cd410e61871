//! Fuzz target: JSON-RPC framing. Client bodies go through `jsonrpc::split` and `jsonrpc::peek`;
//! a stdio child's stdout goes through the newline `LinesCodec` the stdio upstream reads with,
//! then `peek`. Nothing may panic, what is accepted must be well-formed, and the error answers
//! the bridge builds from a peeked id must be valid JSON.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mcp_bridge::fuzzing::jsonrpc::{self, Kind};
use serde_json::value::RawValue;
use tokio_util::codec::{Decoder, LinesCodec};

/// The stdio upstream's line limit is 64 MiB; a small one here exercises the over-long path.
const MAX_LINE: usize = 4096;

fn check_peek(raw: &[u8]) {
    let Ok(p) = jsonrpc::peek(raw) else { return };
    let first = raw.iter().find(|b| !b.is_ascii_whitespace());
    assert_eq!(first, Some(&b'{'), "peek accepted a message that is not a JSON object: {:?}", String::from_utf8_lossy(raw));
    match p.kind {
        Kind::Request => assert!(p.id.is_some() && p.method.is_some(), "a request has an id and a method"),
        Kind::Notification => assert!(p.id.is_none() && p.method.is_some(), "a notification has a method, no id"),
        Kind::Response => assert!(p.method.is_none(), "a response has no method"),
    }
    for text in [p.id.as_deref(), p.progress_token.as_deref()].into_iter().flatten() {
        assert!(serde_json::from_str::<Box<RawValue>>(text).is_ok(), "peeked JSON text is JSON: {text:?}");
    }
    let err = jsonrpc::error(p.id.as_deref(), jsonrpc::code::REQUEST_TIMEOUT, "fuzz \"message\"\n");
    assert!(serde_json::from_slice::<Box<RawValue>>(&err).is_ok(), "error() built invalid JSON: {err:?}");
}

fuzz_target!(|data: &[u8]| {
    // A POST body.
    if let Ok((items, batch)) = jsonrpc::split(&bytes::Bytes::copy_from_slice(data)) {
        assert!(!items.is_empty(), "split accepted an empty body");
        assert!(batch || items.len() == 1, "a non-batch body is one message");
        for raw in &items {
            assert!(serde_json::from_slice::<Box<RawValue>>(raw).is_ok(), "split yielded a non-JSON element");
            check_peek(raw);
        }
    }
    // A child's stdout.
    let mut codec = LinesCodec::new_with_max_length(MAX_LINE);
    let mut buf = BytesMut::from(data);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(line)) => {
                assert!(line.len() <= MAX_LINE, "a line over the limit got through");
                check_peek(line.as_bytes());
            }
            Ok(None) | Err(_) => break,
        }
    }
    if let Ok(Some(line)) = codec.decode_eof(&mut buf) {
        check_peek(line.as_bytes());
    }
});
