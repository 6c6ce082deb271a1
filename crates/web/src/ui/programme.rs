//! `/programme` and `/programme/deals/{id}`: the partner programme's deals, leads, opportunities
//! and commissions, another face of `crate::api::programs` and `crate::api::commissions` through
//! the same domain calls. Vendor staff see every partner's rows and decide (channel managers:
//! deal registrations; finance: commissions, never the person who closed the deal); a partner
//! person sees only its own company's (the rows are read in a `Store::program_tx` opened with the
//! person's own id, so the database decides, exactly as for the API), registers deals (and is
//! told the conflict check's answer in words), moves its opportunities and downloads its
//! commission statement. Each action form shows only where the policy engine would permit this
//! person; the domain asks again when it is sent. Another partner's (or organisation's) deal is a
//! 404 page, the same answer as an id that does not exist. A partner person disputes a commission
//! with a reason and finance resolves it (text, optionally a corrected amount); vendor staff and a
//! partner's administrator invite people into a partner company (`crate::api::invitations`'s
//! path). A form with bad input comes back with the words under its field and what was typed.

use askama::Template;
use askama_web::WebTemplate;
use authz::{Action, CommissionFacts, Resource};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{NaiveDate, Utc};
use programs::commissions::{Commission, CommissionStatus, Step};
use programs::deals::{self, Deal, DealStatus, Decision, NewDeal};
use programs::opportunities::{self, NewOpportunity, Stage};
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::api::documents::member;
use crate::api::invitations::invite_partner_person;
use crate::api::mdf::{acting_user, program_tx};
use crate::plumbing::access::path_id;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::form::Fields;
use crate::ui::format;
use crate::ui::mdf::Choice;
use crate::{ApiError, AppState, Principal};
use identity::EmailAddress;

#[derive(Debug, Clone)]
pub(crate) struct DealRow {
    pub id: String,
    pub partner: String,
    pub customer: String,
    pub domain: String,
    pub amount: String,
    pub expected_close: String,
    pub status: &'static str,
    pub tone: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct LeadRow {
    pub partner: String,
    pub company: String,
    pub domain: String,
    pub registered: String,
}

/// An invitation into a partner company, as the programme page lists it (never its token).
#[derive(Debug, Clone)]
pub(crate) struct InvitationRow {
    pub id: String,
    pub partner_id: String,
    pub partner: String,
    pub email: String,
    pub role: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub expires: String,
    /// Open, and this person may revoke it (a partner's administrator: agents' invitations only).
    pub may_revoke: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct OpportunityRow {
    pub id: String,
    pub partner: String,
    pub name: String,
    pub product: String,
    pub amount: String,
    pub expected_close: String,
    pub stage: &'static str,
    pub tone: &'static str,
    /// The stages it may move to (empty when closed or not this person's to move).
    pub moves: Vec<Choice>,
}

#[derive(Debug, Clone)]
pub(crate) struct CommissionRow {
    pub id: String,
    pub partner: String,
    pub opportunity: String,
    pub base: String,
    pub amount: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub calculated: String,
    /// The finance step this person may take now: `approve`, `payable` or `pay` (or none).
    pub step: &'static str,
    pub step_label: &'static str,
    /// A partner person may dispute it now (calculated, approved or payable).
    pub may_dispute: bool,
    /// Finance may resolve its dispute now (never its closer).
    pub may_resolve: bool,
    pub dispute_reason: String,
    pub resolution: String,
    /// The amount as typed in a form (`1,000.00`), for the corrected-amount field.
    pub amount_plain: String,
}

/// What a refused form sent, given back to it with the words for its field.
#[derive(Debug, Clone, Default)]
pub(crate) struct Typed {
    /// The commission whose dispute or resolve form is refilled (its id), or empty.
    pub commission: String,
    pub text: String,
    pub amount: String,
    pub text_error: String,
    pub amount_error: String,
    /// The invitation form.
    pub invite_email: String,
    pub invite_partner: String,
    pub invite_role: String,
    pub invite_email_error: String,
    pub invite_role_error: String,
    /// An invitation just issued: its code, shown once.
    pub issued_token: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "programme.html")]
pub(crate) struct ProgrammePage {
    pub chrome: Chrome,
    pub vendor: bool,
    pub show_deals: bool,
    pub may_register: bool,
    pub deals: Vec<DealRow>,
    pub show_leads: bool,
    pub may_export_leads: bool,
    pub leads: Vec<LeadRow>,
    pub show_opportunities: bool,
    pub opportunities: Vec<OpportunityRow>,
    pub commissions: Vec<CommissionRow>,
    pub may_statement: bool,
    pub partners: Vec<Choice>,
    pub this_month: String,
    pub notice: String,
    /// `success`, `warning` or `error`.
    pub notice_tone: &'static str,
    /// The invitation form: shown to vendor staff (any partner) and partner administrators (their
    /// own company, agents only).
    pub may_invite: bool,
    pub invite_partners: Vec<Choice>,
    pub invite_roles: Vec<Choice>,
    /// The partner invitations this person sees (vendor staff: every partner's; a partner's
    /// administrator: their company's), when the policy lets them list them.
    pub show_invitations: bool,
    pub invitations: Vec<InvitationRow>,
    pub typed: Typed,
}

#[derive(Template, WebTemplate)]
#[template(path = "deal.html")]
pub(crate) struct DealPage {
    pub chrome: Chrome,
    pub vendor: bool,
    pub id: String,
    pub partner: String,
    pub customer: String,
    pub domain: String,
    pub amount: String,
    pub amount_plain: String,
    pub currency: String,
    pub expected_close: String,
    pub expected_close_iso: String,
    pub registered: String,
    pub status: &'static str,
    pub tone: &'static str,
    /// What the status means, in a sentence (the conflict check's answer among them).
    pub meaning: String,
    pub reason: String,
    /// Vendor staff only: the registrations this one collides with.
    pub conflicts: Vec<String>,
    pub may_decide: bool,
    pub may_open: bool,
    pub notice: String,
    pub notice_tone: &'static str,
}

fn deal_status(s: DealStatus) -> (&'static str, &'static str) {
    match s {
        DealStatus::Submitted => ("Waiting for the channel manager", "waiting"),
        DealStatus::Conflict => ("Conflict: waiting for the channel manager", "attention"),
        DealStatus::Approved => ("Approved, protected", "done"),
        DealStatus::Rejected => ("Rejected", "refused"),
        DealStatus::Expired => ("Protection expired", "neutral"),
    }
}

fn deal_meaning(d: &Deal) -> String {
    match d.status {
        DealStatus::Submitted => {
            "No other registration for this customer was found. A channel manager approves or rejects it.".to_owned()
        }
        DealStatus::Conflict => "This customer (its company name or domain) is already registered by another partner \
                                 or by the vendor's own sales within the protection window. A channel manager \
                                 decides which registration stands."
            .to_owned(),
        DealStatus::Approved => format!(
            "Approved: the deal is protected for this partner{}.",
            d.protected_until.map(|t| format!(" until {}", format::moment(t))).unwrap_or_default()
        ),
        DealStatus::Rejected => "Rejected by the channel manager; the reason is below.".to_owned(),
        DealStatus::Expired => "The protection ran out before the deal closed.".to_owned(),
    }
}

fn stage(s: Stage) -> (&'static str, &'static str) {
    match s {
        Stage::Qualified => ("Qualified", "neutral"),
        Stage::Proposal => ("Proposal", "waiting"),
        Stage::Negotiation => ("Negotiation", "waiting"),
        Stage::Won => ("Won", "done"),
        Stage::Lost => ("Lost", "refused"),
    }
}

fn stage_label(s: Stage) -> &'static str {
    match s {
        Stage::Qualified => "Qualified",
        Stage::Proposal => "Proposal",
        Stage::Negotiation => "Negotiation",
        Stage::Won => "Closed won",
        Stage::Lost => "Closed lost",
    }
}

fn invite_roles(vendor: bool) -> Vec<Choice> {
    let agent = Choice { value: "partner_agent".into(), label: "Partner agent".into() };
    if vendor {
        vec![agent, Choice { value: "partner_admin".into(), label: "Partner administrator".into() }]
    } else {
        vec![agent]
    }
}

fn invitation_status(s: &str) -> (&'static str, &'static str) {
    match s {
        "open" => ("Waiting to be accepted", "waiting"),
        "accepted" => ("Accepted", "done"),
        "revoked" => ("Revoked", "refused"),
        _ => ("Expired", "refused"),
    }
}

fn status(s: CommissionStatus) -> (&'static str, &'static str) {
    match s {
        CommissionStatus::Calculated => ("Calculated, waiting for finance", "waiting"),
        CommissionStatus::Approved => ("Approved", "waiting"),
        CommissionStatus::Payable => ("Payable", "waiting"),
        CommissionStatus::Paid => ("Paid", "done"),
        CommissionStatus::Disputed => ("Disputed", "attention"),
    }
}

/// The finance step `subject` may take on `c` now (the page shows that form only; the domain
/// asks the policy engine again, closer included, when it is sent).
fn finance_step(state: &AppState, s: &authz::Subject, tenant: Uuid, c: &Commission) -> (&'static str, &'static str) {
    let (action, step, label) = match c.status {
        CommissionStatus::Calculated => (Action::CommissionApprove, "approve", "Approve commission"),
        CommissionStatus::Approved => (Action::CommissionPay, "payable", "Mark payable"),
        CommissionStatus::Payable => (Action::CommissionPay, "pay", "Mark paid"),
        _ => return ("", ""),
    };
    let facts = CommissionFacts { tenant, id: c.id, partner: c.partner_id, closer: c.closed_by };
    if state.authz.decide(s, action, &Resource::Commission(&facts)).is_ok() { (step, label) } else { ("", "") }
}

async fn render(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    notice: String,
    notice_tone: &'static str,
    code: StatusCode,
) -> Result<Response, ApiError> {
    render_typed(state, p, headers, notice, notice_tone, code, Typed::default()).await
}

#[allow(clippy::too_many_lines)]
async fn render_typed(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    notice: String,
    notice_tone: &'static str,
    code: StatusCode,
    typed: Typed,
) -> Result<Response, ApiError> {
    let mut tx = program_tx(state, p).await?;
    let m = member(p, &mut tx).await?;
    let s = &m.subject;
    let tenant = s.tenant;
    let org = Resource::Organisation { tenant };
    let allowed = |a: Action| state.authz.decide(s, a, &org).is_ok();
    let vendor = !matches!(programs::scope(&mut tx).await?, programs::Scope::Partner(_));
    let show_deals = allowed(Action::DealRead);
    let show_leads = allowed(Action::LeadRead);
    let show_opportunities = allowed(Action::OpportunityRead);
    let may_advance = allowed(Action::OpportunityAdvance);
    let may_dispute = !vendor && allowed(Action::CommissionDispute);
    let names = programs::mdf::partner_names(&mut tx).await?;
    let deal_list = if show_deals { deals::list(&mut tx, 200).await? } else { Vec::new() };
    let lead_list = if show_leads { programs::leads::page(&mut tx, None, 200).await? } else { Vec::new() };
    let opportunity_list = if show_opportunities { opportunities::list(&mut tx, 200).await? } else { Vec::new() };
    let commission_list = programs::commissions::list(&mut tx, 200).await?;
    let invitation_list = match state.authz.decide(s, Action::PartnerInvitationsRead, &org) {
        Ok(permit) => Some(identity::admin::invitations::list_partner_invitations(&mut tx, &permit).await?),
        Err(_) => None,
    };
    let may_revoke = allowed(Action::PartnerInvitationRevoke);
    let chrome = Chrome::member(state, &mut tx, &m, headers, Section::Programme).await?;
    tx.commit().await?;
    let name = |id: Option<Uuid>| match id {
        None => "Vendor's own sales".to_owned(),
        Some(id) => names.iter().find(|(p, _)| *p == id).map(|(_, n)| n.clone()).unwrap_or_default(),
    };
    let deals = deal_list
        .iter()
        .map(|d| {
            let (status, tone) = deal_status(d.status);
            DealRow {
                id: d.id.to_string(),
                partner: name(d.partner_id),
                customer: d.customer_company.clone(),
                domain: d.customer_domain.clone(),
                amount: format!("{} {}", format::amount(d.amount_minor, &d.currency), d.currency),
                expected_close: format::date(d.expected_close),
                status,
                tone,
            }
        })
        .collect();
    let leads = lead_list
        .iter()
        .map(|l| LeadRow {
            partner: name(Some(l.partner_id)),
            company: l.company_name.clone(),
            domain: l.customer_domain.clone().unwrap_or_default(),
            registered: format::moment(l.created_at),
        })
        .collect();
    let opportunities = opportunity_list
        .iter()
        .map(|o| {
            let (stage, tone) = stage(o.stage);
            OpportunityRow {
                id: o.id.to_string(),
                partner: name(Some(o.partner_id)),
                name: o.name.clone(),
                product: o.product.clone(),
                amount: format!("{} {}", format::amount(o.amount_minor, &o.currency), o.currency),
                expected_close: format::date(o.expected_close),
                stage,
                tone,
                moves: if may_advance {
                    opportunities::allowed_from(o.stage)
                        .into_iter()
                        .map(|to| Choice { value: to.as_str().to_owned(), label: stage_label(to).to_owned() })
                        .collect()
                } else {
                    Vec::new()
                },
            }
        })
        .collect();
    let commissions = commission_list
        .iter()
        .map(|c| {
            let (status, tone) = status(c.status);
            let (step, step_label) = finance_step(state, s, tenant, c);
            let facts = CommissionFacts { tenant, id: c.id, partner: c.partner_id, closer: c.closed_by };
            CommissionRow {
                id: c.id.to_string(),
                partner: name(Some(c.partner_id)),
                opportunity: opportunity_list
                    .iter()
                    .find(|o| o.id == c.opportunity_id)
                    .map_or_else(|| c.opportunity_id.to_string(), |o| o.name.clone()),
                base: format!("{} {}", format::amount(c.base_minor, &c.currency), c.currency),
                amount: format!("{} {}", format::amount(c.amount_minor, &c.currency), c.currency),
                status,
                tone,
                calculated: format::moment(c.created_at),
                step,
                step_label,
                may_dispute: may_dispute && programs::commissions::next(c.status, Step::Dispute).is_some(),
                may_resolve: vendor
                    && c.status == CommissionStatus::Disputed
                    && state.authz.decide(s, Action::CommissionResolve, &Resource::Commission(&facts)).is_ok(),
                dispute_reason: c.dispute_reason.clone().unwrap_or_default(),
                resolution: c.resolution.clone().unwrap_or_default(),
                amount_plain: format::amount(c.amount_minor, &c.currency),
            }
        })
        .collect();
    let show_invitations = invitation_list.is_some();
    let invitations = invitation_list
        .unwrap_or_default()
        .into_iter()
        .map(|i| {
            let (status, tone) = invitation_status(&i.status);
            InvitationRow {
                id: i.id.to_string(),
                partner_id: i.partner_id.map(|p| p.to_string()).unwrap_or_default(),
                partner: name(i.partner_id),
                role: format::role_name(&i.role),
                may_revoke: may_revoke && i.status == "open" && (vendor || i.role == "partner_agent"),
                email: i.email,
                status,
                tone,
                expires: format::moment(i.expires_at),
            }
        })
        .collect();
    let page = ProgrammePage {
        chrome,
        vendor,
        show_deals,
        may_register: allowed(Action::DealRegister),
        deals,
        show_leads,
        may_export_leads: allowed(Action::LeadExport),
        leads,
        show_opportunities,
        opportunities,
        commissions,
        may_statement: allowed(Action::CommissionStatement),
        partners: names.iter().map(|(id, n)| Choice { value: id.to_string(), label: n.clone() }).collect(),
        this_month: Utc::now().format("%Y-%m").to_string(),
        notice,
        notice_tone,
        may_invite: allowed(Action::PartnerInvite) && !names.is_empty(),
        invite_partners: names.iter().map(|(id, n)| Choice { value: id.to_string(), label: n.clone() }).collect(),
        invite_roles: invite_roles(vendor),
        show_invitations,
        invitations,
        typed,
    };
    Ok((code, page).into_response())
}

/// `GET /programme` (whoever may read commissions; each section shown to those who may read it).
pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let notice = match q.get("done") {
        "revoked" => "The invitation is revoked: its link no longer works.",
        "moved" => "The opportunity moved on.",
        "won" => "Closed won: the commission is calculated under the partner's plan and waits for finance.",
        "approve" => "The commission is approved; next, finance marks it payable.",
        "payable" => "The commission is payable.",
        "pay" => "The commission is paid.",
        "disputed" => "Your dispute is recorded; finance reviews the commission and resolves it.",
        "resolved" => "The dispute is resolved; the commission is calculated again and waits for approval.",
        _ => "",
    };
    render(&state, &p, &headers, notice.to_owned(), "success", StatusCode::OK).await
}

fn invalid(field: &'static str, words: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", words)
        .with_details(serde_json::json!({ "field": field }))
}

/// An amount typed in major units (`1,250.00`) of `currency`.
fn typed_amount(text: &str, currency: &str) -> Result<i64, ApiError> {
    let c = currency.parse::<approvals::money::Currency>().ok();
    format::parse_amount(text, c).ok_or_else(|| invalid("amount", "amount: enter an amount such as 1,250.00"))
}

fn typed_date(field: &'static str, text: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| invalid(field, &format!("{field}: enter a date as YYYY-MM-DD")))
}

/// The words for a refusal the person can do something about; `None` leaves it a refusal page.
fn words(e: &ApiError) -> Option<String> {
    Some(match e.code {
        "transition_not_allowed" => {
            "Nothing was changed: someone acted on it first. Here is where it stands.".to_owned()
        }
        "invalid_field" | "invalid_body" => format!("Nothing was changed: {}.", e.message),
        "deal_not_approved" | "opportunity_exists" | "partner_deal_required" => {
            format!("Nothing was changed: {}.", e.message)
        }
        _ => return None,
    })
}

async fn refused(state: &AppState, p: &Principal, headers: &HeaderMap, e: ApiError) -> Result<Response, ApiError> {
    let Some(text) = words(&e) else { return Err(e) };
    let tone = if e.status == StatusCode::CONFLICT { "warning" } else { "error" };
    render(state, p, headers, text, tone, e.status).await
}

/// `POST /programme/deals` {customer_company, customer_domain, amount, currency, expected_close}
/// → the deal's page, which says what the conflict check found.
pub async fn register(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let r = async {
        let currency = f.get("currency").to_ascii_uppercase();
        let new = NewDeal {
            customer_company: f.get("customer_company").to_owned(),
            customer_domain: f.get("customer_domain").to_owned(),
            amount_minor: typed_amount(f.get("amount"), &currency)?,
            currency,
            expected_close: typed_date("expected close", f.get("expected_close"))?,
        };
        let mut tx = program_tx(&state, &p).await?;
        let deal = deals::register(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(deal)
    }
    .await;
    match r {
        Ok(d) => Ok(Redirect::to(&format!("/programme/deals/{}?done=registered", d.id)).into_response()),
        Err(e) => refused(&state, &p, &headers, e).await,
    }
}

async fn render_deal(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    id: Uuid,
    notice: String,
    notice_tone: &'static str,
    code: StatusCode,
) -> Result<Response, ApiError> {
    let mut tx = program_tx(state, p).await?;
    let m = member(p, &mut tx).await?;
    let s = &m.subject;
    let org = Resource::Organisation { tenant: s.tenant };
    let d = deals::get(&mut tx, id).await?;
    let vendor = !matches!(programs::scope(&mut tx).await?, programs::Scope::Partner(_));
    let names = programs::mdf::partner_names(&mut tx).await?;
    let chrome = Chrome::member(state, &mut tx, &m, headers, Section::Programme).await?;
    tx.commit().await?;
    let (status, tone) = deal_status(d.status);
    let open = matches!(d.status, DealStatus::Submitted | DealStatus::Conflict);
    let page = DealPage {
        chrome,
        vendor,
        id: d.id.to_string(),
        partner: d
            .partner_id
            .map_or_else(
                || Some("Vendor's own sales".to_owned()),
                |id| names.iter().find(|(p, _)| *p == id).map(|(_, n)| n.clone()),
            )
            .unwrap_or_default(),
        customer: d.customer_company.clone(),
        domain: d.customer_domain.clone(),
        amount: format!("{} {}", format::amount(d.amount_minor, &d.currency), d.currency),
        amount_plain: format::amount(d.amount_minor, &d.currency),
        currency: d.currency.clone(),
        expected_close: format::date(d.expected_close),
        expected_close_iso: d.expected_close.to_string(),
        registered: format::moment(d.created_at),
        status,
        tone,
        meaning: deal_meaning(&d),
        reason: d.decision_reason.clone().unwrap_or_default(),
        conflicts: d.conflicts_with.clone().unwrap_or_default().iter().map(Uuid::to_string).collect(),
        may_decide: open && vendor && state.authz.decide(s, Action::DealDecide, &org).is_ok(),
        may_open: d.status == DealStatus::Approved
            && d.partner_id.is_some()
            && state.authz.decide(s, Action::OpportunityCreate, &org).is_ok(),
        notice,
        notice_tone,
    };
    Ok((code, page).into_response())
}

/// `GET /programme/deals/{id}`: 404 page for another partner's (or organisation's) deal.
pub async fn deal(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let notice = match q.get("done") {
        "registered" => "Your registration is in. What the conflict check found is below.",
        "approved" => "Approved: the deal is protected for the partner.",
        "rejected" => "Rejected; the reason is shown to the partner and kept in the audit trail.",
        "opened" => "The opportunity is open; it is on the programme page.",
        _ => "",
    };
    render_deal(&state, &p, &headers, id, notice.to_owned(), "success", StatusCode::OK).await
}

async fn deal_refused(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    id: Uuid,
    e: ApiError,
) -> Result<Response, ApiError> {
    let Some(text) = words(&e) else { return Err(e) };
    let tone = if e.status == StatusCode::CONFLICT { "warning" } else { "error" };
    render_deal(state, p, headers, id, text, tone, e.status).await
}

/// `POST /programme/deals/{id}/decide` {decision: approve|reject, reason} (channel managers).
pub async fn decide(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let f = Fields::parse(&body)?;
    let decision = match f.get("decision") {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => return Err(invalid("decision", "decision: approve or reject")),
    };
    let r = async {
        let mut tx = program_tx(&state, &p).await?;
        deals::decide(&mut tx, &p.who, p.permit()?, acting_user(&p), id, decision, f.get("reason")).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match r {
        Ok(()) => {
            let done = if decision == Decision::Approve { "approved" } else { "rejected" };
            Ok(Redirect::to(&format!("/programme/deals/{id}?done={done}")).into_response())
        }
        Err(e) => deal_refused(&state, &p, &headers, id, e).await,
    }
}

/// `POST /programme/opportunities` {deal_id, name, product, amount, expected_close}: opens an
/// opportunity from an approved deal registration (in the deal's currency).
pub async fn open_opportunity(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let deal_id = path_id(f.get("deal_id"))?;
    let r = async {
        let mut tx = program_tx(&state, &p).await?;
        let d = deals::get(&mut tx, deal_id).await?;
        let new = NewOpportunity {
            lead_id: None,
            deal_id: Some(deal_id),
            name: f.get("name").to_owned(),
            product: f.get("product").to_owned(),
            amount_minor: typed_amount(f.get("amount"), &d.currency)?,
            currency: d.currency.clone(),
            expected_close: typed_date("expected close", f.get("expected_close"))?,
        };
        opportunities::create(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match r {
        Ok(()) => Ok(Redirect::to(&format!("/programme/deals/{deal_id}?done=opened")).into_response()),
        Err(e) => deal_refused(&state, &p, &headers, deal_id, e).await,
    }
}

/// `POST /programme/opportunities/{id}/stage` {stage}: one step on, or lost; `won` computes the
/// commission.
pub async fn advance(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let f = Fields::parse(&body)?;
    let to = Stage::ALL
        .into_iter()
        .find(|s| s.as_str() == f.get("stage"))
        .ok_or_else(|| invalid("stage", "stage: choose the next stage"))?;
    let r = async {
        let mut tx = program_tx(&state, &p).await?;
        opportunities::advance(&mut tx, &p.who, p.permit()?, acting_user(&p), id, to).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match r {
        Ok(()) => Ok(Redirect::to(if to == Stage::Won { "/programme?done=won" } else { "/programme?done=moved" })
            .into_response()),
        Err(e) => refused(&state, &p, &headers, e).await,
    }
}

/// `POST /programme/commissions/{id}/settle` {step: approve|payable|pay} (finance; never the
/// closer): `crate::api::commissions::settle_step`, decided per commission by the domain.
pub async fn settle(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let f = Fields::parse(&body)?;
    let (step, done) = match f.get("step") {
        "approve" => (Step::Approve, "approve"),
        "payable" => (Step::MarkPayable, "payable"),
        "pay" => (Step::Pay, "pay"),
        _ => return Err(invalid("step", "step: approve, payable or pay")),
    };
    let route = "POST /programme/commissions/{id}/settle";
    match crate::api::commissions::settle_step(&state, &p, route, id, step, None, None).await {
        Ok(_) => Ok(Redirect::to(&format!("/programme?done={done}")).into_response()),
        Err(e) => refused(&state, &p, &headers, e).await,
    }
}

/// `POST /programme/commissions/{id}/dispute` {reason} (partner people, their own commission).
pub async fn dispute(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let f = Fields::parse(&body)?;
    let reason = f.get("reason");
    let r = async {
        let mut tx = program_tx(&state, &p).await?;
        programs::commissions::dispute(&mut tx, &p.who, p.permit()?, id, reason).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match r {
        Ok(()) => Ok(Redirect::to("/programme?done=disputed").into_response()),
        Err(e) if e.code == "invalid_field" => {
            let typed = Typed {
                commission: id.to_string(),
                text: reason.to_owned(),
                text_error: "Say why in 3 to 2,000 characters; nothing was changed.".into(),
                ..Typed::default()
            };
            render_typed(&state, &p, &headers, String::new(), "error", e.status, typed).await
        }
        Err(e) => refused(&state, &p, &headers, e).await,
    }
}

/// `POST /programme/commissions/{id}/resolve` {resolution, amount?} (finance, never the closer):
/// `crate::api::commissions::settle_step`, decided per commission by the domain; the corrected
/// amount is typed in the commission's currency.
pub async fn resolve(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let f = Fields::parse(&body)?;
    let (text, amount_text) = (f.get("resolution"), f.get("amount").trim());
    let again = |text_error: String, amount_error: String, status: StatusCode| {
        let typed = Typed {
            commission: id.to_string(),
            text: text.to_owned(),
            amount: amount_text.to_owned(),
            text_error,
            amount_error,
            ..Typed::default()
        };
        let (state, p, headers) = (&state, &p, &headers);
        async move { render_typed(state, p, headers, String::new(), "error", status, typed).await }
    };
    let amount = if amount_text.is_empty() {
        None
    } else {
        let mut tx = program_tx(&state, &p).await?;
        let c = programs::commissions::get(&mut tx, id).await?;
        tx.commit().await?;
        match typed_amount(amount_text, &c.currency) {
            Ok(a) => Some(a),
            Err(_) => {
                let words =
                    format!("Enter the corrected amount in {}, such as 1,250.00; nothing was changed.", c.currency);
                return again(String::new(), words, StatusCode::UNPROCESSABLE_ENTITY).await;
            }
        }
    };
    let route = "POST /programme/commissions/{id}/resolve";
    match crate::api::commissions::settle_step(&state, &p, route, id, Step::Resolve, None, Some((text, amount))).await {
        Ok(_) => Ok(Redirect::to("/programme?done=resolved").into_response()),
        Err(e) if e.code == "invalid_field" => {
            let (t, a) = if e.message.starts_with("amountMinor") {
                (String::new(), "The corrected amount is out of range; nothing was changed.".to_owned())
            } else {
                ("Say how it was settled in 3 to 2,000 characters; nothing was changed.".to_owned(), String::new())
            };
            again(t, a, e.status).await
        }
        Err(e) => refused(&state, &p, &headers, e).await,
    }
}

/// `POST /programme/invitations` {partner_id, email, role}: vendor staff invite into any of their
/// partners, a partner's administrator agents into their own company; the page shows the code
/// once (as the members page does) in case the mail does not arrive.
pub async fn invite(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let (partner_text, email, role) = (f.get("partner_id"), f.get("email").trim(), f.get("role"));
    let typed = |email_error: String, role_error: String| Typed {
        invite_email: email.to_owned(),
        invite_partner: partner_text.to_owned(),
        invite_role: role.to_owned(),
        invite_email_error: email_error,
        invite_role_error: role_error,
        ..Typed::default()
    };
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    if email.is_empty() || email.chars().count() > 254 || EmailAddress::parse(email).is_err() {
        let t = typed("Enter an email address, like name@example.com.".into(), String::new());
        return render_typed(&state, &p, &headers, String::new(), "error", unprocessable, t).await;
    }
    if !matches!(role, "partner_admin" | "partner_agent") {
        let t = typed(String::new(), "Choose a role from the list.".into());
        return render_typed(&state, &p, &headers, String::new(), "error", unprocessable, t).await;
    }
    // An id that is not one, or names no partner this person may see: the same 404.
    let partner = path_id(partner_text)?;
    match invite_partner_person(&state, &p, partner, email, role).await {
        Ok((issued, sent)) => {
            let inv = &issued.invitation;
            let notice = if sent {
                format!("Invitation sent to {} as {}.", inv.email, format::role_name(&inv.role))
            } else {
                format!("The invitation for {} is ready, but the mail could not be sent.", inv.email)
            };
            let t = Typed { issued_token: issued.token.expose_secret().to_owned(), ..Typed::default() };
            render_typed(&state, &p, &headers, notice, "success", StatusCode::OK, t).await
        }
        Err(e) => {
            let words = match e.code {
                "role_escalation" => Some((String::new(), "A partner administrator invites agents only.".to_owned())),
                "already_member" => {
                    Some(("This address already belongs to a member of the organisation.".to_owned(), String::new()))
                }
                "partner_inactive" => {
                    Some(("This partner is not active: it cannot take new people.".to_owned(), String::new()))
                }
                "invalid_field" => Some(("Enter an email address, like name@example.com.".to_owned(), String::new())),
                _ => None,
            };
            let Some((email_error, role_error)) = words else { return Err(e) };
            let t = typed(email_error, role_error);
            render_typed(&state, &p, &headers, String::new(), "error", e.status, t).await
        }
    }
}

/// `POST /programme/partners/{id}/invitations/{invitation}/revoke` → `303` back to the page; the
/// invitation's link stops working. Another partner's (or no such) invitation: the 404 page.
pub async fn revoke_invitation(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path((id, invitation)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (partner, invitation) = (path_id(&id)?, path_id(&invitation)?);
    match crate::api::invitations::revoke_partner_invitation(&state, &p, partner, invitation).await {
        Ok(()) => Ok(Redirect::to("/programme?done=revoked").into_response()),
        Err(e) => {
            let text = match e.code {
                "role_escalation" => "Nothing was changed: a partner administrator revokes invitations of agents only.",
                "invitation_used" => "Nothing was changed: the invitation was already accepted.",
                _ => return Err(e),
            };
            let tone = if e.status == StatusCode::CONFLICT { "warning" } else { "error" };
            render(&state, &p, &headers, text.to_owned(), tone, e.status).await
        }
    }
}
