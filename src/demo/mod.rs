//! `countersign demo`: a few organisations with departments, people and memberships, created
//! through the same domain functions the API uses, and for the first organisation a history
//! (`activity`): periods, documents in every state, a pending joiner, an expiring guest.
//! Idempotent: existing organisations are kept.

mod activity;

use std::net::SocketAddr;

use anyhow::Context as _;
use identity::{DepartmentCode, EmailAddress, JoinPolicy, Role, Slug, departments, memberships, tenants, users};

pub struct Seeded {
    orgs: Vec<SeededOrg>,
    /// A fresh auditor key for the first organisation, valid for one day.
    auditor_key: Option<secrecy::SecretString>,
    /// This run's password of every demo account (fresh each run; setting it ends old sessions).
    password: secrecy::SecretString,
}

struct SeededOrg {
    slug: &'static str,
    name: &'static str,
    people: Vec<(String, Role)>,
}

struct Org {
    slug: &'static str,
    name: &'static str,
    domain: &'static str,
    departments: &'static [(&'static str, &'static str)],
    people: &'static [(&'static str, &'static str, Role, Option<&'static str>)],
    /// Seed documents, periods, a pending joiner and a guest auditor (the first organisation).
    history: bool,
}

const ORGS: &[Org] = &[
    Org {
        slug: "acme",
        name: "Acme Manufacturing",
        domain: "acme.example",
        departments: &[("OPS", "Operations"), ("SALES", "Sales"), ("FIN", "Finance"), ("EXEC", "Executive")],
        people: &[
            ("ada", "Ada Admin", Role::Admin, None),
            ("sam", "Sam Staff", Role::Staff, Some("OPS")),
            ("hana", "Hana Head of Ops", Role::Hod, Some("OPS")),
            ("sol", "Sol Sales", Role::Staff, Some("SALES")),
            ("heidi", "Heidi Head of Sales", Role::Hod, Some("SALES")),
            ("finn", "Finn Finance", Role::Finance, Some("FIN")),
            ("mona", "Mona MD", Role::Md, Some("EXEC")),
            ("audrey", "Audrey Auditor", Role::Auditor, None),
            ("olive", "Olive Owner", Role::Owner, None),
        ],
        history: true,
    },
    Org {
        slug: "bright",
        name: "Bright Web Studio",
        domain: "bright.example",
        departments: &[("STUDIO", "Studio"), ("FIN", "Finance")],
        people: &[
            ("bea", "Bea Admin", Role::Admin, None),
            ("bo", "Bo Staff", Role::Staff, Some("STUDIO")),
            ("vic", "Vic Vendor", Role::Vendor, None),
            ("oscar", "Oscar Owner", Role::Owner, None),
        ],
        history: false,
    },
    Org {
        slug: "cedar",
        name: "Cedar Trading Co.",
        domain: "cedar.example",
        departments: &[("TRADE", "Trading")],
        people: &[
            ("cy", "Cy Admin", Role::Admin, None),
            ("pat", "Pat Partner", Role::Partner, None),
            ("orla", "Orla Owner", Role::Owner, None),
        ],
        history: false,
    },
];

fn who() -> audit::Who {
    audit::Who::system("cli:demo")
}

pub async fn seed(store: &store::Store) -> anyhow::Result<Seeded> {
    let mut out = Vec::new();
    for org in ORGS {
        let mut g = store.global_tx().await?;
        let existing = g.resolve_tenant(org.slug).await?;
        g.commit().await?;
        if existing.is_none() {
            let mut b = store.bypass("countersign demo", "seed demonstration organisations").await?;
            let t = tenants::create(
                &mut b,
                &who(),
                &tenants::NewTenant {
                    slug: Slug::parse(org.slug)?,
                    name: org.name.into(),
                    allowed_email_domains: vec![org.domain.into()],
                    join_policy: JoinPolicy::AdminApproval,
                },
            )
            .await?;
            b.commit().await?;
            seed_org(store, t.id, org).await?;
        }
        let people = org.people.iter().map(|(local, _, role, _)| (format!("{local}@{}", org.domain), *role)).collect();
        out.push(SeededOrg { slug: org.slug, name: org.name, people });
    }
    let auditor_key = demo_auditor_key(store).await?;
    let password = demo_passwords(store).await?;
    Ok(Seeded { orgs: out, auditor_key, password })
}

/// One random password for every demo account, set through the same policy and hashing as the
/// API (it is not in the breached list and names no account or organisation).
async fn demo_passwords(store: &store::Store) -> anyhow::Result<secrecy::SecretString> {
    use rand::RngCore;
    let mut bytes = [0u8; 9];
    rand::rng().fill_bytes(&mut bytes);
    let password = secrecy::SecretString::from(format!("demo-{}", hex::encode(bytes)));
    let hasher = identity::passwords::Hasher::new(identity::passwords::SERVER_THREADS)?;
    for org in ORGS {
        for (local, ..) in org.people {
            let email = EmailAddress::parse(&format!("{local}@{}", org.domain))?;
            let mut g = store.global_tx().await?;
            if let Some(user) = users::find_by_email(&mut g, &email).await? {
                identity::sessions::set_password(
                    &mut g,
                    &who(),
                    &hasher,
                    user.id,
                    &password,
                    &[email.as_str(), org.name],
                )
                .await?;
            }
            g.commit().await?;
        }
    }
    Ok(password)
}

async fn demo_auditor_key(store: &store::Store) -> anyhow::Result<Option<secrecy::SecretString>> {
    let mut g = store.global_tx().await?;
    let tenant = g.resolve_tenant(ORGS[0].slug).await?;
    g.commit().await?;
    let Some(tenant) = tenant else { return Ok(None) };
    let mut tx = store.tenant_tx(tenant).await?;
    let issued = identity::api_keys::create(
        &mut tx,
        &who(),
        // Seeding acts as the host operator, like the command line.
        &authz::Permit::operator(authz::Action::ApiKeysManage, tenant.as_uuid()),
        identity::api_keys::Minter::Operator,
        &identity::api_keys::NewApiKey {
            name: "demo auditor".into(),
            role: Role::Auditor,
            scopes: vec!["audit:read".into()],
            expires_at: Some(chrono::Utc::now() + chrono::Duration::days(1)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(issued.secret))
}

async fn seed_org(store: &store::Store, tenant: store::TenantId, org: &Org) -> anyhow::Result<()> {
    let mut tx = store.tenant_tx(tenant).await?;
    let mut depts = Vec::new();
    for (code, name) in org.departments {
        depts.push(departments::create(&mut tx, &who(), &DepartmentCode::parse(code)?, name).await?);
    }
    // MD thresholds per currency (10,000.00 EUR, 8,500.00 GBP, 11,000.00 USD), so larger
    // vouchers show the MD level; other currencies always go to the MD.
    let thresholds = approvals::documents::MdThresholds {
        thresholds: [("EUR", 1_000_000), ("GBP", 850_000), ("USD", 1_100_000)]
            .into_iter()
            .map(|(c, m)| (c.to_owned(), m))
            .collect(),
    };
    let permit = authz::Permit::operator(authz::Action::SettingsManage, tenant.as_uuid());
    approvals::documents::apply_md_thresholds(&mut tx, &permit, &who(), &thresholds).await?;
    tx.commit().await?;
    let mut ids = Vec::new();
    for (local, name, role, dept) in org.people {
        let email = EmailAddress::parse(&format!("{local}@{}", org.domain))?;
        let mut g = store.global_tx().await?;
        let user = match users::find_by_email(&mut g, &email).await? {
            Some(u) => u,
            None => users::create(&mut g, &who(), &email, name).await?,
        };
        g.commit().await?;
        let department_id = dept.and_then(|c| depts.iter().find(|d| d.code == c).map(|d| d.id));
        ids.push((*local, user.id, department_id));
        let mut tx = store.tenant_tx(tenant).await?;
        memberships::add(
            &mut tx,
            &who(),
            &memberships::NewMembership { user_id: user.id, role: *role, department_id, valid_until: None },
        )
        .await?;
        tx.commit().await?;
    }
    if org.history {
        let id = |l: &str| ids.iter().find(|(local, ..)| *local == l).map(|(_, id, _)| *id).context(format!("no {l}"));
        let dept = |l: &str| {
            ids.iter().find(|(local, ..)| *local == l).and_then(|(.., d)| *d).context(format!("{l}'s department"))
        };
        let cast = activity::Cast {
            raisers: [(id("sam")?, dept("sam")?), (id("sol")?, dept("sol")?)],
            hods: [id("hana")?, id("heidi")?],
            finance: id("finn")?,
            md: id("mona")?,
        };
        activity::seed(store, tenant, &cast, chrono::Utc::now().date_naive()).await?;
        let domain = org.domain;
        activity::guest(store, tenant, &format!("gus@{domain}"), "Gus Guest Auditor", 5, &who()).await?;
        activity::pending_joiner(store, tenant, &format!("jo@{domain}"), "Jo Newcomer", &who()).await?;
    }
    Ok(())
}

impl Seeded {
    pub fn print(&self, addr: SocketAddr) {
        println!("\nCountersign demo is running: open http://{addr}\n");
        println!("  health      http://{addr}/healthz   readiness http://{addr}/readyz");
        println!("  isolation   http://{addr}/api/v1/status   metrics http://{addr}/metrics\n");
        for SeededOrg { slug, name, people } in &self.orgs {
            println!("  {name} ({slug})");
            for (email, role) in people {
                println!("    {role:<8} {email}");
            }
            if let Some(org) = ORGS.iter().find(|o| o.slug == *slug && o.history) {
                println!("    auditor  gus@{} (a guest: access ends in 5 days)", org.domain);
                println!("    pending  jo@{} (joined by email domain, waits for an admin's approval)", org.domain);
                println!(
                    "    {} documents in every state, last quarter closed: sign in as hana, finn or mona to approve",
                    activity::DOCUMENTS
                );
            }
        }
        if let Some(key) = &self.auditor_key {
            use secrecy::ExposeSecret;
            println!("\n  Audit ledger of {} as its auditor (key valid 24 h, shown only now):", ORGS[0].name);
            println!("    curl -H 'Authorization: Bearer {}' http://{addr}/api/v1/audit/events", key.expose_secret());
            println!("    countersign audit verify     # recompute every chain (exit 3 on tampering)");
        }
        use secrecy::ExposeSecret;
        println!(
            "\n  Every account above signs in with the password {} (new each run):",
            self.password.expose_secret()
        );
        println!(
            "    curl -c jar -H 'content-type: application/json' -d '{{\"organisation\":\"{}\",\"email\":\"{}\",\"password\":\"{}\"}}' http://{addr}/api/v1/auth/login",
            ORGS[0].slug,
            self.orgs.first().and_then(|o| o.people.first()).map(|(e, _)| e.as_str()).unwrap_or_default(),
            self.password.expose_secret()
        );
        println!("  Mail (one-time codes, invitations) goes to the outbox: countersign admin outbox");
        println!("\nStop with Ctrl-C: the database stops cleanly.\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_organisation_has_an_owner() {
        for org in ORGS {
            assert!(org.people.iter().any(|(_, _, role, _)| *role == Role::Owner), "{} has no owner", org.slug);
        }
    }
}
