//! The module tree of each crate in `src/`: from the roots (`lib.rs`, `main.rs`, `bin/*.rs`)
//! along `mod` declarations (and `#[path]`), every file with its module path, and an edge for
//! every path a file names that lands in another file of the crate (or, from a binary, of the
//! library). A parent declaring its child with `mod` is not an import.

use std::collections::{BTreeMap, BTreeSet};

use crate::scan::{scan, Ref, Scan};

/// One file as a module of one crate.
pub(crate) struct FileMod {
    /// Path relative to `src/`: `session/registry.rs`.
    pub(crate) file: String,
    /// The crate: `lib`, `main`, `bin/NAME`.
    pub(crate) krate: String,
    pub(crate) scan: Scan,
}

/// An import of one file by another.
#[derive(Clone, Debug)]
pub(crate) struct Edge {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) line: usize,
    pub(crate) test: bool,
    /// The path as resolved: `crate::cluster::Op`.
    pub(crate) via: String,
    /// The module it lands in: `crate::cluster`.
    pub(crate) module: String,
}

/// Every crate's files, and the edges between files.
#[derive(Default)]
pub(crate) struct Tree {
    pub(crate) files: Vec<FileMod>,
    /// (crate, module path) → file; inline modules map to the file they are written in.
    pub(crate) modules: BTreeMap<(String, Vec<String>), String>,
    pub(crate) edges: Vec<Edge>,
    /// Files under `src/` that no crate reaches.
    pub(crate) orphans: Vec<String>,
    pub(crate) errors: Vec<String>,
}

fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out.join("/")
}

fn parent_dir(file: &str) -> String {
    file.rsplit_once('/').map_or(String::new(), |(d, _)| d.to_string())
}

fn join(dir: &str, rest: &str) -> String {
    normalize(&if dir.is_empty() { rest.to_string() } else { format!("{dir}/{rest}") })
}

/// Builds the tree of `sources` (path relative to `src/` → text); `lib_name` is the library's
/// crate name as binaries write it (`mcp_bridge`).
pub(crate) fn build(sources: &BTreeMap<String, String>, lib_name: &str) -> Tree {
    let mut tree = Tree::default();
    let mut roots: Vec<(String, String)> = Vec::new();
    if sources.contains_key("lib.rs") {
        roots.push(("lib".into(), "lib.rs".into()));
    }
    if sources.contains_key("main.rs") {
        roots.push(("main".into(), "main.rs".into()));
    }
    for file in sources.keys() {
        if let Some(rest) = file.strip_prefix("bin/") {
            let name = rest.strip_suffix("/main.rs").or_else(|| rest.strip_suffix(".rs").filter(|n| !n.contains('/')));
            if let Some(name) = name {
                roots.push((format!("bin/{name}"), file.clone()));
            }
        }
    }
    let mut reached = BTreeSet::new();
    for (krate, root) in roots {
        let mut queue = vec![(root, Vec::<String>::new(), false)];
        while let Some((file, module, test)) = queue.pop() {
            reached.insert(file.clone());
            let Some(text) = sources.get(&file) else { continue };
            let scan = match scan(text, &module, test) {
                Ok(s) => s,
                Err(e) => {
                    tree.errors.push(format!("src/{file}: {e}"));
                    continue;
                }
            };
            tree.modules.insert((krate.clone(), module.clone()), file.clone());
            for inline in &scan.inline {
                let abs = module.iter().chain(inline).cloned().collect();
                tree.modules.insert((krate.clone(), abs), file.clone());
            }
            let mod_rs = module.is_empty() || file.ends_with("/mod.rs") || file == "mod.rs";
            let own_dir = if mod_rs { parent_dir(&file) } else { file.trim_end_matches(".rs").to_string() };
            for decl in &scan.mods {
                let dir = join(&own_dir, &decl.within.join("/"));
                let candidates = match &decl.path_attr {
                    Some(p) if decl.within.is_empty() => vec![join(&parent_dir(&file), p)],
                    Some(p) => vec![join(&dir, p)],
                    None => vec![join(&dir, &format!("{}.rs", decl.name)), join(&dir, &format!("{}/mod.rs", decl.name))],
                };
                let child: Vec<String> = module.iter().chain(&decl.within).chain([&decl.name]).cloned().collect();
                match candidates.iter().find(|c| sources.contains_key(*c)) {
                    Some(found) => queue.push((found.clone(), child, test || decl.test)),
                    None => {
                        tree.errors.push(format!("src/{file}: `mod {}` has no file ({})", decl.name, candidates.join(" or ")))
                    }
                }
            }
            tree.files.push(FileMod { file, krate: krate.clone(), scan });
        }
    }
    tree.orphans = sources.keys().filter(|f| !reached.contains(*f)).cloned().collect();
    let mut edges = Vec::new();
    for f in &tree.files {
        for r in &f.scan.refs {
            if let Some(e) = edge(&tree.modules, f, r, lib_name) {
                edges.push(e);
            }
        }
    }
    tree.edges = edges;
    tree
}

/// The file `r` lands in, if it is a path into this crate (or the library) and not into `f`.
fn edge(modules: &BTreeMap<(String, Vec<String>), String>, f: &FileMod, r: &Ref, lib_name: &str) -> Option<Edge> {
    let (krate, rest) = match r.path.first()?.as_str() {
        "crate" => (f.krate.clone(), &r.path[1..]),
        name if name == lib_name && f.krate != "lib" => ("lib".to_string(), &r.path[1..]),
        _ => return None,
    };
    let rest: Vec<String> = rest.iter().filter(|s| *s != "*").cloned().collect();
    let (n, to) = (0..=rest.len()).rev().find_map(|n| Some((n, modules.get(&(krate.clone(), rest[..n].to_vec()))?)))?;
    if *to == f.file {
        return None;
    }
    let root = if krate == f.krate { "crate".to_string() } else { lib_name.to_string() };
    let via = std::iter::once(root.clone()).chain(rest.iter().cloned()).collect::<Vec<_>>().join("::");
    let module = std::iter::once(root).chain(rest[..n].iter().cloned()).collect::<Vec<_>>().join("::");
    Some(Edge { from: f.file.clone(), to: to.clone(), line: r.line, test: r.test, via, module })
}
