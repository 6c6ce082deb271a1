//! The identity crate's layers, checked on its source so the rule cannot rot: imports point down
//! only (admin → signin → directory → revocation), every file belongs to a layer, and no two
//! files import each other in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. `error.rs` sits beneath them all (every layer's error type, naming none of them).
const LAYERS: [&str; 4] = ["revocation", "directory", "signin", "admin"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src`, as a path relative to it with `/` separators.
fn files() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src()).expect("under src").to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&path).expect("read file"));
            }
        }
    }
    out
}

/// The layer a file belongs to (its rank in [`LAYERS`]); `None` for the crate root.
fn layer_of(file: &str) -> Option<usize> {
    match file {
        "lib.rs" => None,
        "error.rs" | "revocation.rs" => Some(0),
        _ => {
            let top = file.split('/').next().unwrap_or_default();
            LAYERS.iter().position(|l| *l == top)
        }
    }
}

/// The crate-level names a source text mentions: `crate::x` and every `x` in `crate::{x, y::z}`.
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                out.insert(name);
            }
        } else {
            out.insert(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    out
}

/// Text without `//` comments (so a doc link is not an import).
fn code_only(text: &str) -> String {
    text.lines().map(|l| l.split_once("//").map_or(l, |(code, _)| code)).collect::<Vec<_>>().join("\n")
}

#[test]
fn imports_point_down() {
    let mut wrong = Vec::new();
    for (file, text) in files() {
        let Some(own) = layer_of(&file) else { continue };
        for name in mentioned(&text) {
            if let Some(upper) = LAYERS.iter().position(|l| *l == name).filter(|&r| r > own || (own == 0 && r > 0)) {
                wrong.push(format!("{file} ({}) mentions crate::{}", LAYERS[own], LAYERS[upper]));
            }
        }
    }
    assert!(wrong.is_empty(), "a lower layer names a higher one:\n{}", wrong.join("\n"));
}

#[test]
fn every_file_belongs_to_a_layer() {
    let stray: Vec<String> = files().into_keys().filter(|f| f != "lib.rs" && layer_of(f).is_none()).collect();
    assert!(stray.is_empty(), "files outside every layer (put them in one): {stray:?}");
}

/// Every path after `crate::`, one level of braces expanded: `crate::a::{b, c::d}` gives `a::b`
/// and `a::c::d`.
fn paths(text: &str) -> Vec<Vec<String>> {
    let word = |s: &str| -> Vec<String> {
        let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(s.len());
        s[..end].split("::").filter(|p| !p.is_empty()).map(str::to_owned).collect()
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let head = word(rest);
        let after = &rest[rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len())..];
        match after.strip_prefix('{') {
            Some(group) => {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    out.push(head.iter().cloned().chain(word(item.trim())).collect());
                }
            }
            None => out.push(head),
        }
    }
    out
}

/// `crate::signin::sessions::X` → `signin/sessions.rs` (or `signin/sessions/mod.rs`), if such a file exists.
fn file_named(path: &[&str], known: &BTreeMap<String, String>) -> Option<String> {
    (1..=path.len()).rev().find_map(|n| {
        let stem = path[..n].join("/");
        [format!("{stem}.rs"), format!("{stem}/mod.rs")].into_iter().find(|f| known.contains_key(f))
    })
}

#[test]
fn no_two_files_import_each_other_in_a_circle() {
    let known = files();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in &known {
        if file == "lib.rs" {
            continue;
        }
        for path in paths(&code_only(text)) {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            if let Some(target) = file_named(&path, &known).filter(|t| t != file && !t.ends_with("mod.rs")) {
                edges.entry(file.clone()).or_default().insert(target);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        f: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, bool>,
        trail: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(f) {
            Some(true) => return None,
            Some(false) => {
                let from = trail.iter().position(|t| t == f).unwrap_or(0);
                return Some(trail[from..].iter().cloned().chain([f.to_owned()]).collect());
            }
            None => {}
        }
        state.insert(f.to_owned(), false);
        trail.push(f.to_owned());
        for next in edges.get(f).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, state, trail) {
                return Some(circle);
            }
        }
        trail.pop();
        state.insert(f.to_owned(), true);
        None
    }
    let mut state = BTreeMap::new();
    for f in known.keys() {
        if let Some(circle) = visit(f, &edges, &mut state, &mut Vec::new()) {
            panic!("files import each other in a circle: {}", circle.join(" → "));
        }
    }
}

#[test]
fn the_checks_see_what_they_claim_to() {
    let m = mentioned("use crate::{admin, signin::lockout}; crate::revocation::revoke(); crate::IdentityError");
    assert!(["admin", "signin", "revocation", "IdentityError"].iter().all(|n| m.contains(*n)), "{m:?}");
    assert_eq!(layer_of("directory/tenants.rs"), Some(1));
    assert_eq!(layer_of("admin/members.rs"), Some(3));
    assert_eq!(layer_of("stray.rs"), None);
    assert_eq!(code_only("use crate::x; // crate::admin"), "use crate::x; ");
    let p = paths("use crate::directory::{joining, memberships::{self, X}};");
    assert!(p.contains(&vec!["directory".to_owned(), "joining".to_owned()]), "{p:?}");
    assert!(p.contains(&vec!["directory".to_owned(), "memberships".to_owned()]), "{p:?}");
}
