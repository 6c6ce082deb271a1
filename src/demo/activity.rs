//! The demo's history: fiscal periods (one closed), a few dozen vouchers and purchase orders in
//! every state across departments and currencies, a question and its answer, a pending joiner
//! and a guest auditor whose access runs out. Everything goes through the domain functions the
//! API calls, as the people who would do it, so the ledger tells the same story as the pages.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use approvals::documents::{self, Kind, Member, NewDocument, NewLine};
use approvals::{Currency, Status, Transition};
use audit::Origin;
use authz::Engine;
use chrono::{Duration, NaiveDate, Utc};
use identity::{EmailAddress, Role, memberships, users};
use store::{Store, TenantId};
use uuid::Uuid;

/// Who plays which part in the seeded organisation (emails of `ORGS[0]`).
pub struct Cast {
    pub raisers: [(Uuid, Uuid); 2],
    pub hods: [Uuid; 2],
    pub finance: Uuid,
    pub md: Uuid,
}

/// The state a seeded document is driven to, and how.
#[derive(Debug, Clone, Copy)]
enum Goal {
    Draft,
    Submitted,
    HodApproved,
    /// Over the MD threshold, waiting for the MD.
    WithMd,
    /// A question from the head of department, not yet answered.
    Queried,
    /// Queried, answered, and waiting for finance again.
    Answered,
    Approved,
    Paid,
    Rejected,
    Cancelled,
}

const GOALS: &[Goal] = &[
    Goal::Submitted,
    Goal::HodApproved,
    Goal::Paid,
    Goal::WithMd,
    Goal::Draft,
    Goal::Queried,
    Goal::Approved,
    Goal::Submitted,
    Goal::Rejected,
    Goal::HodApproved,
    Goal::Answered,
    Goal::Paid,
    Goal::Cancelled,
    Goal::WithMd,
    Goal::Submitted,
    Goal::Approved,
];

/// Last quarter's settled documents.
const SETTLED: &[Goal] = &[Goal::Paid, Goal::Paid, Goal::Rejected, Goal::Paid, Goal::Cancelled, Goal::Paid];

/// How many documents [`seed`] raises.
pub const DOCUMENTS: usize = SETTLED.len() + 2 * GOALS.len();

const TITLES: &[(&str, &[&str])] = &[
    ("Forklift annual service", &["Service visit", "Replacement forks"]),
    ("Trade fair stand, Hanover", &["Stand rental", "Furniture hire", "Electricity connection"]),
    ("Laptop replacements", &["Three laptops", "Docking stations"]),
    ("Courier account top-up", &["Prepaid credit"]),
    ("Office cleaning, November", &["Cleaning contract"]),
    ("Safety boots for the warehouse", &["Twelve pairs"]),
    ("Customer visit, Lyon", &["Train tickets", "Hotel, two nights", "Meals"]),
    ("Packaging materials", &["Cartons", "Tape and labels"]),
    ("CRM licences, annual", &["Twenty seats"]),
    ("Pallet racking repair", &["Parts", "Labour"]),
    ("Printer lease, Q4", &["Lease instalment"]),
    ("Sales kick-off venue", &["Room hire", "Catering"]),
];

/// (currency, base amount in minor units): some under, some over the MD thresholds the demo
/// sets (EUR 10,000, GBP 8,500, USD 11,000; CHF has none, so it always goes to the MD).
const CURRENCIES: &[&str] = &["EUR", "EUR", "GBP", "USD", "EUR", "CHF"];

fn amounts(i: usize, over_threshold: bool, lines: usize) -> Vec<i64> {
    // Deterministic, varied, and never zero: the seed data is the same on every machine.
    let base: i64 = if over_threshold { 1_250_000 } else { 18_500 };
    (0..lines).map(|l| base + ((i as i64 * 7_919 + l as i64 * 3_571) % 240_000) / (l as i64 + 1)).collect()
}

/// Seeds the organisation's history. Runs once, right after the organisation is created.
pub async fn seed(store: &Store, tenant: TenantId, cast: &Cast, today: NaiveDate) -> anyhow::Result<()> {
    let engine = Engine::load().context("loading the policies")?;
    let year = today.year();
    // The last quarter closed; this quarter open.
    let (q_start, prev_start, prev_end) = quarters(today);
    let q_end = next_quarter_start(q_start) - Duration::days(1);
    let as_finance = member(store, tenant, cast.finance).await?;
    period(store, tenant, &engine, &as_finance, &format!("{year} Q{}", quarter(q_start)), q_start, q_end).await?;
    let previous = period(
        store,
        tenant,
        &engine,
        &as_finance,
        &format!("{} Q{}", prev_start.year(), quarter(prev_start)),
        prev_start,
        prev_end,
    )
    .await?;

    let mut n = 0usize;
    // Last quarter: settled business, then the period is closed.
    for (k, goal) in SETTLED.iter().enumerate() {
        let date = prev_start + Duration::days((k as i64 * 13) % 85);
        drive(store, tenant, &engine, cast, n, *goal, date).await?;
        n += 1;
    }
    let mut tx = store.tenant_tx(tenant).await?;
    documents::set_period_status(&mut tx, &engine, &as_finance, previous, true, None).await?;
    tx.commit().await?;

    // This quarter: every state, twice over, dated up to today.
    let span = (today - q_start).num_days().max(1);
    for round in 0..2 {
        for (k, goal) in GOALS.iter().enumerate() {
            let date = q_start + Duration::days(((round * 16 + k) as i64 * 5) % span);
            drive(store, tenant, &engine, cast, n, *goal, date).await?;
            n += 1;
        }
    }
    Ok(())
}

fn quarter(d: NaiveDate) -> u32 {
    (d.month0() / 3) + 1
}

fn next_quarter_start(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() >= 10 { (d.year() + 1, 1) } else { (d.year(), d.month() + 3) };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(d)
}

/// (this quarter's first day, last quarter's first and last day).
fn quarters(today: NaiveDate) -> (NaiveDate, NaiveDate, NaiveDate) {
    let start = NaiveDate::from_ymd_opt(today.year(), (today.month0() / 3) * 3 + 1, 1).unwrap_or(today);
    let prev_end = start - Duration::days(1);
    let prev_start = NaiveDate::from_ymd_opt(prev_end.year(), (prev_end.month0() / 3) * 3 + 1, 1).unwrap_or(prev_end);
    (start, prev_start, prev_end)
}

use chrono::Datelike as _;

async fn member(store: &Store, tenant: TenantId, user: Uuid) -> anyhow::Result<Member> {
    let mut tx = store.tenant_tx(tenant).await?;
    let m = Member::load(&mut tx, user, Origin::none()).await?;
    tx.commit().await?;
    Ok(m)
}

async fn period(
    store: &Store,
    tenant: TenantId,
    engine: &Engine,
    finance: &Member,
    name: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> anyhow::Result<Uuid> {
    let mut tx = store.tenant_tx(tenant).await?;
    let p = documents::open_period(&mut tx, engine, finance, name, from, to).await?;
    tx.commit().await?;
    Ok(p.id)
}

/// Raises document `i` as one of the staff and walks it to `goal` as the people who would.
async fn drive(
    store: &Store,
    tenant: TenantId,
    engine: &Engine,
    cast: &Cast,
    i: usize,
    goal: Goal,
    date: NaiveDate,
) -> anyhow::Result<()> {
    // Alternate raisers, shifted each round so both meet every state.
    let side = (i + i / GOALS.len()) % 2;
    let (raiser, department) = cast.raisers[side];
    let hod = cast.hods[side];
    let (title, descriptions) = TITLES[i % TITLES.len()];
    let currency = CURRENCIES[i % CURRENCIES.len()];
    // Documents bound for the MD are over the threshold; CHF always is (no threshold set).
    let over = matches!(goal, Goal::WithMd) || (currency != "CHF" && i.is_multiple_of(5));
    let currency: Currency = if matches!(goal, Goal::WithMd) { "EUR" } else { currency }.parse()?;
    let lines = amounts(i, over, descriptions.len())
        .into_iter()
        .zip(descriptions.iter())
        .map(|(amount_minor, d)| NewLine { description: (*d).to_owned(), amount_minor })
        .collect();
    let new = NewDocument {
        kind: if i % 3 == 2 { Kind::PurchaseOrder } else { Kind::Voucher },
        department_id: department,
        title: (*title).to_owned(),
        document_date: date,
        currency,
        lines,
        attachments: Vec::new(),
    };
    let mut tx = store.tenant_tx(tenant).await?;
    let m = Member::load(&mut tx, raiser, Origin::none()).await?;
    let doc = documents::create(&mut tx, engine, &m, &new).await?;
    tx.commit().await?;

    let mut d = Walk { store, tenant, engine, id: doc.id, version: doc.version, status: doc.status };
    if matches!(goal, Goal::Draft) {
        return Ok(());
    }
    if matches!(goal, Goal::Cancelled) {
        return d.step(raiser, Transition::Cancel, Some("Ordered through the framework contract instead.")).await;
    }
    d.step(raiser, Transition::Submit, None).await?;
    match goal {
        Goal::Submitted => return Ok(()),
        Goal::Queried => {
            return d
                .step(hod, Transition::Query, Some("Which cost centre should carry this? Please attach the quote."))
                .await;
        }
        Goal::Rejected => {
            return d.step(hod, Transition::Reject, Some("Not budgeted this quarter; raise it again in January.")).await;
        }
        _ => {}
    }
    d.step(hod, Transition::Approve, None).await?;
    if matches!(goal, Goal::HodApproved) {
        return Ok(());
    }
    if matches!(goal, Goal::Answered) {
        d.step(cast.finance, Transition::Query, Some("Is VAT included in these amounts?")).await?;
        return d.step(raiser, Transition::Answer, Some("Yes, all amounts include VAT at the standard rate.")).await;
    }
    d.step(cast.finance, Transition::Approve, None).await?;
    if d.status == Status::FinanceApproved {
        if matches!(goal, Goal::WithMd) {
            return Ok(());
        }
        d.step(cast.md, Transition::Approve, None).await?;
    }
    if matches!(goal, Goal::Paid) {
        d.step(cast.finance, Transition::MarkPaid, None).await?;
    }
    Ok(())
}

struct Walk<'a> {
    store: &'a Store,
    tenant: TenantId,
    engine: &'a Engine,
    id: Uuid,
    version: i32,
    status: Status,
}

impl Walk<'_> {
    async fn step(&mut self, who: Uuid, t: Transition, note: Option<&str>) -> anyhow::Result<()> {
        let mut tx = self.store.tenant_tx(self.tenant).await?;
        let m = Member::load(&mut tx, who, Origin::none()).await?;
        let doc = documents::transition(&mut tx, self.engine, &m, self.id, t, self.version, note)
            .await
            .with_context(|| format!("demo: {t} on a {} document", self.status))?;
        tx.commit().await?;
        self.version = doc.version;
        self.status = doc.status;
        Ok(())
    }
}

/// A guest auditor whose membership ends in `days` days (the expiry job removes it then).
pub async fn guest(
    store: &Store,
    tenant: TenantId,
    email: &str,
    name: &str,
    days: i64,
    who: &audit::Who,
) -> anyhow::Result<()> {
    let email = EmailAddress::parse(email)?;
    let mut g = store.global_tx().await?;
    let user = match users::find_by_email(&mut g, &email).await? {
        Some(u) => u,
        None => users::create(&mut g, who, &email, name).await?,
    };
    g.commit().await?;
    let mut tx = store.tenant_tx(tenant).await?;
    memberships::add(
        &mut tx,
        who,
        &memberships::NewMembership {
            user_id: user.id,
            role: Role::Auditor,
            department_id: None,
            valid_until: Some(Utc::now() + Duration::days(days)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Keeps the mail the email-code flow sends, so the demo can redeem the code the way a person
/// reading their mailbox would.
#[derive(Debug, Default)]
struct Mailbox(Mutex<Vec<identity::mail::Mail>>);

impl identity::mail::Mailer for Mailbox {
    fn send<'a>(
        &'a self,
        mail: &'a identity::mail::Mail,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), identity::IdentityError>> + Send + 'a>> {
        Box::pin(async move {
            if let Ok(mut box_) = self.0.lock() {
                box_.push(mail.clone());
            }
            Ok(())
        })
    }
}

/// Someone from the organisation's email domain who verified their address and now waits for
/// an admin's approval (the organisation joins by `admin_approval`).
pub async fn pending_joiner(
    store: &Store,
    tenant: TenantId,
    email: &str,
    name: &str,
    who: &audit::Who,
) -> anyhow::Result<()> {
    let email = EmailAddress::parse(email)?;
    let mut g = store.global_tx().await?;
    if users::find_by_email(&mut g, &email).await?.is_none() {
        users::create(&mut g, who, &email, name).await?;
    }
    g.commit().await?;
    let mailbox = Arc::new(Mailbox::default());
    let mailer: Arc<dyn identity::mail::Mailer> = mailbox.clone();
    let purpose = identity::email_codes::Purpose::VerifyEmail;
    identity::email_codes::request(store, &mailer, Some(tenant), &email, purpose, &Origin::none()).await?;
    // The mail is sent on a task of its own; it is in the box within moments.
    let mut code = None;
    for _ in 0..100 {
        code = mailbox.0.lock().ok().and_then(|b| b.iter().find_map(|m| code_in(&m.text)));
        if code.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let code = code.context("demo: the verification mail did not arrive")?;
    identity::email_codes::redeem(store, Some(tenant), &email, &code, &Origin::none()).await?;
    Ok(())
}

fn code_in(text: &str) -> Option<String> {
    let rest = text.split("is: ").nth(1)?;
    Some(rest.lines().next()?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarters_of_a_december_day() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap_or_default();
        let (start, prev_start, prev_end) = quarters(d);
        assert_eq!(start, NaiveDate::from_ymd_opt(2026, 10, 1).unwrap_or_default());
        assert_eq!(prev_start, NaiveDate::from_ymd_opt(2026, 7, 1).unwrap_or_default());
        assert_eq!(prev_end, NaiveDate::from_ymd_opt(2026, 9, 30).unwrap_or_default());
        assert_eq!(next_quarter_start(start), NaiveDate::from_ymd_opt(2027, 1, 1).unwrap_or_default());
        let jan = NaiveDate::from_ymd_opt(2027, 1, 3).unwrap_or_default();
        assert_eq!(quarters(jan).1, NaiveDate::from_ymd_opt(2026, 10, 1).unwrap_or_default());
    }

    #[test]
    fn every_amount_is_positive() {
        for i in 0..64 {
            for over in [false, true] {
                assert!(amounts(i, over, 3).iter().all(|a| *a > 0));
            }
        }
    }

    #[test]
    fn the_code_is_read_from_the_mail_text() {
        assert_eq!(code_in("Your code to verify is: 123456\n\nIt expires").as_deref(), Some("123456"));
        assert_eq!(code_in("nothing here"), None);
    }
}
