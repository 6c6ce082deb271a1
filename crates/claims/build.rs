//! Embeds the commit this binary is built from (`COUNTERSIGN_GIT_COMMIT`): `git rev-parse HEAD`
//! when the source is a git checkout and git is installed, else `unknown`. Rebuilds when HEAD
//! moves (a commit, a checkout, a rebase) so the figure is never stale.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// Only paths that exist: Cargo reruns a build script on every build for a missing one.
fn watch(path: &std::path::Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=COUNTERSIGN_GIT_COMMIT");
    // A packager building from a tarball may say which commit it was.
    let commit = std::env::var("COUNTERSIGN_GIT_COMMIT")
        .ok()
        .filter(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .or_else(|| git(&["rev-parse", "HEAD"]).filter(|c| c.len() == 40))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=COUNTERSIGN_GIT_COMMIT={commit}");
    // HEAD (in a worktree: its own git dir), the branch it names, and packed refs.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        watch(&PathBuf::from(&dir).join("HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]) {
        let common = PathBuf::from(common);
        watch(&common.join("packed-refs"));
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(&common.join(branch));
        }
    }
}
