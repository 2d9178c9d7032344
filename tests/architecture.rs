//! The module layering of docs/architecture.md ("What each module may import"): every
//! `crate::<module>` path in `src/<module>/` names a module the table allows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The table of docs/architecture.md.
const ALLOWED: &[(&str, &[&str])] = &[
    ("util", &[]),
    ("child", &[]),
    ("probe", &[]),
    ("workload", &["util"]),
    ("dotnet", &["util"]),
    ("load", &["util"]),
    ("results", &["util"]),
    ("orchestrator", &["child", "util"]),
    ("scaler", &["orchestrator", "util"]),
    ("figures", &["results", "util"]),
    ("monitor", &["child", "load", "results", "scaler", "util"]),
    (
        "experiment",
        &[
            "dotnet",
            "figures",
            "load",
            "monitor",
            "orchestrator",
            "results",
            "scaler",
            "util",
            "workload",
        ],
    ),
    (
        "calibrate",
        &[
            "experiment",
            "figures",
            "load",
            "results",
            "util",
            "workload",
        ],
    ),
    (
        "compare",
        &[
            "child",
            "dotnet",
            "experiment",
            "figures",
            "load",
            "results",
            "util",
            "workload",
        ],
    ),
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap().flatten() {
            rust_files(&e.path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The modules `text` names as `crate::<module>`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        // `starvation::`-style paths from outside do not count, nor `$crate::`.
        if text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

#[test]
fn every_module_imports_only_what_the_architecture_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (module, allowed) in ALLOWED {
        let mut files = Vec::new();
        for p in [src.join(module), src.join(format!("{module}.rs"))] {
            if p.exists() {
                rust_files(&p, &mut files);
            }
        }
        assert!(!files.is_empty(), "no source for module {module}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for used in crate_paths(&text) {
                let ok = used == *module || used == "Interrupted" || allowed.contains(&&*used);
                if !ok {
                    broken.push(format!("{} uses crate::{used}", f.display()));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports the table in docs/architecture.md does not allow:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_import_scan_sees_paths_and_ignores_other_crates() {
    let found = crate_paths("use crate::util::x; let a = crate::load::Y; $crate::m; my_crate::k");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["load", "util"],
        "paths of another crate are not ours"
    );
}
