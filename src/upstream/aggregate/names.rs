//! Published names and merging. A tool or prompt is published as `prefix` + separator + its
//! name (or as it is, with `prefix = "none"`), made to match `[A-Za-z0-9_-]{1,64}`: other
//! characters become `_`, and a name over 64 is cut and ends with a stable hash of the full
//! name, so every instance of a cluster publishes the same one. Resources merge by URI and
//! templates by URI template, unrenamed. Two members publishing one name follow
//! `on_conflict`, and a collision is always logged with what collides.

use std::collections::HashMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::kind::Kind;
use crate::config::aggregates::{publishable, AggregateSpec, OnConflict};

/// The longest published tool name clients and models accept.
const MAX_NAME: usize = 64;

/// Published name → the members that have it, with their own name for it, in member order.
pub(super) type Table = HashMap<String, Vec<(usize, String)>>;

/// A merged list: the items to publish (renamed) and the routes back.
pub(super) struct Merged {
    pub items: Vec<Value>,
    pub table: Table,
}

/// The name `name` of a member is published under.
pub(super) fn publish(prefix: Option<&str>, separator: &str, name: &str) -> String {
    let full = match prefix {
        Some(p) => format!("{p}{separator}{name}"),
        None => name.to_string(),
    };
    if !full.is_empty() && full.len() <= MAX_NAME && publishable(&full) {
        return full;
    }
    let mut out: String = full.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if out.len() > MAX_NAME || out.is_empty() {
        let hash = hex::encode(&Sha256::digest(full.as_bytes())[..4]);
        out.truncate(MAX_NAME - hash.len() - 1);
        out = format!("{out}_{hash}");
    }
    out
}

/// Merges the members' lists of `kind` (in member order) under `spec`'s names and policy.
pub(super) fn merge(kind: Kind, spec: &AggregateSpec, aggregate: &str, lists: Vec<(usize, Vec<Value>)>) -> Merged {
    let renamed = matches!(kind, Kind::Tools | Kind::Prompts);
    let mut order: Vec<String> = Vec::new();
    let mut found: HashMap<String, Vec<(usize, String, Value)>> = HashMap::new();
    for (m, items) in lists {
        let member = &spec.members[m];
        for mut item in items {
            let Some(own) = item.get(kind.key()).and_then(Value::as_str).map(str::to_string) else { continue };
            if kind == Kind::Tools && !member.admits(&own) {
                continue;
            }
            let published = if renamed { publish(spec.prefix_of(m), &spec.separator, &own) } else { own.clone() };
            if renamed {
                let plain = spec.prefix_of(m).map_or_else(|| own.clone(), |p| format!("{p}{}{own}", spec.separator));
                if published != plain {
                    tracing::info!(aggregate, member = member.name, "{} `{own}` is published as `{published}`", kind.field());
                }
                item[kind.key()] = Value::String(published.clone());
            }
            let entry = found.entry(published.clone()).or_default();
            if entry.is_empty() {
                order.push(published);
            }
            entry.push((m, own, item));
        }
    }
    let mut merged = Merged { items: Vec::new(), table: Table::new() };
    for name in order {
        let Some(mut have) = found.remove(&name) else { continue };
        if have.len() > 1 {
            let who: Vec<String> = have.iter().map(|(m, own, _)| format!("`{}` ({own})", spec.members[*m].name)).collect();
            let who = who.join(", ");
            match spec.on_conflict {
                OnConflict::Error => {
                    tracing::error!(
                        aggregate,
                        "{} `{name}` is published by {who}; with on_conflict = \"error\" none of them is",
                        kind.field()
                    );
                    continue;
                }
                OnConflict::First => {
                    tracing::warn!(
                        aggregate,
                        "{} `{name}` is published by {who}; on_conflict = \"first\" keeps the first",
                        kind.field()
                    );
                    have.truncate(1);
                }
                OnConflict::RoundRobin => {
                    tracing::debug!(aggregate, "{} `{name}` is published by {who}; calls go round-robin", kind.field());
                }
            }
        }
        let routes = have.iter().map(|(m, own, _)| (*m, own.clone())).collect();
        if let Some((_, _, item)) = have.into_iter().next() {
            merged.items.push(item);
        }
        merged.table.insert(name, routes);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::aggregates::{Globs, Member, Prefix};
    use serde_json::json;

    fn spec(prefix: Prefix, on_conflict: OnConflict) -> AggregateSpec {
        let member = |name: &str, include: &[&str]| Member {
            name: name.into(),
            prefix: name.into(),
            include: Globs::new(include.iter().map(|s| s.to_string()).collect()).expect("globs"),
            exclude: Globs::new(vec!["hidden".into()]).expect("globs"),
            required: false,
        };
        AggregateSpec {
            members: vec![member("a", &[]), member("b", &["echo", "get-*"])],
            prefix,
            separator: "__".into(),
            on_conflict,
            member_timeout: std::time::Duration::from_secs(1),
        }
    }

    fn tools(names: &[&str]) -> Vec<Value> {
        names.iter().map(|n| json!({"name": n, "inputSchema": {"type": "object"}})).collect()
    }

    fn names(m: &Merged) -> Vec<&str> {
        m.items.iter().filter_map(|t| t["name"].as_str()).collect()
    }

    #[test]
    fn names_are_prefixed_sanitized_and_shortened_stably() {
        assert_eq!(publish(Some("ev"), "__", "get-sum"), "ev__get-sum");
        assert_eq!(publish(None, "__", "weather.get"), "weather_get");
        let long = "x".repeat(80);
        let a = publish(Some("srv"), "__", &long);
        assert_eq!(a.len(), 64);
        assert_eq!(a, publish(Some("srv"), "__", &long), "stable");
        assert_ne!(a, publish(Some("srv"), "__", &format!("{long}y")), "the hash tells long names apart");
        assert!(publishable(&a));
    }

    #[test]
    fn prefixed_lists_merge_with_filters() {
        let s = spec(Prefix::Server, OnConflict::Error);
        let m = merge(Kind::Tools, &s, "agg", vec![(0, tools(&["echo", "hidden"])), (1, tools(&["echo", "add", "get-sum"]))]);
        assert_eq!(names(&m), ["a__echo", "b__echo", "b__get-sum"]);
        assert_eq!(m.table["b__get-sum"], vec![(1, "get-sum".to_string())]);
    }

    #[test]
    fn collisions_follow_the_policy() {
        let lists = || vec![(0, tools(&["echo", "add"])), (1, tools(&["echo"]))];
        let m = merge(Kind::Tools, &spec(Prefix::None, OnConflict::Error), "agg", lists());
        assert_eq!(names(&m), ["add"], "an error leaves the colliding name out");
        let m = merge(Kind::Tools, &spec(Prefix::None, OnConflict::First), "agg", lists());
        assert_eq!((names(&m), &m.table["echo"]), (vec!["echo", "add"], &vec![(0, "echo".to_string())]));
        let m = merge(Kind::Tools, &spec(Prefix::None, OnConflict::RoundRobin), "agg", lists());
        assert_eq!(m.table["echo"], vec![(0, "echo".to_string()), (1, "echo".to_string())]);
        let uris = |u: &[&str]| u.iter().map(|u| json!({"uri": u, "name": "x"})).collect::<Vec<_>>();
        let r = merge(
            Kind::Resources,
            &spec(Prefix::Server, OnConflict::First),
            "agg",
            vec![(0, uris(&["m://1"])), (1, uris(&["m://1", "m://2"]))],
        );
        assert_eq!(r.items.len(), 2, "resources merge by URI, unrenamed");
        assert_eq!(r.table["m://2"], vec![(1, "m://2".to_string())]);
    }
}
