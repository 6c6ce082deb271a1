//! The migration guard: a migration that weakens isolation rolls back, naming the table.

use sqlx::Connection;
use store::migrate::{self, MigrationSource};
use store::testing::TestDb;

async fn try_migration(db: &TestDb, sql: &str) -> Result<(), String> {
    let mut conn = db.admin_conn().await;
    let mut all = migrate::embedded();
    all.push(MigrationSource { version: 9_999_999, description: "attack".into(), sql: sql.into() });
    let r = migrate::apply(&mut conn, &all, None).await.map(|_| ()).map_err(|e| e.to_string());
    conn.close().await.expect("close");
    r
}

async fn policy_count(db: &TestDb, table: &str) -> i64 {
    let mut conn = db.admin_conn().await;
    sqlx::query_scalar("select count(*) from pg_policy where polrelid = $1::regclass")
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .expect("policies")
}

#[tokio::test]
async fn migration_that_drops_a_policy_is_rejected() {
    let db = TestDb::new().await;
    let before = policy_count(&db, "departments").await;
    let e = try_migration(&db, "drop policy tenant_isolation on departments").await.expect_err("must be refused");
    assert!(e.contains("table departments") && e.contains("tenant_isolation"), "{e}");
    assert_eq!(policy_count(&db, "departments").await, before, "the drop was rolled back");
    let mut conn = db.admin_conn().await;
    let v: i64 =
        sqlx::query_scalar("select max(version) from schema_migrations").fetch_one(&mut conn).await.expect("v");
    assert!(v < 9_999_999, "the refused migration was not recorded");
}

#[tokio::test]
async fn weakening_migrations_are_rejected_naming_the_table() {
    let db = TestDb::new().await;
    for (sql, table, words) in [
        (
            "create table invoices (tenant_id uuid not null, id uuid not null, primary key (tenant_id, id))",
            "invoices",
            "not enabled",
        ),
        ("alter table memberships no force row level security", "memberships", "not forced"),
        ("alter table departments disable row level security", "departments", "not enabled"),
        ("create policy everyone on departments for select using (true)", "departments", "widen access"),
        (
            "drop policy tenant_isolation on memberships; create policy tenant_isolation on memberships using (true)",
            "memberships",
            "tenant_isolation",
        ),
        ("drop policy tenant_isolation on tenants", "tenants", "tenant_isolation"),
        // Migrations run as the owner role, which is no superuser: it cannot grant BYPASSRLS at all.
        ("alter role countersign_app bypassrls", "bypassrls", "superuser"),
    ] {
        let e = try_migration(&db, sql).await.expect_err(sql);
        assert!(e.contains(table) && e.contains(words), "{sql}: {e}");
    }
    // And a well-formed new tenant table passes.
    try_migration(
        &db,
        "create table invoices (tenant_id uuid not null references tenants(id), id uuid not null, primary key (tenant_id, id));
         select countersign_protect('invoices');",
    )
    .await
    .expect("a protected table is accepted");
}

#[tokio::test]
async fn edited_applied_migration_is_refused() {
    let db = TestDb::new().await;
    let mut conn = db.admin_conn().await;
    let mut all = migrate::embedded();
    all[0].sql.push_str("\n-- edited after release");
    let e = migrate::apply(&mut conn, &all, None).await.expect_err("checksum mismatch");
    assert!(e.to_string().contains("changed after it was applied"), "{e}");
}
