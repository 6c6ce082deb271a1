//! Helpers for the tests that run the real binary and real peers (nginx, openssl, curl, podman):
//! a free loopback port, a required tool, a self-signed certificate. Included with
//! `#[path = "common/tools.rs"] mod tools;` by the tests that do not load the whole of `common`,
//! and as `common::tools` by those that do.

// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

/// `name` as a command; the test fails (never skips) when it is not installed.
pub fn tool(name: &str) -> Command {
    assert!(
        Command::new("sh").args(["-c", &format!("command -v {name}")]).output().is_ok_and(|o| o.status.success()),
        "this test needs `{name}` (installed by .ci/run)"
    );
    Command::new(name)
}

/// A self-signed P-256 certificate for 127.0.0.1 and its key, under `dir` as
/// `<name>.crt`/`<name>.key`, made by `openssl`.
pub fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let o = tool("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", &format!("/CN={name}"), "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "openssl: {}", String::from_utf8_lossy(&o.stderr));
    (crt, key)
}
