//! Rewriting a JSON-RPC message without re-encoding what the bridge does not touch: a
//! message is read as its top-level members, each kept as the bytes it came with, and only the
//! members being changed are written anew. The stateless side (final responses, listen
//! notifications) and the modern upstream adapter (`_meta` on every request) share it.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::value::RawValue;

/// A JSON object's members, each kept as the bytes it came with.
pub(crate) type Members = BTreeMap<String, Box<RawValue>>;

/// JSON text as a member value (`null` if it is not JSON, which the callers never pass).
pub(crate) fn raw(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
}

/// Members as a member value.
pub(crate) fn nested(members: &Members) -> Box<RawValue> {
    raw(serde_json::to_string(members).unwrap_or_default())
}

/// The members of a member that is an object; none if it is missing or not an object.
pub(crate) fn members_of(m: &Members, key: &str) -> Members {
    m.get(key).and_then(|v| serde_json::from_str(v.get()).ok()).unwrap_or_default()
}

/// A message with its `params` and `params._meta` edited (each made if missing): `edit` gets
/// both, and `_meta` goes back into `params` afterwards. `None` if `msg` is not an object.
pub(crate) fn edit_params(msg: &[u8], edit: impl FnOnce(&mut Members, &mut Members)) -> Option<Members> {
    let mut m: Members = serde_json::from_slice(msg).ok()?;
    let mut params = members_of(&m, "params");
    let mut meta = members_of(&params, "_meta");
    edit(&mut params, &mut meta);
    params.insert("_meta".into(), nested(&meta));
    m.insert("params".into(), nested(&params));
    Some(m)
}

/// A message's bytes.
pub(crate) fn to_bytes(m: &Members) -> Bytes {
    Bytes::from(serde_json::to_vec(m).unwrap_or_default())
}

/// Where a value borrowed from `msg` sits in it (`None` if it was not borrowed from `msg`).
pub(crate) fn span(msg: &[u8], value: &RawValue) -> Option<std::ops::Range<usize>> {
    let start = (value.get().as_ptr() as usize).checked_sub(msg.as_ptr() as usize)?;
    let end = start + value.get().len();
    (end <= msg.len()).then_some(start..end)
}

/// `msg` with each range replaced by its text, everything else copied as it came: one buffer,
/// no re-encoding. The ranges may come in any order; `None` if two overlap.
pub(crate) fn splice(msg: &[u8], mut edits: Vec<(std::ops::Range<usize>, &[u8])>) -> Option<Bytes> {
    edits.sort_by_key(|(r, _)| r.start);
    let grown: usize = edits.iter().map(|(_, t)| t.len()).sum();
    let mut out = Vec::with_capacity(msg.len() + grown);
    let mut at = 0;
    for (range, text) in edits {
        if range.start < at || range.end > msg.len() {
            return None;
        }
        out.extend_from_slice(&msg[at..range.start]);
        out.extend_from_slice(text);
        at = range.end;
    }
    out.extend_from_slice(&msg[at..]);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_edited_members_are_written_anew() {
        let msg = br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"x":{"b": 1,  "a":2},"_meta":{"k":"v"}}}"#;
        let m = edit_params(msg, |params, meta| {
            meta.insert("n".into(), raw("7".into()));
            params.remove("gone");
        })
        .unwrap();
        let text = String::from_utf8(to_bytes(&m).to_vec()).unwrap();
        assert!(text.contains(r#"{"b": 1,  "a":2}"#), "untouched members keep their bytes: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!((v["params"]["_meta"]["k"].as_str(), v["params"]["_meta"]["n"].as_i64()), (Some("v"), Some(7)));
        assert!(edit_params(b"[1]", |_, _| {}).is_none());
        let bare = edit_params(br#"{"jsonrpc":"2.0","method":"m"}"#, |_, meta| {
            meta.insert("k".into(), raw("1".into()));
        })
        .unwrap();
        assert_eq!(members_of(&members_of(&bare, "params"), "_meta")["k"].get(), "1");
    }

    #[test]
    fn splices_in_any_order_and_refuses_overlaps() {
        let msg = br#"{"b":[1, 2],"a":"x"}"#;
        let v: BTreeMap<&str, &RawValue> = serde_json::from_slice(msg).unwrap();
        let (a, b) = (span(msg, v["a"]).unwrap(), span(msg, v["b"]).unwrap());
        assert_eq!((&msg[a.clone()], &msg[b.clone()]), (&br#""x""#[..], &b"[1, 2]"[..]));
        let out = splice(msg, vec![(a.clone(), b"7"), (b.start..b.start, b"0,")]).unwrap();
        assert_eq!(&out[..], br#"{"b":0,[1, 2],"a":7}"#);
        assert!(splice(msg, vec![(1..5, b""), (3..4, b"")]).is_none());
        assert!(span(msg, &RawValue::from_string("1".into()).unwrap()).is_none());
    }
}
