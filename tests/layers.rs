//! The tree in `src/` is the architecture: each top-level module is a layer, and a layer
//! names only the layers below it (ARCHITECTURE.md, "Layers in src/"). This reads every
//! source file and fails on a `crate::<layer>` path that points up or sideways, so a
//! dependency against the flow cannot land unnoticed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each layer and the layers it may name (besides itself).
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        ("boundary", &["ops", "config", "request", "sync", "stores", "model", "contract", "clock"][..]),
        ("ops", &["request", "sync", "stores", "model", "clock"][..]),
        ("config", &["sync", "stores", "model"][..]),
        ("request", &["model", "contract"][..]),
        ("sync", &["stores", "model", "clock"][..]),
        ("stores", &["model"][..]),
        ("model", &[][..]),
        ("contract", &[][..]),
        ("clock", &[][..]),
    ])
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer a file under `src/` belongs to: its first path component, without `.rs`.
fn layer_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// Every `crate::<name>` in code (comment lines skipped: a doc may point anywhere).
fn named_layers(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let name: String = tail.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            out.push((i + 1, name));
            rest = tail;
        }
    }
    out
}

#[test]
fn no_module_names_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = allowed();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let layer = layer_of(&src, file);
        if layer == "lib" || layer == "bin" {
            continue; // the crate root declares the layers; the CLI may use any of them
        }
        let may = allowed.get(layer.as_str()).unwrap_or_else(|| panic!("{}: a layer not in the table", file.display()));
        for (line, named) in named_layers(&std::fs::read_to_string(file).unwrap()) {
            if named != layer && !may.contains(&named.as_str()) {
                wrong.push(format!("{}:{line}: {layer} names {named}", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "dependencies against the flow:\n{}", wrong.join("\n"));
    assert!(files.len() > 30, "read the tree: {} files", files.len());
}

#[test]
fn the_checker_sees_paths_in_code_and_skips_comments() {
    let text = "use crate::sync::engine::Engine;\n// see crate::boundary\nlet x = crate::model::name::normalize(a);";
    assert_eq!(named_layers(text), [(1, "sync".to_owned()), (3, "model".to_owned())]);
}
