//! The mail outbox keeps no plaintext secret: bodies (one-time codes, invitation tokens) are
//! sealed under the MFA key; delivered and expired mail is purged; `admin outbox` still shows the
//! operator what to deliver.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::org;
use identity::EmailAddress;
use identity::signin::mail::{Mail, Mailer, OutboxMailer};
use identity::signin::secret_box::SecretBox;
use serde_json::json;
use store::testing::TestDb;

const KEY: [u8; 32] = [7; 32];

fn mail(to: &str, text: &str) -> Mail {
    Mail { to: EmailAddress::parse(to).expect("email"), subject: "Your code".into(), text: text.into() }
}

/// Every byte the table holds for `to`, as the database superuser sees it.
async fn raw_rows(db: &TestDb, to: &str) -> Vec<Vec<u8>> {
    let mut admin = db.admin_conn().await;
    sqlx::query_scalar(
        "select convert_to(t::text, 'UTF8') || coalesce(ciphertext, '') from mail_outbox t where to_address = $1::text::citext",
    )
    .bind(to)
    .fetch_all(&mut admin)
    .await
    .expect("raw")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn outbox_rows_hold_no_plaintext_code_or_invitation_token() {
    let db = TestDb::new().await;
    org(&db, "acme").await;
    // A real one-time code, requested over HTTP like an attacker-reachable flow.
    let app = common::TestApp::setup(&db).mfa_keys(SecretBox::new(&KEY, &[])).dev_outbox().start().await;
    let request = json!({"organisation": "acme", "email": "user1@acme.example", "purpose": "login"});
    let r = app.anonymous().post("/api/v1/auth/email-code", request).await;
    assert!(r.status.is_success(), "{}", r.status);
    let keys = SecretBox::new(&KEY, &[]);
    let to = EmailAddress::parse("user1@acme.example").expect("email");
    let started = Instant::now();
    let body = loop {
        let mut g = db.store.global_tx().await.expect("global");
        let rows = identity::signin::mail::outbox(&mut g, &keys, Some(&to), 10).await.expect("outbox");
        g.commit().await.expect("commit");
        if let Some(m) = rows.first() {
            break m.body.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no mail");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let start = body.find(": ").expect("code in body") + 2;
    let code = &body[start..start + 8];
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{body}");
    // The dev endpoint still shows it (opened with the server's key).
    let dev = app.anonymous().get("/api/v1/dev/outbox?to=user1@acme.example").await.body;
    assert!(dev["items"][0]["body"].as_str().is_some_and(|b| b.contains(code)), "{dev}");

    // An invitation token, through the one outbox writer every mail goes through.
    let token = "csi_0123456789abcdef0123456789abcdef";
    let mailer = OutboxMailer::new(db.store.clone(), Arc::new(SecretBox::new(&KEY, &[])));
    mailer.send(&mail("guest@acme.example", &format!("Join: https://cs.example/join#{token}"))).await.expect("send");

    for (to, secret) in [("user1@acme.example", code), ("guest@acme.example", token)] {
        let rows = raw_rows(&db, to).await;
        assert!(!rows.is_empty());
        for row in rows {
            assert!(!contains(&row, secret.as_bytes()), "{secret} stored in plaintext for {to}");
        }
    }
    // A ciphertext moved to another row does not open there (bound to its row id).
    let mut admin = db.admin_conn().await;
    sqlx::query(
        "update mail_outbox d set key_id = s.key_id, nonce = s.nonce, ciphertext = s.ciphertext
           from mail_outbox s where s.to_address = 'guest@acme.example' and d.to_address = 'user1@acme.example'",
    )
    .execute(&mut admin)
    .await
    .expect("copy");
    let mut g = db.store.global_tx().await.expect("global");
    let moved = identity::signin::mail::outbox(&mut g, &keys, Some(&to), 10).await.expect("outbox");
    assert!(!moved[0].body.contains(token) && moved[0].body.contains("does not hold"), "{}", moved[0].body);
}

#[tokio::test]
async fn delivered_and_expired_mail_is_purged() {
    let db = TestDb::new().await;
    let keys = Arc::new(SecretBox::new(&KEY, &[]));
    let mailer = OutboxMailer::new(db.store.clone(), keys.clone());
    for to in ["delivered@x.example", "expired@x.example", "pending@x.example"] {
        mailer.send(&mail(to, "code: 12345678")).await.expect("send");
    }
    let mut g = db.store.global_tx().await.expect("global");
    let delivered = EmailAddress::parse("delivered@x.example").expect("email");
    let ids: Vec<uuid::Uuid> = identity::signin::mail::outbox(&mut g, &keys, Some(&delivered), 10)
        .await
        .expect("outbox")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(identity::signin::mail::mark_delivered(&mut g, &ids).await.expect("mark"), 1);
    g.commit().await.expect("commit");
    let mut admin = db.admin_conn().await;
    sqlx::query(
        "update mail_outbox set expires_at = now() - interval '1 second' where to_address = 'expired@x.example'",
    )
    .execute(&mut admin)
    .await
    .expect("expire");

    assert_eq!(identity::signin::mail::purge(&db.store).await.expect("purge"), 2);
    let left: Vec<String> =
        sqlx::query_scalar("select to_address::text from mail_outbox").fetch_all(&mut admin).await.expect("left");
    assert_eq!(left, vec!["pending@x.example".to_owned()]);
}

#[tokio::test]
async fn admin_outbox_shows_the_operator_the_code_and_marks_it_delivered() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("countersign-outbox-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key_file = dir.join("mfa.key");
    std::fs::write(&key_file, format!("{}\n", hex::encode(KEY))).expect("key");
    let mailer = OutboxMailer::new(db.store.clone(), Arc::new(SecretBox::new(&KEY, &[])));
    mailer.send(&mail("op@x.example", "Your code is: 87654321")).await.expect("send");

    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["admin", "outbox", "--to", "op@x.example", "--data-dir"])
        .arg(&dir)
        .arg("--mfa-key-file")
        .arg(&key_file)
        .env("DATABASE_URL", db.url())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Your code is: 87654321"), "{stdout}");
    let mut admin = db.admin_conn().await;
    let delivered: bool =
        sqlx::query_scalar("select delivered_at is not null from mail_outbox where to_address = 'op@x.example'")
            .fetch_one(&mut admin)
            .await
            .expect("row");
    assert!(delivered, "shown to the operator = delivered (the sweeper purges it)");
    let _ = std::fs::remove_dir_all(&dir);
}
