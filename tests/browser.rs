//! The web application in a real browser: Debian's Chromium driven by `playwright-core` (pinned in
//! `package-lock.json`; never `playwright install`), headless, on loopback. The Rust test starts
//! the real server with seeded people and runs `node tests/browser/<flow>.mjs`, which fails on any
//! console error, any CSP violation, or any serious or critical axe-core finding on a page it
//! visits. A missing Chromium or node fails the test with what to install; a missing or outdated
//! `node_modules` is installed with `npm ci`, the way `.ci/run` does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Org, TestApp, member, org};
use identity::Role;
use store::testing::TestDb;

const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `node_modules` as `package-lock.json` pins it (installed once, under a lock, when missing or
/// out of date; the copy of the lock it was installed from is kept beside it).
fn node_modules() -> PathBuf {
    let lock = std::fs::read_to_string(root().join("package-lock.json")).expect("package-lock.json");
    let marker = root().join("target/node-modules.installed");
    let current = || {
        std::fs::read_to_string(&marker).ok().as_deref() == Some(lock.as_str())
            && root().join("node_modules/playwright-core/package.json").exists()
            && root().join("node_modules/axe-core/axe.min.js").exists()
    };
    if !current() {
        std::fs::create_dir_all(root().join("target")).expect("target dir");
        let guard = std::fs::File::create(root().join("target/node-modules.lock")).expect("lock file");
        guard.lock().expect("lock node_modules");
        if !current() {
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(root())
                .output()
                .unwrap_or_else(|e| panic!("npm ci: {e} (apt-get install nodejs npm)"));
            assert!(
                out.status.success(),
                "npm ci failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(&marker, &lock).expect("marker");
        }
        drop(guard);
    }
    root().join("node_modules")
}

fn require_tools() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the browser tests need Debian's Chromium (apt-get install chromium); they never download one"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "node is missing: apt-get install nodejs npm");
}

/// Runs `tests/browser/<flow>.mjs` against `app` with `env`; fails with its output unless it
/// exits 0.
fn run_flow(flow: &str, app: &TestApp, env: &[(&str, String)]) {
    require_tools();
    let modules = node_modules();
    let script = root().join("tests/browser").join(format!("{flow}.mjs"));
    let out = Command::new("node")
        .arg(&script)
        .current_dir(root())
        .env("BASE_URL", &app.base)
        .env("CHROMIUM", CHROMIUM)
        .env("AXE_PATH", modules.join("axe-core/axe.min.js"))
        .env("NODE_PATH", &modules)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("node {}: {e}", script.display()));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(out.status.success(), "{flow}.mjs failed ({}):\n{stdout}\n{stderr}", out.status);
}

/// acme with staff, HOD, finance and MD (every EUR amount needs the MD: acme sets no EUR
/// threshold), and beta, whose document acme must not reach.
async fn seeded() -> (TestDb, TestApp, Org, Org) {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    let beta = org(&db, "beta").await;
    for u in &acme.users {
        common::with_password(&db, *u).await;
    }
    member(&db, acme.id, "acme", "fin", Role::Finance, None, true).await;
    member(&db, acme.id, "acme", "md", Role::Md, None, true).await;
    // Plain HTTP on loopback: cookies without `Secure` (tests/pages.rs checks the flag itself).
    let mut state = TestApp::setup(&db).roomy().state();
    state.secure_cookies = false;
    let app = TestApp::serve(state).await;
    (db, app, acme, beta)
}

async fn document_of(db: &TestDb, o: &Org) -> uuid::Uuid {
    let mut tx = db.store.tenant_tx(o.id).await.expect("tx");
    let id =
        sqlx::query_scalar("select id from documents where title = 'fixture'").fetch_one(tx.conn()).await.expect("doc");
    tx.commit().await.expect("commit");
    id
}

/// Staff raise a voucher; HOD (by keyboard only), finance and MD approve it, each in their own
/// browser context; finance pays it. Two tabs approve one document: one wins, the other is told
/// someone acted first. Another organisation's document URL is the not-found page. No console
/// error, no CSP violation, no serious or critical axe finding on any page on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_raise_approve_and_pay_a_voucher_in_a_real_browser() {
    let (db, app, _acme, beta) = seeded().await;
    let theirs = document_of(&db, &beta).await;
    let env = [
        ("ORG", "acme".to_owned()),
        ("PASSWORD", common::PASSWORD.to_owned()),
        ("STAFF", "user1@acme.example".to_owned()),
        ("HOD", "user2@acme.example".to_owned()),
        ("FINANCE", "fin@acme.example".to_owned()),
        ("MD", "md@acme.example".to_owned()),
        ("OTHER_ORG_DOCUMENT", theirs.to_string()),
    ];
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_flow("approvals", &app2, &env)).await.expect("flow");
}

/// An admin approves a pending joiner and changes a member's role in Chromium; the member's open
/// page is signed out on its next request; staff are refused the members page; the audit trail
/// and my account on the way. No console error, no CSP violation, no serious or critical axe
/// finding on any page (tests/browser/admin.mjs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_approves_a_joiner_and_changes_a_role_that_signs_the_member_out_in_a_real_browser() {
    let (db, app, acme, _beta) = seeded().await;
    let joiner = member(&db, acme.id, "acme", "joiner", Role::Staff, None, false).await;
    let mut tx = db.store.tenant_tx(acme.id).await.expect("tx");
    sqlx::query("update memberships set status = 'pending' where user_id = $1")
        .bind(joiner)
        .execute(tx.conn())
        .await
        .expect("pending joiner");
    tx.commit().await.expect("commit");
    let env = [
        ("ORG", "acme".to_owned()),
        ("PASSWORD", common::PASSWORD.to_owned()),
        ("ADMIN", "user0@acme.example".to_owned()),
        ("STAFF", "user1@acme.example".to_owned()),
        ("STAFF_NAME", "User 1".to_owned()),
        ("JOINER_NAME", "joiner".to_owned()),
    ];
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_flow("admin", &app2, &env)).await.expect("flow");
}

/// A query back to the raiser, who edits the voucher while it is queried and answers on its
/// page; the HOD sees the answer and approves by keyboard; the inbox filtered by kind; two
/// documents approved in bulk through one confirmation; finance closes a period and the MD
/// reopens it with a reason (tests/browser/documents.mjs). No console error, no CSP violation,
/// no serious or critical axe finding on any page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raiser_edits_and_answers_a_query_and_an_approver_bulk_approves_in_a_real_browser() {
    let (_db, app, _acme, _beta) = seeded().await;
    let env = [
        ("ORG", "acme".to_owned()),
        ("PASSWORD", common::PASSWORD.to_owned()),
        ("STAFF", "user1@acme.example".to_owned()),
        ("HOD", "user2@acme.example".to_owned()),
        ("FINANCE", "fin@acme.example".to_owned()),
        ("MD", "md@acme.example".to_owned()),
    ];
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_flow("documents", &app2, &env)).await.expect("flow");
}

/// The sign-in side in Chromium (tests/browser/signin.mjs): a page and a form keep their session
/// after the access cookie is gone (the resume); an authenticator app set up on the account page,
/// then sign-ins with its code and with a recovery code; a member of an organisation that
/// requires a second factor signs in with the mailed code and is walked through the setup (every
/// page sends them back to it until the app is on) into the inbox; a sign-in with a code by email (codes read from the dev outbox). No console error,
/// no CSP violation, no serious or critical axe finding on any page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_with_totp_recovery_and_mailed_codes_enrol_when_required_and_keep_their_session() {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    let gamma = org(&db, "gamma").await;
    for u in acme.users.iter().chain(&gamma.users) {
        common::with_password(&db, *u).await;
    }
    member(&db, acme.id, "acme", "fin", Role::Finance, None, true).await;
    let mut admin = db.admin_conn().await;
    sqlx::query("update tenants set require_mfa = true where id = $1")
        .bind(gamma.id.as_uuid())
        .execute(&mut admin)
        .await
        .expect("gamma requires MFA");
    let mut state = TestApp::setup(&db).roomy().dev_outbox().state();
    state.secure_cookies = false;
    let app = TestApp::serve(state).await;
    let env = [
        ("ORG", "acme".to_owned()),
        ("PASSWORD", common::PASSWORD.to_owned()),
        ("FINANCE", "fin@acme.example".to_owned()),
        ("HOD", "user2@acme.example".to_owned()),
        ("STAFF", "user1@acme.example".to_owned()),
        ("FIXTURE_DOCUMENT", document_of(&db, &acme).await.to_string()),
        ("FORCED_ORG", "gamma".to_owned()),
        ("FORCED", "user1@gamma.example".to_owned()),
    ];
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_flow("signin", &app2, &env)).await.expect("flow");
}

/// Files on the document page (tests/browser/attachments.mjs): a PNG and a PDF uploaded through
/// the form's script with the progress bar driven to its max, the image previewed inline (it
/// decodes), the PDF previewed as `application/pdf` inline, the download byte for byte, an
/// executable renamed `.pdf` refused, a removal after its confirmation and a restore. No console
/// error, no CSP violation, no serious or critical axe finding on any page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_upload_with_progress_preview_download_remove_and_restore_files_in_a_real_browser() {
    let (db, app, acme, _beta) = seeded().await;
    // The fixture's file rows name a data key this server's keys cannot open: start without them.
    let mut admin = db.admin_conn().await;
    for sql in [
        "update document_attachments set blob_id = null",
        "delete from mdf_claim_proofs",
        "delete from blobs",
        "delete from blob_keys",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    let staff = app.sign_in("acme", "user1@acme.example").await;
    let body = serde_json::json!({"kind": "voucher", "department_id": acme.department.to_string(),
        "title": "Office chairs", "document_date": "2000-03-01", "currency": "EUR",
        "lines": [{"description": "Four chairs", "amount_minor": 48000}],
        "attachments": [{"name": "Quote from the shop", "reference": "dms://quotes/2000/17"}]});
    let r = staff.post("/api/v1/documents", body).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED, "{r}");
    let env = [
        ("ORG", "acme".to_owned()),
        ("PASSWORD", common::PASSWORD.to_owned()),
        ("STAFF", "user1@acme.example".to_owned()),
        ("DOCUMENT", r.body["id"].as_str().expect("id").to_owned()),
    ];
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_flow("attachments", &app2, &env)).await.expect("flow");
}

/// Market development funds in Chromium (tests/browser/mdf.mjs): partner A requests funds from its
/// quarter's budget, the channel manager approves, the partner files a claim and attaches a proof
/// file, finance approves and pays it; partner B sees none of it. No console error, no CSP
/// violation, no serious or critical axe finding on any page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_requests_and_claims_mdf_with_proof_and_the_vendor_approves_and_pays_in_a_real_browser() {
    let (db, app, acme, _beta) = seeded().await;
    let mut admin = db.admin_conn().await;
    for sql in [
        "update document_attachments set blob_id = null",
        "delete from mdf_claim_proofs",
        "delete from blobs",
        "delete from blob_keys",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    let (pa, pb) = (acme.partners[0], acme.partners[1]);
    for (p, email) in [(pa, "alice@partner-a.example"), (pb, "bob@partner-b.example")] {
        let u = common::partner_person(&db, acme.id, p, email, Role::PartnerAdmin).await;
        common::with_password(&db, u).await;
    }
    member(&db, acme.id, "acme", "cm", Role::ChannelManager, None, true).await;
    let mut tx = db.store.program_tx(acme.id, store::ProgramScope::Vendor).await.expect("tx");
    programs::mdf::create_budget(
        &mut tx,
        &common::who(),
        &authz::Permit::operator(authz::Action::MdfBudgetManage, acme.id.as_uuid()),
        acme.users[0],
        &programs::mdf::NewBudget {
            partner_id: pa,
            period: "2026-Q4".into(),
            currency: "EUR".into(),
            amount_minor: Some(100_000),
        },
    )
    .await
    .expect("budget");
    tx.commit().await.expect("commit");
    let env = [
        ("ORG", "acme".to_owned()),
        ("PASSWORD", common::PASSWORD.to_owned()),
        ("ALICE", "alice@partner-a.example".to_owned()),
        ("BOB", "bob@partner-b.example".to_owned()),
        ("CHANNEL", "cm@acme.example".to_owned()),
        ("FINANCE", "fin@acme.example".to_owned()),
    ];
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_flow("mdf", &app2, &env)).await.expect("flow");
}

/// The partner journey in Chromium (tests/browser/partner.mjs): a partner agent registers a deal,
/// the channel manager approves it in another browser context, the agent opens an opportunity and
/// closes it won, finance approves the commission and marks it payable, and the agent sees it
/// approved, then payable; the agent disputes it and finance resolves it with a corrected amount
/// (bad input on both forms first: the words under the field, what was typed kept); partner B
/// sees none of it. No console error, no CSP violation, no
/// serious or critical axe finding on any page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_registers_a_deal_that_is_approved_won_and_its_commission_approved_in_a_real_browser() {
    let (db, app, acme, _beta) = seeded().await;
    let (pa, pb) = (acme.partners[0], acme.partners[1]);
    for (p, email, role) in
        [(pa, "agent@partner-a.example", Role::PartnerAgent), (pb, "bob@partner-b.example", Role::PartnerAdmin)]
    {
        let u = common::partner_person(&db, acme.id, p, email, role).await;
        common::with_password(&db, u).await;
    }
    member(&db, acme.id, "acme", "cm", Role::ChannelManager, None, true).await;
    let env = [
        ("ORG", "acme".to_owned()),
        ("PASSWORD", common::PASSWORD.to_owned()),
        ("AGENT", "agent@partner-a.example".to_owned()),
        ("BOB", "bob@partner-b.example".to_owned()),
        ("CHANNEL", "cm@acme.example".to_owned()),
        ("FINANCE", "fin@acme.example".to_owned()),
    ];
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_flow("partner", &app2, &env)).await.expect("flow");
}

/// The vendor portal (issue 16): an admin adds a vendor, shares a purchase order with it and
/// makes a portal link; the vendor opens it in a browser of their own, sees the PO and uploads an
/// invoice with the progress bar; the raiser sees the invoice on the document; the same link
/// opened again is refused. No console error, no CSP violation, no serious or critical axe
/// finding on any page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_opens_a_portal_link_sees_the_po_and_uploads_an_invoice_in_a_real_browser() {
    let (db, app, acme, _beta) = seeded().await;
    let mut admin = db.admin_conn().await;
    for sql in [
        "update document_attachments set blob_id = null",
        "delete from mdf_claim_proofs",
        "delete from blobs",
        "delete from blob_keys",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    let staff = app.sign_in("acme", "user1@acme.example").await;
    let body = serde_json::json!({"kind": "purchase_order", "department_id": acme.department.to_string(),
        "title": "Office chairs", "document_date": "2000-03-01", "currency": "EUR",
        "lines": [{"description": "Four chairs", "amount_minor": 48000}]});
    let r = staff.post("/api/v1/documents", body).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED, "{r}");
    let env = [
        ("ORG", "acme".to_owned()),
        ("PASSWORD", common::PASSWORD.to_owned()),
        ("ADMIN", "user0@acme.example".to_owned()),
        ("STAFF", "user1@acme.example".to_owned()),
        ("PO", r.body["id"].as_str().expect("id").to_owned()),
    ];
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_flow("portal", &app2, &env)).await.expect("flow");
}

/// Single sign-on (tests/browser/sso.mjs) against the real oidc-provider peer (as tests/oidc.rs
/// starts it): an administrator sets the provider up on the settings page and tests it; a member
/// signs in from the sign-in page's button through the provider's login page, across sites (the
/// server as `localhost`, the provider at `127.0.0.1`), and lands in the inbox signed in. No
/// console error, no CSP violation, no serious or critical axe finding on any of our pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_signs_in_through_the_identity_providers_login_page_into_the_inbox_in_a_real_browser() {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    common::with_password(&db, acme.users[0]).await;
    let mut state = TestApp::setup(&db).roomy().state();
    state.secure_cookies = false;
    let app = TestApp::serve(state).await;
    let base = app.base.replace("127.0.0.1", "localhost");
    let idp = common::oidc::Provider::start(
        &format!("{base}/sign-in/sso/callback"),
        vec![common::oidc::account("ada", "sub-ada", "user1@acme.example", true)],
    );
    let env = [
        ("BASE_URL", base),
        ("ORG", "acme".to_owned()),
        ("PASSWORD", common::PASSWORD.to_owned()),
        ("ADMIN", "user0@acme.example".to_owned()),
        ("MEMBER", "user1@acme.example".to_owned()),
        ("IDP_LOGIN", "ada".to_owned()),
        ("ISSUER", idp.issuer.clone()),
        ("CLIENT_ID", common::oidc::CLIENT_ID.to_owned()),
        ("CLIENT_SECRET", common::oidc::CLIENT_SECRET.to_owned()),
    ];
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_flow("sso", &app2, &env)).await.expect("flow");
    assert_eq!(common::audit_count(&db, acme.id, "auth.sso_linked").await, 1);
    drop(idp);
}

/// SAML single sign-on (tests/browser/saml.mjs) against the real pysaml2 IdP (as tests/saml.rs
/// starts it): an administrator uploads the IdP's metadata on the settings page and tests the
/// connection; a member signs in from the sign-in page's button through the IdP's login page
/// and lands in the inbox signed in; the same response replayed from that browser is refused with
/// a readable page. No console error, no CSP violation, no serious or critical axe finding on any
/// of our pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_signs_in_through_the_saml_idps_login_page_and_a_replayed_response_is_refused_in_a_real_browser() {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    common::with_password(&db, acme.users[0]).await;
    let mut state = TestApp::setup(&db).roomy().state();
    state.secure_cookies = false;
    let app = TestApp::serve(state).await;
    let sp = app.anonymous().get("/saml/acme/metadata").await;
    assert_eq!(sp.status, reqwest::StatusCode::OK, "{sp}");
    let idp = common::saml::Idp::start(&[sp.text]);
    let env = [
        ("ORG", "acme".to_owned()),
        ("PASSWORD", common::PASSWORD.to_owned()),
        ("ADMIN", "user0@acme.example".to_owned()),
        ("MEMBER", "user1@acme.example".to_owned()),
        ("IDP_BASE", idp.base.clone()),
        ("IDP_METADATA", idp.metadata().await),
    ];
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_flow("saml", &app2, &env)).await.expect("flow");
    assert_eq!(common::audit_count(&db, acme.id, "auth.sso_linked").await, 1);
    assert_eq!(common::audit_count(&db, acme.id, "saml.config_changed").await, 1);
    let mut tx = db.store.tenant_tx(acme.id).await.expect("tx");
    let replayed: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where action = 'auth.sso_failed' and changes::text like '%saml_assertion_replayed%'",
    )
    .fetch_one(tx.conn())
    .await
    .expect("count");
    tx.commit().await.expect("commit");
    assert_eq!(replayed, 1, "the replay is on record");
    drop(idp);
}

/// The SCIM settings page in Chromium (tests/browser/scim.mjs): the identity provider has put the
/// staff member in "Finance Approvers"; the admin maps that group to Finance from the form (owner
/// is not offered), the member's open page is signed out on its next request, and the mapping is
/// removed. No console error, no CSP violation, no serious or critical axe finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_maps_a_scim_group_to_a_role_that_signs_its_member_out_in_a_real_browser() {
    let (db, app, acme, _beta) = seeded().await;
    let (_, token) = common::scim_token(&db, acme.id, "Okta").await;
    let idp = app.bearer(&token);
    let person = idp
        .post(
            "/scim/v2/Users",
            serde_json::json!({"userName": "user1@acme.example", "emails": [{"value": "user1@acme.example", "primary": true}]}),
        )
        .await;
    assert_eq!(person.status, reqwest::StatusCode::CREATED, "{person}");
    let group = idp
        .post(
            "/scim/v2/Groups",
            serde_json::json!({"displayName": "Finance Approvers", "members": [{"value": person.body["id"]}]}),
        )
        .await;
    assert_eq!(group.status, reqwest::StatusCode::CREATED, "{group}");
    let env = [
        ("ORG", "acme".to_owned()),
        ("PASSWORD", common::PASSWORD.to_owned()),
        ("ADMIN", "user0@acme.example".to_owned()),
        ("STAFF", "user1@acme.example".to_owned()),
    ];
    let app2 = app.clone();
    tokio::task::spawn_blocking(move || run_flow("scim", &app2, &env)).await.expect("flow");
}
