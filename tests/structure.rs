//! The source tree's shape: imports between files point one way. No file
//! reaches back, directly or through others, to a file that imports it
//! (redb's layering: page store, tree primitives, algorithms, catalog).
//!
//! A file's imports are the `crate::` and `super::` paths it names outside
//! its `#[cfg(test)]` module (doc links included: they name a dependency
//! too); each resolves to the longest prefix that is a file's module. A
//! parent `mod.rs` declaring its children is not an import.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A module as its path segments (`["node", "applier"]`).
type Module = Vec<String>;

/// Every `.rs` file under `root`, by module.
fn modules(root: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.insert(module_of(root, &path), path);
            }
        }
    }
    found
}

fn module_of(root: &Path, path: &Path) -> Module {
    let relative = path.strip_prefix(root).expect("under root").with_extension("");
    let mut module: Module =
        relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        module.pop();
    }
    module
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The `crate::`/`super::` paths in `text`: (starts at the crate root,
/// segments after the keyword); a `{a, b::c}` group gives one path each.
fn paths_in(text: &str) -> Vec<(bool, Vec<String>)> {
    let mut paths = Vec::new();
    for keyword in ["crate::", "super::"] {
        for (at, _) in text.match_indices(keyword) {
            if text[..at].chars().next_back().is_some_and(|c| is_ident(c) || c == ':') {
                continue; // `super::super::` is read from its first `super`
            }
            let (prefix, after) = segments(&text[at + keyword.len()..]);
            let from_root = keyword == "crate::";
            match after.strip_prefix('{').and_then(|group| group.split_once('}')) {
                Some((group, _)) => {
                    for item in group.split(',') {
                        let mut path = prefix.clone();
                        path.extend(segments(item.trim()).0);
                        paths.push((from_root, path));
                    }
                }
                None => paths.push((from_root, prefix)),
            }
        }
    }
    paths
}

/// The leading `ident::ident` segments of `text`, and what follows them
/// (after a trailing `::`, so that a `{` group comes next).
fn segments(text: &str) -> (Vec<String>, &str) {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if end == 0 {
            return (out, rest);
        }
        out.push(rest[..end].to_string());
        match rest[end..].strip_prefix("::") {
            Some(next) => rest = next,
            None => return (out, &rest[end..]),
        }
    }
}

/// The file modules each file imports.
fn imports(root: &Path) -> BTreeMap<Module, Vec<Module>> {
    let files = modules(root);
    let mut graph = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).expect("source file");
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let is_mod_file = path.file_stem().is_some_and(|s| s == "mod" || s == "lib" || s == "main");
        let base: Module =
            if is_mod_file { module.clone() } else { module[..module.len() - 1].to_vec() };
        let mut deps = Vec::new();
        for (from_root, mut path) in paths_in(text) {
            let mut full = if from_root { Vec::new() } else { base.clone() };
            while path.first().is_some_and(|s| s == "super") {
                path.remove(0);
                full.pop();
            }
            full.extend(path);
            let target =
                (1..=full.len()).rev().map(|n| full[..n].to_vec()).find(|m| files.contains_key(m));
            if let Some(target) = target.filter(|t| t != module && !deps.contains(t)) {
                deps.push(target);
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<Module, Vec<Module>>) -> Option<Vec<Module>> {
    // Depth-first search; 1 = on the current path, 2 = done.
    fn visit(
        node: &Module,
        graph: &BTreeMap<Module, Vec<Module>>,
        state: &mut BTreeMap<Module, u8>,
        path: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        state.insert(node.clone(), 1);
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let start = path.iter().position(|m| m == next).expect("on the path");
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, state, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

fn assert_acyclic(root: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(root);
    let graph = imports(&root);
    assert!(graph.len() > 10, "{} files under {}", graph.len(), root.display());
    if let Some(cycle) = find_cycle(&graph) {
        let names: Vec<String> = cycle.iter().map(|m| m.join("/")).collect();
        panic!("import cycle under {}: {}", root.display(), names.join(" -> "));
    }
}

#[test]
fn imports_between_the_nodes_files_point_one_way() {
    assert_acyclic("src");
}

#[test]
fn imports_between_the_storage_files_point_one_way() {
    assert_acyclic("storage/src");
}

#[test]
fn the_checker_finds_a_cycle_it_is_shown() {
    let text_a = "use super::b::Thing;";
    let text_b = "use crate::x::{a::Other, c};";
    let module = |s: &str| vec!["x".to_string(), s.to_string()];
    assert_eq!(paths_in(text_a), vec![(false, vec!["b".into(), "Thing".into()])]);
    assert_eq!(
        paths_in(text_b),
        vec![
            (true, vec!["x".into(), "a".into(), "Other".into()]),
            (true, vec!["x".into(), "c".into()])
        ]
    );
    let graph =
        BTreeMap::from([(module("a"), vec![module("b")]), (module("b"), vec![module("a")])]);
    assert_eq!(find_cycle(&graph), Some(vec![module("a"), module("b"), module("a")]));
    let graph = BTreeMap::from([(module("a"), vec![module("b")]), (module("b"), vec![])]);
    assert_eq!(find_cycle(&graph), None);
}
