//! Countersign's security claims, from one manifest: `security/controls.toml`.
//!
//! The manifest lists Countersign's own guarantees (by area, each with how it is done and the
//! tests that attack it) and every control the five seed security pages state, with our status
//! (in place / partial / not yet). This crate parses it, checks it against the test suite
//! ([`Manifest::problems`], [`Manifest::missing_tests`]) and renders `docs/SECURITY.md` and the
//! README's summary ([`Manifest::security_md`], [`Manifest::readme_section`]). `web` serves it as
//! `GET /api/v1/security`; the binary writes the documents (`countersign security-docs`).
//!
//! It depends on nothing of ours, so every crate may use it (`web` → `claims`).

mod check;
mod render;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub use check::{declares_test, locate_test};
pub use render::{README_BEGIN, README_END, splice_readme};

/// The manifest, relative to the repository root.
pub const MANIFEST_PATH: &str = "security/controls.toml";
/// The generated guarantee tables and seed matrix, relative to the repository root.
pub const SECURITY_MD_PATH: &str = "docs/SECURITY.md";
/// The README, whose security section is generated between [`README_BEGIN`] and [`README_END`].
pub const README_PATH: &str = "README.md";

/// The commit this binary was built from (`git rev-parse HEAD` at build time), or `unknown`.
pub const COMMIT: &str = env!("COUNTERSIGN_GIT_COMMIT");

/// The manifest as it was when this binary was built.
const EMBEDDED: &str = include_str!("../../../security/controls.toml");

#[derive(Debug, thiserror::Error)]
pub enum ClaimsError {
    #[error("security/controls.toml does not parse: {0}")]
    Parse(String),
    #[error("README.md has no `{0}` line; put the markers where the security section goes")]
    Marker(&'static str),
}

/// How far a claim is true today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Done, and attacked by at least one named test.
    InPlace,
    /// Part of it is done; `how` says which part.
    Partial,
    /// Not done.
    NotYet,
}

impl Status {
    pub const ALL: [Self; 3] = [Self::InPlace, Self::Partial, Self::NotYet];

    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::InPlace => "in place",
            Self::Partial => "partial",
            Self::NotYet => "not yet",
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InPlace => "in_place",
            Self::Partial => "partial",
            Self::NotYet => "not_yet",
        }
    }
}

/// The whole manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "area")]
    pub areas: Vec<Area>,
    #[serde(rename = "control")]
    pub controls: Vec<Control>,
    #[serde(rename = "guarantee")]
    pub guarantees: Vec<Guarantee>,
}

/// A group of guarantees: one table in docs/SECURITY.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Area {
    pub id: String,
    pub title: String,
    /// Markdown before the table.
    #[serde(default)]
    pub intro: Option<String>,
    /// Markdown after the table.
    #[serde(default)]
    pub outro: Option<String>,
}

/// One of Countersign's own guarantees.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guarantee {
    pub id: String,
    pub area: String,
    pub status: Status,
    /// Markdown.
    pub claim: String,
    /// Markdown: where in the code.
    pub how: String,
    /// `<file>.rs::<test fn>`.
    #[serde(default)]
    pub tests: Vec<String>,
    /// Said after the tests (what they attack, how many nodes...).
    #[serde(default)]
    pub note: Option<String>,
    /// When set, the README's key claims list it in these words.
    #[serde(default)]
    pub key: Option<String>,
}

/// A control one of the seed security pages states.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// `s<seed>-<nn>`.
    pub id: String,
    /// `000` … `004`.
    pub seed: String,
    pub topic: String,
    pub claim: String,
    pub status: Status,
    pub how: String,
    /// Guarantees whose tests attack this control too.
    #[serde(default)]
    pub guarantees: Vec<String>,
    #[serde(default)]
    pub tests: Vec<String>,
    /// The issue that plans what is missing.
    #[serde(default)]
    pub issue: Option<u32>,
}

/// Controls per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub in_place: usize,
    pub partial: usize,
    pub not_yet: usize,
}

impl Counts {
    #[must_use]
    pub fn total(&self) -> usize {
        self.in_place + self.partial + self.not_yet
    }

    fn add(&mut self, s: Status) {
        match s {
            Status::InPlace => self.in_place += 1,
            Status::Partial => self.partial += 1,
            Status::NotYet => self.not_yet += 1,
        }
    }
}

/// Parses a manifest.
///
/// # Errors
/// When the text is not TOML or does not have the manifest's shape (unknown fields included).
pub fn parse(text: &str) -> Result<Manifest, ClaimsError> {
    toml::from_str(text).map_err(|e| ClaimsError::Parse(e.to_string()))
}

/// The manifest this binary was built with, parsed once.
///
/// # Errors
/// When it does not parse (tests/security_manifest.rs makes sure it does).
pub fn manifest() -> Result<&'static Manifest, ClaimsError> {
    static PARSED: OnceLock<Result<Manifest, String>> = OnceLock::new();
    PARSED
        .get_or_init(|| parse(EMBEDDED).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ClaimsError::Parse(e.clone()))
}

impl Manifest {
    #[must_use]
    pub fn guarantee(&self, id: &str) -> Option<&Guarantee> {
        self.guarantees.iter().find(|g| g.id == id)
    }

    #[must_use]
    pub fn area(&self, id: &str) -> Option<&Area> {
        self.areas.iter().find(|a| a.id == id)
    }

    /// The guarantees of one area, in manifest order.
    pub fn guarantees_in<'a>(&'a self, area: &'a str) -> impl Iterator<Item = &'a Guarantee> + 'a {
        self.guarantees.iter().filter(move |g| g.area == area)
    }

    /// The tests that attack a control: its own, then those of the guarantees it names (each once).
    #[must_use]
    pub fn tests_of<'a>(&'a self, c: &'a Control) -> Vec<&'a str> {
        let mut seen = BTreeSet::new();
        let own = c.tests.iter().map(String::as_str);
        let through = c.guarantees.iter().filter_map(|id| self.guarantee(id)).flat_map(|g| g.tests.iter());
        own.chain(through.map(String::as_str)).filter(|t| seen.insert(*t)).collect()
    }

    /// Seed controls per status.
    #[must_use]
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for control in &self.controls {
            c.add(control.status);
        }
        c
    }

    /// Every test the manifest names, each once.
    #[must_use]
    pub fn distinct_tests(&self) -> BTreeSet<&str> {
        let g = self.guarantees.iter().flat_map(|g| g.tests.iter());
        let c = self.controls.iter().flat_map(|c| c.tests.iter());
        g.chain(c).map(String::as_str).collect()
    }

    /// The seeds, in order.
    #[must_use]
    pub fn seeds(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.controls.iter().map(|c| c.seed.as_str()).collect();
        set.into_iter().collect()
    }
}

/// A named test: `file` (relative to the repository root) and `function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRef<'a> {
    pub file: &'a str,
    pub function: &'a str,
}

impl<'a> TestRef<'a> {
    /// `tests/<file>.rs::<fn>` or `<dir>/…/src/<file>.rs::<fn>`; `None` for anything else.
    #[must_use]
    pub fn parse(s: &'a str) -> Option<Self> {
        let (file, function) = s.rsplit_once("::")?;
        let rooted = ["tests/", "crates/", "src/", "bench/"].iter().any(|p| file.starts_with(p));
        let clean = !file.split('/').any(|part| part.is_empty() || part == "." || part == "..");
        let ident = !function.is_empty()
            && function.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !function.as_bytes()[0].is_ascii_digit();
        (rooted && clean && file.ends_with(".rs") && ident).then_some(Self { file, function })
    }
}
