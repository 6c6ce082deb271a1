//! `/programme/mdf`: market development funds, another face of `crate::api::mdf` through the same
//! domain calls. Vendor staff see every partner's budgets, requests and claims, give budgets,
//! and decide (channel managers: requests; finance: claims and payment); a partner person sees
//! only its own company's (the database decides, as for the API), requests funds, files claims
//! and attaches proof files. Each decision form shows only where the policy engine would permit
//! this person on that row; the domain asks again when it is sent. Refusals of the rules (too
//! much, someone acted first) come back as the page with the reason in words; a row that is not
//! the person's is a refusal page, exactly as for the API.

use askama::Template;
use askama_web::WebTemplate;
use authz::{Action, Resource};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use files::FileName;
use programs::mdf::{self, ClaimStatus, ClaimStep, Decision, NewBudget, NewClaim, NewRequest, RequestStatus};
use uuid::Uuid;

use crate::api::documents::member;
use crate::api::mdf::{acting_user, program_tx, receive_proof};
use crate::plumbing::access::path_id;
use crate::plumbing::cookies::multipart_boundary;
use crate::ui::attachments::size_words;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::form::Fields;
use crate::ui::format;
use crate::{ApiError, AppState, Principal};

#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub value: String,
    pub label: String,
}

#[derive(Debug, Clone)]
pub(crate) struct BudgetRow {
    pub partner: String,
    pub period: String,
    pub amount: String,
    pub committed: String,
    pub remaining: String,
}

#[derive(Debug, Clone)]
pub(crate) struct RequestRow {
    pub id: String,
    pub partner: String,
    pub activity: String,
    pub amount: String,
    pub claimed: String,
    pub period: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub reason: String,
    pub may_decide: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ProofRow {
    pub href: String,
    pub name: String,
    pub size: String,
}

#[derive(Debug, Clone)]
pub(crate) struct ClaimRow {
    pub id: String,
    pub partner: String,
    pub activity: String,
    pub description: String,
    pub amount: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub reason: String,
    pub proofs: Vec<ProofRow>,
    pub may_add_proof: bool,
    pub may_decide: bool,
    pub may_pay: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "mdf.html")]
pub(crate) struct MdfPage {
    pub chrome: Chrome,
    pub vendor: bool,
    pub budgets: Vec<BudgetRow>,
    pub requests: Vec<RequestRow>,
    pub claims: Vec<ClaimRow>,
    /// The budget form (vendor staff who manage budgets): the partners to choose from.
    pub may_manage: bool,
    pub partners: Vec<Choice>,
    /// The request form (partner people): their budgets with something left.
    pub may_request: bool,
    pub open_budgets: Vec<Choice>,
    /// The claim form (partner people): their approved requests with something left to claim.
    pub may_claim: bool,
    pub open_requests: Vec<Choice>,
    pub limit: String,
    pub notice: String,
    /// `success`, `warning` or `error`.
    pub notice_tone: &'static str,
}

fn request_status(s: RequestStatus) -> (&'static str, &'static str) {
    match s {
        RequestStatus::Requested => ("Waiting for the channel manager", "waiting"),
        RequestStatus::Approved => ("Approved", "done"),
        RequestStatus::Rejected => ("Rejected", "refused"),
    }
}

fn claim_status(s: ClaimStatus) -> (&'static str, &'static str) {
    match s {
        ClaimStatus::Claimed => ("Waiting for finance", "waiting"),
        ClaimStatus::Approved => ("Approved, to be paid", "waiting"),
        ClaimStatus::Rejected => ("Rejected", "refused"),
        ClaimStatus::Paid => ("Paid", "done"),
    }
}

async fn render(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    notice: String,
    notice_tone: &'static str,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let mut tx = program_tx(state, p).await?;
    let m = member(p, &mut tx).await?;
    let s = &m.subject;
    let tenant = s.tenant;
    let org = Resource::Organisation { tenant };
    let vendor = !matches!(programs::scope(&mut tx).await?, programs::Scope::Partner(_));
    let may_manage = vendor && state.authz.decide(s, Action::MdfBudgetManage, &org).is_ok();
    let may_request = !vendor && state.authz.decide(s, Action::MdfRequest, &org).is_ok();
    let may_claim = !vendor && state.authz.decide(s, Action::MdfClaim, &org).is_ok();
    let names = mdf::partner_names(&mut tx).await?;
    let budgets = mdf::list_budgets(&mut tx, 200).await?;
    let requests = mdf::list_requests(&mut tx, 200).await?;
    let claims = mdf::list_claims(&mut tx, 200).await?;
    let mut proofs = Vec::with_capacity(claims.len());
    for c in &claims {
        proofs.push(mdf::list_proofs(&mut tx, c.id).await?);
    }
    let chrome = Chrome::member(state, &mut tx, &m, headers, Section::Mdf).await?;
    tx.commit().await?;
    let name = |id: Uuid| names.iter().find(|(p, _)| *p == id).map(|(_, n)| n.clone()).unwrap_or_default();
    let period = |id: Uuid| budgets.iter().find(|b| b.id == id).map(|b| b.period.clone()).unwrap_or_default();
    let open_budgets = budgets
        .iter()
        .filter(|b| b.remaining_minor() > 0)
        .map(|b| Choice {
            value: b.id.to_string(),
            label: format!("{} — {} left", b.period, format::amount(b.remaining_minor(), &b.currency)),
        })
        .collect();
    let open_requests = requests
        .iter()
        .filter(|r| r.status == RequestStatus::Approved && r.claimed_minor < r.amount_minor)
        .map(|r| Choice {
            value: r.id.to_string(),
            label: format!(
                "{} — {} left to claim",
                r.activity,
                format::amount(r.amount_minor - r.claimed_minor, &r.currency)
            ),
        })
        .collect();
    let request_rows = requests
        .iter()
        .map(|r| {
            let (status, tone) = request_status(r.status);
            RequestRow {
                id: r.id.to_string(),
                partner: name(r.partner_id),
                activity: r.activity.clone(),
                amount: format::amount(r.amount_minor, &r.currency),
                claimed: format::amount(r.claimed_minor, &r.currency),
                period: period(r.budget_id),
                status,
                tone,
                reason: r.decision_reason.clone().unwrap_or_default(),
                may_decide: r.status == RequestStatus::Requested && mdf::may_decide_request(&state.authz, s, tenant, r),
            }
        })
        .collect();
    let claim_rows = claims
        .iter()
        .zip(proofs)
        .map(|(c, proofs)| {
            let (status, tone) = claim_status(c.status);
            ClaimRow {
                id: c.id.to_string(),
                partner: name(c.partner_id),
                activity: requests
                    .iter()
                    .find(|r| r.id == c.request_id)
                    .map(|r| r.activity.clone())
                    .unwrap_or_default(),
                description: c.description.clone(),
                amount: format::amount(c.amount_minor, &c.currency),
                status,
                tone,
                reason: c.decision_reason.clone().unwrap_or_default(),
                proofs: proofs
                    .iter()
                    .map(|x| ProofRow {
                        href: format!("/programme/mdf/claims/{}/proofs/{}", c.id, x.id),
                        name: x.name.clone(),
                        size: size_words(x.size),
                    })
                    .collect(),
                may_add_proof: may_claim && c.status == ClaimStatus::Claimed,
                may_decide: c.status == ClaimStatus::Claimed
                    && mdf::may_settle_claim(&state.authz, s, tenant, c, Action::MdfClaimDecide),
                may_pay: c.status == ClaimStatus::Approved
                    && mdf::may_settle_claim(&state.authz, s, tenant, c, Action::MdfClaimPay),
            }
        })
        .collect();
    let page = MdfPage {
        chrome,
        vendor,
        budgets: budgets
            .iter()
            .map(|b| BudgetRow {
                partner: name(b.partner_id),
                period: b.period.clone(),
                amount: format::amount(b.amount_minor, &b.currency),
                committed: format::amount(b.committed_minor, &b.currency),
                remaining: format::amount(b.remaining_minor(), &b.currency),
            })
            .collect(),
        requests: request_rows,
        claims: claim_rows,
        may_manage,
        partners: names.iter().map(|(id, n)| Choice { value: id.to_string(), label: n.clone() }).collect(),
        may_request,
        open_budgets,
        may_claim,
        open_requests,
        limit: size_words(i64::try_from(state.files.max_upload).unwrap_or(0)),
        notice,
        notice_tone,
    };
    Ok((status, page).into_response())
}

/// `GET /programme/mdf`
pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let notice = match q.get("done") {
        "budget" => "The budget is set: the partner can request funds from it.",
        "requested" => "Your request is with the channel manager.",
        "approved" => "Approved: the amount is committed from the partner's budget.",
        "rejected" => "Rejected; the reason is shown to the partner and kept in the audit trail.",
        "claimed" => "Your claim is filed. Attach proof of performance so finance can approve it.",
        "proof" => "The proof file is attached.",
        "claim-approved" => "The claim is approved; it can now be paid.",
        "claim-rejected" => "The claim is rejected; the amount is free to claim again.",
        "paid" => "The claim is paid.",
        _ => "",
    };
    render(&state, &p, &headers, notice.to_owned(), "success", StatusCode::OK).await
}

/// A refusal in words: rules and races come back as the page with the reason; not found and
/// not permitted stay refusals (a refusal page, as for any page).
async fn refused(state: &AppState, p: &Principal, headers: &HeaderMap, e: ApiError) -> Result<Response, ApiError> {
    let words = match e.code {
        "budget_exceeded" => "Nothing was changed: the budget does not have that much left.".to_owned(),
        "claim_exceeds_approval" => "Nothing was claimed: that is more than the request has left to claim.".to_owned(),
        "request_not_approved" => "Nothing was claimed: claims are filed against an approved request only.".to_owned(),
        "budget_exists" => {
            "Nothing was set: this partner already has a budget for that quarter and currency.".to_owned()
        }
        "proof_required" => "Not approved: the claim has no proof of performance attached yet.".to_owned(),
        "transition_not_allowed" => {
            "Nothing was changed: someone acted on it first. Here is where it stands.".to_owned()
        }
        "invalid_field" | "invalid_body" => format!("Nothing was changed: {}.", e.message),
        "file_type_refused" | "file_too_large" | "bad_form" => format!("The file was not attached: {}.", e.message),
        _ => return Err(e),
    };
    let status = e.status;
    let tone = if status == StatusCode::CONFLICT { "warning" } else { "error" };
    render(state, p, headers, words, tone, status).await
}

fn done(what: &str) -> Response {
    Redirect::to(&format!("/programme/mdf?done={what}")).into_response()
}

fn invalid(field: &'static str, words: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", words)
        .with_details(serde_json::json!({ "field": field }))
}

/// An amount typed in major units (`1,250.00`) of `currency`.
fn typed_amount(field: &'static str, text: &str, currency: &str) -> Result<i64, ApiError> {
    let c = currency.parse::<approvals::money::Currency>().ok();
    format::parse_amount(text, c).ok_or_else(|| invalid(field, &format!("{field}: enter an amount such as 1,250.00")))
}

/// `POST /programme/mdf/budgets` {partner_id, period, currency, amount?} (vendor staff)
pub async fn create_budget(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let r = async {
        let partner_id = f.get("partner_id").parse().map_err(|_| invalid("partner", "partner: choose a partner"))?;
        let currency = f.get("currency").trim().to_ascii_uppercase();
        let amount_minor = match f.get("amount").trim() {
            "" => None,
            t => Some(typed_amount("amount", t, &currency)?),
        };
        let new = NewBudget { partner_id, period: f.get("period").to_owned(), currency, amount_minor };
        let mut tx = program_tx(&state, &p).await?;
        mdf::create_budget(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match r {
        Ok(()) => Ok(done("budget")),
        Err(e) => refused(&state, &p, &headers, e).await,
    }
}

/// `POST /programme/mdf/requests` {budget_id, activity, amount} (partner people)
pub async fn create_request(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let r = async {
        let budget_id: Uuid = f.get("budget_id").parse().map_err(|_| invalid("budget", "budget: choose a budget"))?;
        let mut tx = program_tx(&state, &p).await?;
        let b = mdf::get_budget(&mut tx, budget_id).await?;
        let amount_minor = typed_amount("amount", f.get("amount"), &b.currency)?;
        let new = NewRequest { budget_id, activity: f.get("activity").to_owned(), amount_minor };
        mdf::request(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match r {
        Ok(()) => Ok(done("requested")),
        Err(e) => refused(&state, &p, &headers, e).await,
    }
}

/// `POST /programme/mdf/requests/{id}/decide` {decision: approve|reject, reason} (channel managers)
pub async fn decide_request(
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
    let reason = Some(f.get("reason")).filter(|r| !r.trim().is_empty());
    let route = "POST /programme/mdf/requests/{id}/decide";
    match crate::api::mdf::decide_request(&state, &p, route, id, decision, reason).await {
        Ok(_) => Ok(done(if decision == Decision::Approve { "approved" } else { "rejected" })),
        Err(e) => refused(&state, &p, &headers, e).await,
    }
}

/// `POST /programme/mdf/claims` {request_id, amount, description} (partner people)
pub async fn create_claim(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let r = async {
        let request_id: Uuid =
            f.get("request_id").parse().map_err(|_| invalid("request", "request: choose an approved request"))?;
        let mut tx = program_tx(&state, &p).await?;
        let r = mdf::get_request(&mut tx, request_id).await?;
        let amount_minor = typed_amount("amount", f.get("amount"), &r.currency)?;
        let new = NewClaim { request_id, amount_minor, description: f.get("description").to_owned() };
        mdf::claim(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match r {
        Ok(()) => Ok(done("claimed")),
        Err(e) => refused(&state, &p, &headers, e).await,
    }
}

/// `POST /programme/mdf/claims/{id}/settle` {step: approve|reject|pay, reason} (finance)
pub async fn settle_claim(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let f = Fields::parse(&body)?;
    let (step, next) = match f.get("step") {
        "approve" => (ClaimStep::Approve, "claim-approved"),
        "reject" => (ClaimStep::Reject, "claim-rejected"),
        "pay" => (ClaimStep::Pay, "paid"),
        _ => return Err(invalid("step", "step: approve, reject or pay")),
    };
    let reason = Some(f.get("reason")).filter(|r| !r.trim().is_empty());
    let route = "POST /programme/mdf/claims/{id}/settle";
    match crate::api::mdf::settle_claim(&state, &p, route, id, step, reason).await {
        Ok(_) => Ok(done(next)),
        Err(e) => refused(&state, &p, &headers, e).await,
    }
}

/// `POST /programme/mdf/claims/{id}/proofs` (`multipart/form-data`: csrf_token, file) (partner
/// people): the file streams into `crate::api::mdf::receive_proof`, never buffered.
pub async fn upload_proof(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let boundary = multipart_boundary(&headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the proof form is sent as multipart/form-data",
        )
    })?;
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["csrf_token", "file"])
        .size_limit(multer::SizeLimit::new().for_field("csrf_token", 256));
    let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let r = async {
        loop {
            let Some(field) = form.next_field().await.map_err(|e| bad_form(&e))? else {
                return Err(invalid("file", "file: choose a file to attach"));
            };
            if field.name() == Some("file") {
                let label = field.file_name().unwrap_or_default().to_owned();
                if label.is_empty() {
                    return Err(invalid("file", "file: choose a file to attach"));
                }
                crate::plumbing::access::bounded("name", &label, 1000)?;
                return receive_proof(&state, &p, id, FileName::sanitise(&label), field).await.map(|_| ());
            }
            // The CSRF token: checked before the handler ran.
            field.text().await.map_err(|e| bad_form(&e))?;
        }
    }
    .await;
    match r {
        Ok(()) => Ok(done("proof")),
        Err(e) => refused(&state, &p, &headers, e).await,
    }
}

fn bad_form(e: &multer::Error) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_form", format!("the form could not be read ({e})"))
}
