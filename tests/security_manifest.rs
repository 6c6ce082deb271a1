//! The security claims manifest (security/controls.toml) is true to the repository: every test
//! it names exists, every claim marked in place names one, ids are unique, and docs/SECURITY.md
//! and the README's section say what it says. `GET /api/v1/security` serves it publicly with
//! live figures and no tenant data.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::org;
use serde_json::Value;
use store::testing::TestDb;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest() -> claims::Manifest {
    let text = std::fs::read_to_string(root().join(claims::MANIFEST_PATH)).expect("security/controls.toml");
    claims::parse(&text).expect("the manifest parses")
}

#[test]
fn every_named_test_exists_and_every_control_in_place_has_one() {
    let m = manifest();
    let problems = m.problems();
    assert!(problems.is_empty(), "security/controls.toml:\n{}", problems.join("\n"));
    let missing = m.missing_tests(&root());
    assert!(missing.is_empty(), "tests named in security/controls.toml that do not exist:\n{}", missing.join("\n"));
    // The binary serves the manifest it was built with: the same one.
    let embedded = claims::manifest().expect("the embedded manifest parses");
    assert_eq!(embedded.controls.len(), m.controls.len());
    assert_eq!(embedded.guarantees.len(), m.guarantees.len());
    // Every seed page is covered, and every claim the README tables made before the manifest.
    assert_eq!(m.seeds(), ["000", "001", "002", "003", "004"]);
    assert!(m.guarantees.len() >= 100, "guarantees were dropped: {}", m.guarantees.len());
    for c in m.controls.iter().filter(|c| c.status != claims::Status::InPlace) {
        assert!(!c.how.trim().is_empty(), "{} says what is missing", c.id);
    }
}

#[test]
fn the_checker_refuses_a_missing_test_an_untested_claim_and_a_repeated_id() {
    let dir = std::env::temp_dir().join(format!("countersign-claims-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("tests")).expect("dir");
    std::fs::write(
        dir.join("tests/fake.rs"),
        "#[test]\nfn real() {}\n\nfn helper() {}\n\n#[tokio::test]\n#[ignore]\nasync fn skipped() {}\n",
    )
    .expect("fake tests");
    let text = r#"
[[area]]
id = "a"
title = "A"

[[guarantee]]
id = "g-1"
area = "a"
status = "in_place"
claim = "proven"
how = "here"
tests = ["tests/fake.rs::real"]

[[guarantee]]
id = "g-2"
area = "a"
status = "in_place"
claim = "untested"
how = "here"

[[guarantee]]
id = "g-3"
area = "a"
status = "partial"
claim = "a helper is not a test"
how = "here"
tests = ["tests/fake.rs::helper", "tests/fake.rs::skipped", "tests/gone.rs::real", "../etc/passwd.rs::real"]

[[guarantee]]
id = "g-1"
area = "nowhere"
status = "in_place"
claim = "repeated"
how = "here"
tests = ["tests/fake.rs::real", "tests/fake.rs::real"]

[[control]]
id = "s000-01"
seed = "000"
topic = "T"
claim = "in place, attacked through a guarantee"
status = "in_place"
how = "here"
guarantees = ["g-1"]

[[control]]
id = "s000-02"
seed = "000"
topic = "T"
claim = "in place with nothing"
status = "in_place"
how = "here"
guarantees = ["g-9"]

[[control]]
id = "s001-03"
seed = "000"
topic = "T"
claim = "wrong seed in the id"
status = "not_yet"
how = "here"
"#;
    let m = claims::parse(text).expect("parses");
    let problems = m.problems().join("\n");
    for expected in [
        "g-2: marked in_place but names no test",
        "id `g-1` is used twice",
        "g-1: unknown area `nowhere`",
        "g-1: names `tests/fake.rs::real` twice",
        "g-3: `../etc/passwd.rs::real` is not",
        "s000-02: names unknown guarantee `g-9`",
        "s000-02: marked in_place but names no test",
        "s001-03: a control's id is `s<seed>-<nn>`",
    ] {
        assert!(problems.contains(expected), "expected {expected:?} in:\n{problems}");
    }
    assert!(!problems.contains("s000-01"), "a control attacked through its guarantee is fine:\n{problems}");
    let missing = m.missing_tests(&dir).join("\n");
    for expected in [
        "tests/fake.rs::helper (named by g-3): tests/fake.rs declares no test `fn helper`",
        "tests/fake.rs::skipped (named by g-3): tests/fake.rs declares no test",
        "tests/gone.rs::real (named by g-3): tests/gone.rs does not exist (a test of that name is in tests/fake.rs)",
    ] {
        assert!(missing.contains(expected), "expected {expected:?} in:\n{missing}");
    }
    assert!(!missing.contains("tests/fake.rs::real "), "a real test is found:\n{missing}");
    // Typos do not pass silently: unknown fields and statuses are refused.
    let typo = text.replacen("tests = [\"tests/fake.rs::real\"]", "test = [\"tests/fake.rs::real\"]", 1);
    assert!(claims::parse(&typo).is_err(), "`test` is not a field");
    assert!(claims::parse(&text.replacen("\"partial\"", "\"done\"", 1)).is_err(), "`done` is not a status");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A copy of what `security-docs` reads: the manifest, the two documents and every named test file.
fn copy_inputs(m: &claims::Manifest, to: &Path) {
    let files = m.distinct_tests().into_iter().filter_map(|t| claims::TestRef::parse(t).map(|r| r.file)).chain([
        claims::MANIFEST_PATH,
        claims::README_PATH,
        claims::SECURITY_MD_PATH,
    ]);
    for f in files {
        let dest = to.join(f);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("dir");
        std::fs::copy(root().join(f), &dest).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
}

fn security_docs(root: &Path, check: bool) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_countersign"));
    cmd.arg("security-docs").arg("--root").arg(root);
    if check {
        cmd.arg("--check");
    }
    cmd.env_remove("DATABASE_URL").output().expect("run countersign security-docs")
}

#[test]
fn docs_and_readme_match_the_manifest_and_drift_is_refused() {
    let m = manifest();
    let hint = "run `cargo run -- security-docs` and commit the result";
    let security = std::fs::read_to_string(root().join(claims::SECURITY_MD_PATH)).expect("docs/SECURITY.md");
    assert!(security == m.security_md(), "docs/SECURITY.md differs from security/controls.toml: {hint}");
    let readme = std::fs::read_to_string(root().join(claims::README_PATH)).expect("README.md");
    let spliced = claims::splice_readme(&readme, &m.readme_section()).expect("README markers");
    assert!(readme == spliced, "the README's security section differs from security/controls.toml: {hint}");
    // The long tables live in docs/SECURITY.md; the README keeps the summary.
    assert!(!readme.contains("| Guarantee | How | Proven by |"), "guarantee tables belong in docs/SECURITY.md");
    assert!(readme.contains("](docs/SECURITY.md"), "the README links docs/SECURITY.md");

    // The command agrees, and refuses drift: a hand edit of either document fails `--check`, and
    // writing puts it right.
    let ok = security_docs(&root(), true);
    assert!(ok.status.success(), "security-docs --check: {}", String::from_utf8_lossy(&ok.stderr));
    let dir = std::env::temp_dir().join(format!("countersign-docs-{}", uuid::Uuid::new_v4().simple()));
    copy_inputs(&m, &dir);
    let readme_copy = dir.join(claims::README_PATH);
    let edited = readme.replacen("Key claims:", "Key claims (edited by hand):", 1);
    assert_ne!(edited, readme);
    std::fs::write(&readme_copy, edited).expect("edit");
    std::fs::write(dir.join(claims::SECURITY_MD_PATH), security.replacen("in place", "in  place", 1)).expect("edit");
    let drift = security_docs(&dir, true);
    let err = String::from_utf8_lossy(&drift.stderr);
    assert_eq!(drift.status.code(), Some(1), "{err}");
    assert!(err.contains("README.md differs") && err.contains("docs/SECURITY.md differs"), "{err}");
    let write = security_docs(&dir, false);
    assert!(write.status.success(), "{}", String::from_utf8_lossy(&write.stderr));
    assert_eq!(std::fs::read_to_string(&readme_copy).expect("readme"), readme);
    assert!(security_docs(&dir, true).status.success());
    // A manifest naming a test that does not exist writes nothing.
    let manifest_copy = dir.join(claims::MANIFEST_PATH);
    let text = std::fs::read_to_string(&manifest_copy).expect("manifest");
    let broken = text.replacen("::every_tenant_table_refuses_cross_tenant_reads_and_writes", "::no_such_test", 1);
    std::fs::write(&manifest_copy, broken).expect("break");
    std::fs::write(&readme_copy, "stale").expect("stale");
    let refused = security_docs(&dir, false);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("no_such_test"), "{err}");
    assert_eq!(std::fs::read_to_string(&readme_copy).expect("readme"), "stale", "nothing written");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every 36-byte window of `text` that is a hyphenated UUID.
fn uuids_in(text: &str) -> Vec<String> {
    text.as_bytes()
        .windows(36)
        .filter(|w| w[8] == b'-' && w[13] == b'-' && uuid::Uuid::try_parse_ascii(w).is_ok())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

#[tokio::test]
async fn the_security_endpoint_is_public_and_carries_the_matrix_figures_and_commit_but_no_tenant() {
    let route = web::route_table(false).into_iter().find(|r| r.path == "/api/v1/security").expect("routed");
    assert!(matches!(route.guard, web::guard::Guard::Public(_)), "{:?}", route.guard);

    let db = TestDb::new().await;
    let a = org(&db, "zqx-security-a").await;
    let b = org(&db, "zqx-security-b").await;
    // One cross-tenant write refused, and the fixtures' events checkpointed by this process.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let e = sqlx::query("insert into departments (tenant_id, id, code, name) values ($1, gen_random_uuid(), 'X', 'x')")
        .bind(b.id.as_uuid())
        .execute(tx.conn())
        .await
        .expect_err("refused");
    assert!(matches!(store::StoreError::from(e), store::StoreError::CrossTenant));
    drop(tx);
    let before = chrono::Utc::now();
    let signed = audit::checkpoint::checkpoint_dirty(&db.store, &common::test_key()).await.expect("checkpoint");
    assert!(signed >= 1, "a chain moved: {signed}");

    let app = common::TestApp::new(&db).await;
    // No credential, no cookie: answered.
    let r = app.anonymous().get("/api/v1/security").await;
    assert_eq!(r.status, reqwest::StatusCode::OK);
    assert!(r.headers["content-type"].to_str().expect("ct").starts_with("application/json"));
    let text = r.text;
    let v: Value = serde_json::from_str(&text).expect("json");

    // The build's commit: what git says HEAD is, when git can say.
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let commit = v["commit"].as_str().expect("commit");
    match head {
        Some(head) => assert_eq!(commit, head, "the commit the server was built from"),
        None => assert!(commit == "unknown" || commit.len() == 40, "{commit}"),
    }

    // The matrix: the manifest's controls and guarantees, counted per status, tests attached.
    let m = manifest();
    let controls = v["controls"].as_array().expect("controls");
    assert_eq!(controls.len(), m.controls.len());
    assert_eq!(v["guarantees"].as_array().expect("guarantees").len(), m.guarantees.len());
    let counts = m.counts();
    assert_eq!(v["counts"]["in_place"], counts.in_place);
    assert_eq!(v["counts"]["partial"], counts.partial);
    assert_eq!(v["counts"]["not_yet"], counts.not_yet);
    assert_eq!(v["counts"]["total"], controls.len());
    for c in controls {
        let status = c["status"].as_str().expect("status");
        assert!(["in_place", "partial", "not_yet"].contains(&status), "{c}");
        if status == "in_place" {
            assert!(!c["tests"].as_array().expect("tests").is_empty(), "in place without a test: {c}");
        }
    }
    let s00301 = controls.iter().find(|c| c["id"] == "s003-01").expect("s003-01");
    assert!(
        s00301["tests"]
            .as_array()
            .expect("tests")
            .iter()
            .any(|t| t == "tests/isolation.rs::every_tenant_table_refuses_cross_tenant_reads_and_writes"),
        "a control carries its guarantees' tests: {s00301}"
    );

    // Live figures: today's, counting what happened above.
    let live = &v["live"];
    assert_eq!(live["day"], chrono::Utc::now().date_naive().to_string(), "{live}");
    assert!(live["tenant_transactions_today"].as_u64().expect("tx") >= 3, "{live}");
    assert_eq!(live["cross_tenant_refused_today"], 1, "{live}");
    assert_eq!(live["shared"], true, "{live}");
    assert!(live["checkpoints_signed"].as_u64().expect("signed") >= 1, "{live}");
    let last: chrono::DateTime<chrono::Utc> =
        live["last_checkpoint_at"].as_str().expect("last checkpoint").parse().expect("time");
    assert!(last >= before - chrono::Duration::seconds(1), "{live}");

    // No tenant data: no organisation's id, slug or name, no member, nothing shaped like an id.
    for needle in ["zqx-security", "Org zqx"] {
        assert!(!text.contains(needle), "{needle} leaked");
    }
    let ids: Vec<String> =
        [a.id.as_uuid(), b.id.as_uuid()].into_iter().chain(a.users.iter().copied()).map(|u| u.to_string()).collect();
    for id in &ids {
        assert!(!text.contains(id.as_str()), "{id} leaked");
    }
    assert_eq!(uuids_in(&text), Vec::<String>::new(), "no id of any kind");

    // Typed in the description, without a security requirement.
    let d: Value = serde_json::from_str(&app.anonymous().get("/api/openapi.json").await.text).expect("json");
    let op = &d["paths"]["/api/v1/security"]["get"];
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/SecurityMatrix",
        "{op}"
    );
    assert!(op["security"].is_null(), "{op}");
    assert!(d["components"]["schemas"]["LiveFigures"]["properties"]["cross_tenant_refused_today"].is_object());
}
