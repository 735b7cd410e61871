//! A child's stdout as messages: one per line, none bigger than `limits.max_message`. A
//! longer line is skipped as it streams past, never held whole, so the framing stays in step;
//! a small scanner keeps what names it (its top-level `id`, and whether it has a `method`)
//! so that the request it answers can be answered with an error instead.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Longest `id` text kept from a skipped message.
const MAX_ID: usize = 256;

/// One line of a child's stdout.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    Message(Bytes),
    /// A line over the bound, skipped: its size and what names it.
    TooLong {
        size: usize,
        names: Names,
    },
}

/// Splits lines, skipping those longer than `max` bytes.
pub(super) struct Codec {
    max: usize,
    /// Where the search for the next newline resumes (what is before it has none).
    searched: usize,
    /// The line being skipped, if one is.
    skipping: Option<(usize, Names)>,
}

impl Codec {
    pub(super) fn new(max: usize) -> Codec {
        Codec { max, searched: 0, skipping: None }
    }
}

impl Decoder for Codec {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        loop {
            if let Some((size, names)) = &mut self.skipping {
                let Some(i) = buf.iter().position(|b| *b == b'\n') else {
                    names.feed(buf);
                    *size += buf.len();
                    buf.clear();
                    return Ok(None);
                };
                names.feed(&buf[..i]);
                *size += i;
                buf.advance(i + 1);
                let Some((size, names)) = self.skipping.take() else { continue };
                return Ok(Some(Line::TooLong { size, names: names.done() }));
            }
            let from = self.searched.min(buf.len());
            let Some(i) = buf[from..].iter().position(|b| *b == b'\n').map(|o| from + o) else {
                if buf.len() > self.max {
                    let mut names = Names::default();
                    names.feed(buf);
                    self.skipping = Some((buf.len(), names));
                    self.searched = 0;
                    buf.clear();
                } else {
                    self.searched = buf.len();
                }
                return Ok(None);
            };
            self.searched = 0;
            if i > self.max {
                let mut names = Names::default();
                names.feed(&buf[..i]);
                buf.advance(i + 1);
                return Ok(Some(Line::TooLong { size: i, names: names.done() }));
            }
            let mut line = buf.split_to(i + 1);
            line.truncate(if line.ends_with(b"\r\n") { i - 1 } else { i });
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Line::Message(line.freeze())));
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        if let Some((size, names)) = self.skipping.take() {
            return Ok(Some(Line::TooLong { size, names: names.done() }));
        }
        // A last line without its newline.
        let line = buf.split().freeze();
        self.searched = 0;
        Ok((!line.iter().all(u8::is_ascii_whitespace)).then_some(Line::Message(line)))
    }
}

/// Watches a JSON object stream past and keeps its top-level `id` (as JSON text, the way
/// pending requests are keyed) and whether it has a top-level `method`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Names {
    pub id: Option<String>,
    pub method: bool,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At depth 1, the next string is a member name.
    want_key: bool,
    /// The member name being read (its first bytes).
    key: Option<Vec<u8>>,
    /// The last member name read at depth 1, until its `:`.
    last_key: Option<Vec<u8>>,
    /// The `id` member's value text so far.
    capture: Option<Vec<u8>>,
}

impl Names {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        if !self.in_string && self.depth == 1 && (b == b',' || b == b'}') {
            if let Some(t) = self.capture.take() {
                self.finish(t);
            }
        }
        if let Some(t) = &mut self.capture {
            if t.len() <= MAX_ID {
                t.push(b);
            }
        }
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                if let Some(k) = self.key.take() {
                    self.last_key = Some(k);
                }
                return;
            }
            if let Some(k) = &mut self.key {
                // Nine bytes tell `id` and `method` from any longer name.
                if k.len() < 9 {
                    k.push(b);
                }
            }
            return;
        }
        match b {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.want_key {
                    self.key = Some(Vec::new());
                    self.want_key = false;
                }
            }
            b'{' | b'[' => {
                self.depth += 1;
                self.want_key = self.depth == 1 && b == b'{';
            }
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            b',' if self.depth == 1 => {
                self.want_key = true;
                self.last_key = None;
            }
            b':' if self.depth == 1 => match self.last_key.take().as_deref() {
                Some(b"id") => self.capture = Some(Vec::new()),
                Some(b"method") => self.method = true,
                _ => {}
            },
            _ => {}
        }
    }

    /// Keeps a captured id if it is a JSON-RPC id: a string or a number.
    fn finish(&mut self, text: Vec<u8>) {
        let Ok(text) = String::from_utf8(text) else { return };
        let text = text.trim();
        if text.len() > MAX_ID {
            return;
        }
        if matches!(
            serde_json::from_str::<serde_json::Value>(text),
            Ok(serde_json::Value::String(_) | serde_json::Value::Number(_))
        ) {
            self.id = Some(text.to_string());
        }
    }

    /// What was found, once the message has gone by (a value cut off by the line's end
    /// still counts if it parses).
    fn done(mut self) -> Names {
        if let Some(t) = self.capture.take() {
            self.finish(t);
        }
        Names { id: self.id, method: self.method, ..Names::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize, input: &[&[u8]]) -> Vec<Line> {
        let mut codec = Codec::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in input {
            buf.extend_from_slice(chunk);
            while let Some(l) = codec.decode(&mut buf).unwrap() {
                out.push(l);
            }
        }
        while let Some(l) = codec.decode_eof(&mut buf).unwrap() {
            out.push(l);
        }
        out
    }

    fn msg(s: &str) -> Line {
        Line::Message(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn names(id: Option<&str>, method: bool) -> Names {
        Names { id: id.map(str::to_string), method, ..Names::default() }
    }

    #[test]
    fn splits_lines_and_skips_blank_ones() {
        assert_eq!(
            lines(64, &[b"{\"a\":1}\r\n\n  \n{\"b\"", b":2}\n{\"c\":3}"]),
            vec![msg("{\"a\":1}"), msg("{\"b\":2}"), msg("{\"c\":3}")]
        );
    }

    #[test]
    fn a_long_line_is_skipped_in_pieces_and_the_next_one_arrives() {
        let big = format!(r#"{{"jsonrpc":"2.0","id":"r-7","result":{{"text":"{}"}}}}"#, "x".repeat(1000));
        let chunks: Vec<&[u8]> = big.as_bytes().chunks(37).chain([&b"\n{\"ok\":1}\n"[..]]).collect();
        let got = lines(100, &chunks);
        assert_eq!(got, vec![Line::TooLong { size: big.len(), names: names(Some("\"r-7\""), false) }, msg("{\"ok\":1}")]);
        // Found whole in one read, too.
        let got = lines(100, &[format!("{big}\n").as_bytes()]);
        assert_eq!(got, vec![Line::TooLong { size: big.len(), names: names(Some("\"r-7\""), false) }]);
    }

    #[test]
    fn names_come_from_the_top_level_only_wherever_they_are() {
        let scan = |s: &str| {
            let mut n = Names::default();
            n.feed(s.as_bytes());
            n.done()
        };
        assert_eq!(scan(r#"{"result":{"id":1,"method":"x","s":"\"id\":2"},"id":42}"#), names(Some("42"), false));
        assert_eq!(scan(r#"{ "id" : "a\"b" , "method":"sampling/createMessage","params":{}}"#), names(Some(r#""a\"b""#), true));
        assert_eq!(scan(r#"{"method":"notifications/message","params":{"id":3}}"#), names(None, true));
        assert_eq!(scan(r#"{"identifier":5,"id":{"x":1}}"#), names(None, false));
        assert_eq!(scan(r#"{"jsonrpc":"2.0","id":17,"result":{"content":[{"text":"cut off"#), names(Some("17"), false));
    }
}
