//! The regulator bundle over HTTP: an auditor downloads one tar, and a regulator with only that
//! file and Python verifies it offline; an edited event inside it is caught; the download is
//! itself audited; staff cannot download one, and a server without the signing key says so.

mod common;

use std::path::Path;

use common::org;
use identity::Role;
use store::testing::TestDb;

async fn download(app: &common::TestApp, key: &str, query: &str) -> (u16, Vec<u8>, String) {
    let r = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/audit/bundle{query}")))
        .bearer_auth(key)
        .send()
        .await
        .expect("bundle");
    let status = r.status().as_u16();
    let disposition =
        r.headers().get("content-disposition").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, r.bytes().await.expect("body").to_vec(), disposition)
}

fn unpack(tar_bytes: &[u8], into: &Path) -> std::path::PathBuf {
    tar::Archive::new(tar_bytes).unpack(into).expect("a well-formed tar");
    let mut dirs = std::fs::read_dir(into).expect("dir").filter_map(Result::ok).collect::<Vec<_>>();
    assert_eq!(dirs.len(), 1, "one top-level directory");
    dirs.pop().expect("dir").path()
}

fn python_verifies(dir: &Path) -> (bool, String) {
    let out = std::process::Command::new("python3").arg(dir.join("verify.py")).arg(dir).output().expect("python3");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn an_auditor_downloads_a_bundle_a_regulator_verifies_offline_and_an_edit_inside_it_is_caught() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let app = common::TestApp::new(&db).await;
    let (_, auditor) = common::api_key(&db, a.id, "regulator export", Role::Auditor, &["audit:read"]).await;

    let (status, bytes, disposition) = download(&app, &auditor, "").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert!(disposition.starts_with("attachment; filename=\"audit-bundle-alpha-"), "{disposition}");
    let tmp = std::env::temp_dir().join(format!("countersign-http-bundle-{}", uuid::Uuid::new_v4().simple()));
    let dir = unpack(&bytes, &tmp);
    for f in ["events.ndjson", "checkpoints.ndjson", "public-key.pem", "manifest.json", "README.md", "verify.py"] {
        assert!(dir.join(f).is_file(), "{f} missing from the bundle");
    }
    // With the server's public key (obtained independently), and with Python alone.
    let keys = audit::TrustedKeys::of([common::test_key().public()]);
    let report = audit::bundle::verify_bundle(&dir, &keys).expect("verify");
    assert!(report.verified(), "{report:?}");
    assert!(report.chains[0].checkpoints >= 1, "the head was signed before packing: {report:?}");
    let (ok, out) = python_verifies(&dir);
    assert!(ok, "verify.py: {out}");

    // A regulator who receives an edited copy finds out.
    let events = std::fs::read_to_string(dir.join("events.ndjson")).expect("events");
    let edited = events.replacen("\"action\":\"", "\"action\":\"x", 1);
    assert_ne!(edited, events);
    std::fs::write(dir.join("events.ndjson"), edited).expect("edit");
    let report = audit::bundle::verify_bundle(&dir, &keys).expect("verify");
    assert!(!report.ok(), "an edited event must not verify: {report:?}");
    let (ok, out) = python_verifies(&dir);
    assert!(!ok, "verify.py accepted an edited bundle: {out}");
    let _ = std::fs::remove_dir_all(&tmp);

    // The download is on the ledger.
    assert_eq!(common::audit_count(&db, a.id, "audit.bundle_exported").await, 1);
}

#[tokio::test]
async fn staff_cannot_download_a_bundle_and_a_server_without_the_key_says_so() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let app = common::TestApp::new(&db).await;
    let (_, staff) = common::api_key(&db, a.id, "staff", Role::Staff, &["audit:read"]).await;
    let (status, _, _) = download(&app, &staff, "").await;
    assert_eq!(status, 403);
    assert_eq!(common::audit_count(&db, a.id, "audit.bundle_exported").await, 0);

    let (_, auditor) = common::api_key(&db, a.id, "auditor", Role::Auditor, &["audit:read"]).await;
    let (status, body, _) = download(&app, &auditor, "?from=yesterday").await;
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));

    let keyless = common::TestApp::serve(
        web::AppState::new(db.store.clone(), Default::default(), common::app::token_key()).expect("state"),
    )
    .await;
    let (status, body, _) = download(&keyless, &auditor, "").await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("signing key"));
}
