//! The project's documents link only to files that exist: every relative link and image in the
//! Markdown files at the root, under `docs/` and in `bench/` (outside fenced code) must name a
//! file or folder of the checkout. Links to the web (`http(s)://`, `mailto:`) and within a page
//! (`#…`) are not fetched: CI has no network. The licence file is the one the workspace declares.
//! The admin guide (docs/OPERATIONS.md) and the API guide (docs/API.md) exist and are linked.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn documents() -> Vec<PathBuf> {
    let mut docs = Vec::new();
    for dir in [root(), root().join("docs"), root().join("bench")] {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "md") {
                docs.push(p);
            }
        }
    }
    docs.sort();
    docs
}

/// The link targets of one Markdown text (inline `[..](target)`, images, reference definitions
/// `[x]: target`), outside fenced code blocks, with their line numbers.
fn targets(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some(i) = trimmed.find("]: ")
        {
            out.push((n + 1, trimmed[i + 3..].split_whitespace().next().unwrap_or("").to_owned()));
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((n + 1, after[..end].split_whitespace().next().unwrap_or("").to_owned()));
            rest = &after[end..];
        }
    }
    out
}

fn is_local(target: &str) -> bool {
    !(target.is_empty()
        || target.starts_with('#')
        || target.starts_with("http://")
        || target.starts_with("https://")
        || target.starts_with("mailto:"))
}

#[test]
fn every_relative_link_in_the_documents_names_a_file_that_exists() {
    let docs = documents();
    for required in ["README.md", "SECURITY.md", "CONTRIBUTING.md", "CHANGELOG.md", "docs/OPERATIONS.md", "docs/API.md"]
    {
        assert!(docs.contains(&root().join(required)), "{required} is missing");
    }
    // The admin and API guides are reachable from the README, and from each other.
    for (from, to) in
        [("README.md", "docs/API.md"), ("README.md", "docs/OPERATIONS.md"), ("docs/OPERATIONS.md", "API.md")]
    {
        let text = std::fs::read_to_string(root().join(from)).expect("read");
        assert!(targets(&text).iter().any(|(_, t)| t.split('#').next() == Some(to)), "{from} does not link to {to}");
    }
    let (mut checked, mut broken) = (0, Vec::new());
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("read");
        let dir = doc.parent().unwrap_or(Path::new("."));
        for (line, target) in targets(&text).into_iter().filter(|(_, t)| is_local(t)) {
            let file = target.split('#').next().unwrap_or_default();
            checked += 1;
            if !dir.join(file).exists() {
                broken.push(format!("{}:{line}: {target}", doc.strip_prefix(root()).unwrap_or(doc).display()));
            }
        }
    }
    assert!(broken.is_empty(), "links to files that do not exist:\n{}", broken.join("\n"));
    assert!(checked >= 20, "only {checked} relative links found: the parser is not reading the documents");
}

#[test]
fn the_link_parser_finds_inline_image_and_reference_links_and_skips_code() {
    let text = "See [a](docs/A.md#x) and ![b](img.png).\n```\n[c](not-a-link.md)\n```\n[d]: ref.md \"t\"\n[e](https://x.example)";
    let found: Vec<String> = targets(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(found, ["docs/A.md#x", "img.png", "ref.md", "https://x.example"]);
    assert!(!is_local("https://x.example") && !is_local("#top") && is_local("docs/A.md#x"));
}

#[test]
fn the_licence_file_is_the_licence_the_workspace_declares() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    assert!(manifest.contains("license = \"AGPL-3.0-only\""));
    let licence = std::fs::read_to_string(root().join("LICENSE")).expect("LICENSE");
    assert!(licence.starts_with("GNU AFFERO GENERAL PUBLIC LICENSE\nVersion 3, 19 November 2007"));
    assert!(licence.contains("13. Remote Network Interaction; Use with the GNU General Public License."));
}
