//! The layout's rule, checked: a module of the gateway imports only from
//! modules below it, and the I/O-free protocol crate below them all
//! (docs/architecture.md). Run with `--nocapture` to see the module-level
//! dependency listing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top to bottom; each module may import only modules listed after it
/// and allowed here.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "server",
        &[
            "admin", "frontend", "session", "backend", "auth", "config", "audit", "metrics", "wire",
        ],
    ),
    ("admin", &["auth", "metrics"]),
    (
        "frontend",
        &[
            "session", "backend", "wire", "auth", "cancel", "pg", "error", "audit", "metrics",
        ],
    ),
    (
        "session",
        &[
            "sql", "backend", "codec", "wire", "cancel", "pg", "error", "audit", "metrics",
        ],
    ),
    ("backend", &["codec", "pg", "error", "metrics"]),
    ("wire", &["pg", "error", "metrics"]),
    ("auth", &["pg", "error", "metrics", "config"]),
    ("cancel", &["pg", "error", "metrics"]),
    ("config", &["pg", "audit"]),
    ("audit", &["metrics"]),
    ("metrics", &[]),
];

/// The same for `velo-pgproto`, whose modules the gateway reaches as
/// `crate::sql`, `crate::codec`, `crate::pg` and `crate::error`.
const PROTOCOL_ALLOWED: &[(&str, &[&str])] = &[
    (
        "fuzz_targets",
        &["codec", "frame", "scram", "sql", "startup", "pg", "error"],
    ),
    ("frame", &["error"]),
    ("scram", &["error"]),
    ("sql", &["error"]),
    ("codec", &["pg", "error"]),
    ("startup", &[]),
    ("error", &["pg"]),
    ("pg", &[]),
];

fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("inside src");
    let first = relative.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_import_only_from_below() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("velo-gateway:");
    check(&root.join("src"), ALLOWED);
    println!("velo-pgproto:");
    check(&root.join("../pgproto/src"), PROTOCOL_ALLOWED);
}

fn check(src: &Path, allowed_imports: &[(&str, &[&str])]) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = top_module(src, file);
        if from == "main" || from == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read");
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let to: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `mutate` is test support, compiled into tests only.
            if !to.is_empty() && to != from && to != "mutate" {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    let mut violations = Vec::new();
    for (from, tos) in &edges {
        let allowed = allowed_imports
            .iter()
            .find(|(m, _)| m == from)
            .unwrap_or_else(|| panic!("module {from} is not in the layout: add it to ALLOWED and docs/architecture.md"))
            .1;
        println!(
            "  {from} -> {}",
            tos.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        for to in tos {
            if !allowed.contains(&to.as_str()) {
                violations.push(format!("{from} imports {to}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layout: {violations:#?}"
    );
}
