//! `countersign security-docs [--check]`: docs/SECURITY.md and the README's security section,
//! written from security/controls.toml (the `claims` crate) once every test it names exists.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config::SecurityDocsArgs;

fn read(root: &Path, file: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(root.join(file)).with_context(|| {
        format!("cannot read {} under {} (run from the repository root or pass --root)", file, root.display())
    })
}

pub fn run(args: &SecurityDocsArgs) -> anyhow::Result<ExitCode> {
    let root = args.root.as_path();
    let manifest = claims::parse(&read(root, claims::MANIFEST_PATH)?)?;
    let problems: Vec<String> = manifest.problems().into_iter().chain(manifest.missing_tests(root)).collect();
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        anyhow::bail!("{} problem(s) in {}; nothing written", problems.len(), claims::MANIFEST_PATH);
    }
    let readme_now = read(root, claims::README_PATH)?;
    let readme = claims::splice_readme(&readme_now, &manifest.readme_section())?;
    let security = manifest.security_md();
    let security_now = std::fs::read_to_string(root.join(claims::SECURITY_MD_PATH)).unwrap_or_default();
    let stale: Vec<(&str, &String)> =
        [(claims::SECURITY_MD_PATH, &security, security_now), (claims::README_PATH, &readme, readme_now)]
            .into_iter()
            .filter(|(_, new, now)| *new != now)
            .map(|(file, new, _)| (file, new))
            .collect();
    if args.check {
        if stale.is_empty() {
            println!("{} and {} match {}", claims::SECURITY_MD_PATH, claims::README_PATH, claims::MANIFEST_PATH);
            return Ok(ExitCode::SUCCESS);
        }
        for (file, _) in &stale {
            eprintln!("{file} differs from {}: run `countersign security-docs`", claims::MANIFEST_PATH);
        }
        return Ok(ExitCode::FAILURE);
    }
    for (file, text) in &stale {
        std::fs::write(root.join(file), text).with_context(|| format!("cannot write {file}"))?;
        println!("wrote {file}");
    }
    if stale.is_empty() {
        println!("{} and {} already match {}", claims::SECURITY_MD_PATH, claims::README_PATH, claims::MANIFEST_PATH);
    }
    Ok(ExitCode::SUCCESS)
}
