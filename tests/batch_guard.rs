//! Bulk operations spanning tenants are refused whole, and counted.

mod common;

use common::org;
use identity::MembershipStatus;
use identity::directory::memberships;
use store::testing::TestDb;

#[tokio::test]
async fn bulk_update_with_another_tenants_id_is_refused_whole() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let before = store::metrics::global().snapshot().cross_tenant_refused_total;

    let mut ids = a.memberships.clone();
    ids.push(b.memberships[0]);
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let e = memberships::bulk_set_status(&mut tx, &common::who(), &ids, MembershipStatus::Suspended)
        .await
        .expect_err("refused");
    assert!(
        matches!(e, identity::IdentityError::Store(store::StoreError::CrossTenantBatch { requested: 4, matched: 3 })),
        "{e:?}"
    );
    drop(tx);

    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let statuses: Vec<String> = memberships::list(&mut tx).await.expect("list").into_iter().map(|m| m.status).collect();
    assert!(statuses.iter().all(|s| s == "active"), "nothing applied: {statuses:?}");
    assert!(store::metrics::global().snapshot().cross_tenant_refused_total > before);

    // Within one tenant the same call succeeds.
    let n = memberships::bulk_set_status(&mut tx, &common::who(), &a.memberships, MembershipStatus::Suspended)
        .await
        .expect("same tenant");
    assert_eq!(n, 3);
}

#[tokio::test]
async fn tagged_batch_naming_two_tenants_is_refused() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let tx = db.store.tenant_tx(a.id).await.expect("tx");
    assert!(tx.guard_batch([a.id, a.id]).is_ok());
    assert!(matches!(
        tx.guard_batch([a.id, b.id, a.id]),
        Err(store::StoreError::CrossTenantBatch { requested: 3, matched: 2 })
    ));
}

#[tokio::test]
async fn cross_tenant_write_is_counted_and_mapped() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let before = store::metrics::global().snapshot().cross_tenant_refused_total;
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let e = sqlx::query("insert into departments (tenant_id, id, code, name) values ($1, gen_random_uuid(), 'X', 'x')")
        .bind(b.id.as_uuid())
        .execute(tx.conn())
        .await
        .expect_err("refused");
    assert!(matches!(store::StoreError::from(e), store::StoreError::CrossTenant));
    assert_eq!(store::metrics::global().snapshot().cross_tenant_refused_total, before + 1);
}
