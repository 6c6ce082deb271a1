//! `countersign demo` seeds an organisation every demo account has something to do in: documents
//! in every state across departments and currencies, a closed period, an MD threshold, a pending
//! joiner, a guest auditor whose access runs out — through the domain functions, so the ledger
//! verifies — and a second run keeps what the first made.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use store::testing::TestDb;

struct Demo {
    child: Child,
    base: String,
    password: String,
}

/// Starts `demo` on a free port and reads its banner (address and password) from stdout.
fn start(db: &TestDb, dir: &Path) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("DATABASE_URL", db.url())
        .env_remove("COUNTERSIGN_LISTEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut base, mut password) = (None, None);
    while base.is_none() || password.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("demo printed no banner within 120 s")
        });
        if let Some(url) = line.split("open ").nth(1) {
            base = Some(url.trim().to_owned());
        }
        if let Some(rest) = line.split("signs in with the password ").nth(1) {
            password = rest.split_whitespace().next().map(str::to_owned);
        }
    }
    Demo { child, base: base.unwrap_or_default(), password: password.unwrap_or_default() }
}

fn stop(mut d: Demo) {
    let _ = Command::new("kill").args(["-TERM", &d.child.id().to_string()]).status();
    let _ = d.child.wait();
}

async fn statuses(db: &TestDb) -> BTreeMap<String, i64> {
    let mut c = db.admin_conn().await;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select d.status, count(*) from documents d join tenants t on t.id = d.tenant_id
          where t.slug = 'acme' group by d.status",
    )
    .fetch_all(&mut c)
    .await
    .expect("statuses");
    rows.into_iter().collect()
}

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    let mut c = db.admin_conn().await;
    sqlx::query_scalar(sql).fetch_one(&mut c).await.expect(sql)
}

async fn waiting_for(base: &str, email: &str, password: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"organisation": "acme", "email": email, "password": password, "token_delivery": "body"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json");
    let token = login["access_token"].as_str().unwrap_or_else(|| panic!("{email} signs in: {login}"));
    let page: Value = http
        .get(format!("{base}/api/v1/documents?view=waiting&limit=100"))
        .bearer_auth(token)
        .send()
        .await
        .expect("inbox")
        .json()
        .await
        .expect("inbox json");
    page["items"].as_array().cloned().unwrap_or_else(|| panic!("{email}'s inbox: {page}"))
}

#[tokio::test]
async fn the_demo_seeds_work_for_every_approver_and_a_second_run_keeps_it() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("countersign-demo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let demo = start(&db, &dir);

    let seen = statuses(&db).await;
    for status in approvals::Status::ALL {
        assert!(seen.get(status.as_str()).copied().unwrap_or(0) > 0, "no {status} document in the demo: {seen:?}");
    }
    let total: i64 = seen.values().sum();
    assert!(total >= 30, "dozens of documents, got {total}");
    assert!(scalar(&db, "select count(distinct currency) from documents").await >= 3);
    assert!(scalar(&db, "select count(distinct department_id) from documents").await >= 2);
    assert!(scalar(&db, "select count(distinct kind) from documents").await == 2);
    assert_eq!(scalar(&db, "select count(*) from fiscal_periods where status = 'closed'").await, 1);
    assert!(scalar(&db, "select count(*) from md_thresholds").await >= 1);
    assert_eq!(scalar(&db, "select count(*) from memberships where status = 'pending'").await, 1, "a pending joiner");
    assert_eq!(
        scalar(&db, "select count(*) from memberships where role = 'auditor' and valid_until > now()").await,
        1,
        "a guest auditor whose access runs out"
    );
    assert!(
        scalar(&db, "select count(*) from document_notes").await >= 4,
        "queries, answers and reasons in the discussion"
    );

    // Each approver lands on an inbox with something to do; the raiser has questions to answer.
    for who in ["hana@acme.example", "heidi@acme.example", "finn@acme.example", "mona@acme.example", "sam@acme.example"]
    {
        assert!(!waiting_for(&demo.base, who, &demo.password).await.is_empty(), "{who} has nothing waiting");
    }
    stop(demo);

    // The ledger the demo wrote verifies.
    let out = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&dir)
        .env("DATABASE_URL", db.url())
        .output()
        .expect("verify");
    assert!(out.status.success(), "audit verify: {}", String::from_utf8_lossy(&out.stdout));

    // A second run keeps the organisations and their history as they are.
    let again = start(&db, &dir);
    assert_eq!(statuses(&db).await, seen, "a second run raised or changed documents");
    assert!(!waiting_for(&again.base, "finn@acme.example", &again.password).await.is_empty());
    stop(again);
    let _ = std::fs::remove_dir_all(&dir);
}
