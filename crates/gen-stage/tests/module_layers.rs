//! The core's modules import each other one way only: no cycle among the files of
//! `src/`. A cycle makes every file in it a dependency of every other, so none can be
//! understood, tested or changed alone.
//!
//! The graph: one node per file module; an edge for each `crate::` or `super::` path in
//! code (doc comments, comments and unit-test modules are left out). A folder module's
//! own file may name its children freely (it declares and re-exports them); every other
//! edge counts, a child's edge to its parent included.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// `a::b` for `src/a/b.rs` and `src/a/b/mod.rs`; the empty path for `src/lib.rs`.
type ModulePath = Vec<String>;

fn module_files(dir: &Path, prefix: &[String], out: &mut BTreeMap<ModulePath, PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("file names are UTF-8")
            .to_owned();
        if path.is_dir() {
            let mut child = prefix.to_vec();
            child.push(name);
            module_files(&path, &child, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let mut module = prefix.to_vec();
            if name != "lib" && name != "mod" {
                module.push(name);
            }
            out.insert(module, path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let without_comment = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        code.push_str(without_comment);
        code.push('\n');
    }
    code
}

/// Every path after `crate::` or `super::`, with `use` groups (`{a, b::c}`) expanded.
fn paths_in(code: &str, from: &[String]) -> Vec<ModulePath> {
    let mut found = Vec::new();
    for (root_len, root) in [(7, "crate::"), (7, "super::")] {
        let mut rest = code;
        while let Some(at) = rest.find(root) {
            let boundary_ok = rest[..at]
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
            rest = &rest[at + root_len..];
            if !boundary_ok {
                continue;
            }
            let base: ModulePath = if root == "super::" {
                let mut parent = from.to_vec();
                parent.pop();
                parent
            } else {
                Vec::new()
            };
            expand(rest, base, &mut found);
        }
    }
    found
}

/// Reads one path (or group of paths) at the start of `text`, each prefixed by `base`.
fn expand(text: &str, base: ModulePath, found: &mut Vec<ModulePath>) {
    let mut path = base;
    let mut rest = text;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            for item in split_group(group) {
                expand(item.trim(), path.clone(), found);
            }
            return;
        }
        let ident_len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if &rest[..ident_len] == "super" {
            path.pop();
        } else if ident_len > 0 {
            path.push(rest[..ident_len].to_owned());
            rest = &rest[ident_len..];
        }
        if let Some(after) = rest.strip_prefix("::") {
            rest = after;
            continue;
        }
        found.push(path);
        return;
    }
}

/// The items of a `use` group up to its closing brace, split at top-level commas.
fn split_group(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..at]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items
}

/// The file module a path lands in: its longest prefix that is a module.
fn module_of(path: &ModulePath, modules: &BTreeMap<ModulePath, PathBuf>) -> Option<ModulePath> {
    (1..=path.len())
        .rev()
        .map(|len| path[..len].to_vec())
        .find(|prefix| modules.contains_key(prefix))
}

fn is_test_file(module: &ModulePath) -> bool {
    module
        .last()
        .is_some_and(|name| name == "tests" || name.ends_with("_tests"))
}

fn graph() -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    module_files(&src, &[], &mut modules);
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        if module.is_empty() || is_test_file(module) {
            continue;
        }
        let code = code_of(&fs::read_to_string(file).expect("a source file is readable"));
        let targets: BTreeSet<ModulePath> = paths_in(&code, module)
            .iter()
            .filter_map(|path| module_of(path, &modules))
            .filter(|target| {
                target != module && !target.starts_with(module) && !is_test_file(target)
            })
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

/// One cycle through `start`, if there is one (depth-first search).
fn cycle_through(
    graph: &BTreeMap<ModulePath, BTreeSet<ModulePath>>,
    start: &ModulePath,
) -> Option<Vec<ModulePath>> {
    let mut stack = vec![(start.clone(), vec![start.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((node, trail)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = trail.clone();
                cycle.push(start.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = trail.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

fn name(module: &ModulePath) -> String {
    module.join("::")
}

#[test]
fn the_modules_of_the_core_import_each_other_one_way_only() {
    let graph = graph();
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|module| cycle_through(&graph, module))
        .map(|cycle| cycle.iter().map(name).collect::<Vec<_>>().join(" -> "))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles among the core's modules:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_layer_check_sees_grouped_imports_and_parent_paths() {
    let from = vec!["runtime".to_owned(), "producer".to_owned()];
    let found = paths_in(
        "use crate::{a, b::{c, d::E}};\nuse super::shared::F;\nlet x = crate::g::h();",
        &from,
    );
    let names: Vec<String> = found.iter().map(name).collect();
    assert_eq!(
        names,
        ["a", "b::c", "b::d::E", "g::h", "runtime::shared::F"],
        "paths found"
    );
    assert_eq!(
        code_of("use a; // crate::x\n/// crate::y\n#[cfg(test)]\nmod tests {\nuse crate::z;\n}"),
        "use a; \n"
    );
}
