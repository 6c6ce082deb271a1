//! The project's Python virtualenv for test tools (schemathesis, aiosmtpd), pinned in
//! `tests/requirements.txt`. `.ci/run` installs it; a test that needs it and finds it missing or
//! out of date installs it the same way, or fails. No test passes without running its tool.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/st-venv`, with every pinned requirement installed (under a file lock, so parallel
/// test processes install once). Panics, failing the test, when it cannot be installed.
pub fn ensure() -> PathBuf {
    let venv = root().join("target/st-venv");
    let wanted = std::fs::read_to_string(root().join("tests/requirements.txt")).expect("tests/requirements.txt");
    let marker = venv.join("requirements.installed");
    let current = || std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str());
    if current() {
        return venv;
    }
    std::fs::create_dir_all(root().join("target")).expect("target dir");
    let lock = std::fs::File::create(root().join("target/st-venv.lock")).expect("lock file");
    lock.lock().expect("lock the virtualenv");
    if !current() {
        install(&venv);
        std::fs::write(&marker, &wanted).expect("marker");
    }
    drop(lock);
    venv
}

fn install(venv: &Path) {
    if !venv.join("bin/pip").exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(venv), "python3 -m venv (apt-get install python3-venv)");
    }
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", "-r"])
            .arg(root().join("tests/requirements.txt")),
        "pip install -r tests/requirements.txt",
    );
}

fn run(c: &mut Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The virtualenv's executable `name` (e.g. `st`, `python`).
pub fn bin(name: &str) -> PathBuf {
    ensure().join("bin").join(name)
}
