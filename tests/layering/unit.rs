//! Tests of the scanner itself on small inline crates, so the layering test cannot pass by
//! seeing nothing: group imports, `super::` and `self::`, inline paths, aliases, macro
//! arguments, `#[path]`, test code, cycles, floors and the rules read from a document.

use std::collections::{BTreeMap, BTreeSet};

use crate::check::{self, Problems};
use crate::doc::{self, Pattern, Rule, Scope};
use crate::tree::{self, Tree};

fn crate_of(files: &[(&str, &str)]) -> Tree {
    let src: BTreeMap<String, String> = files.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect();
    tree::build(&src, "mylib")
}

/// The (from, to) file pairs, test edges marked with a trailing `(test)`.
fn edges(t: &Tree) -> BTreeSet<(String, String)> {
    t.edges.iter().map(|e| (e.from.clone(), format!("{}{}", e.to, if e.test { " (test)" } else { "" }))).collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

const LIB: &str = "mod a;\nmod b;\nmod c;\npub use a::Thing;\n";

#[test]
fn a_group_import_names_each_module() {
    let t = crate_of(&[("lib.rs", LIB), ("a.rs", "use crate::{b, c::X};\n"), ("b.rs", ""), ("c.rs", "pub struct X;\n")]);
    let e = edges(&t);
    assert!(e.contains(&pair("a.rs", "b.rs")), "{e:?}");
    assert!(e.contains(&pair("a.rs", "c.rs")), "{e:?}");
    assert!(e.contains(&pair("lib.rs", "a.rs")), "a re-export is an import: {e:?}");
    assert!(!e.contains(&pair("lib.rs", "b.rs")), "declaring a child is not an import: {e:?}");
    assert!(t.errors.is_empty() && t.orphans.is_empty(), "{:?} {:?}", t.errors, t.orphans);
}

#[test]
fn super_and_self_resolve_to_absolute_modules() {
    let t = crate_of(&[
        ("lib.rs", LIB),
        ("a.rs", "mod inner;\npub struct Thing;\n"),
        ("a/inner.rs", "use super::Thing;\nuse super::super::c::X;\nuse self::deep::Y;\nmod deep { pub struct Y; }\n"),
        ("b.rs", ""),
        ("c.rs", ""),
    ]);
    let e = edges(&t);
    assert!(e.contains(&pair("a/inner.rs", "a.rs")), "{e:?}");
    assert!(e.contains(&pair("a/inner.rs", "c.rs")), "{e:?}");
    assert_eq!(e.iter().filter(|(f, _)| f == "a/inner.rs").count(), 2, "an inline module is its file: {e:?}");
}

#[test]
fn inline_paths_aliases_and_macro_arguments_count() {
    let a = "use crate::b;\nfn f() { crate::c::go(); b::inner::run(); tracing::info!(\"{}\", crate::d::NAME); }\n";
    let t = crate_of(&[
        ("lib.rs", "mod a;\npub mod b;\nmod c;\nmod d;\n"),
        ("a.rs", a),
        ("b.rs", "pub mod inner;\n"),
        ("b/inner.rs", "pub fn run() {}\n"),
        ("c.rs", ""),
        ("d.rs", ""),
    ]);
    let e = edges(&t);
    for to in ["b.rs", "b/inner.rs", "c.rs", "d.rs"] {
        assert!(e.contains(&pair("a.rs", to)), "a.rs → {to} missing: {e:?}");
    }
    let redis = t.files.iter().find(|f| f.file == "a.rs").unwrap().scan.refs.iter().any(|r| r.path == ["tracing", "info"]);
    assert!(redis, "extern paths are kept as written");
}

#[test]
fn path_attributes_binaries_and_test_code() {
    let main = "#[path = \"bin/tool.rs\"]\nmod tool;\nuse mylib::a::Thing;\nfn main() { tool::run(); }\n";
    let a = "pub struct Thing;\n#[cfg(test)]\nmod tests { use crate::b::X; }\n#[cfg(test)]\nmod more;\n";
    let t = crate_of(&[
        ("lib.rs", LIB),
        ("main.rs", main),
        ("bin/tool.rs", "pub fn run() {}\n"),
        ("a.rs", a),
        ("a/more.rs", "use crate::c::Y;\n"),
        ("b.rs", ""),
        ("c.rs", ""),
    ]);
    let e = edges(&t);
    assert!(e.contains(&pair("main.rs", "a.rs")), "a binary's import of the library: {e:?}");
    assert!(e.contains(&pair("main.rs", "bin/tool.rs")), "{e:?}");
    assert!(e.contains(&pair("a.rs", "b.rs (test)")), "{e:?}");
    assert!(e.contains(&pair("a/more.rs", "c.rs (test)")), "a file under #[cfg(test)] is test code: {e:?}");
    assert!(t.orphans.is_empty(), "{:?}", t.orphans);
    let crates: BTreeSet<&str> = t.files.iter().filter(|f| f.file == "bin/tool.rs").map(|f| f.krate.as_str()).collect();
    assert_eq!(crates, BTreeSet::from(["main", "bin/tool"]));
}

const DOC: &str = "# Architecture\n\n## Floors\n\n| floor | modules | what |\n|---|---|---|\n\
| 1 | `c`, `d` | ground |\n| 2 | `a` | middle |\n| 3 | `b`, `lib` | top |\n\n## Dependency invariants\n\n\
- **`a` knows no redis.** Why.\n  Rule: `forbid redis crate::b in a allow redis::Ok`\n\
- **No late patches.** Rule: not here.\n  Rule: `forbid type OnceLock<Weak> in *`; `max 4 lines in src`\n\
- Rule: `every module listed`\n- **`d` has no inner cycle.**\n  Rule: `no inner cycle in d`\n\n## Code map\n";

#[test]
fn the_document_gives_floors_and_rules() {
    let floors = doc::floors(DOC).unwrap();
    assert_eq!(floors.of("a/inner.rs"), Some(("a", 2)));
    assert_eq!(floors.of("lib.rs"), Some(("lib", 3)));
    assert_eq!(floors.of("e.rs"), None);
    let rules = doc::rules(DOC).unwrap();
    assert_eq!(rules.len(), 5, "{rules:?}");
    let Rule::Forbid { patterns, scopes, allow, .. } = &rules[0] else { panic!("{rules:?}") };
    assert_eq!(patterns[1], Pattern::Path(vec!["crate".into(), "b".into()]));
    assert_eq!(scopes, &[Scope::Module("a".into())]);
    assert_eq!(allow.len(), 1);
    assert!(doc::parse_rule("forbid x in floor:1-7")
        .is_ok_and(|r| matches!(r, Rule::Forbid { scopes, .. } if scopes == [Scope::Floors(1, 7)])));
    assert!(doc::parse_rule("frobnicate").is_err());
}

fn run(files: &[(&str, &str)]) -> Problems {
    let t = crate_of(files);
    let floors = doc::floors(DOC).unwrap();
    let rules = doc::rules(DOC).unwrap();
    let lines = files.iter().map(|(f, s)| (format!("src/{f}"), s.lines().count())).collect();
    let mut p = Problems::default();
    check::upward(&t, &floors, &mut p);
    check::cycles(&t, &floors, &rules, &mut p);
    check::rules(&t, &floors, &rules, &lines, &mut p);
    p
}

#[test]
fn a_clean_crate_passes() {
    let lib = "mod a;\nmod b;\nmod c;\nmod d;\n";
    let a = "mod inner;\nuse crate::c::X;\nuse inner::Part;\npub struct Thing;\n";
    let inner = "use super::Thing;\npub struct Part;\n";
    let files =
        [("lib.rs", lib), ("a.rs", a), ("a/inner.rs", inner), ("b.rs", "use crate::a::Thing;\n"), ("c.rs", ""), ("d.rs", "")];
    let p = run(&files);
    // A parent and the file it is made of import each other; that is one module, not a cycle.
    assert_eq!(p.count(), 0, "{p:?}");
}

#[test]
fn upward_imports_cycles_and_rules_are_all_reported() {
    let a = "use crate::b::Y;\nuse redis::Cmd;\nfn f() -> redis::Ok {}\npub struct Thing;\n// five\n";
    let c = "use crate::d::Z;\nstatic X: OnceLock<Weak<u8>> = OnceLock::new();\n";
    let lib = "mod a;\nmod b;\nmod c;\nmod d;\n";
    let p = run(&[("lib.rs", lib), ("a.rs", a), ("b.rs", ""), ("c.rs", c), ("d.rs", "use crate::c::X;\n"), ("e.rs", "")]);
    assert_eq!(p.upward, ["src/a.rs:1: imports crate::b (b, floor 3) from floor 2 (a): Y"], "{p:?}");
    assert_eq!(p.cycles.len(), 2, "the same cycle between modules and between files: {p:?}");
    assert!(p.cycles[0].contains("c → d → c"), "{p:?}");
    let inv = p.invariants.join("\n");
    assert!(
        inv.contains("src/a.rs:1: crate::b::Y, redis::Cmd (2 uses) breaks `forbid redis crate::b"),
        "redis::Ok is allowed: {inv}"
    );
    assert!(inv.contains("src/c.rs:2: OnceLock<Weak> (1 use) breaks"), "{inv}");
    assert!(inv.contains("src/a.rs: 5 lines breaks `max 4 lines in src`"), "{inv}");
    assert!(!inv.contains("src/c.rs: 2 lines"), "{inv}");
    assert!(inv.contains("src/e.rs: no row of the floors table lists it"), "{inv}");
    assert!(p.other.iter().any(|o| o.contains("src/e.rs")), "an orphan file: {p:?}");
}

#[test]
fn tarjan_finds_each_cycle_once() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in [("x", "y"), ("y", "z"), ("z", "x"), ("z", "w"), ("w", "v"), ("v", "w"), ("u", "x")] {
        g.entry(a.into()).or_default().insert(b.into());
    }
    let comps = check::sccs(&g);
    assert_eq!(comps, vec![vec!["v".to_string(), "w".into()], vec!["x".into(), "y".into(), "z".into()]]);
    assert_eq!(check::chain(&g, &comps[1], "x"), "x → y → z → x");
}

#[test]
fn no_inner_cycle_counts_a_part_importing_its_parent() {
    let lib = "mod a;\nmod b;\nmod c;\nmod d;\n";
    let d = "mod part;\nuse part::P;\npub struct D;\n";
    let files =
        [("lib.rs", lib), ("a.rs", ""), ("b.rs", ""), ("c.rs", ""), ("d.rs", d), ("d/part.rs", "use super::D;\npub struct P;\n")];
    let p = run(&files);
    assert_eq!(p.cycles, ["cycle of 2 files [d.rs, d/part.rs]:\n      d.rs → d/part.rs → d.rs"], "{p:?}");
}
