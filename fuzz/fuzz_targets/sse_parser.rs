//! Fuzz target: the client-side SSE parser (`mcp_bridge::sse::parse::Parser`, used by the remote
//! SSE and Streamable HTTP upstreams and by `diagnose`). Any bytes must parse without a panic,
//! and how the bytes are split into chunks must not change what is parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_bridge::fuzzing::sse_parse::{Item, Parser, MAX_LINE};

/// Every item the parser yields for `chunks`, and whether it reported an over-long line.
fn parse<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Item>, bool) {
    let mut p = Parser::default();
    let mut out = Vec::new();
    let mut too_long = false;
    for c in chunks {
        p.feed(c);
        loop {
            match p.try_next_item() {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(_) => {
                    too_long = true;
                    break;
                }
            }
        }
        assert!(p.buffered() <= MAX_LINE + c.len(), "the parser buffers past its line limit");
    }
    (out, too_long)
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size; the rest is the stream.
    let Some((&step, body)) = data.split_first() else { return };
    let step = usize::from(step % 17) + 1;
    let whole = parse(std::iter::once(body));
    let chunked = parse(body.chunks(step));
    assert_eq!(whole, chunked, "splitting the stream into {step}-byte chunks changed the parse");
});
