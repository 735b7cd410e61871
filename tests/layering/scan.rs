//! One source file read with `syn`: every path it names (`use` trees, paths in code, paths
//! inside macro calls), resolved to an absolute path as far as the file alone allows, and the
//! `mod` declarations that lead to other files.
//!
//! Resolution: `crate::`, `self::` and `super::` become `crate::…`; a first segment naming a
//! child module or a `use` alias of the scope is expanded; anything else (an extern crate, a
//! local item) is kept as written. A single-segment path is skipped: it names a local item or a
//! `use` alias, whose `use` is counted where it is written.

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// A path a file names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ref {
    /// Resolved segments: `["crate", "cluster", "Op"]`, `["redis", "cmd"]`.
    pub(crate) path: Vec<String>,
    pub(crate) line: usize,
    /// Inside a `#[cfg(test)]` item, a `#[test]` function, or a file declared under `#[cfg(test)]`.
    pub(crate) test: bool,
}

/// A generic type with a type argument, as `Outer<Inner>` of their last segments: `OnceLock<Weak>`.
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    pub(crate) text: String,
    pub(crate) line: usize,
}

/// `mod name;` (a module in another file).
#[derive(Clone, Debug)]
pub(crate) struct ModDecl {
    /// The inline modules it sits in, relative to the file's module.
    pub(crate) within: Vec<String>,
    pub(crate) name: String,
    /// The `#[path = "…"]` value, if any.
    pub(crate) path_attr: Option<String>,
    pub(crate) test: bool,
}

/// What one file names.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) refs: Vec<Ref>,
    pub(crate) shapes: Vec<Shape>,
    pub(crate) mods: Vec<ModDecl>,
    /// Inline modules (`mod x { … }`), relative to the file's module.
    pub(crate) inline: Vec<Vec<String>>,
}

/// Names in one module scope of the file.
#[derive(Default)]
struct Scope {
    children: BTreeSet<String>,
    /// Alias → the path as written in its `use` (resolved lazily, in this scope).
    aliases: BTreeMap<String, Vec<String>>,
    /// `use super::*`: the parent scope's names are visible too.
    glob_super: bool,
}

/// Reads `text`, the file of module `module` (segments under the crate root).
pub(crate) fn scan(text: &str, module: &[String], file_is_test: bool) -> Result<Scan, String> {
    let file = syn::parse_file(text).map_err(|e| format!("parse error: {e}"))?;
    let mut collect = Collect { scope: Vec::new(), scopes: BTreeMap::new(), mods: Vec::new(), test: file_is_test };
    collect.scopes.insert(Vec::new(), Scope::default());
    collect.visit_file(&file);
    let inline = collect.scopes.keys().filter(|k| !k.is_empty()).cloned().collect();
    let mut resolve = Resolve {
        module: module.to_vec(),
        scopes: collect.scopes,
        scope: Vec::new(),
        test: file_is_test,
        out: Scan { mods: collect.mods, inline, ..Scan::default() },
    };
    resolve.visit_file(&file);
    Ok(resolve.out)
}

/// True for `#[cfg(test)]`-like attributes (not `cfg(not(test))`) and `#[test]`.
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        if a.path().is_ident("test") {
            return true;
        }
        if !a.path().is_ident("cfg") {
            return false;
        }
        let syn::Meta::List(list) = &a.meta else { return false };
        let text = list.tokens.to_string();
        let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric() && c != '_').filter(|w| !w.is_empty()).collect();
        words.contains(&"test") && !words.contains(&"not")
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item::*;
    match item {
        Const(i) => &i.attrs,
        Enum(i) => &i.attrs,
        Fn(i) => &i.attrs,
        Impl(i) => &i.attrs,
        Macro(i) => &i.attrs,
        Mod(i) => &i.attrs,
        Static(i) => &i.attrs,
        Struct(i) => &i.attrs,
        Trait(i) => &i.attrs,
        Type(i) => &i.attrs,
        Use(i) => &i.attrs,
        _ => &[],
    }
}

fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find(|a| a.path().is_ident("path")).and_then(|a| match &a.meta {
        syn::Meta::NameValue(nv) => match &nv.value {
            syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// The leaves of a `use` tree: (path as written, alias it introduces, line).
pub(crate) fn use_leaves(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Option<String>, usize)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_leaves(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let line = n.ident.span().start().line;
            if n.ident == "self" {
                out.push((prefix.clone(), prefix.last().cloned(), line));
            } else {
                let mut p = prefix.clone();
                p.push(n.ident.to_string());
                out.push((p, Some(n.ident.to_string()), line));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut p = prefix.clone();
            if r.ident != "self" {
                p.push(r.ident.to_string());
            }
            let alias = (r.rename != "_").then(|| r.rename.to_string());
            out.push((p, alias, r.ident.span().start().line));
        }
        syn::UseTree::Glob(g) => out.push((prefix.clone(), None, g.star_token.spans[0].start().line)),
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| use_leaves(t, prefix, out)),
    }
}

/// Pass 1: the scopes (inline modules), their child modules and `use` aliases.
struct Collect {
    scope: Vec<String>,
    scopes: BTreeMap<Vec<String>, Scope>,
    mods: Vec<ModDecl>,
    test: bool,
}

impl<'a> Visit<'a> for Collect {
    fn visit_item(&mut self, item: &'a syn::Item) {
        let was = self.test;
        self.test |= is_test(item_attrs(item));
        visit::visit_item(self, item);
        self.test = was;
    }

    fn visit_item_mod(&mut self, m: &'a syn::ItemMod) {
        let name = m.ident.to_string();
        self.scopes.entry(self.scope.clone()).or_default().children.insert(name.clone());
        match &m.content {
            None => self.mods.push(ModDecl { within: self.scope.clone(), name, path_attr: path_attr(&m.attrs), test: self.test }),
            Some(_) => {
                self.scope.push(name);
                self.scopes.entry(self.scope.clone()).or_default();
                visit::visit_item_mod(self, m);
                self.scope.pop();
            }
        }
    }

    fn visit_item_use(&mut self, u: &'a syn::ItemUse) {
        let mut leaves = Vec::new();
        use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
        let scope = self.scopes.entry(self.scope.clone()).or_default();
        if matches!(&u.tree, syn::UseTree::Path(p) if p.ident == "super" && matches!(*p.tree, syn::UseTree::Glob(_))) {
            scope.glob_super = true;
        }
        for (path, alias, _) in leaves {
            if let Some(alias) = alias {
                scope.aliases.insert(alias, path);
            }
        }
    }
}

/// Pass 2: every path, resolved.
struct Resolve {
    module: Vec<String>,
    scopes: BTreeMap<Vec<String>, Scope>,
    scope: Vec<String>,
    test: bool,
    out: Scan,
}

impl Resolve {
    /// The absolute form of `segs` written in scope `scope` (relative to the file's module).
    fn resolve(&self, scope: &[String], segs: &[String], leading_colon: bool, depth: u8) -> Option<Vec<String>> {
        let first = segs.first()?;
        let abs_scope = || self.module.iter().chain(scope).cloned();
        let out: Vec<String> = match first.as_str() {
            "crate" => segs.to_vec(),
            "Self" => return None,
            _ if leading_colon => segs.to_vec(),
            "self" => ["crate".to_string()].into_iter().chain(abs_scope()).chain(segs[1..].iter().cloned()).collect(),
            "super" => {
                let ups = segs.iter().take_while(|s| *s == "super").count();
                let base: Vec<String> = abs_scope().collect();
                let keep = base.len().checked_sub(ups)?;
                ["crate".to_string()].into_iter().chain(base[..keep].iter().cloned()).chain(segs[ups..].iter().cloned()).collect()
            }
            name => {
                let mut at = scope.to_vec();
                loop {
                    let s = self.scopes.get(&at);
                    if let Some(s) = s {
                        if s.children.contains(name) {
                            let abs = self.module.iter().chain(&at).cloned();
                            return Some(["crate".to_string()].into_iter().chain(abs).chain(segs.iter().cloned()).collect());
                        }
                        if let Some(target) = s.aliases.get(name) {
                            if depth > 8 || target.first() == Some(first) && target.len() == 1 {
                                return Some(segs.to_vec());
                            }
                            let mut full = self.resolve(&at, target, false, depth + 1)?;
                            full.extend(segs[1..].iter().cloned());
                            return Some(full);
                        }
                    }
                    // `use super::*` in an inline module sees the parent scope's names.
                    if at.is_empty() || !s.is_some_and(|s| s.glob_super) {
                        break;
                    }
                    at.pop();
                }
                segs.to_vec()
            }
        };
        Some(out)
    }

    fn record(&mut self, segs: Vec<String>, leading_colon: bool, line: usize) {
        if segs.len() < 2 {
            return;
        }
        if let Some(path) = self.resolve(&self.scope.clone(), &segs, leading_colon, 0) {
            self.out.refs.push(Ref { path, line, test: self.test });
        }
    }

    /// Paths inside a macro's tokens: runs of `ident :: ident …`.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(g) => {
                    self.scan_tokens(g.stream());
                    i += 1;
                }
                TokenTree::Ident(id) => {
                    let line = id.span().start().line;
                    let mut segs = vec![id.to_string()];
                    let mut j = i + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(next))) =
                        (trees.get(j), trees.get(j + 1), trees.get(j + 2))
                    {
                        if a.as_char() != ':' || a.spacing() != Spacing::Joint || b.as_char() != ':' {
                            break;
                        }
                        segs.push(next.to_string());
                        j += 3;
                    }
                    self.record(segs, false, line);
                    i = j;
                }
                TokenTree::Punct(_) | TokenTree::Literal(_) => i += 1,
            }
        }
    }
}

impl<'a> Visit<'a> for Resolve {
    fn visit_item(&mut self, item: &'a syn::Item) {
        let was = self.test;
        self.test |= is_test(item_attrs(item));
        visit::visit_item(self, item);
        self.test = was;
    }

    fn visit_impl_item_fn(&mut self, f: &'a syn::ImplItemFn) {
        let was = self.test;
        self.test |= is_test(&f.attrs);
        visit::visit_impl_item_fn(self, f);
        self.test = was;
    }

    fn visit_item_mod(&mut self, m: &'a syn::ItemMod) {
        if m.content.is_some() {
            self.scope.push(m.ident.to_string());
            visit::visit_item_mod(self, m);
            self.scope.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'a syn::ItemUse) {
        let mut leaves = Vec::new();
        use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
        let leading = u.leading_colon.is_some();
        for (path, _, line) in leaves {
            // `use a::b::*` and `use a::{self}` name the module itself.
            let path = if path.len() == 1 { vec![path[0].clone(), "*".to_string()] } else { path };
            self.record(path, leading, line);
        }
    }

    fn visit_path(&mut self, p: &'a syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = p.segments.first().map_or(0, |s| s.ident.span().start().line);
        self.record(segs, p.leading_colon.is_some(), line);
        visit::visit_path(self, p);
    }

    fn visit_path_segment(&mut self, seg: &'a syn::PathSegment) {
        if let syn::PathArguments::AngleBracketed(args) = &seg.arguments {
            for arg in &args.args {
                if let syn::GenericArgument::Type(syn::Type::Path(tp)) = arg {
                    if let Some(inner) = tp.path.segments.last() {
                        let line = seg.ident.span().start().line;
                        self.out.shapes.push(Shape { text: format!("{}<{}>", seg.ident, inner.ident), line });
                    }
                }
            }
        }
        visit::visit_path_segment(self, seg);
    }

    fn visit_macro(&mut self, m: &'a syn::Macro) {
        self.scan_tokens(m.tokens.clone());
        visit::visit_macro(self, m);
    }
}
