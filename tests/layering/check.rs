//! The checks: no import from a lower floor to a higher one, no cycle (between the floors
//! table's modules, and between files), and the dependency invariants. Every problem is
//! collected; the caller prints them all and fails once.

use std::collections::{BTreeMap, BTreeSet};

use crate::doc::{Floors, Pattern, Rule, Scope};
use crate::tree::Tree;

/// Problems, by kind, in the order they are printed.
#[derive(Default, Debug)]
pub(crate) struct Problems {
    pub(crate) upward: Vec<String>,
    pub(crate) cycles: Vec<String>,
    pub(crate) invariants: Vec<String>,
    pub(crate) other: Vec<String>,
}

impl Problems {
    pub(crate) fn count(&self) -> usize {
        self.upward.len() + self.cycles.len() + self.invariants.len() + self.other.len()
    }
}

/// The node a file belongs to in the module graph: its floors-table row, or its first path
/// component when no row lists it.
pub(crate) fn unit(floors: &Floors, file: &str) -> String {
    match floors.of(file) {
        Some((m, _)) => m.to_string(),
        None => {
            let stem = file.trim_end_matches(".rs");
            stem.split('/').next().unwrap_or(stem).to_string()
        }
    }
}

/// One upward import: a file's uses of another file from a higher floor.
struct Upward {
    line: usize,
    /// The shortest module path used: `crate::session`.
    module: String,
    floors: (u32, u32),
    items: BTreeSet<String>,
    test_only: bool,
}

/// Imports from a lower floor to a higher one, test code included; one line per file and
/// file imported, at its first use, naming what is used.
pub(crate) fn upward(tree: &Tree, floors: &Floors, out: &mut Problems) {
    let mut found: BTreeMap<(String, String), Upward> = BTreeMap::new();
    for e in &tree.edges {
        let (Some((_, from)), Some((_, to))) = (floors.of(&e.from), floors.of(&e.to)) else { continue };
        if to <= from {
            continue;
        }
        let u = found.entry((e.from.clone(), e.to.clone())).or_insert_with(|| Upward {
            line: e.line,
            module: e.module.clone(),
            floors: (from, to),
            items: BTreeSet::new(),
            test_only: true,
        });
        u.line = u.line.min(e.line);
        if e.module.len() < u.module.len() {
            u.module = e.module.clone();
        }
        u.test_only &= e.test;
        u.items.insert(e.via.clone());
    }
    for ((file, to_file), u) in found {
        let (to_mod, from_mod) = (unit(floors, &to_file), unit(floors, &file));
        let items: BTreeSet<&str> = u
            .items
            .iter()
            .map(|v| v.strip_prefix(&format!("{}::", u.module)).map_or("self", |i| i.split("::").next().unwrap_or(i)))
            .collect();
        let test = if u.test_only { ", test code" } else { "" };
        let (from, to) = u.floors;
        let items: Vec<&str> = items.into_iter().collect();
        out.upward.push(format!(
            "src/{file}:{}: imports {} ({to_mod}, floor {to}) from floor {from} ({from_mod}{test}): {}",
            u.line,
            u.module,
            items.join(", ")
        ));
    }
}

/// Strongly connected components with more than one node (Tarjan).
pub(crate) fn sccs(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w.as_str()) {
                visit(t, w);
                let lw = t.low[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w.as_str()) {
                let iw = t.index[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t =
        T { g: graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// A shortest cycle through `start` inside `comp`, as `a → b → a`.
pub(crate) fn chain(graph: &BTreeMap<String, BTreeSet<String>>, comp: &[String], start: &str) -> String {
    let inside: BTreeSet<&str> = comp.iter().map(String::as_str).collect();
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flatten().map(String::as_str) {
            if w == start {
                let mut path = vec![start, v];
                let mut at = v;
                while at != start {
                    at = prev[at];
                    path.push(at);
                }
                path.reverse();
                return path.join(" → ");
            }
            if inside.contains(w) && !prev.contains_key(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    start.to_string()
}

/// True when `file` is part of the module `ancestor` is (`session/registry.rs` of `session.rs`).
fn within(file: &str, ancestor: &str) -> bool {
    let stem = ancestor.trim_end_matches(".rs");
    let stem = stem.strip_suffix("/mod").unwrap_or(stem);
    file.starts_with(&format!("{stem}/")) || ancestor == "lib.rs" || ancestor == "main.rs"
}

/// The module graph (`by_unit`) or the file graph, without test code and self-edges. In the
/// file graph a file's imports of its own ancestors (`super::Session` in `session/registry.rs`)
/// are left out: a module and the files it is made of are one module, checked as such in the
/// module graph; siblings and cousins importing each other in a ring are a cycle. Files in a
/// `strict` scope (`no inner cycle in …`) keep those edges too.
pub(crate) fn graph(tree: &Tree, floors: &Floors, by_unit: bool, strict: &[Scope]) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in tree.edges.iter().filter(|e| !e.test) {
        let (from, to) = if by_unit { (unit(floors, &e.from), unit(floors, &e.to)) } else { (e.from.clone(), e.to.clone()) };
        if !by_unit && within(&from, &to) && !strict.iter().any(|s| in_scope(floors, &from, s)) {
            continue;
        }
        if from != to {
            g.entry(from).or_default().insert(to);
        }
    }
    g
}

/// Cycles between modules and between files; `rules` gives the scopes with no inner cycle.
pub(crate) fn cycles(tree: &Tree, floors: &Floors, rules: &[Rule], out: &mut Problems) {
    let strict: Vec<Scope> = rules
        .iter()
        .flat_map(|r| match r {
            Rule::NoInnerCycle { scopes, .. } => scopes.clone(),
            _ => Vec::new(),
        })
        .collect();
    for (by_unit, what) in [(true, "modules"), (false, "files")] {
        let g = graph(tree, floors, by_unit, &strict);
        for comp in sccs(&g) {
            // A shortest cycle through each member, each ring once.
            let mut rings: Vec<String> = Vec::new();
            let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
            for start in &comp {
                let ring = chain(&g, &comp, start);
                let mut key: Vec<String> = ring.split(" → ").skip(1).map(str::to_string).collect();
                key.sort();
                if seen.insert(key) {
                    rings.push(ring);
                }
            }
            out.cycles.push(format!("cycle of {} {what} [{}]:\n      {}", comp.len(), comp.join(", "), rings.join("\n      ")));
        }
    }
}

fn in_scope(floors: &Floors, file: &str, scope: &Scope) -> bool {
    match scope {
        Scope::All => true,
        Scope::Module(m) => {
            let stem = file.trim_end_matches(".rs");
            stem == m || stem.starts_with(&format!("{m}/"))
        }
        Scope::Floors(a, b) => floors.of(file).is_some_and(|(_, f)| (*a..=*b).contains(&f)),
    }
}

fn matches_path(p: &Pattern, path: &[String]) -> bool {
    matches!(p, Pattern::Path(segs) if path.len() >= segs.len() && path[..segs.len()] == segs[..])
}

/// `files`: every `.rs` file under the root (path relative to it) with its line count.
pub(crate) fn rules(tree: &Tree, floors: &Floors, rules: &[Rule], files: &BTreeMap<String, usize>, out: &mut Problems) {
    for rule in rules {
        match rule {
            Rule::Forbid { text, patterns, scopes, except, allow } => {
                // (file) → (first line, what is named, uses)
                let mut found: BTreeMap<&str, (usize, BTreeSet<String>, usize)> = BTreeMap::new();
                for f in &tree.files {
                    let inside = scopes.iter().any(|s| in_scope(floors, &f.file, s));
                    if !inside || except.iter().any(|s| in_scope(floors, &f.file, s)) {
                        continue;
                    }
                    let mut hits: Vec<(usize, String)> = Vec::new();
                    for r in &f.scan.refs {
                        let Some(Pattern::Path(p)) = patterns.iter().find(|p| matches_path(p, &r.path)) else { continue };
                        if !allow.iter().any(|a| matches_path(a, &r.path)) {
                            hits.push((r.line, r.path[..(p.len() + 1).min(r.path.len())].join("::")));
                        }
                    }
                    for s in f.scan.shapes.iter().filter(|s| patterns.contains(&Pattern::Type(s.text.clone()))) {
                        hits.push((s.line, s.text.clone()));
                    }
                    hits.sort();
                    hits.dedup();
                    for (line, what) in hits {
                        let entry = found.entry(&f.file).or_insert((line, BTreeSet::new(), 0));
                        entry.0 = entry.0.min(line);
                        entry.1.insert(what);
                        entry.2 += 1;
                    }
                }
                for (file, (line, what, uses)) in found {
                    let what: Vec<String> = what.into_iter().collect();
                    let uses = if uses == 1 { "1 use".to_string() } else { format!("{uses} uses") };
                    out.invariants.push(format!("src/{file}:{line}: {} ({uses}) breaks `{text}`", what.join(", ")));
                }
            }
            Rule::MaxLines { text, max, dirs } => {
                for (file, lines) in files {
                    if *lines > *max && dirs.iter().any(|d| file.starts_with(&format!("{d}/"))) {
                        out.invariants.push(format!("{file}: {lines} lines breaks `{text}`"));
                    }
                }
            }
            Rule::NoInnerCycle { .. } => {} // checked with the cycles
            Rule::EveryModuleListed => {
                let src: Vec<&str> = files.keys().filter_map(|f| f.strip_prefix("src/")).collect();
                for f in &src {
                    if floors.of(f).is_none() {
                        out.invariants.push(format!("src/{f}: no row of the floors table lists it"));
                    }
                }
                for (m, floor) in &floors.entries {
                    if !src.iter().any(|f| floors.of(f).is_some_and(|(e, _)| e == m)) {
                        out.invariants.push(format!("the floors table lists `{m}` (floor {floor}), which is no module in src/"));
                    }
                }
            }
        }
    }
    for o in &tree.orphans {
        out.other.push(format!("src/{o}: no `mod` declaration reaches it"));
    }
    out.other.extend(tree.errors.iter().cloned());
}

/// The module graph by floor, each import with its floor, upward ones marked; with `files`, each
/// file's imports as well.
pub(crate) fn render(tree: &Tree, floors: &Floors, files: bool) -> String {
    let mut s = String::new();
    let floor_of = |u: &str| floors.entries.iter().find(|(m, _)| m == u).map(|(_, f)| *f);
    let mut units: BTreeMap<(u32, String), BTreeMap<String, (usize, bool)>> = BTreeMap::new();
    for f in &tree.files {
        let u = unit(floors, &f.file);
        units.entry((floor_of(&u).unwrap_or(0), u)).or_default();
    }
    for e in &tree.edges {
        let (from, to) = (unit(floors, &e.from), unit(floors, &e.to));
        if from != to {
            let entry = units.entry((floor_of(&from).unwrap_or(0), from)).or_default().entry(to).or_insert((0, true));
            entry.0 += 1;
            entry.1 &= e.test;
        }
    }
    let mut last = None;
    for ((floor, u), imports) in &units {
        if last != Some(*floor) {
            let role = floors.roles.iter().find(|(f, _)| f == floor).map_or("not in the floors table", |(_, r)| r.as_str());
            s.push_str(&format!("floor {floor}: {role}\n"));
            last = Some(*floor);
        }
        s.push_str(&format!("  {u}\n"));
        for (to, (n, test_only)) in imports {
            let tf = floor_of(to).unwrap_or(0);
            let mark = if tf > *floor { "  ▲ UPWARD" } else { "" };
            let test = if *test_only { " (tests only)" } else { "" };
            let refs = if *n == 1 { "1 ref".to_string() } else { format!("{n} refs") };
            s.push_str(&format!("    → {to} (floor {tf}, {refs}){test}{mark}\n"));
        }
        if files {
            for f in tree.files.iter().filter(|f| unit(floors, &f.file) == *u) {
                let targets: BTreeSet<(&str, bool)> =
                    tree.edges.iter().filter(|e| e.from == f.file).map(|e| (e.to.as_str(), e.test)).collect();
                let list: Vec<String> = targets
                    .iter()
                    .filter(|(t, test)| !*test || !targets.contains(&(*t, false)))
                    .map(|(t, test)| {
                        let up = floors.of(t).map(|x| x.1) > floors.of(&f.file).map(|x| x.1);
                        format!("{t}{}{}", if *test { " (test)" } else { "" }, if up { " ▲" } else { "" })
                    })
                    .collect();
                s.push_str(&format!("      {} [{}] → {}\n", f.file, f.krate, list.join(", ")));
            }
        }
    }
    s
}
