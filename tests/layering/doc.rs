//! What ARCHITECTURE.md says the layering is: the `## Floors` table (floor, modules, role) and
//! the rules of `## Dependency invariants` (each written after `Rule:` in a code span).
//!
//! Rule forms:
//! - `forbid PATTERN… in SCOPE… [except SCOPE…] [allow PATTERN…]`: no path matching a PATTERN
//!   (`redis`, `crate::cluster`, `std::fs`; or `type Outer<Inner>` for a generic type) in a file
//!   of the SCOPEs, unless it also matches an `allow` PATTERN. A SCOPE is `*` (all of `src/`), a
//!   module path as in the floors table (`cluster`, `config/tls`), or `floor:A-B` / `floor:N`.
//! - `max N lines in DIR…`: no `.rs` file under the DIRs (relative to the root) over N lines.
//! - `no inner cycle in SCOPE…`: in the file graph, a file's imports of its own parent modules
//!   count too for the SCOPEs' files, so a module there and its parts form no ring either.
//! - `every module listed`: every file in `src/` belongs to a row of the floors table, and every
//!   module the table names exists.

/// One row's module: `session`, `config/tls`, `bin/mcp-echo-server`.
#[derive(Clone, Debug)]
pub(crate) struct Floors {
    /// (module path, floor), in table order.
    pub(crate) entries: Vec<(String, u32)>,
    /// Floor → what the table says it is.
    pub(crate) roles: Vec<(u32, String)>,
}

impl Floors {
    /// The row `file` (relative to `src/`) belongs to: the longest module path that is the file or
    /// one of its ancestors.
    pub(crate) fn of(&self, file: &str) -> Option<(&str, u32)> {
        let stem = file.strip_suffix(".rs").unwrap_or(file);
        let stem = stem.strip_suffix("/mod").unwrap_or(stem);
        self.entries
            .iter()
            .filter(|(m, _)| stem == m || stem.starts_with(&format!("{m}/")))
            .max_by_key(|(m, _)| m.len())
            .map(|(m, f)| (m.as_str(), *f))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scope {
    All,
    Module(String),
    Floors(u32, u32),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Pattern {
    Path(Vec<String>),
    Type(String),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Rule {
    Forbid { text: String, patterns: Vec<Pattern>, scopes: Vec<Scope>, except: Vec<Scope>, allow: Vec<Pattern> },
    MaxLines { text: String, max: usize, dirs: Vec<String> },
    NoInnerCycle { text: String, scopes: Vec<Scope> },
    EveryModuleListed,
}

/// The lines of section `## title` (up to the next `## `).
fn section<'a>(doc: &'a str, title: &str) -> Option<Vec<&'a str>> {
    let mut lines = doc.lines().skip_while(|l| l.trim() != format!("## {title}"));
    lines.next()?;
    Some(lines.take_while(|l| !l.starts_with("## ")).collect())
}

/// The contents of each `code span` in `text`.
pub(crate) fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

pub(crate) fn floors(doc: &str) -> Result<Floors, String> {
    let lines = section(doc, "Floors").ok_or("ARCHITECTURE.md has no `## Floors` section")?;
    let mut floors = Floors { entries: Vec::new(), roles: Vec::new() };
    for line in lines.iter().filter(|l| l.trim_start().starts_with('|')) {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        let Some(Ok(floor)) = cells.first().map(|c| c.parse::<u32>()) else { continue };
        let modules = cells.get(1).ok_or_else(|| format!("floors row without modules: {line}"))?;
        for m in code_spans(modules) {
            floors.entries.push((m.trim_end_matches(".rs").trim_end_matches('/').to_string(), floor));
        }
        floors.roles.push((floor, cells.get(2).unwrap_or(&"").to_string()));
    }
    if floors.entries.is_empty() {
        return Err("the `## Floors` table lists no module".into());
    }
    Ok(floors)
}

fn pattern(word: &str) -> Pattern {
    Pattern::Path(word.split("::").map(str::to_string).collect())
}

fn scope(word: &str) -> Result<Scope, String> {
    if word == "*" {
        return Ok(Scope::All);
    }
    if let Some(range) = word.strip_prefix("floor:") {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let n = |s: &str| s.parse::<u32>().map_err(|_| format!("bad floor range `{word}`"));
        return Ok(Scope::Floors(n(a)?, n(b)?));
    }
    Ok(Scope::Module(word.trim_end_matches('/').to_string()))
}

pub(crate) fn parse_rule(text: &str) -> Result<Rule, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["every", "module", "listed"] => Ok(Rule::EveryModuleListed),
        ["no", "inner", "cycle", "in", scopes @ ..] if !scopes.is_empty() => {
            Ok(Rule::NoInnerCycle { text: text.to_string(), scopes: scopes.iter().map(|s| scope(s)).collect::<Result<_, _>>()? })
        }
        ["max", n, "lines", "in", dirs @ ..] if !dirs.is_empty() => Ok(Rule::MaxLines {
            text: text.to_string(),
            max: n.parse().map_err(|_| format!("bad line count in `{text}`"))?,
            dirs: dirs.iter().map(|d| d.trim_end_matches('/').to_string()).collect(),
        }),
        ["forbid", rest @ ..] => {
            let mut part = "forbid";
            let (mut patterns, mut scopes, mut except, mut allow) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut words = rest.iter();
            while let Some(&w) = words.next() {
                match w {
                    "in" | "except" | "allow" => part = w,
                    "type" => {
                        let t = words.next().ok_or_else(|| format!("`type` without a type in `{text}`"))?;
                        let p = Pattern::Type(t.to_string());
                        if part == "allow" {
                            allow.push(p)
                        } else {
                            patterns.push(p)
                        }
                    }
                    _ => match part {
                        "forbid" => patterns.push(pattern(w)),
                        "in" => scopes.push(scope(w)?),
                        "except" => except.push(scope(w)?),
                        _ => allow.push(pattern(w)),
                    },
                }
            }
            if patterns.is_empty() || scopes.is_empty() {
                return Err(format!("`{text}`: a forbid rule needs patterns and `in` scopes"));
            }
            Ok(Rule::Forbid { text: text.to_string(), patterns, scopes, except, allow })
        }
        _ => Err(format!("unknown rule `{text}`")),
    }
}

/// Every rule of `## Dependency invariants`: the code spans on lines that start with `Rule:`.
pub(crate) fn rules(doc: &str) -> Result<Vec<Rule>, String> {
    let lines = section(doc, "Dependency invariants").ok_or("ARCHITECTURE.md has no `## Dependency invariants` section")?;
    let mut rules = Vec::new();
    for line in lines {
        let line = line.trim_start().trim_start_matches("- ");
        if let Some(rest) = line.strip_prefix("Rule:") {
            for span in code_spans(rest) {
                rules.push(parse_rule(span)?);
            }
        }
    }
    if rules.is_empty() {
        return Err("`## Dependency invariants` has no `Rule:` line".into());
    }
    Ok(rules)
}
