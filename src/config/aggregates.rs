//! The `[aggregates.NAME]` tables: one endpoint that merges several servers. An aggregate is
//! a `ServerConfig` whose upstream is `UpstreamSpec::Aggregate`, so every route, session and
//! takeover serves it as it serves a server; its names share one namespace with `servers`.
//!
//! ```toml
//! [aggregates.all]
//! servers = ["echo", "everything"]   # members, in priority order
//! prefix = "server"                  # `everything__echo`; "none" keeps names as they are
//! separator = "__"
//! on_conflict = "error"              # or "first", "round-robin"
//! member_timeout = "5s"
//! [aggregates.all.members.everything]
//! include = ["get-*", "echo"]        # globs on the member's own tool names
//! exclude = ["*-long-*"]
//! required = false                   # true: this member failing fails the list
//! prefix = "ev"                      # instead of the member's server name
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// How a member's names are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// `prefix = "server"`: `member__tool`.
    Server,
    /// `prefix = "none"`: names as the member gives them.
    None,
}

/// What happens when two members publish one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Neither is published, and the collision is logged as an error (and refused at load
    /// where the file alone shows it).
    Error,
    /// The first member in `servers` order wins; the others' are hidden, logged.
    First,
    /// Calls are spread over the healthy members that have it.
    RoundRobin,
}

/// Glob patterns over names (`*` any run, `?` one character, `[…]` a class, `{a,b}` either;
/// globset's syntax), compiled once; empty matches nothing.
#[derive(Debug, Clone, Default)]
pub struct Globs {
    patterns: Vec<String>,
    set: globset::GlobSet,
}

impl PartialEq for Globs {
    fn eq(&self, other: &Globs) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for Globs {}

impl Globs {
    /// Compiles `patterns`; `Err` names the first that is not a glob.
    pub fn new(patterns: Vec<String>) -> Result<Globs, String> {
        let mut set = globset::GlobSetBuilder::new();
        for p in &patterns {
            set.add(globset::Glob::new(p).map_err(|e| format!("`{p}` is not a glob: {e}"))?);
        }
        let set = set.build().map_err(|e| e.to_string())?;
        Ok(Globs { patterns, set })
    }

    /// Compiles patterns a client gave: one that is not a glob matches nothing.
    pub fn lenient(patterns: Vec<String>) -> Globs {
        let valid = patterns.into_iter().filter(|p| globset::Glob::new(p).is_ok()).collect();
        Globs::new(valid).unwrap_or_default()
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn matches(&self, name: &str) -> bool {
        self.set.is_match(name)
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// One member of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's server name.
    pub name: String,
    /// What goes before the separator under `prefix = "server"`.
    pub prefix: String,
    /// Only these tool names, as the member gives them (all when empty).
    pub include: Globs,
    pub exclude: Globs,
    /// This member failing (down, or slower than `member_timeout`) fails the list.
    pub required: bool,
}

impl Member {
    /// Whether the member's own tool `name` passes its include and exclude globs.
    pub fn admits(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.matches(name)) && !self.exclude.matches(name)
    }
}

/// A validated aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateSpec {
    pub members: Vec<Member>,
    pub prefix: Prefix,
    pub separator: String,
    pub on_conflict: OnConflict,
    /// A member slower than this (to initialize, or to list all its pages) is left out.
    pub member_timeout: Duration,
}

/// An aggregate with its members' servers (`S` is `ServerConfig`: this file is a leaf that
/// does not import its parent). Two are equal when their settings are: a member server's own
/// change is reported under that server's name.
#[derive(Debug, Clone)]
pub struct Aggregate<S> {
    pub spec: AggregateSpec,
    /// The members' servers, in `spec.members` order.
    pub servers: Vec<Arc<S>>,
}

impl<S> PartialEq for Aggregate<S> {
    fn eq(&self, o: &Self) -> bool {
        self.spec == o.spec
    }
}

impl<S> Eq for Aggregate<S> {}

/// What the parent builds an aggregate's `ServerConfig` from.
pub(crate) struct Validated<S> {
    pub aggregate: Aggregate<S>,
    pub json_response: bool,
    pub rest: super::rest::Rest,
}

impl AggregateSpec {
    /// The prefix a member's names get, if any.
    pub fn prefix_of(&self, member: usize) -> Option<&str> {
        (self.prefix == Prefix::Server).then(|| self.members[member].prefix.as_str())
    }
}

/// `[aggregates.NAME]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AggregateModel {
    #[serde(default)]
    servers: Vec<String>,
    prefix: Option<String>,
    separator: Option<String>,
    on_conflict: Option<String>,
    member_timeout: Option<String>,
    #[serde(default)]
    members: BTreeMap<String, MemberModel>,
    #[serde(default)]
    json_response: bool,
    rest: Option<super::rest::RestModel>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MemberModel {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    required: bool,
    prefix: Option<String>,
}

/// Whether `s` may be published in a tool name: `[A-Za-z0-9_-]`.
pub(crate) fn publishable(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The aggregates checked against `servers` and added to it (`make` builds the server of
/// one). `Err((key, reason))`.
pub(crate) fn add<S>(
    aggregates: Option<BTreeMap<String, AggregateModel>>,
    servers: &mut BTreeMap<String, Arc<S>>,
    is_aggregate: impl Fn(&S) -> bool,
    make: impl Fn(&str, Validated<S>) -> S,
) -> Result<(), (String, String)> {
    for (name, mut model) in aggregates.unwrap_or_default() {
        let key = format!("aggregates.{name}");
        let alphabet = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !alphabet || name.len() > 128 || name.starts_with('.') {
            return Err((key, "an aggregate name may only hold letters, digits, `.`, `_` and `-`".into()));
        }
        if servers.contains_key(&name) {
            return Err((key, format!("`{name}` is also a server: servers and aggregates share one namespace")));
        }
        let rest = model.rest.take().unwrap_or_default().validate().map_err(|(k, r)| (format!("{key}.{k}"), r))?;
        let json_response = model.json_response;
        let spec = validate(model, &key, |s| servers.get(s).map(|c| is_aggregate(c)))?;
        let members = spec.members.iter().filter_map(|m| servers.get(&m.name).cloned()).collect();
        let server = make(&name, Validated { aggregate: Aggregate { spec, servers: members }, json_response, rest });
        servers.insert(name, Arc::new(server));
    }
    Ok(())
}

/// The table checked; `server(name)` is `None` for no such server, else whether it is an
/// aggregate.
fn validate(m: AggregateModel, key: &str, server: impl Fn(&str) -> Option<bool>) -> Result<AggregateSpec, (String, String)> {
    let err = |k: &str, r: String| Err((format!("{key}{k}"), r));
    let prefix = match m.prefix.as_deref() {
        None | Some("server") => Prefix::Server,
        Some("none") => Prefix::None,
        Some(o) => return err(".prefix", format!("`{o}` is not `server` or `none`")),
    };
    let separator = m.separator.unwrap_or_else(|| "__".into());
    if separator.is_empty() || separator.len() > 8 || !publishable(&separator) {
        return err(".separator", format!("`{separator}` must be 1 to 8 of `A-Z a-z 0-9 _ -`"));
    }
    let on_conflict = match m.on_conflict.as_deref() {
        None | Some("error") => OnConflict::Error,
        Some("first") => OnConflict::First,
        Some("round-robin") => OnConflict::RoundRobin,
        Some(o) => return err(".on_conflict", format!("`{o}` is not `error`, `first` or `round-robin`")),
    };
    let member_timeout = match m.member_timeout.as_deref() {
        None => Duration::from_secs(5),
        Some(v) => super::duration::duration(v).map_err(|r| (format!("{key}.member_timeout"), r))?,
    };
    if m.servers.is_empty() {
        return err(".servers", "lists no server".into());
    }
    if let Some(extra) = m.members.keys().find(|k| !m.servers.contains(k)) {
        return err(&format!(".members.{extra}"), format!("`{extra}` is not in this aggregate's `servers`"));
    }
    let mut options = m.members;
    let mut members: Vec<Member> = Vec::new();
    for s in &m.servers {
        match server(s) {
            None => return err(".servers", format!("`{s}` is not a server")),
            Some(true) => return err(".servers", format!("`{s}` is an aggregate; members are servers")),
            Some(false) => {}
        }
        if members.iter().any(|x| x.name == *s) {
            return err(".servers", format!("`{s}` is listed twice"));
        }
        let o = options.remove(s).unwrap_or_default();
        let prefix = o.prefix.unwrap_or_else(|| s.clone());
        if prefix.is_empty() || !publishable(&prefix) {
            let k = format!(".members.{s}.prefix");
            return err(&k, format!("`{prefix}` may only hold `A-Z a-z 0-9 _ -` (it starts published names)"));
        }
        let globs = |key: &str, patterns: Vec<String>| Globs::new(patterns).map_err(|r| (format!(".members.{s}.{key}"), r));
        let (include, exclude) = match (globs("include", o.include), globs("exclude", o.exclude)) {
            (Ok(i), Ok(e)) => (i, e),
            (Err((k, r)), _) | (_, Err((k, r))) => return err(&k, r),
        };
        members.push(Member { name: s.clone(), prefix, include, exclude, required: o.required });
    }
    let spec = AggregateSpec { members, prefix, separator, on_conflict, member_timeout };
    knowable_conflict(&spec).map_or(Ok(spec), |r| err("", r))
}

/// A collision the file alone shows, under `on_conflict = "error"`: two prefixes of which one
/// (with the separator) starts the other (`a` + `b__c` and `a__b` + `c` are both `a__b__c`),
/// or under `prefix = "none"` one exact name included by two members.
fn knowable_conflict(spec: &AggregateSpec) -> Option<String> {
    if spec.on_conflict != OnConflict::Error {
        return None;
    }
    let sep = &spec.separator;
    for (i, a) in spec.members.iter().enumerate() {
        for b in &spec.members[i + 1..] {
            let (pa, pb) = (format!("{}{sep}", a.prefix), format!("{}{sep}", b.prefix));
            if spec.prefix == Prefix::Server && (pa.starts_with(&pb) || pb.starts_with(&pa)) {
                let (x, y) = (&a.name, &b.name);
                return Some(format!(
                    "the prefixes `{pa}` ({x}) and `{pb}` ({y}) can publish the same name; set `members.NAME.prefix`, or `on_conflict`"
                ));
            }
            if spec.prefix == Prefix::None {
                let exact = |g: &String| !g.contains(['*', '?']);
                if let Some(n) = a.include.patterns().iter().filter(|g| exact(g)).find(|g| b.include.patterns().contains(g)) {
                    let (x, y) = (&a.name, &b.name);
                    return Some(format!(
                        "`{n}` is included from both `{x}` and `{y}` with `prefix = \"none\"`; set `on_conflict` or exclude it from one"
                    ));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<crate::config::Config, String> {
        let servers = "[servers.a]\ncommand = \"x\"\n[servers.b]\nurl = \"http://127.0.0.1:1/mcp\"\n";
        crate::config::Config::parse(&format!("{servers}{text}"), "t.toml", false).map_err(|e| e.to_string())
    }

    #[test]
    fn an_aggregate_is_a_server_with_its_members_in_order() {
        let c = parse(
            "[aggregates.all]\nservers = [\"b\", \"a\"]\n[aggregates.all.members.a]\ninclude = [\"x*\"]\nrequired = true\n",
        )
        .unwrap();
        let crate::config::UpstreamSpec::Aggregate(agg) = &c.servers["all"].upstream else { panic!("an aggregate") };
        let names: Vec<&str> = agg.spec.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(agg.servers.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(
            (agg.spec.prefix, agg.spec.on_conflict, agg.spec.separator.as_str()),
            (Prefix::Server, OnConflict::Error, "__")
        );
        assert_eq!(agg.spec.member_timeout, Duration::from_secs(5));
        assert!(agg.spec.members[1].required && agg.spec.members[1].admits("xy") && !agg.spec.members[1].admits("y"));
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("[aggregates.all]\nservers = [\"a\"]\n[aggregates.all.members.b]\n").unwrap_err();
        assert!(e.contains("aggregates.all.members.b") && e.contains("not in this aggregate"), "{e}");
        let e = parse("[aggregates.all]\nservers = [\"a\"]\non_conflict = \"last\"\n").unwrap_err();
        assert!(e.contains("aggregates.all.on_conflict"), "{e}");
        let e = parse("[aggregates.all]\nservers = []\n").unwrap_err();
        assert!(e.contains("aggregates.all.servers"), "{e}");
        let e = parse("[aggregates.x]\nservers = [\"a\"]\n[aggregates.y]\nservers = [\"x\"]\n").unwrap_err();
        assert!(e.contains("is an aggregate"), "{e}");
        let e = parse("[aggregates.all]\nservers = [\"a\"]\nseparator = \".\"\n").unwrap_err();
        assert!(e.contains("aggregates.all.separator"), "{e}");
    }

    #[test]
    fn globs_match_stars_and_marks() {
        let glob_match = |p: &str, n: &str| Globs::new(vec![p.to_string()]).expect("a glob").matches(n);
        assert!(glob_match("get-*", "get-sum"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("e?ho", "echo"));
        assert!(!glob_match("echo", "echoes"));
        assert!(glob_match("*-long-*", "trigger-long-running"));
        assert!(!glob_match("x", ""));
        assert!(Globs::new(vec!["a[".into()]).is_err(), "a pattern that is not a glob is refused");
        assert!(!Globs::lenient(vec!["a[".into()]).matches("a["), "a client's bad pattern matches nothing");
    }
}
