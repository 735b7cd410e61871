//! Narrowing an aggregate's tools for one client: `?tools=glob,…` on its URL today, a
//! principal's scopes (issue 17) tomorrow. Each source adds one glob set to the client's
//! `initialize`, under `params._meta["io.github.mcp-bridge/tools"]` (an array of sets), so the
//! narrowing is recorded with the session and survives a takeover, which replays that
//! initialize. A tool is published and callable only if every set matches it: a client that
//! writes the key itself can only narrow further. The aggregate removes the key before its
//! members see the initialize.

use bytes::Bytes;
use serde_json::Value;

use crate::config::aggregates::Globs;
use crate::protocol::rewrite::{self, Members};

/// The `_meta` key the narrowing travels under.
pub(crate) const META_KEY: &str = "io.github.mcp-bridge/tools";

/// The glob sets a tool name must match, every one of them (none: every tool).
#[derive(Debug, Clone, Default)]
pub(crate) struct Narrowing {
    sets: Vec<Globs>,
}

impl Narrowing {
    pub(crate) fn allows(&self, name: &str) -> bool {
        self.sets.iter().all(|s| s.matches(name))
    }

    /// Takes the narrowing out of initialize `params`. A value the bridge did not write (not
    /// an array of arrays of strings) allows nothing, and is logged.
    pub(super) fn take(params: &mut Members) -> Narrowing {
        let mut meta = rewrite::members_of(params, "_meta");
        let Some(raw) = meta.remove(META_KEY) else { return Narrowing::default() };
        if meta.is_empty() {
            params.remove("_meta");
        } else {
            params.insert("_meta".into(), rewrite::nested(&meta));
        }
        match serde_json::from_str::<Vec<Vec<String>>>(raw.get()) {
            Ok(sets) => Narrowing { sets: sets.into_iter().map(Globs::lenient).collect() },
            Err(_) => {
                tracing::warn!("an initialize carried a malformed `{META_KEY}`; the session gets no tools");
                Narrowing { sets: vec![Globs::default()] }
            }
        }
    }
}

/// The globs of a `tools` query value (`a,b*`): comma-separated, blanks dropped.
pub(crate) fn parse_globs(value: &str) -> Globs {
    Globs::lenient(value.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_string).collect())
}

/// The client's `initialize` with one more glob set in its narrowing; `None` if it is not a
/// JSON object.
pub(crate) fn add_to_initialize(msg: &[u8], globs: &Globs) -> Option<Bytes> {
    let m = rewrite::edit_params(msg, |_, meta| {
        let mut sets: Vec<Value> = meta.get(META_KEY).and_then(|v| serde_json::from_str(v.get()).ok()).unwrap_or_default();
        sets.push(Value::from(globs.patterns().to_vec()));
        meta.insert(META_KEY.into(), rewrite::raw(Value::Array(sets).to_string()));
    })?;
    Some(rewrite::to_bytes(&m))
}

/// `value` percent-encoded for a query string (letters, digits and `-_.*,` kept).
pub(crate) fn query_encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.*,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_travels_in_initialize_and_only_narrows() {
        let init =
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}"#;
        let once = add_to_initialize(init, &parse_globs("a__*, b__echo")).unwrap();
        let twice = add_to_initialize(&once, &parse_globs("*echo")).unwrap();
        let mut m: Members = serde_json::from_slice(&twice).unwrap();
        let mut params = rewrite::members_of(&m, "params");
        let n = Narrowing::take(&mut params);
        assert!(n.allows("a__echo") && n.allows("b__echo"));
        assert!(!n.allows("a__add"), "every set must match");
        assert!(!params.contains_key("_meta"), "the key is gone before members see it");
        m.insert("params".into(), rewrite::nested(&params));
        assert!(Narrowing::default().allows("anything"));
        let mut forged: Members = serde_json::from_str(r#"{"_meta":{"io.github.mcp-bridge/tools":"*"}}"#).unwrap();
        assert!(!Narrowing::take(&mut forged).allows("x"), "a malformed value allows nothing");
        assert_eq!(query_encode("a?b,c*"), "a%3Fb,c*");
    }
}
