//! What a client may put into a metric label or a kept record: method labels come from the
//! closed set of MCP methods (every revision, 2024-11-05 to 2026-07-28), anything else is
//! `other`; strings kept for display (the admin timeline) are clipped.

/// The label for a method a client sent: the method itself if MCP defines it, else `other`.
/// A label set is never pruned, so a client-chosen string must never become one.
pub(crate) fn method_label(method: &str) -> &'static str {
    crate::protocol::method::ALL.iter().find(|m| **m == method).copied().unwrap_or("other")
}

/// Longest client string kept for display, in bytes.
pub(super) const CLIP: usize = 128;

/// `s` cut to at most [`CLIP`] bytes (on a character boundary), marked with `…` when cut.
pub(crate) fn clip(s: &str) -> String {
    match cut(s) {
        None => s.to_string(),
        Some(head) => format!("{head}…"),
    }
}

/// Whether `kept` is `clip(s)`, without making it.
pub(crate) fn is_clip_of(kept: &str, s: &str) -> bool {
    match cut(s) {
        None => kept == s,
        Some(head) => kept.strip_suffix('…') == Some(head),
    }
}

/// What `clip` keeps of a string longer than [`CLIP`] bytes; `None` for one that is not cut.
fn cut(s: &str) -> Option<&str> {
    if s.len() <= CLIP {
        return None;
    }
    let mut end = CLIP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(&s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_methods_become_labels() {
        assert_eq!(method_label("tools/call"), "tools/call");
        assert_eq!(method_label("notifications/tasks/status"), "notifications/tasks/status");
        assert_eq!(method_label("Tools/Call"), "other");
        assert_eq!(method_label(&"x".repeat(1 << 20)), "other");
    }

    #[test]
    fn clipping_keeps_char_boundaries() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        let c = clip(&long);
        assert!(c.len() <= CLIP + '…'.len_utf8() && c.ends_with('…'), "{c}");
        assert_eq!(clip(&"a".repeat(CLIP)), "a".repeat(CLIP));
        for s in ["short", &long, &"a".repeat(CLIP), &"a".repeat(CLIP + 1)] {
            assert!(is_clip_of(&clip(s), s), "{s}");
        }
        assert!(!is_clip_of("shor", "short") && !is_clip_of(&clip(&long), &"e".repeat(200)));
        assert!(!is_clip_of(&clip(&"a".repeat(CLIP + 1)), &"a".repeat(CLIP)), "a cut string is not the uncut one");
    }
}
