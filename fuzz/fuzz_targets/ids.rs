//! Fuzz target: the session-id and event-id parsers (`SessionId::parse`, `EventId::parse`), which
//! read `Mcp-Session-Id`, `?sessionId=` and `Last-Event-ID` from any client. Nothing may panic,
//! and whatever parses must print back to a form that parses to the same id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_bridge::fuzzing::EventId;
use mcp_bridge::fuzzing::SessionId;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(id) = SessionId::parse(&text) {
        let printed = id.to_string();
        assert_eq!(printed, text, "a session id is only ever accepted in its canonical form");
        assert_eq!(SessionId::parse(&printed), Some(id));
    }
    if let Some(ev) = EventId::parse(&text) {
        assert_eq!(EventId::parse(&ev.to_string()), Some(ev.clone()), "an event id round-trips");
    }
});
