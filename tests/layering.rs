//! The layering proof (issue 12): reads `src/` and fails on an import from a lower floor to a
//! higher one, on an import cycle (between the modules of the floors table, or between files),
//! and on a broken dependency invariant, checking the floors and rules ARCHITECTURE.md lists
//! (`## Floors`, `## Dependency invariants`). Every problem is printed, then the test fails once.
//!
//! `LAYERING_GRAPH=1 cargo test --test layering -- --nocapture` prints the module graph by floor
//! (`LAYERING_GRAPH=files` adds each file's imports); `LAYERING_ROOT=dir` checks another tree
//! (its `src/`, `tests/`, `Cargo.toml` and `ARCHITECTURE.md`, or this crate's ARCHITECTURE.md if
//! that one has no floors yet); `LAYERING_DOC=file` names the document to check against.
//!
//! Test code (`#[cfg(test)]` items, `#[test]` functions, files declared under `#[cfg(test)]`)
//! counts for the floors and the invariants, but not for cycles: a unit test may reach a sibling
//! to build a fixture without making the modules one.

#[path = "layering/check.rs"]
mod check;
#[path = "layering/doc.rs"]
mod doc;
#[path = "layering/scan.rs"]
mod scan;
#[path = "layering/tree.rs"]
mod tree;
#[path = "layering/unit.rs"]
mod unit;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, as (path relative to `root`, text).
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.insert(rel, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The library's crate name as binaries write it (`mcp_bridge`), from `[package] name`.
fn lib_name(root: &Path) -> String {
    let toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    toml.lines()
        .find_map(|l| l.trim().strip_prefix("name = \"")?.split('"').next().map(|n| n.replace('-', "_")))
        .unwrap_or_else(|| "mcp_bridge".into())
}

/// The document to check against: `LAYERING_DOC`, else the root's ARCHITECTURE.md, else (a
/// tree from before the floors were written down) this crate's own.
fn architecture(root: &Path) -> Result<(PathBuf, String), String> {
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md");
    let mut choices: Vec<PathBuf> = std::env::var_os("LAYERING_DOC").map(PathBuf::from).into_iter().collect();
    if choices.is_empty() {
        choices = vec![root.join("ARCHITECTURE.md"), own];
    }
    for path in choices {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if text.lines().any(|l| l.trim() == "## Floors") {
            return Ok((path, text));
        }
    }
    Err("no ARCHITECTURE.md with a `## Floors` section".into())
}

/// Everything wrong with the tree at `root`, or an error when ARCHITECTURE.md cannot be read.
fn problems(root: &Path) -> Result<(check::Problems, tree::Tree, doc::Floors, PathBuf), String> {
    let (doc_path, arch) = architecture(root)?;
    let floors = doc::floors(&arch)?;
    let rules = doc::rules(&arch)?;
    let mut files = BTreeMap::new();
    let mut dirs: Vec<String> = vec!["src".into()];
    for r in &rules {
        if let doc::Rule::MaxLines { dirs: d, .. } = r {
            dirs.extend(d.iter().cloned());
        }
    }
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        walk(root, &root.join(d), &mut files);
    }
    let src: BTreeMap<String, String> =
        files.iter().filter_map(|(f, t)| Some((f.strip_prefix("src/")?.to_string(), t.clone()))).collect();
    let lines: BTreeMap<String, usize> = files.iter().map(|(f, t)| (f.clone(), t.lines().count())).collect();
    let tree = tree::build(&src, &lib_name(root));
    let mut out = check::Problems::default();
    check::upward(&tree, &floors, &mut out);
    check::cycles(&tree, &floors, &rules, &mut out);
    check::rules(&tree, &floors, &rules, &lines, &mut out);
    Ok((out, tree, floors, doc_path))
}

#[test]
fn src_keeps_the_floors_of_architecture_md() {
    let root = std::env::var_os("LAYERING_ROOT").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let (problems, tree, floors, doc_path) = problems(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let edges = tree.edges.len();
    assert!(
        tree.files.len() > 10 && edges > 50,
        "the scan found {} files and {edges} imports: too few to mean anything",
        tree.files.len()
    );
    if let Ok(mode) = std::env::var("LAYERING_GRAPH") {
        println!("{}", check::render(&tree, &floors, mode == "files"));
    }
    if problems.count() == 0 {
        return;
    }
    let mut report = format!("{}: {} layering problems (against {})\n", root.display(), problems.count(), doc_path.display());
    for (title, list) in [
        ("imports from a lower floor to a higher one", &problems.upward),
        ("import cycles (test code left out)", &problems.cycles),
        ("dependency invariants broken", &problems.invariants),
        ("other", &problems.other),
    ] {
        if !list.is_empty() {
            report.push_str(&format!("\n{title} ({}):\n", list.len()));
            for p in list {
                report.push_str(&format!("  {p}\n"));
            }
        }
    }
    panic!("{report}");
}

/// The document cannot lose its rules quietly: the floors and each kind of invariant stay.
#[test]
fn architecture_md_keeps_floors_and_rules() {
    let (path, arch) = architecture(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let floors = doc::floors(&arch).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let distinct: std::collections::BTreeSet<u32> = floors.entries.iter().map(|(_, f)| *f).collect();
    assert!(distinct.len() >= 9, "the floors table has {} floors", distinct.len());
    let rules = doc::rules(&arch).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let forbids = rules.iter().filter(|r| matches!(r, doc::Rule::Forbid { .. })).count();
    assert!(forbids >= 6, "only {forbids} forbid rules: {rules:?}");
    assert!(rules.iter().any(|r| matches!(r, doc::Rule::MaxLines { max: 600, .. })), "{rules:?}");
    assert!(rules.contains(&doc::Rule::EveryModuleListed), "{rules:?}");
}
