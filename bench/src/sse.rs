//! A small incremental SSE parser for the generator's side of the wire: events (id, event,
//! data) and comments, any line ending. The bench keeps its own, rather than linking the
//! bridge's library, so it builds and runs against any bridge binary.

use bytes::{Buf, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    Comment,
}

/// Longest line accepted before the stream counts as broken.
const MAX_LINE: usize = 16 * 1024 * 1024;

#[derive(Default)]
pub struct Parser {
    buf: BytesMut,
    pending: Event,
    fields: bool,
    after_cr: bool,
}

impl Parser {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete item, if the bytes fed so far hold one.
    pub fn next_item(&mut self) -> anyhow::Result<Option<Item>> {
        loop {
            if self.after_cr && self.buf.first() == Some(&b'\n') {
                self.buf.advance(1);
            }
            if self.buf.is_empty() {
                return Ok(None);
            }
            self.after_cr = false;
            let Some(end) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') else {
                anyhow::ensure!(self.buf.len() <= MAX_LINE, "an SSE line over {MAX_LINE} bytes");
                return Ok(None);
            };
            let line = self.buf.split_to(end);
            self.after_cr = self.buf[0] == b'\r';
            self.buf.advance(1);
            if let Some(item) = self.line(&String::from_utf8_lossy(&line)) {
                return Ok(Some(item));
            }
        }
    }

    fn line(&mut self, line: &str) -> Option<Item> {
        if line.is_empty() {
            if !self.fields {
                return None;
            }
            self.fields = false;
            let mut ev = std::mem::take(&mut self.pending);
            if ev.data.ends_with('\n') {
                ev.data.pop();
            }
            return Some(Item::Event(ev));
        }
        if line.starts_with(':') {
            return Some(Item::Comment);
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.pending.data.push_str(value);
                self.pending.data.push('\n');
            }
            "event" => self.pending.event = Some(value.to_string()),
            "id" => self.pending.id = Some(value.to_string()),
            "retry" => {}
            _ => return None,
        }
        self.fields = true;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_comments_and_split_feeds() {
        let mut p = Parser::default();
        p.feed(b": heartbeat\n\nretry: 1000\n\nid: a-0-1\r\nevent: endpoint\rdata: /m?s");
        assert_eq!(p.next_item().unwrap(), Some(Item::Comment));
        assert!(matches!(p.next_item().unwrap(), Some(Item::Event(e)) if e.data.is_empty()), "retry-only event");
        assert_eq!(p.next_item().unwrap(), None);
        p.feed(b"=1\r");
        p.feed(b"\n\r\n");
        let Some(Item::Event(ev)) = p.next_item().unwrap() else { panic!("no event") };
        assert_eq!((ev.id.as_deref(), ev.event.as_deref(), ev.data.as_str()), (Some("a-0-1"), Some("endpoint"), "/m?s=1"));
        assert_eq!(p.next_item().unwrap(), None);
    }

    #[test]
    fn multi_line_data() {
        let mut p = Parser::default();
        p.feed(b"data: a\ndata: b\n\n");
        assert!(matches!(p.next_item().unwrap(), Some(Item::Event(e)) if e.data == "a\nb"));
    }
}
