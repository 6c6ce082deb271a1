//! Attacks on the audit ledger: edits, deletions, rewritten history, forged checkpoints,
//! privilege abuse, rollbacks, races; plus query, export, bundles and retention.

mod common;

use audit::export::{ExportFilter, Format};
use audit::query::{Cursor, Filter};
use audit::{Changes, Entity, Event, TrustedKeys, Who, verify};
use common::{org, sqlstate, test_key, who};
use sqlx::{Connection, Executor, PgConnection};
use store::TenantId;
use store::testing::TestDb;

fn keys() -> TrustedKeys {
    TrustedKeys::of([test_key().public()])
}

/// Small ranges so that every test also exercises the stitching of parallel segments.
const OPTS: verify::Options = verify::Options { workers: 3, range_events: 2 };

async fn verify_tenant(db: &TestDb, t: TenantId) -> verify::Report {
    verify::verify_tenant(&db.store, t, &keys(), OPTS, &mut |_, _| {}).await.expect("verify runs")
}

async fn verify_all(db: &TestDb) -> verify::Report {
    verify::verify_all(&db.store, "test", &keys(), OPTS, &mut |_, _| {}).await.expect("verify runs")
}

fn first_break(r: &verify::Report) -> (i64, String) {
    let b = r.broken().next().and_then(|c| c.first_break.clone()).expect("a broken chain");
    (b.seq, b.problem)
}

async fn record(db: &TestDb, t: TenantId, action: &str, entity: &str) -> audit::Receipt {
    let mut tx = db.store.tenant_tx(t).await.expect("tx");
    let e =
        Event::new(action, Entity::of(entity, uuid::Uuid::now_v7()).expect("entity"), Changes::none().field("n", 1, 2))
            .expect("event");
    let r = audit::record_by(&mut tx, &who(), &e).await.expect("record");
    tx.commit().await.expect("commit");
    r
}

/// Superuser tampering: disables the trigger, runs `sql`, re-enables it.
async fn tamper(admin: &mut PgConnection, sql: &str) {
    admin.execute("alter table audit_events disable trigger audit_events_append_only").await.expect("disable");
    admin.execute(sql).await.expect("tamper");
    admin.execute("alter table audit_events enable trigger audit_events_append_only").await.expect("enable");
}

#[tokio::test]
async fn untouched_ledger_verifies_and_rust_matches_the_sql_encoding() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let _b = org(&db, "beta").await;
    // Awkward values: unicode, quotes, NULLs vs empty strings, IPv6, a long user agent.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let origin = audit::Origin::new(Some("req-ü\"1"), "2001:db8::1".parse().ok(), Some(&"Mozilla/5.0 ✓ ".repeat(40)));
    let w = Who::new(audit::Actor::user(a.users[0], Some("admin")), origin);
    let e = Event::new(
        "voucher.approved",
        Entity::of("voucher", "V-1").expect("entity"),
        Changes::none().field("memo", "", "naïve \"quoted\"\n\t€").field("amount_minor", 100, 250),
    )
    .expect("event")
    .with_reason("checked with the supplier")
    .expect("reason");
    audit::record_by(&mut tx, &w, &e).await.expect("record");
    tx.commit().await.expect("commit");

    let r = verify_all(&db).await;
    assert!(r.ok(), "{:?}", r.broken().collect::<Vec<_>>());
    let platform = r.chains.iter().find(|c| c.chain == "platform").expect("platform chain verified");
    assert!(platform.events >= 4, "bypass grants and user creations are on the platform chain");
    let alpha = r.chains.iter().find(|c| c.label == "alpha").expect("alpha");
    assert_eq!(alpha.events, 7);
    assert_eq!(alpha.checkpoints, 1);
}

#[tokio::test]
async fn edited_event_is_detected_at_its_sequence_number() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let mut admin = db.admin_conn().await;
    tamper(
        &mut admin,
        &format!("update audit_events set changes = '{{\"name\":{{\"from\":null,\"to\":\"Forged\"}}}}' where tenant_id = '{}' and seq = 2", a.id),
    )
    .await;
    let (seq, problem) = first_break(&verify_tenant(&db, a.id).await);
    assert_eq!(seq, 2);
    assert!(problem.contains("altered"), "{problem}");
}

#[tokio::test]
async fn deleted_event_is_detected_as_a_gap() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let mut admin = db.admin_conn().await;
    tamper(&mut admin, &format!("delete from audit_events where tenant_id = '{}' and seq = 3", a.id)).await;
    let (seq, problem) = first_break(&verify_tenant(&db, a.id).await);
    assert_eq!(seq, 3);
    assert!(problem.contains("missing"), "{problem}");
}

#[tokio::test]
async fn rewritten_history_with_recomputed_hashes_is_caught_by_the_signed_checkpoint() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await; // 6 events, checkpoint signed at seq 6
    let mut admin = db.admin_conn().await;
    let t = a.id;
    tamper(
        &mut admin,
        &format!(
            r#"do $$
            declare r record; v_prev bytea;
            begin
              update audit_events set actor_id = 'someone-else' where tenant_id = '{t}' and seq = 2;
              select hash into v_prev from audit_events where tenant_id = '{t}' and seq = 1;
              for r in select * from audit_events where tenant_id = '{t}' and seq >= 2 order by seq loop
                update audit_events
                   set prev_hash = v_prev,
                       hash = sha256(v_prev || countersign_audit_encode('{t}', r.seq, r.occurred_at, r.actor_kind,
                              r.actor_id, r.actor_role, r.action, r.entity_type, r.entity_id, r.changes, r.reason,
                              r.request_id, host(r.ip), r.user_agent))
                 where tenant_id = '{t}' and seq = r.seq
                returning hash into v_prev;
              end loop;
              update audit_heads set hash = v_prev where tenant_id = '{t}';
            end $$"#
        ),
    )
    .await;
    // Without the key the chain is self-consistent...
    let unsigned =
        verify::verify_tenant(&db.store, t, &TrustedKeys::default(), OPTS, &mut |_, _| {}).await.expect("verify");
    assert!(unsigned.ok(), "a consistent rewrite is invisible without checkpoints: {unsigned:?}");
    // ...and the signed checkpoint names the rewrite.
    let (seq, problem) = first_break(&verify_tenant(&db, t).await);
    assert_eq!(seq, 6);
    assert!(problem.contains("checkpoint"), "{problem}");
}

#[tokio::test]
async fn truncated_tail_with_reset_head_is_caught_by_the_checkpoint() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let mut admin = db.admin_conn().await;
    let t = a.id;
    admin.execute("alter table audit_heads disable trigger audit_heads_forward").await.expect("disable");
    tamper(
        &mut admin,
        &format!(
            "delete from audit_events where tenant_id = '{t}' and seq >= 4;
             update audit_heads set seq = 3, hash = (select hash from audit_events where tenant_id = '{t}' and seq = 3) where tenant_id = '{t}'"
        ),
    )
    .await;
    let (seq, problem) = first_break(&verify_tenant(&db, t).await);
    assert_eq!(seq, 4);
    assert!(problem.contains("truncated"), "{problem}");
}

#[tokio::test]
async fn forged_checkpoint_signature_is_reported() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    record(&db, a.id, "voucher.raised", "voucher").await;
    let forger = audit::CheckpointKey::from_seed([9; 32]);
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    audit::checkpoint::checkpoint_tenant(&mut tx, &forger).await.expect("sign").expect("new head");
    tx.commit().await.expect("commit");
    // Not tampering the verifier can prove (it does not hold the forger's key), and not a
    // verification either: reported as unverified, naming the key and the first seq it signed.
    // (This expected a first break "unknown key", which made a missing key look like tampering.)
    let r = verify_tenant(&db, a.id).await;
    assert!(r.ok() && !r.verified(), "{r:?}");
    let unknown = &r.unverified().next().expect("an unverified chain").unknown_keys;
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!((unknown[0].key_id.as_str(), unknown[0].first_seq), (forger.key_id(), 7));
}

#[tokio::test]
async fn app_role_cannot_change_remove_or_forge_ledger_rows() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let mut app = db.raw_app_conn().await;
    for (sql, code) in [
        ("update audit_events set reason = 'x'", "42501"),
        ("delete from audit_events", "42501"),
        ("truncate audit_events", "42501"),
        ("update audit_heads set seq = 1", "42501"),
        ("delete from audit_checkpoints", "42501"),
        ("update audit_checkpoints set seq = 1", "42501"),
        ("delete from platform_audit_events", "42501"),
        ("update platform_audit_head set seq = 1", "42501"),
        (
            "insert into audit_events (tenant_id, seq, occurred_at, actor_kind, actor_id, action, entity_type, changes, prev_hash, hash)
             select tenant_id, seq + 1000, now(), 'system', 'x', 'a.b', 'x', '{}', hash, hash from audit_events limit 1",
            "42501",
        ),
        ("alter table audit_events disable trigger audit_events_append_only", "42501"),
    ] {
        let mut tx = app.begin().await.expect("begin");
        sqlx::query("select set_config('app.tenant_id', $1, true)")
            .bind(a.id.to_string())
            .execute(&mut *tx)
            .await
            .expect("ctx");
        let e = tx.execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some(code), "{sql}: {e}");
        tx.rollback().await.expect("rollback");
    }
    // Appending to another tenant's chain through the function is refused too.
    let mut tx = app.begin().await.expect("begin");
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(a.id.to_string())
        .execute(&mut *tx)
        .await
        .expect("ctx");
    let e = sqlx::query(
        "select * from countersign_audit_append($1, 'system', 'x', null, 'a.b', 'x', null, '{}', null, null, null, null)",
    )
    .bind(b.id.as_uuid())
    .execute(&mut *tx)
    .await
    .expect_err("cross-tenant append");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
}

#[tokio::test]
async fn owner_and_superuser_are_refused_while_triggers_stand() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let mut g = db.store.global_tx().await.expect("tx");
    audit::checkpoint::checkpoint_platform(g.conn(), &test_key()).await.expect("sign").expect("platform head");
    g.commit().await.expect("commit");
    let mut admin = db.admin_conn().await;
    for table in ["audit_events", "audit_checkpoints", "platform_audit_events", "platform_audit_checkpoints"] {
        for (role, sql) in [
            ("countersign_owner", format!("update {table} set seq = seq")),
            ("countersign_owner", format!("delete from {table}")),
            ("countersign_owner", format!("truncate {table}")),
            ("postgres", format!("update {table} set seq = seq")),
            ("postgres", format!("delete from {table}")),
            ("postgres", format!("truncate {table}")),
        ] {
            let mut tx = admin.begin().await.expect("begin");
            tx.execute(format!("set local role {role}").as_str()).await.expect("role");
            sqlx::query("select set_config('app.tenant_id', $1, true)")
                .bind(a.id.to_string())
                .execute(&mut *tx)
                .await
                .expect("ctx");
            let e = tx.execute(sql.as_str()).await.expect_err(&sql);
            assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{role}: {sql}: {e}");
            assert!(e.to_string().contains("append-only"), "{e}");
            tx.rollback().await.expect("rollback");
        }
    }
    // Heads only move forward, even for the owner.
    let mut tx = admin.begin().await.expect("begin");
    tx.execute("set local role countersign_owner").await.expect("role");
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(a.id.to_string())
        .execute(&mut *tx)
        .await
        .expect("ctx");
    let e = tx.execute("update audit_heads set seq = 1").await.expect_err("rewind head");
    assert_eq!(sqlstate(&e).as_deref(), Some("55000"), "{e}");
}

#[tokio::test]
async fn event_rolls_back_with_its_change_and_a_failed_event_fails_the_change() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let before = verify_tenant(&db, a.id).await.chains[0].events;

    // The change is abandoned: its event disappears with it, and the head does not move.
    {
        let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
        let d = identity::directory::departments::create(
            &mut tx,
            &who(),
            &identity::DepartmentCode::parse("FIN").expect("code"),
            "Finance",
        )
        .await
        .expect("dept");
        let _ = d;
        tx.rollback().await.expect("rollback");
    }
    let r = verify_tenant(&db, a.id).await;
    assert!(r.ok());
    assert_eq!(r.chains[0].events, before);

    // The event cannot be written (the database refuses it): the change does not commit either.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    sqlx::query("insert into departments (tenant_id, id, code, name) values ($1, gen_random_uuid(), 'LEGAL', 'Legal')")
        .bind(a.id.as_uuid())
        .execute(tx.conn())
        .await
        .expect("change");
    let e = sqlx::query("select * from countersign_audit_append($1, 'robot', 'x', null, 'department.created', 'department', null, '{}', null, null, null, null)")
        .bind(a.id.as_uuid())
        .execute(tx.conn())
        .await
        .expect_err("bad event");
    assert_eq!(sqlstate(&e).as_deref(), Some("23514"), "{e}");
    // PostgreSQL answers COMMIT of a failed transaction with ROLLBACK.
    let _ = tx.commit().await;
    let mut g = db.admin_conn().await;
    let n: i64 =
        sqlx::query_scalar("select count(*) from departments where code = 'LEGAL'").fetch_one(&mut g).await.expect("n");
    assert_eq!(n, 0, "the change committed without its audit event");
}

#[tokio::test]
async fn concurrent_appends_are_gap_free_and_verify() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let mut tx = store.tenant_tx(a.id).await.expect("tx");
                let e = Event::new(
                    "voucher.raised",
                    Entity::of("voucher", format!("{w}-{i}")).expect("e"),
                    Changes::none(),
                )
                .expect("event");
                audit::record_by(&mut tx, &Who::system("test:race"), &e).await.expect("record");
                tx.commit().await.expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let mut admin = db.admin_conn().await;
    let (n, max): (i64, i64) = sqlx::query_as("select count(*), max(seq) from audit_events where tenant_id = $1")
        .bind(a.id.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("count");
    assert_eq!((n, max), (206, 206), "sequence has gaps or duplicates");
    let r = verify_tenant(&db, a.id).await;
    assert!(r.ok(), "{r:?}");
}

#[tokio::test]
async fn query_filters_paginates_newest_first_and_never_crosses_tenants() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    for _ in 0..3 {
        record(&db, a.id, "voucher.approved", "voucher").await;
        record(&db, b.id, "voucher.approved", "voucher").await;
    }
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let all = audit::query::query(&mut tx, &Filter::default(), None, 500).await.expect("all");
    assert_eq!(all.events.len(), 9);
    assert!(all.events.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");

    let filter = Filter { action: Some("voucher.approved".into()), ..Filter::default() }.validated().expect("filter");
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = audit::query::query(&mut tx, &filter, cursor, 2).await.expect("page");
        seen.extend(page.events.iter().map(|e| e.seq));
        match page.next_cursor {
            Some(c) => cursor = Some(Cursor::parse(&c).expect("cursor")),
            None => break,
        }
    }
    assert_eq!(seen, vec![9, 8, 7]);

    let by_entity = Filter { entity_type: Some("membership".into()), ..Filter::default() };
    let page = audit::query::query(&mut tx, &by_entity, None, 50).await.expect("entity");
    assert_eq!(page.events.len(), 3);
    assert!(page.events.iter().all(|e| e.actor_id == "test:fixture"));

    // B's membership ids give nothing in A's transaction.
    let foreign = Filter { entity_id: Some(b.memberships[0].to_string()), ..Filter::default() };
    assert!(audit::query::query(&mut tx, &foreign, None, 50).await.expect("foreign").events.is_empty());
    assert!(audit::query::query(&mut tx, &Filter::default(), None, 0).await.is_err(), "limit 0 refused");
}

#[tokio::test]
async fn export_streams_csv_and_ndjson_with_filters() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    record(&db, a.id, "voucher.approved", "voucher").await;
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let mut out = Vec::new();
    let n = audit::export::export_tenant(
        &mut tx,
        &ExportFilter::default(),
        Format::Ndjson,
        &mut audit::export::FnSink(|b: &[u8]| {
            out.extend_from_slice(b);
            Ok(())
        }),
    )
    .await
    .expect("ndjson");
    assert_eq!(n, 7);
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out).expect("utf8").lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["prev_hash"], "0".repeat(64));

    let mut csv = Vec::new();
    let filter = ExportFilter { action: Some("voucher.approved".into()), ..ExportFilter::default() };
    let n = audit::export::export_tenant(
        &mut tx,
        &filter,
        Format::Csv,
        &mut audit::export::FnSink(|b: &[u8]| {
            csv.extend_from_slice(b);
            Ok(())
        }),
    )
    .await
    .expect("csv");
    assert_eq!(n, 1);
    let text = String::from_utf8(csv).expect("utf8");
    assert!(text.starts_with("chain,seq,occurred_at,"));
    assert_eq!(text.lines().count(), 2);
    assert!(text.contains("voucher.approved"));

    let future = ExportFilter { from: Some(chrono::Utc::now() + chrono::Duration::days(1)), ..ExportFilter::default() };
    let n = audit::export::export_tenant(&mut tx, &future, Format::Csv, &mut audit::export::FnSink(|_: &[u8]| Ok(())))
        .await
        .expect("empty");
    assert_eq!(n, 0);
    let bad = ExportFilter { action: Some("x'; drop table audit_events; --".into()), ..ExportFilter::default() };
    assert!(
        audit::export::export_tenant(&mut tx, &bad, Format::Csv, &mut audit::export::FnSink(|_: &[u8]| Ok(())))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn bundle_verifies_offline_and_detects_tampering_in_rust_and_python() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    record(&db, a.id, "voucher.approved", "voucher").await;
    let key = test_key();
    let dir = std::env::temp_dir().join(format!("cs-bundle-{}", uuid::Uuid::now_v7()));
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    audit::checkpoint::checkpoint_tenant(&mut tx, &key).await.expect("checkpoint");
    let m = audit::export::write_bundle(
        &mut tx,
        "alpha",
        &ExportFilter::default(),
        &key,
        &audit::TrustedKeys::default(),
        &dir,
    )
    .await
    .expect("bundle");
    tx.commit().await.expect("commit");
    assert_eq!((m.events, m.checkpoints), (7, 2));
    for f in ["events.ndjson", "checkpoints.ndjson", "public-key.pem", "manifest.json", "README.md", "verify.py"] {
        assert!(dir.join(f).is_file(), "{f} missing from bundle");
    }
    let r = audit::bundle::verify_bundle(&dir, &keys()).expect("verify bundle");
    assert!(r.ok(), "{r:?}");
    let py = std::process::Command::new("python3").arg(dir.join("verify.py")).arg(&dir).output().expect("python3");
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stdout));

    // Alter one event and fix up the manifest digest, as a careful forger would.
    let events = std::fs::read_to_string(dir.join("events.ndjson")).expect("read");
    let mut lines: Vec<String> = events.lines().map(str::to_owned).collect();
    lines[1] = lines[1].replace("\"actor_id\":\"test:fixture\"", "\"actor_id\":\"someone-else\"");
    let forged = lines.join("\n") + "\n";
    assert_ne!(forged, events);
    std::fs::write(dir.join("events.ndjson"), &forged).expect("write");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).expect("m")).expect("json");
    use sha2::Digest;
    manifest["files"]["events.ndjson"] = hex::encode(sha2::Sha256::digest(forged.as_bytes())).into();
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("write");

    let r = audit::bundle::verify_bundle(&dir, &keys()).expect("verify bundle");
    let (seq, problem) = first_break(&r);
    assert_eq!(seq, 2, "{problem}");
    let py = std::process::Command::new("python3").arg(dir.join("verify.py")).arg(&dir).output().expect("python3");
    assert!(!py.status.success());
    assert!(String::from_utf8_lossy(&py.stdout).contains("at seq 2"), "{}", String::from_utf8_lossy(&py.stdout));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn retention_sweep_purges_soft_deleted_records_and_leaves_the_ledger() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let mut admin = db.admin_conn().await;
    sqlx::query("update memberships set deleted_at = now() - interval '40 days' where tenant_id = $1 and id = $2")
        .bind(a.id.as_uuid())
        .bind(a.memberships[1])
        .execute(&mut admin)
        .await
        .expect("soft delete");
    let count = |c: &'static str| format!("select count(*) from {c}");
    let ledger_before: i64 = sqlx::query_scalar(&count("audit_events")).fetch_one(&mut admin).await.expect("n");

    let mut tx = db.store.bypass("test", "retention sweep").await.expect("bypass");
    let purged =
        identity::directory::retention::sweep(&mut tx, &Who::system("test:retention"), chrono::Duration::days(30))
            .await
            .expect("sweep");
    tx.commit().await.expect("commit");
    assert_eq!(purged.memberships, 1);

    let ledger_after: i64 = sqlx::query_scalar(&count("audit_events")).fetch_one(&mut admin).await.expect("n");
    assert_eq!(ledger_after, ledger_before + 1, "the ledger lost rows, or the sweep was not recorded");
    let gone: i64 = sqlx::query_scalar("select count(*) from memberships where id = $1")
        .bind(a.memberships[1])
        .fetch_one(&mut admin)
        .await
        .expect("n");
    assert_eq!(gone, 0);
    assert!(verify_all(&db).await.ok());
    // The membership's history is still there after the membership is gone.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let f = Filter { entity_id: Some(a.memberships[1].to_string()), ..Filter::default() };
    assert_eq!(audit::query::query(&mut tx, &f, None, 10).await.expect("q").events.len(), 1);
}

#[tokio::test]
async fn role_change_requires_a_reason_and_records_the_delta() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let e =
        identity::directory::memberships::change_role(&mut tx, &who(), a.memberships[1], identity::Role::Finance, " ")
            .await
            .expect_err("no reason");
    assert!(matches!(e, identity::IdentityError::Invalid { field: "reason", .. }), "{e:?}");
    let old = identity::directory::memberships::change_role(
        &mut tx,
        &who(),
        a.memberships[1],
        identity::Role::Finance,
        "covers AP",
    )
    .await
    .expect("change");
    assert_eq!(old, identity::Role::Staff);
    let f = Filter { action: Some("membership.role_changed".into()), ..Filter::default() };
    let page = audit::query::query(&mut tx, &f, None, 10).await.expect("q");
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].reason.as_deref(), Some("covers AP"));
    assert_eq!(page.events[0].changes, serde_json::json!({"role": {"from": "staff", "to": "finance"}}));
}

/// Every position relative to a range boundary (ranges of 2: [1,2] [3,4] [5,6+]): a deleted event
/// or a broken link is reported at its own seq, whichever segment (or stitch) notices it.
#[tokio::test]
async fn parallel_segments_report_the_first_break_wherever_it_falls() {
    let db = TestDb::new().await;
    let mut admin = db.admin_conn().await;
    let cases = [
        ("delete", 2, "missing"),
        ("delete", 3, "missing"),
        ("delete", 4, "missing"),
        ("delete", 5, "missing"),
        ("relink", 2, "link"),
        ("relink", 3, "link"),
        ("relink", 5, "link"),
        ("relink", 6, "link"),
        // Two ranges emptied: named at the first gone seq, as a truncation under the checkpoint.
        ("delete-tail", 3, "gone"),
    ];
    for (i, (how, seq, expect)) in cases.into_iter().enumerate() {
        let t = org(&db, &format!("org{i}")).await.id; // 6 events each
        let sql = match how {
            "delete" => format!("delete from audit_events where tenant_id = '{t}' and seq = {seq}"),
            "relink" => {
                format!("update audit_events set prev_hash = sha256('x') where tenant_id = '{t}' and seq = {seq}")
            }
            _ => format!("delete from audit_events where tenant_id = '{t}' and seq >= {seq}"),
        };
        tamper(&mut admin, &sql).await;
        let (at, problem) = first_break(&verify_tenant(&db, t).await);
        assert_eq!((at, problem.contains(expect)), (seq, true), "{how} {seq}: {problem}");
    }
    // The same breaks through verify_all, one report per tenant.
    let r = verify_all(&db).await;
    assert_eq!(r.broken().count(), cases.len());
}

/// Readers share one snapshot: events committed while verification runs are neither counted
/// against the head read at the start nor reported as damage.
#[tokio::test]
async fn verification_during_concurrent_appends_sees_one_consistent_state() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let store = db.store.clone();
    let t = a.id;
    let writer = tokio::spawn(async move {
        for i in 0..60 {
            let mut tx = store.tenant_tx(t).await.expect("tx");
            let e = Event::new(
                "voucher.updated",
                Entity::of("voucher", "V-9").expect("entity"),
                Changes::none().field("n", i, i + 1),
            )
            .expect("event");
            audit::record_by(&mut tx, &who(), &e).await.expect("record");
            tx.commit().await.expect("commit");
        }
    });
    let mut runs = 0;
    while !writer.is_finished() {
        let r = verify_all(&db).await;
        assert!(r.ok(), "{:?}", r.broken().collect::<Vec<_>>());
        runs += 1;
    }
    writer.await.expect("writer");
    assert!(runs >= 1);
    let r = verify_tenant(&db, t).await;
    assert!(r.ok());
    assert_eq!(r.chains[0].events, 66);
}

/// The verifier formats `inet` itself (cheaper for the database than `host()` per row); it must
/// print exactly what PostgreSQL prints, or sound events would fail verification.
#[tokio::test]
async fn rust_inet_formatting_matches_postgres_host() {
    use rand::Rng;
    let db = TestDb::new().await;
    let mut conn = db.admin_conn().await;
    let mut rng = rand::rng();
    let mut addrs: Vec<std::net::IpAddr> = [
        "0.0.0.0",
        "255.255.255.255",
        "10.0.0.1",
        "::",
        "::1",
        "::2",
        "1::",
        "::ffff:1.2.3.4",
        "::1.2.3.4",
        "::0:1.2.3.4",
        "::ffff:0:1.2.3.4",
        "1:0:0:1:0:0:0:1",
        "1:0:0:0:1:0:0:1",
        "1:0:1:0:1:0:1:0",
        "0:0:1::",
        "fe80::1:0:0:0",
        "2001:db8::",
        "::ffff:0.0.0.0",
        "0:0:0:0:0:ffff:ffff:0",
        "::fffe:1.2.3.4",
    ]
    .iter()
    .map(|s| s.parse().expect("literal"))
    .collect();
    for _ in 0..3000 {
        // Words drawn mostly from {0, small, 0xffff} so that zero runs of every shape occur.
        let mut w = [0u16; 8];
        for x in &mut w {
            *x = match rng.random_range(0..4) {
                0 | 1 => 0,
                2 => 0xffff,
                _ => rng.random(),
            };
        }
        addrs.push(std::net::Ipv6Addr::from(w).into());
        addrs.push(std::net::Ipv4Addr::from(rng.random::<u32>()).into());
    }
    let texts: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let pg: Vec<String> =
        sqlx::query_scalar("select host(a::inet) from unnest($1::text[]) with ordinality u(a, n) order by n")
            .bind(&texts)
            .fetch_all(&mut conn)
            .await
            .expect("host()");
    let mut out = String::new();
    for (addr, expected) in addrs.iter().zip(&pg) {
        let wire: Vec<u8> = match addr {
            std::net::IpAddr::V4(a) => [&[2u8, 32, 0, 4][..], &a.octets()].concat(),
            std::net::IpAddr::V6(a) => [&[3u8, 128, 0, 16][..], &a.octets()].concat(),
        };
        assert!(audit::encoding::inet_host(&wire, &mut out), "{addr}");
        assert_eq!(&out, expected, "{addr}");
    }
    assert!(!audit::encoding::inet_host(&[3, 128, 0, 4, 1, 2, 3, 4], &mut out), "length must match the family");
    assert!(!audit::encoding::inet_host(&[], &mut out));
}
