//! The files an operator deploys with (issue 19): the systemd unit in `dist/systemd` is accepted
//! by `systemd-analyze verify` and stays hardened (`systemd-analyze security --offline` exposure at
//! most 2.0 of 10); the example configuration in `dist/` is one `config check` accepts.

use std::path::Path;
use std::process::Command;

const UNIT: &str = "dist/systemd/countersign.service";
/// The exposure `systemd-analyze security` gives the unit today is 1.2 ("OK"); this is the bound.
const MOST_EXPOSURE: f64 = 2.0;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The unit, with its ExecStart pointed at the binary under test (verify checks it exists).
fn unit_under_test(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root().join(UNIT)).expect("unit");
    assert!(text.contains("ExecStart=/usr/local/bin/countersign serve --config /etc/countersign/countersign.toml"));
    let path = dir.join("countersign.service");
    std::fs::write(&path, text.replace("/usr/local/bin/countersign", env!("CARGO_BIN_EXE_countersign")))
        .expect("write");
    path
}

#[test]
fn the_systemd_unit_verifies_and_stays_hardened() {
    assert!(
        Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()),
        "this test needs systemd-analyze (Debian's systemd package)"
    );
    let dir = tempfile::tempdir().expect("dir");
    let unit = unit_under_test(dir.path());
    let verify = Command::new("systemd-analyze").arg("verify").arg(&unit).output().expect("verify");
    let said = String::from_utf8_lossy(&verify.stderr).into_owned() + &String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");

    let security =
        Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&unit).output().expect("security");
    let report = String::from_utf8_lossy(&security.stdout).into_owned();
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for countersign.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in:\n{report}{}", String::from_utf8_lossy(&security.stderr)));
    println!("systemd-analyze security: exposure {exposure} of 10");
    assert!(exposure <= MOST_EXPOSURE, "the unit's exposure rose to {exposure}:\n{report}");
    for must in
        ["DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "UMask=0077"]
    {
        assert!(std::fs::read_to_string(&unit).expect("unit").contains(must), "the unit lost {must:?}");
    }
}

#[test]
fn the_example_configuration_is_accepted_by_config_check() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("database-url");
    std::fs::write(&secret, "postgres://countersign:s3cret-example@db.internal/countersign\n").expect("write");
    let example = std::fs::read_to_string(root().join("dist/countersign.example.toml")).expect("example");
    let config = dir.path().join("countersign.toml");
    std::fs::write(&config, example.replace("/etc/countersign/database-url", secret.to_str().expect("utf-8")))
        .expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["config", "check", "--config"])
        .arg(&config)
        .env_remove("DATABASE_URL")
        .env_remove("COUNTERSIGN_LISTEN")
        .output()
        .expect("run");
    let said = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("database-url = (set, redacted)  # secret file"), "{said}");
    assert!(said.contains("public-url = \"https://approvals.example.com\"  # configuration file"), "{said}");
    assert!(!said.contains("s3cret-example"), "{said}");
}
