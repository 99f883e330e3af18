//! The operator's layers hold: every `crate::` and `super::` path in the
//! non-test code of `src/` points at a module in a lower layer (or at a
//! leaf of its own, as `lib.rs` allows), no files import each other in a
//! circle, every module has a layer, and only the modules `lib.rs` lists
//! as writers name a write (an API, SQL, EC2 or Event call that changes
//! something).
#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use ebisu_operator::{LAYERS, SAME_LAYER, WRITERS};
use syn::visit::Visit;

/// Method calls that change something outside the process.
const WRITES: &[&str] = &[
    // Kubernetes.
    "patch",
    "patch_status",
    "patch_metadata",
    "create",
    "delete",
    "delete_collection",
    "evict",
    "replace_status",
    // Events.
    "publish",
    // SQL.
    "query_drop",
    "exec_drop",
    "exec_batch",
    // EC2 and S3.
    "create_tags",
    "delete_tags",
    "modify_volume",
    "stop_instances",
    "create_snapshot",
    "delete_snapshot",
    "copy_snapshot",
    "create_volume",
    "delete_volume",
    "put_object",
    "delete_object",
    "delete_objects",
];

/// A module path (`["clustering", "act"]`) and what its file names.
#[derive(Debug, Default)]
struct Source {
    /// Module paths named with `crate::` or `super::`.
    paths: Vec<Vec<String>>,
    /// Write calls it makes.
    writes: BTreeSet<String>,
}

struct Collect<'a> {
    module: &'a [String],
    is_mod_file: bool,
    source: Source,
}

impl Collect<'_> {
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let mut it = segments.iter();
        let first = it.next()?;
        let mut base: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "super" => {
                // `super` of `a/b.rs` is `a`; of `a/b/mod.rs` (module a::b) it is `a` too.
                let mut base = self.module.to_vec();
                base.pop();
                base
            }
            "self" if self.is_mod_file => self.module.to_vec(),
            _ => return None,
        };
        for segment in it {
            if segment == "super" {
                base.pop();
            } else {
                base.push(segment.clone());
            }
        }
        Some(base)
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            if n.ident != "self" {
                path.push(n.ident.to_string());
            }
            out.push(path);
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.push(path);
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for item in &g.items {
                use_paths(item, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collect<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            _ => &[],
        };
        if is_test_only(attrs) {
            return;
        }
        if let syn::Item::Use(u) = item {
            let mut found = Vec::new();
            use_paths(&u.tree, &mut Vec::new(), &mut found);
            for path in found {
                if let Some(abs) = self.absolute(&path) {
                    self.source.paths.push(abs);
                }
            }
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(abs) = self.absolute(&segments) {
            self.source.paths.push(abs);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let name = call.method.to_string();
        if WRITES.contains(&name.as_str()) {
            self.source.writes.insert(name);
        }
        syn::visit::visit_expr_method_call(self, call);
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every library module file (not `main.rs` or `bin/`) by module path.
fn sources() -> BTreeMap<Vec<String>, Source> {
    let root = src();
    let mut paths = Vec::new();
    files(&root, &mut paths);
    let mut out = BTreeMap::new();
    for path in paths {
        let rel = path.strip_prefix(&root).unwrap();
        let mut module: Vec<String> = rel
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if module.first().is_some_and(|m| m == "bin") || module == ["main"] {
            continue;
        }
        let is_mod_file = matches!(module.last().map(String::as_str), Some("mod" | "lib"));
        if is_mod_file {
            module.pop();
        }
        let file = syn::parse_file(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut collect = Collect {
            module: &module,
            is_mod_file,
            source: Source::default(),
        };
        for item in &file.items {
            collect.visit_item(item);
        }
        let source = collect.source;
        out.insert(module, source);
    }
    out
}

/// The deepest known module `path` names.
fn resolve(path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| known.contains(prefix))
}

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&top))
}

fn edges() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let sources = sources();
    let known: BTreeSet<Vec<String>> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(module, source)| {
            let targets = source
                .paths
                .iter()
                .filter_map(|p| resolve(p, &known))
                .filter(|t| t != module && !t.is_empty())
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

#[test]
fn every_module_has_a_layer() {
    let missing: Vec<String> = sources()
        .keys()
        .filter_map(|m| m.first())
        .filter(|top| layer_of(top).is_none())
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "add these to LAYERS in lib.rs: {missing:?}"
    );
}

#[test]
fn modules_import_only_from_layers_below_or_a_leaf_of_their_own() {
    let mut wrong = Vec::new();
    let edges = edges();
    for (module, targets) in &edges {
        let Some(from) = module.first() else { continue };
        for target in targets {
            let to = &target[0];
            if to == from {
                continue;
            }
            let (Some(a), Some(b)) = (layer_of(from), layer_of(to)) else {
                continue;
            };
            let allowed = b < a || (a == b && SAME_LAYER.contains(&(from.as_str(), to.as_str())));
            if !allowed {
                wrong.push(format!(
                    "{} (L{a}) imports {} (L{b})",
                    module.join("::"),
                    target.join("::")
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn a_same_layer_arrow_points_at_a_leaf() {
    for (from, to) in SAME_LAYER {
        assert!(
            !SAME_LAYER.iter().any(|(f, _)| f == to),
            "{from} -> {to}: {to} imports from its own layer, so it is no leaf"
        );
    }
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let edges = edges();
    // Depth-first search for a back edge.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, bool>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => {
                let start = stack.iter().position(|n| n == node).unwrap_or(0);
                return Some(stack[start..].iter().map(|m| m.join("::")).collect());
            }
            Some(false) => return None,
            None => {}
        }
        state.insert(node.clone(), true);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node.clone(), false);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        let cycle = visit(node, &edges, &mut state, &mut Vec::new());
        assert!(
            cycle.is_none(),
            "files import each other in a circle: {cycle:?}"
        );
    }
}

#[test]
fn only_the_listed_writers_write() {
    let unlisted: Vec<String> = sources()
        .iter()
        .filter(|(_, s)| !s.writes.is_empty())
        .map(|(m, s)| (m.join("::"), s))
        .filter(|(m, _)| {
            !WRITERS
                .iter()
                .any(|w| m == w || m.starts_with(&format!("{w}::")))
        })
        .map(|(m, s)| format!("{m}: {:?}", s.writes))
        .collect();
    assert!(
        unlisted.is_empty(),
        "these modules write but lib.rs does not list them in WRITERS:\n{}",
        unlisted.join("\n")
    );
}
