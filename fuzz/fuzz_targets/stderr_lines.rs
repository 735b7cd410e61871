//! Fuzz target: the stderr line reader (`upstream::stderr::LineReader`), which splits whatever a
//! stdio child writes to stderr into log lines. Nothing may panic; it never holds more than its
//! bound; any chunking of the input gives the same lines; each line is exactly what a simple
//! model says (the first `max` bytes, lossy UTF-8, the rest counted); and a logged line never
//! holds a line break or an escape character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_bridge::fuzzing::stderr::{Line, LineReader};

/// The lines the reader must give for `data`, written the obvious way.
fn model(data: &[u8], max: usize) -> Vec<Line> {
    let mut pieces: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    if pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    pieces
        .into_iter()
        .map(|p| {
            let mut kept = &p[..p.len().min(max)];
            let truncated = (p.len() - kept.len()) as u64;
            if truncated == 0 {
                kept = kept.strip_suffix(b"\r").unwrap_or(kept);
            }
            Line { text: String::from_utf8_lossy(kept).into_owned(), truncated }
        })
        .collect()
}

/// Feeds `data` in chunks of the given sizes (cycled), checking the bound after each.
fn read(data: &[u8], max: usize, sizes: &[usize]) -> Vec<Line> {
    let mut r = LineReader::new(max);
    let mut out = Vec::new();
    let mut rest = data;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).clamp(1, rest.len()));
        r.feed(chunk, |l| out.push(l));
        assert!(r.held() <= max, "the reader holds {} bytes, over its bound {max}", r.held());
        rest = tail;
    }
    out.extend(r.finish());
    out
}

fuzz_target!(|input: &[u8]| {
    let Some((&head, data)) = input.split_first() else { return };
    let max = 1 + usize::from(head % 64);
    let expected = model(data, max);
    assert_eq!(read(data, max, &[data.len().max(1)]), expected, "one chunk");
    assert_eq!(read(data, max, &[1]), expected, "one byte at a time");
    let sizes: Vec<usize> = data.iter().take(16).map(|b| usize::from(*b % 17) + 1).collect();
    if !sizes.is_empty() {
        assert_eq!(read(data, max, &sizes), expected, "chunks of {sizes:?}");
    }
    for line in &expected {
        let shown = line.to_string();
        assert!(!shown.contains(['\n', '\r', '\u{1b}']), "a logged line holds a control character: {shown:?}");
    }
});
