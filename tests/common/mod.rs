//! Shared fixtures: two organisations with rows in every tenant table.

// Each test binary uses a part of these helpers.
#![allow(dead_code, unused_imports)]

pub mod tools;

pub mod app;
pub mod oidc;
pub mod saml;
pub mod venv;

pub use app::{Answer, Client, TestApp, roomy_limits};

use identity::directory::{departments, memberships, tenants, users};
use identity::{DepartmentCode, EmailAddress, JoinPolicy, Role, Slug};
use store::TenantId;
use store::testing::TestDb;
use uuid::Uuid;

pub struct Org {
    pub id: TenantId,
    pub department: Uuid,
    pub memberships: Vec<Uuid>,
    pub users: Vec<Uuid>,
    /// Two partner companies of this organisation's partner programme (rows only).
    pub partners: Vec<Uuid>,
    /// The user of the fixture's former (soft-deleted) vendor person (portal rows only).
    pub former_vendor: Uuid,
}

/// A fixed checkpoint key for tests (never used outside them).
pub fn test_key() -> audit::CheckpointKey {
    audit::CheckpointKey::from_seed([42; 32])
}

pub fn who() -> audit::Who {
    audit::Who::system("test:fixture")
}

/// The fixture acts as the host operator (like the command line) for organisation-level writes.
pub fn operator(action: authz::Action, tenant: TenantId) -> authz::Permit {
    authz::Permit::operator(action, tenant.as_uuid())
}

/// An organisation with nothing in it yet, named `Org <slug>`.
pub async fn bare_org(db: &TestDb, slug: &str, domains: &[&str], join_policy: JoinPolicy) -> TenantId {
    let mut b = db.store.bypass("test fixture", "seed an organisation").await.expect("bypass");
    let t = tenants::create(
        &mut b,
        &who(),
        &tenants::NewTenant {
            slug: Slug::parse(slug).expect("slug"),
            name: format!("Org {slug}"),
            allowed_email_domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            join_policy,
        },
    )
    .await
    .expect("create tenant");
    b.commit().await.expect("commit");
    t.id
}

pub async fn org(db: &TestDb, slug: &str) -> Org {
    let domain = format!("{slug}.example");
    let t = bare_org(db, slug, &[&domain], JoinPolicy::AdminApproval).await;

    let mut tx = db.store.tenant_tx(t).await.expect("tenant tx");
    let dept = departments::create(&mut tx, &who(), &DepartmentCode::parse("OPS").expect("code"), "Operations")
        .await
        .expect("dept");
    tx.commit().await.expect("commit");

    let mut ms = Vec::new();
    let mut us = Vec::new();
    for (i, role) in [Role::Admin, Role::Staff, Role::Hod].into_iter().enumerate() {
        let mut g = db.store.global_tx().await.expect("global tx");
        let email = EmailAddress::parse(&format!("user{i}@{slug}.example")).expect("email");
        let u = users::create(&mut g, &who(), &email, &format!("User {i}")).await.expect("user");
        g.commit().await.expect("commit");
        let mut tx = db.store.tenant_tx(t).await.expect("tenant tx");
        let m = memberships::add(
            &mut tx,
            &who(),
            &memberships::NewMembership { user_id: u.id, role, department_id: Some(dept.id), valid_until: None },
        )
        .await
        .expect("membership");
        tx.commit().await.expect("commit");
        ms.push(m);
        us.push(u.id);
    }
    // A session with a refresh token (rows only: the fixture's audit chain stays at 6 events).
    let mut tx = db.store.tenant_tx(t).await.expect("tenant tx");
    let session = uuid::Uuid::now_v7();
    sqlx::query(
        "insert into sessions (tenant_id, id, user_id, membership_id, role, user_epoch, expires_at)
         values ($1, $2, $3, $4, 'admin', 0, now() + interval '1 day')",
    )
    .bind(t.as_uuid())
    .bind(session)
    .bind(us[0])
    .bind(ms[0])
    .execute(tx.conn())
    .await
    .expect("session");
    sqlx::query("insert into refresh_tokens (tenant_id, token_hash, session_id) values ($1, sha256($2::bytea), $3)")
        .bind(t.as_uuid())
        .bind(session.as_bytes().to_vec())
        .bind(session)
        .execute(tx.conn())
        .await
        .expect("refresh token");
    // A SCIM token and a provisioned person the identity provider deleted (rows only): a later
    // SCIM create of user1 brings them back.
    sqlx::query(
        "insert into scim_tokens (tenant_id, id, name, secret_hash, created_by)
         values ($1, $2, 'fixture', sha256($2::text::bytea), 'test:fixture')",
    )
    .bind(t.as_uuid())
    .bind(uuid::Uuid::now_v7())
    .execute(tx.conn())
    .await
    .expect("scim token");
    sqlx::query("insert into scim_users (tenant_id, user_id, user_name, deleted_at) values ($1, $2, $3, now())")
        .bind(t.as_uuid())
        .bind(us[1])
        .bind(format!("fixture@{slug}.example"))
        .execute(tx.conn())
        .await
        .expect("scim user");
    // A SCIM group with that person in it, and a mapping of another group (rows only): the
    // mapping names no existing group, so it changes nobody's role.
    let group = uuid::Uuid::now_v7();
    sqlx::query("insert into scim_groups (tenant_id, id, display_name) values ($1, $2, 'Fixture group')")
        .bind(t.as_uuid())
        .bind(group)
        .execute(tx.conn())
        .await
        .expect("scim group");
    sqlx::query("insert into scim_group_members (tenant_id, group_id, user_id) values ($1, $2, $3)")
        .bind(t.as_uuid())
        .bind(group)
        .bind(us[1])
        .execute(tx.conn())
        .await
        .expect("scim group member");
    sqlx::query(
        "insert into scim_group_mappings (tenant_id, id, match_on, group_key, role, department_id, created_by)
         values ($1, $2, 'external_id', 'fixture-unmatched', 'auditor', $3, 'test:fixture')",
    )
    .bind(t.as_uuid())
    .bind(uuid::Uuid::now_v7())
    .bind(dept.id)
    .execute(tx.conn())
    .await
    .expect("scim group mapping");
    // An open invitation (row only, like the session above).
    sqlx::query(
        "insert into invitations (tenant_id, id, email, role, department_id, token_hash, created_by)
         values ($1, $2, $3, 'staff', $4, sha256($2::text::bytea), 'test:fixture')",
    )
    .bind(t.as_uuid())
    .bind(uuid::Uuid::now_v7())
    .bind(format!("invitee@{slug}.example"))
    .bind(dept.id)
    .execute(tx.conn())
    .await
    .expect("invitation");
    // A fiscal period and a document with a line and an approval (rows only).
    let (tenant, doc) = (t.as_uuid(), uuid::Uuid::now_v7());
    sqlx::query(
        "insert into fiscal_periods (tenant_id, id, name, starts_on, ends_on)
         values ($1, $2, 'FY-fixture', date '2000-01-01', date '2000-12-31')",
    )
    .bind(tenant)
    .bind(uuid::Uuid::now_v7())
    .execute(tx.conn())
    .await
    .expect("fiscal period");
    sqlx::query(
        "insert into documents (tenant_id, id, kind, department_id, raised_by, title, document_date, currency, amount_minor, status)
         values ($1, $2, 'voucher', $3, $4, 'fixture', date '2000-06-01', 'EUR', 100, 'hod_approved')",
    )
    .bind(tenant)
    .bind(doc)
    .bind(dept.id)
    .bind(us[1])
    .execute(tx.conn())
    .await
    .expect("document");
    sqlx::query("insert into document_lines (tenant_id, document_id, line_no, description, amount_minor) values ($1, $2, 1, 'fixture', 100)")
        .bind(tenant)
        .bind(doc)
        .execute(tx.conn())
        .await
        .expect("document line");
    sqlx::query(
        "insert into document_approvals (tenant_id, document_id, round, level, approver, approver_role)
         values ($1, $2, 1, 'hod', $3, 'hod')",
    )
    .bind(tenant)
    .bind(doc)
    .bind(us[2])
    .execute(tx.conn())
    .await
    .expect("document approval");
    // A file data key and a blob (rows only: the key opens under no master key; tests/files.rs
    // clears them before it uploads), held by the fixture's attachment.
    let (key, blob) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    sqlx::query(
        "insert into blob_keys (tenant_id, id, version, wrapped, master_key_id)
         values ($1, $2, 1, decode(repeat('00', 60), 'hex'), '0000000000000000')",
    )
    .bind(tenant)
    .bind(key)
    .execute(tx.conn())
    .await
    .expect("blob key");
    sqlx::query(
        "insert into blobs (tenant_id, id, key_id, size_bytes, sha256, media_type, name, created_by)
         values ($1, $2, $3, 5, sha256('hello'::bytea), 'application/pdf', 'quote.pdf', $4)",
    )
    .bind(tenant)
    .bind(blob)
    .bind(key)
    .bind(us[1])
    .execute(tx.conn())
    .await
    .expect("blob");
    sqlx::query(
        "insert into document_attachments (tenant_id, document_id, id, name, reference, added_by, blob_id)
         values ($1, $2, $3, 'quote.pdf', 'file://fixture/quote.pdf', $4, $5)",
    )
    .bind(tenant)
    .bind(doc)
    .bind(uuid::Uuid::now_v7())
    .bind(us[1])
    .bind(blob)
    .execute(tx.conn())
    .await
    .expect("document attachment");
    sqlx::query(
        "insert into idempotency_keys (tenant_id, principal, key, route, request_hash, status, response)
         values ($1, 'user:fixture', 'fixture-key', 'POST /api/v1/documents', sha256('x'::bytea), 201, '{}')",
    )
    .bind(tenant)
    .execute(tx.conn())
    .await
    .expect("idempotency key");
    // An MD threshold (in a currency no test raises documents in) and a note on the document.
    sqlx::query("insert into md_thresholds (tenant_id, currency, threshold_minor) values ($1, 'CHF', 100000000)")
        .bind(tenant)
        .execute(tx.conn())
        .await
        .expect("md threshold");
    sqlx::query(
        "insert into document_notes (tenant_id, document_id, id, author, author_role, kind, body)
         values ($1, $2, $3, $4, 'hod', 'note', 'fixture')",
    )
    .bind(tenant)
    .bind(doc)
    .bind(uuid::Uuid::now_v7())
    .bind(us[2])
    .execute(tx.conn())
    .await
    .expect("document note");
    tx.commit().await.expect("commit");
    api_key(db, t, "fixture", Role::Auditor, &["audit:read"]).await;
    // An allowlist that admits every address (rows only; restricts nothing, audits nothing).
    let mut tx = db.store.tenant_tx(t).await.expect("tenant tx");
    sqlx::query(
        "insert into tenant_ip_allowlist (tenant_id, id, cidr, note, created_by)
         values ($1, gen_random_uuid(), '0.0.0.0/0', 'fixture', 'test:fixture'),
                ($1, gen_random_uuid(), '::/0', 'fixture', 'test:fixture')",
    )
    .bind(t.as_uuid())
    .execute(tx.conn())
    .await
    .expect("ip allowlist");
    tx.commit().await.expect("commit");
    // A signed checkpoint, so the checkpoint table has rows of both tenants too.
    let mut tx = db.store.tenant_tx(t).await.expect("tenant tx");
    audit::checkpoint::checkpoint_tenant(&mut tx, &test_key()).await.expect("checkpoint");
    tx.commit().await.expect("commit");
    let partners = program_rows(db, t, us[0]).await;
    let former_vendor = relation_rows(db, t, doc, us[0], slug).await;
    Org { id: t, department: dept.id, memberships: ms, users: us, partners, former_vendor }
}

/// Portal rows (issue 16), written on the organisation's side: two relations (a vendor and a
/// client), the document addressed to the vendor, an open question to the vendor about it, and
/// a used-up portal link of a former vendor person (a soft-deleted membership, so member lists
/// and counts of active members are unchanged). Rows only (no audit events).
async fn relation_rows(db: &TestDb, t: TenantId, doc: Uuid, admin: Uuid, slug: &str) -> Uuid {
    let mut g = db.store.global_tx().await.expect("global tx");
    let person = Uuid::now_v7();
    sqlx::query("insert into users (id, email, display_name) values ($1, $2, 'Former vendor person')")
        .bind(person)
        .bind(format!("former-vendor@{slug}.example"))
        .execute(g.conn())
        .await
        .expect("relation person");
    g.commit().await.expect("commit");
    let mut tx = db.store.relation_tx(t, store::RelationScope::Internal).await.expect("relation tx");
    let tenant = t.as_uuid();
    let (vendor, client) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query(
        "insert into relations (tenant_id, id, kind, company_name, created_by)
         values ($1, $2, 'vendor', 'Fixture Supplies', $4), ($1, $3, 'client', 'Fixture Buyer', $4)",
    )
    .bind(tenant)
    .bind(vendor)
    .bind(client)
    .bind(admin)
    .execute(tx.conn())
    .await
    .expect("relations");
    sqlx::query(
        "insert into relation_documents (tenant_id, relation_id, document_id, addressed_by) values ($1, $2, $3, $4)",
    )
    .bind(tenant)
    .bind(vendor)
    .bind(doc)
    .bind(admin)
    .execute(tx.conn())
    .await
    .expect("relation document");
    // An open question to the vendor about that document (migration 0032).
    sqlx::query(
        "insert into relation_requests (tenant_id, id, relation_id, document_id, question, asked_by)
         values ($1, gen_random_uuid(), $2, $3, 'Fixture question: when will it ship?', $4)",
    )
    .bind(tenant)
    .bind(vendor)
    .bind(doc)
    .bind(admin)
    .execute(tx.conn())
    .await
    .expect("relation request");
    let membership = Uuid::now_v7();
    sqlx::query(
        "insert into memberships (tenant_id, id, user_id, role, relation_id, status, deleted_at)
         values ($1, $2, $3, 'vendor', $4, 'ended', now())",
    )
    .bind(tenant)
    .bind(membership)
    .bind(person)
    .bind(vendor)
    .execute(tx.conn())
    .await
    .expect("relation membership");
    sqlx::query(
        "insert into portal_links (tenant_id, id, relation_id, membership_id, token_hash, expires_at, created_by, revoked_at, revoked_by)
         values ($1, gen_random_uuid(), $2, $3, sha256($3::text::bytea), now() + interval '1 day', $4, now(), $4)",
    )
    .bind(tenant)
    .bind(vendor)
    .bind(membership)
    .bind(admin)
    .execute(tx.conn())
    .await
    .expect("portal link");
    tx.commit().await.expect("commit");
    person
}

/// Partner-programme rows (issue 17), written in the vendor scope: two partners, a lead and a
/// deal registration of each, a deal of the vendor's own sales, a conflict record and the
/// programme settings. Rows only (no audit events). Customer domains are unique per organisation.
async fn program_rows(db: &TestDb, t: TenantId, admin: Uuid) -> Vec<Uuid> {
    let mut tx = db.store.program_tx(t, store::ProgramScope::Vendor).await.expect("program tx");
    let tenant = t.as_uuid();
    let slug: String = sqlx::query_scalar("select slug from tenants where id = $1")
        .bind(tenant)
        .fetch_one(tx.conn())
        .await
        .expect("slug");
    sqlx::query("insert into program_settings (tenant_id, id) values ($1, gen_random_uuid())")
        .bind(tenant)
        .execute(tx.conn())
        .await
        .expect("program settings");
    let mut partners = Vec::new();
    let mut deals = Vec::new();
    let mut leads = Vec::new();
    for (i, name) in ["Fixture One", "Fixture Two"].into_iter().enumerate() {
        let p = Uuid::now_v7();
        sqlx::query("insert into partners (tenant_id, id, company_name, domain) values ($1, $2, $3, $4)")
            .bind(tenant)
            .bind(p)
            .bind(name)
            .bind(format!("p{i}.{slug}.example"))
            .execute(tx.conn())
            .await
            .expect("partner");
        let lead = Uuid::now_v7();
        sqlx::query(
            "insert into partner_leads (tenant_id, id, partner_id, company_name, created_by)
             values ($1, $5, $2, $3, $4)",
        )
        .bind(tenant)
        .bind(p)
        .bind(format!("Lead of {name}"))
        .bind(admin)
        .bind(lead)
        .execute(tx.conn())
        .await
        .expect("lead");
        leads.push(lead);
        deals.push(fixture_deal(&mut tx, Some(p), &format!("fixture-customer-{i}.{slug}.example"), admin).await);
        partners.push(p);
    }
    deals.push(fixture_deal(&mut tx, None, &format!("fixture-own.{slug}.example"), admin).await);
    sqlx::query("insert into deal_conflicts (tenant_id, id, deal_id, other_id) values ($1, gen_random_uuid(), $2, $3)")
        .bind(tenant)
        .bind(deals[0])
        .bind(deals[1])
        .execute(tx.conn())
        .await
        .expect("deal conflict");
    // A commission plan, and each partner's lead won as an opportunity with its commission.
    let plan = Uuid::now_v7();
    sqlx::query(
        "insert into commission_plans (tenant_id, id, tier, product, currency, rate_bp, created_by)
         values ($1, $2, 'registered', 'fixture', 'EUR', 500, $3)",
    )
    .bind(tenant)
    .bind(plan)
    .bind(admin)
    .execute(tx.conn())
    .await
    .expect("commission plan");
    for (p, lead) in partners.iter().zip(&leads) {
        let opportunity = Uuid::now_v7();
        sqlx::query(
            "insert into partner_opportunities (tenant_id, id, partner_id, lead_id, name, product, amount_minor,
                                                currency, expected_close, stage, closed_by, closed_at, created_by)
             values ($1, $2, $3, $4, 'Fixture opportunity', 'fixture', 100000, 'EUR', date '2030-01-01', 'won',
                     $5, now(), $5)",
        )
        .bind(tenant)
        .bind(opportunity)
        .bind(p)
        .bind(lead)
        .bind(admin)
        .execute(tx.conn())
        .await
        .expect("opportunity");
        sqlx::query(
            "insert into commissions (tenant_id, id, partner_id, opportunity_id, plan_id, currency, base_minor, rate_bp,
                                      bands, bonus_minor, amount_minor, closed_by)
             values ($1, gen_random_uuid(), $2, $3, $4, 'EUR', 100000, 500, '[]', 0, 5000, $5)",
        )
        .bind(tenant)
        .bind(p)
        .bind(opportunity)
        .bind(plan)
        .bind(admin)
        .execute(tx.conn())
        .await
        .expect("commission");
    }
    mdf_rows(&mut tx, &partners, admin).await;
    tx.commit().await.expect("commit");
    partners
}

/// Market development funds (issue 17) for each partner: a budget (quarters differ per partner,
/// so moving them all to one partner trips the key, not the uniqueness), an approved request
/// (which the database commits to the budget), a claim against it and its proof file; and an
/// allowance. Rows only (no audit events).
async fn mdf_rows(tx: &mut store::TenantTx, partners: &[Uuid], admin: Uuid) {
    let tenant = tx.tenant().as_uuid();
    sqlx::query(
        "insert into mdf_allowances (tenant_id, id, tier, currency, amount_minor, created_by)
         values ($1, gen_random_uuid(), 'registered', 'EUR', 500000, $2)",
    )
    .bind(tenant)
    .bind(admin)
    .execute(tx.conn())
    .await
    .expect("mdf allowance");
    let key: Uuid = sqlx::query_scalar("select id from blob_keys where tenant_id = $1 limit 1")
        .bind(tenant)
        .fetch_one(tx.conn())
        .await
        .expect("blob key");
    for (i, p) in partners.iter().enumerate() {
        let (budget, request, claim, blob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        sqlx::query(
            "insert into mdf_budgets (tenant_id, id, partner_id, period, currency, amount_minor, created_by)
             values ($1, $2, $3, $4, 'EUR', 500000, $5)",
        )
        .bind(tenant)
        .bind(budget)
        .bind(p)
        .bind(format!("2030-Q{}", i + 1))
        .bind(admin)
        .execute(tx.conn())
        .await
        .expect("mdf budget");
        sqlx::query(
            "insert into mdf_requests (tenant_id, id, partner_id, budget_id, currency, activity, amount_minor, status,
                                       requested_by, decided_by, decided_at)
             values ($1, $2, $3, $4, 'EUR', 'Fixture webinar', 100000, 'approved', gen_random_uuid(), $5, now())",
        )
        .bind(tenant)
        .bind(request)
        .bind(p)
        .bind(budget)
        .bind(admin)
        .execute(tx.conn())
        .await
        .expect("mdf request");
        sqlx::query(
            "insert into mdf_claims (tenant_id, id, partner_id, request_id, currency, amount_minor, description, claimed_by)
             values ($1, $2, $3, $4, 'EUR', 40000, 'Fixture webinar held', gen_random_uuid())",
        )
        .bind(tenant)
        .bind(claim)
        .bind(p)
        .bind(request)
        .execute(tx.conn())
        .await
        .expect("mdf claim");
        sqlx::query(
            "insert into blobs (tenant_id, id, key_id, size_bytes, sha256, media_type, name, created_by)
             values ($1, $2, $3, 5, sha256('proof'::bytea), 'application/pdf', 'proof.pdf', $4)",
        )
        .bind(tenant)
        .bind(blob)
        .bind(key)
        .bind(admin)
        .execute(tx.conn())
        .await
        .expect("proof blob");
        sqlx::query(
            "insert into mdf_claim_proofs (tenant_id, id, partner_id, claim_id, blob_id, added_by)
             values ($1, gen_random_uuid(), $2, $3, $4, $5)",
        )
        .bind(tenant)
        .bind(p)
        .bind(claim)
        .bind(blob)
        .bind(admin)
        .execute(tx.conn())
        .await
        .expect("mdf proof");
    }
}

async fn fixture_deal(tx: &mut store::TenantTx, partner: Option<Uuid>, domain: &str, by: Uuid) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into deal_registrations (tenant_id, id, partner_id, customer_company, customer_domain,
                                         amount_minor, currency, expected_close, registered_by)
         values ($1, $2, $3, $4, $4, 100000, 'EUR', date '2030-01-01', $5)",
    )
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(partner)
    .bind(domain)
    .bind(by)
    .execute(tx.conn())
    .await
    .expect("deal registration");
    id
}

/// An API key the operator mints in `tenant`; returns its id and its secret.
pub async fn api_key(db: &TestDb, tenant: TenantId, name: &str, role: Role, scopes: &[&str]) -> (Uuid, String) {
    let mut tx = db.store.tenant_tx(tenant).await.expect("tenant tx");
    let k = identity::admin::api_keys::create(
        &mut tx,
        &who(),
        &operator(authz::Action::ApiKeysManage, tenant),
        identity::admin::api_keys::Minter::Operator,
        &identity::admin::api_keys::NewApiKey {
            name: name.to_owned(),
            role,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: None,
        },
    )
    .await
    .expect("api key");
    tx.commit().await.expect("commit");
    (k.key.id, secrecy::ExposeSecret::expose_secret(&k.secret).to_owned())
}

/// The password the sign-in tests give fixture users (passes the policy; not in the list).
pub const PASSWORD: &str = "tulip lantern orbit 1987";

/// Gives `user` the test [`PASSWORD`] through the real policy and hasher.
pub async fn with_password(db: &TestDb, user: Uuid) {
    let hasher = identity::signin::passwords::Hasher::new(1).expect("hasher");
    let mut g = db.store.global_tx().await.expect("tx");
    identity::signin::account::set_password(&mut g, &who(), &hasher, user, &secrecy::SecretString::from(PASSWORD), &[])
        .await
        .expect("password");
    g.commit().await.expect("commit");
}

/// How many events with `action` the organisation's audit chain holds (read under its RLS).
pub async fn audit_count(db: &TestDb, tenant: TenantId, action: &str) -> i64 {
    let mut tx = db.store.tenant_tx(tenant).await.expect("tx");
    sqlx::query_scalar("select count(*) from audit_events where action = $1")
        .bind(action)
        .fetch_one(tx.conn())
        .await
        .expect("count")
}

/// The SQLSTATE of a failed statement, for asserting *how* the database refused.
pub fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned())
}

/// Adds a member with `role` (in `dept`) to the organisation, with [`PASSWORD`] set when
/// `password`; returns their user id. Email: `{name}@{slug}.example`.
pub async fn member(
    db: &TestDb,
    tenant: TenantId,
    slug: &str,
    name: &str,
    role: Role,
    dept: Option<Uuid>,
    password: bool,
) -> Uuid {
    let mut g = db.store.global_tx().await.expect("tx");
    let email = EmailAddress::parse(&format!("{name}@{slug}.example")).expect("email");
    let u = users::create(&mut g, &who(), &email, name).await.expect("user");
    g.commit().await.expect("commit");
    let mut tx = db.store.tenant_tx(tenant).await.expect("tx");
    memberships::add(
        &mut tx,
        &who(),
        &memberships::NewMembership { user_id: u.id, role, department_id: dept, valid_until: None },
    )
    .await
    .expect("membership");
    tx.commit().await.expect("commit");
    if password {
        with_password(db, u.id).await;
    }
    u.id
}

/// The `countersign` binary run as an operator would: from `cwd` (a fresh directory, not the
/// checkout), against the test database, with no `COUNTERSIGN_*` setting inherited (logs as JSON).
pub fn operator_run(db: &TestDb, cwd: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"));
    for (k, _) in std::env::vars() {
        if k.starts_with("COUNTERSIGN_") {
            c.env_remove(k);
        }
    }
    c.env("COUNTERSIGN_LOG_FORMAT", "json")
        .args(args)
        .current_dir(cwd)
        .env("DATABASE_URL", db.url())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run")
}

/// Everything a run printed (stdout, then stderr), for assertions and failure messages.
pub fn output(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A new user made a partner person (`role`: partner_admin or partner_agent) of `partner` in
/// `t`, by the operator; their user id.
pub async fn partner_person(db: &TestDb, t: TenantId, partner: Uuid, email: &str, role: authz::Role) -> Uuid {
    let mut g = db.store.global_tx().await.expect("global tx");
    let u = users::create(&mut g, &who(), &EmailAddress::parse(email).expect("email"), email).await.expect("user");
    g.commit().await.expect("commit");
    let mut tx = db.store.program_tx(t, store::ProgramScope::Vendor).await.expect("tx");
    let permit = authz::Permit::operator(authz::Action::ProgramPartnersManage, t.as_uuid());
    programs::partners::add_member(&mut tx, &who(), &permit, partner, u.id, role).await.expect("partner member");
    tx.commit().await.expect("commit");
    u.id
}

/// The redactions every page snapshot needs (ids, asset hashes and SRI, the CSRF token, times),
/// followed by a test file's own `extra` ones: the page's markup is then the same on every run.
pub fn page_filters(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut filters = vec![
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[uuid]"),
        (r"/static/(app|htmx|icon|attach)-[0-9a-f]{12}\.", "/static/$1-[hash]."),
        (r"sha384-[A-Za-z0-9+/=]+", "sha384-[sri]"),
        (r#"value="[0-9a-f]{64}""#, r#"value="[csrf]""#),
        (r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2} UTC", "[moment]"),
        // The test server's own address (a free port), e.g. in the SAML SP's URLs.
        (r"http://127\.0\.0\.1:\d+", "http://[server]"),
    ];
    filters.extend_from_slice(extra);
    filters
}

/// A SCIM token of `tenant` minted as the host operator: its id and the presentable secret.
pub async fn scim_token(db: &TestDb, tenant: TenantId, name: &str) -> (Uuid, String) {
    let mut tx = db.store.tenant_tx(tenant).await.expect("tenant tx");
    let t =
        identity::admin::scim::tokens::create(&mut tx, &who(), &operator(authz::Action::SettingsManage, tenant), name)
            .await
            .expect("scim token");
    tx.commit().await.expect("commit");
    (t.token.id, secrecy::ExposeSecret::expose_secret(&t.secret).to_owned())
}
