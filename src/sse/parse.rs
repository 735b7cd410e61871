//! An incremental SSE parser following the WHATWG event-stream rules, for streams the bridge
//! reads as a client. Unlike a browser it also surfaces comments and `retry:` so that
//! `diagnose` can count heartbeats.

use bytes::{Buf, BytesMut};

/// Longest line accepted before the stream is treated as hostile.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// One dispatched SSE event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

/// What the parser yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    /// A comment line, without its leading colon and one optional space.
    Comment(String),
}

/// Error for a line over [`MAX_LINE`], or a line or an event's data over the parser's limit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an sse line or event longer than the limit")]
pub struct LineTooLong;

#[derive(Default)]
pub struct Parser {
    buf: BytesMut,
    pending: Event,
    has_fields: bool,
    /// The stream began; a leading BOM has been dealt with.
    started: bool,
    /// The last byte consumed was a CR, so a following LF belongs to it.
    after_cr: bool,
    /// Most bytes of one line or one event's data, when less than [`MAX_LINE`].
    limit: Option<usize>,
}

impl Parser {
    /// A parser that refuses a line or an event's data over `limit` bytes.
    pub fn with_limit(limit: usize) -> Parser {
        Parser { limit: Some(limit.min(MAX_LINE)), ..Parser::default() }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes buffered but not yet parsed into a complete line.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete item, if the buffered bytes hold one.
    pub fn next_item(&mut self) -> Option<Item> {
        self.try_next_item().unwrap_or(None)
    }

    /// Like [`Parser::next_item`], but reports an over-long line.
    pub fn try_next_item(&mut self) -> Result<Option<Item>, LineTooLong> {
        loop {
            if !self.started {
                if self.buf.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.buf) {
                    return Ok(None);
                }
                if self.buf.starts_with(b"\xEF\xBB\xBF") {
                    self.buf.advance(3);
                }
                self.started = true;
            }
            match self.buf.first() {
                None => return Ok(None),
                Some(b'\n') if self.after_cr => self.buf.advance(1),
                Some(_) => {}
            }
            self.after_cr = false;
            let limit = self.limit.unwrap_or(MAX_LINE);
            let Some(end) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.buf.len() > limit {
                    self.buf.clear();
                    return Err(LineTooLong);
                }
                return Ok(None);
            };
            let line = self.buf.split_to(end);
            self.after_cr = self.buf[0] == b'\r';
            self.buf.advance(1);
            if line.len() > limit {
                self.buf.clear();
                return Err(LineTooLong);
            }
            let line = String::from_utf8_lossy(&line);
            let item = self.line(&line);
            if self.pending.data.len() > limit {
                self.pending = Event::default();
                self.has_fields = false;
                return Err(LineTooLong);
            }
            if let Some(item) = item {
                return Ok(Some(item));
            }
        }
    }

    fn line(&mut self, line: &str) -> Option<Item> {
        if line.is_empty() {
            if !self.has_fields {
                return None;
            }
            self.has_fields = false;
            let mut ev = std::mem::take(&mut self.pending);
            if ev.data.ends_with('\n') {
                ev.data.pop();
            }
            return Some(Item::Event(ev));
        }
        if let Some(text) = line.strip_prefix(':') {
            return Some(Item::Comment(text.strip_prefix(' ').unwrap_or(text).to_string()));
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.pending.data.push_str(value);
                self.pending.data.push('\n');
                self.has_fields = true;
            }
            "event" => {
                self.pending.event = Some(value.to_string());
                self.has_fields = true;
            }
            "id" if !value.contains('\0') => {
                self.pending.id = Some(value.to_string());
                self.has_fields = true;
            }
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.pending.retry = Some(ms);
                    self.has_fields = true;
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<Item> {
        let mut p = Parser::default();
        p.feed(input);
        std::iter::from_fn(|| p.next_item()).collect()
    }

    #[test]
    fn events_comments_and_line_endings() {
        let items = all(b"\xEF\xBB\xBF: hi\r\nid: 7\revent: endpoint\ndata: /m?s=1\r\n\r\n");
        assert_eq!(items[0], Item::Comment("hi".into()));
        let Item::Event(ev) = &items[1] else { panic!() };
        assert_eq!(ev.id.as_deref(), Some("7"));
        assert_eq!(ev.event.as_deref(), Some("endpoint"));
        assert_eq!(ev.data, "/m?s=1");
    }

    #[test]
    fn split_across_feeds_and_crlf_split() {
        let mut p = Parser::default();
        p.feed(b"data: a\r");
        assert_eq!(p.next_item(), None);
        p.feed(b"\ndata: b\r");
        p.feed(b"\n\r\n");
        let Some(Item::Event(ev)) = p.next_item() else { panic!() };
        assert_eq!(ev.data, "a\nb");
        assert_eq!(p.next_item(), None);
    }

    #[test]
    fn retry_only_event_and_blank_lines() {
        let items = all(b"\n\nretry: 1500\n\nretry: x\n\n");
        assert_eq!(items.len(), 1);
        let Item::Event(ev) = &items[0] else { panic!() };
        assert_eq!(ev.retry, Some(1500));
    }

    #[test]
    fn an_event_over_the_limit_is_an_error_however_it_is_split() {
        let mut p = Parser::with_limit(10);
        p.feed(b"data: 12345\ndata: 67890\n");
        assert_eq!(p.try_next_item(), Err(LineTooLong));
        let mut p = Parser::with_limit(10);
        p.feed(b"data: 12345678901\n\n");
        assert_eq!(p.try_next_item(), Err(LineTooLong));
        let mut p = Parser::with_limit(10);
        p.feed(b"data: 1234\n\n");
        assert!(matches!(p.try_next_item(), Ok(Some(Item::Event(_)))));
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut p = Parser::default();
        p.feed(&vec![b'x'; MAX_LINE + 1]);
        assert_eq!(p.try_next_item(), Err(LineTooLong));
    }
}
