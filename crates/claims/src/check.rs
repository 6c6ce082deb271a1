//! Is the manifest true to the repository? Its shape ([`Manifest::problems`]) and the tests it
//! names ([`Manifest::missing_tests`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use crate::{Manifest, Status, TestRef};

impl Manifest {
    /// What is wrong with the manifest itself: repeated ids, unknown areas or guarantees, a
    /// control id that does not match its seed, a malformed test name, a claim marked in place
    /// that names no test. Empty when all is well.
    #[must_use]
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut ids = HashSet::new();
        for id in self.areas.iter().map(|a| &a.id) {
            if !ids.insert(("area", id.as_str())) {
                out.push(format!("area `{id}` is declared twice"));
            }
        }
        let mut entries = HashSet::new();
        for id in self.guarantees.iter().map(|g| &g.id).chain(self.controls.iter().map(|c| &c.id)) {
            if !entries.insert(id.as_str()) {
                out.push(format!("id `{id}` is used twice"));
            }
        }
        for g in &self.guarantees {
            if self.area(&g.area).is_none() {
                out.push(format!("{}: unknown area `{}`", g.id, g.area));
            }
            blank(&mut out, &g.id, &[("claim", &g.claim), ("how", &g.how)]);
            test_names(&mut out, &g.id, &g.tests);
            if g.status == Status::InPlace && g.tests.is_empty() {
                out.push(format!("{}: marked in_place but names no test that attacks it", g.id));
            }
        }
        for c in &self.controls {
            let seed_ok = c.seed.len() == 3 && c.seed.bytes().all(|b| b.is_ascii_digit());
            let number = c.id.strip_prefix(&format!("s{}-", c.seed));
            if !seed_ok || !number.is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_digit())) {
                out.push(format!("{}: a control's id is `s<seed>-<nn>` of its seed (`{}`)", c.id, c.seed));
            }
            blank(&mut out, &c.id, &[("topic", &c.topic), ("claim", &c.claim), ("how", &c.how)]);
            test_names(&mut out, &c.id, &c.tests);
            for g in &c.guarantees {
                if self.guarantee(g).is_none() {
                    out.push(format!("{}: names unknown guarantee `{g}`", c.id));
                }
            }
            if c.status == Status::InPlace && self.tests_of(c).is_empty() {
                out.push(format!("{}: marked in_place but names no test that attacks it", c.id));
            }
        }
        out
    }

    /// The named tests that do not exist: no function of that name declared with a test
    /// attribute (`#[test]`, `#[tokio::test]`, `#[sqlx::test]`, …, not `#[ignore]`d) in that file
    /// under `root`. Says where a function of that name is, when it is elsewhere.
    #[must_use]
    pub fn missing_tests(&self, root: &Path) -> Vec<String> {
        let mut users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for g in &self.guarantees {
            for t in &g.tests {
                users.entry(t).or_default().push(&g.id);
            }
        }
        for c in &self.controls {
            for t in &c.tests {
                users.entry(t).or_default().push(&c.id);
            }
        }
        let mut sources: BTreeMap<&str, Option<String>> = BTreeMap::new();
        let mut out = Vec::new();
        for (name, by) in users {
            let Some(t) = TestRef::parse(name) else { continue }; // reported by `problems`
            let source = sources.entry(t.file).or_insert_with(|| std::fs::read_to_string(root.join(t.file)).ok());
            let found = source.as_deref().is_some_and(|s| declares_test(s, t.function));
            if !found {
                let why = match source {
                    None => format!("{} does not exist", t.file),
                    Some(_) => format!("{} declares no test `fn {}`", t.file, t.function),
                };
                let hint = match locate_test(root, t.function).as_slice() {
                    [] => String::new(),
                    at => format!(" (a test of that name is in {})", at.join(", ")),
                };
                out.push(format!("{name} (named by {}): {why}{hint}", by.join(", ")));
            }
        }
        out
    }
}

fn blank(out: &mut Vec<String>, id: &str, fields: &[(&str, &String)]) {
    for (name, value) in fields {
        if value.trim().is_empty() {
            out.push(format!("{id}: `{name}` is empty"));
        }
    }
}

fn test_names(out: &mut Vec<String>, id: &str, tests: &[String]) {
    let mut seen = BTreeSet::new();
    for t in tests {
        if TestRef::parse(t).is_none() {
            out.push(format!("{id}: `{t}` is not `tests/<file>.rs::<fn>` or `<crate>/src/<file>.rs::<fn>`"));
        }
        if !seen.insert(t) {
            out.push(format!("{id}: names `{t}` twice"));
        }
    }
}

/// Whether `source` declares `fn <function>` under a test attribute (a path ending in `test`:
/// `#[test]`, `#[tokio::test(…)]`, `#[sqlx::test]`; inside `proptest!` too), not `#[ignore]`d.
#[must_use]
pub fn declares_test(source: &str, function: &str) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    lines.iter().enumerate().any(|(i, line)| declares_fn(line, function) && test_attribute_above(&lines[..i]))
}

/// `[pub[(…)]] [const] [async] [unsafe] fn <function>(` or `<`.
fn declares_fn(line: &str, function: &str) -> bool {
    let mut rest = line.trim_start();
    if rest.starts_with("//") {
        return false;
    }
    loop {
        let next = ["pub(crate) ", "pub(super) ", "pub ", "const ", "async ", "unsafe "]
            .iter()
            .find_map(|kw| rest.strip_prefix(kw));
        match next {
            Some(r) => rest = r.trim_start(),
            None => break,
        }
    }
    rest.strip_prefix("fn ")
        .and_then(|r| r.trim_start().strip_prefix(function))
        .is_some_and(|r| r.starts_with('(') || r.starts_with('<'))
}

/// The attributes and comments directly above a `fn` (up to the previous item) hold a test
/// attribute and no `#[ignore]`.
fn test_attribute_above(above: &[&str]) -> bool {
    let mut test = false;
    for line in above.iter().rev().map(|l| l.trim()) {
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if let Some(attr) = line.strip_prefix("#[") {
            let path: String =
                attr.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
            if path == "ignore" {
                return false;
            }
            test |= path == "test" || path.ends_with("::test");
            continue;
        }
        // The inside of a multi-line attribute; anything that ends an item or opens a block stops.
        if line.ends_with(';') || line.ends_with('{') || line.ends_with('}') {
            break;
        }
    }
    test
}

/// Where under `root` (tests/, src/, crates/, bench/) a test named `function` is declared.
#[must_use]
pub fn locate_test(root: &Path, function: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = ["tests", "src", "crates", "bench"].iter().map(|d| root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target" && n != "node_modules") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && std::fs::read_to_string(&path).is_ok_and(|s| declares_test(&s, function))
            {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                found.push(rel.display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::declares_test;

    #[test]
    fn test_functions_are_recognised_by_their_attributes_only() {
        let src = r#"
#[test]
fn plain() {}

/// Documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_tokio() {}

#[sqlx::test]
pub async fn on_sqlx() {}

#[test]
#[ignore]
fn ignored() {}

fn helper() {}

#[derive(Debug)]
struct S;
fn after_struct() {}

proptest! {
    #[test]
    fn property(x in 0..3u8) {}
}

// #[test]
// fn commented_out() {}

#[tokio::test(
    flavor = "multi_thread",
)]
async fn multi_line_attribute() {}
"#;
        for name in ["plain", "on_tokio", "on_sqlx", "property", "multi_line_attribute"] {
            assert!(declares_test(src, name), "{name} is a test");
        }
        for name in ["ignored", "helper", "after_struct", "commented_out", "plai", "missing"] {
            assert!(!declares_test(src, name), "{name} is not a test");
        }
    }
}
