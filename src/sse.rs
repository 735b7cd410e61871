//! Server-Sent Events on the wire: encoding the frames the bridge sends, and (in `parse`) an
//! incremental parser for the streams it reads as a client (remote upstreams, `diagnose`).

pub mod parse;

use bytes::{BufMut, Bytes, BytesMut};

/// Encodes one SSE event. `data` may span lines; each line becomes its own `data:` field, so
/// a JSON-RPC message with embedded newlines still arrives as one event.
pub(crate) fn event(id: Option<&str>, name: Option<&str>, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 48);
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    if let Some(name) = name {
        out.put_slice(b"event: ");
        out.put_slice(name.as_bytes());
        out.put_u8(b'\n');
    }
    if data.is_empty() {
        out.put_slice(b"data: \n\n");
        return out.freeze();
    }
    for line in data.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.freeze()
}

/// A comment line (`: text`), ignored by every SSE client but enough to reset idle timers.
pub(crate) fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}

/// A `retry:` hint telling the client how long to wait before reconnecting.
pub(crate) fn retry(millis: u64) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_with_id_and_name() {
        let e = event(Some("s-0-1"), Some("message"), br#"{"a":1}"#);
        assert_eq!(&e[..], b"id: s-0-1\nevent: message\ndata: {\"a\":1}\n\n");
    }

    #[test]
    fn multiline_data_splits_into_fields() {
        let e = event(None, None, b"a\nb\r\n");
        assert_eq!(&e[..], b"data: a\ndata: b\n\n");
    }

    #[test]
    fn empty_data_is_a_priming_event() {
        assert_eq!(&event(Some("1"), None, b"")[..], b"id: 1\ndata: \n\n");
    }

    #[test]
    fn round_trip_through_the_parser() {
        let mut p = parse::Parser::default();
        p.feed(&event(Some("x"), Some("message"), b"{\"k\":\"v\"}\n"));
        let Some(parse::Item::Event(ev)) = p.next_item() else { panic!("no event") };
        assert_eq!(ev.id.as_deref(), Some("x"));
        assert_eq!(ev.event.as_deref(), Some("message"));
        assert_eq!(ev.data, "{\"k\":\"v\"}");
    }
}
