//! Checks the workspace layering from the Cargo.toml files: the IR depends on no other
//! workspace crate, frontends and passes only on the IR, and the runtime on no compiler
//! crate (so programs that only run artifacts get a small dependency tree) — both in its
//! own manifest and in its full resolved dependency tree (walked in Cargo.lock).

use ferrumc_tests::repo_root;
use std::collections::BTreeSet;

fn dependencies(manifest_dir: &str) -> BTreeSet<String> {
    let path = repo_root().join(manifest_dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut deps = BTreeSet::new();
    let mut collect = |table: Option<&toml::Value>| {
        if let Some(t) = table.and_then(toml::Value::as_table) {
            deps.extend(t.keys().cloned());
        }
    };
    collect(doc.get("dependencies"));
    if let Some(targets) = doc.get("target").and_then(toml::Value::as_table) {
        for t in targets.values() {
            collect(t.get("dependencies"));
        }
    }
    deps
}

fn workspace_deps(manifest_dir: &str) -> BTreeSet<String> {
    dependencies(manifest_dir).into_iter().filter(|d| d.starts_with("ferrumc")).collect()
}

#[test]
fn ir_depends_on_no_workspace_crate() {
    assert_eq!(workspace_deps("ir"), BTreeSet::new());
}

#[test]
fn frontends_and_passes_depend_only_on_the_ir() {
    for dir in ["frontends/hf", "frontends/onnx", "passes"] {
        let deps = workspace_deps(dir);
        assert!(deps.iter().all(|d| d == "ferrumc-ir"), "{dir} depends on {deps:?}");
    }
}

#[test]
fn runtime_depends_on_no_compiler_crate() {
    let forbidden = [
        "cranelift",
        "naga",
        "ferrumc-ir",
        "ferrumc-passes",
        "ferrumc-codegen",
        "ferrumc-hf",
        "ferrumc-onnx",
        "petgraph",
    ];
    let deps = dependencies("runtime");
    for d in &deps {
        assert!(!forbidden.iter().any(|f| d.starts_with(f)), "runtime depends on compiler crate {d}");
    }
}

/// Every package `ferrumc-runtime` reaches in Cargo.lock (normal, build and dev dependencies
/// alike, which is stricter than what a runtime-only program links).
fn resolved_runtime_tree() -> BTreeSet<String> {
    let path = repo_root().join("Cargo.lock");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let packages = doc.get("package").and_then(toml::Value::as_array).expect("Cargo.lock has packages");
    // name -> dependency names (versions merged: stricter).
    let mut graph: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for p in packages {
        let name = p.get("name").and_then(toml::Value::as_str).expect("package name").to_string();
        let deps = p.get("dependencies").and_then(toml::Value::as_array).cloned().unwrap_or_default();
        let entry = graph.entry(name).or_default();
        for d in deps {
            // "name" or "name version" or "name version (source)".
            let d = d.as_str().expect("dependency string");
            entry.insert(d.split(' ').next().unwrap_or(d).to_string());
        }
    }
    let mut seen = BTreeSet::new();
    let mut stack = vec!["ferrumc-runtime".to_string()];
    while let Some(n) = stack.pop() {
        if seen.insert(n.clone()) {
            stack.extend(graph.get(&n).into_iter().flatten().cloned());
        }
    }
    seen
}

#[test]
fn runtime_resolved_dependency_tree_has_no_compiler_crate() {
    let tree = resolved_runtime_tree();
    // The walk works: the runtime's own direct dependencies are there.
    for d in dependencies("runtime") {
        assert!(tree.contains(&d), "{d} missing from the resolved tree {tree:?}");
    }
    let forbidden = [
        "cranelift",
        "naga",
        "ferrumc-ir",
        "ferrumc-passes",
        "ferrumc-codegen",
        "ferrumc-hf",
        "ferrumc-onnx",
        "petgraph",
        "wasmtime",
        "regalloc",
    ];
    for d in &tree {
        assert!(!forbidden.iter().any(|f| d.starts_with(f)), "runtime's dependency tree contains compiler crate {d}");
    }
}
