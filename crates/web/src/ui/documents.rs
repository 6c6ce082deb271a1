//! The document page (`/documents/{id}`), its actions, and the raise form (`/documents/new`).
//!
//! The same calls as `crate::api::documents`: `approvals::documents::get`, `transition`,
//! `create` in the caller's `TenantTx`, refusals translated and audited by the same
//! `crate::api::documents::refusal`. The actions box shows only what the policy engine permits
//! this person now (`approvals::documents::permitted`); pressing anything else anyway is refused
//! by `transition` itself, with a 403 page. Each action posts the version it was shown: when
//! someone acted first, the page says so and shows the document as it is now.

use std::collections::HashMap;

use approvals::documents::{self, ApprovalError, Document, Kind, Member, NewDocument, NewLine, RemarkKind};
use approvals::{Currency, Status, Transition};
use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use store::TenantTx;
use uuid::Uuid;

use crate::api::documents::{member, refusal};
use crate::plumbing::access::path_id;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::form::Fields;
use crate::ui::format;
use crate::ui::refusals::RefusalPage;
use crate::{ApiError, AppState, Principal};

/// A domain refusal as the API words it (denials audited first, in their own transaction): the
/// pages' refusals layer then shows it as a page.
pub(crate) async fn refused(state: &AppState, p: &Principal, route: &str, tx: TenantTx, e: ApprovalError) -> ApiError {
    drop(tx);
    refusal(state, p, route, e).await
}

// --- The document page ---------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) struct LineView {
    pub number: i32,
    pub description: String,
    pub amount: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Rung {
    pub label: &'static str,
    /// `done`, `current`, `upcoming`, `skipped` or `ended` (a CSS class and, in words, the text).
    pub state: &'static str,
    pub state_words: &'static str,
    pub who: String,
    pub when: String,
}

#[derive(Debug, Clone)]
pub(crate) struct RemarkView {
    pub who: String,
    pub role: String,
    pub kind: &'static str,
    pub when: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub(crate) struct ActionView {
    pub transition: &'static str,
    pub verb: &'static str,
    pub consequence: String,
    /// `primary`, `danger` or `` (the button's style).
    pub style: &'static str,
    pub needs_note: bool,
    pub note_label: &'static str,
    pub note: String,
    pub note_error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "document.html")]
pub(crate) struct DocumentPage {
    pub chrome: Chrome,
    pub id: String,
    pub version: i32,
    pub reference: String,
    pub kind: &'static str,
    pub title: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub amount: String,
    pub currency: String,
    pub department: String,
    pub date: String,
    pub raised_by: String,
    pub lines: Vec<LineView>,
    pub ladder: Vec<Rung>,
    pub discussion: Vec<RemarkView>,
    /// The Attachments section (`crate::ui::attachments`).
    pub attachments: crate::ui::attachments::AttachmentsView,
    pub actions: Vec<ActionView>,
    pub no_actions: String,
    /// A message above the document (what just happened; someone acted first).
    pub notice: String,
    /// `success`, `warning` or `error`.
    pub notice_tone: &'static str,
    /// The Edit link (empty when this person may not edit it now) and what it is for.
    pub edit_href: String,
    pub edit_words: &'static str,
    /// The timeline and (for readers of the audit) the audit trail, from the ledger.
    pub history: crate::ui::trail::History,
    /// Questions to the relations the document is addressed to (`crate::ui::requests`).
    pub requests: crate::ui::requests::AskedView,
}

/// The names of the members a page mentions (a former member stays "a former member").
pub(crate) async fn names(tx: &mut TenantTx, ids: impl IntoIterator<Item = Uuid>) -> HashMap<Uuid, String> {
    let mut out = HashMap::new();
    for id in ids {
        if out.contains_key(&id) {
            continue;
        }
        let name = identity::directory::users::get_member(tx, id)
            .await
            .map_or_else(|_| "A former member".to_owned(), |u| u.display_name);
        out.insert(id, name);
    }
    out
}

/// Whether the document needs the MD: above its currency's threshold, or no threshold set.
fn needs_md(doc: &Document, threshold: Option<i64>) -> bool {
    threshold.is_none_or(|limit| doc.amount_minor > limit) || doc.approvals.iter().any(|a| a.level == "md")
}

/// The one line saying what an action leads to.
fn consequence(doc: &Document, t: Transition, md: bool) -> String {
    let next_after_finance = if md { "next: MD sanction" } else { "next: payment by finance" };
    match (t, doc.status) {
        (Transition::Submit, _) => "Sends it to the head of department for approval; you can no longer edit it.".into(),
        (Transition::Approve, Status::Submitted) => "Approve as head of department — next: finance review.".into(),
        (Transition::Approve, Status::HodApproved) => format!("Approve as finance — {next_after_finance}."),
        (Transition::Approve, _) => "Approve as managing director — next: payment by finance.".into(),
        (Transition::Reject, _) => {
            "Ends the document for good; your reason is recorded and shown to the raiser.".into()
        }
        (Transition::Query, _) => {
            "Sends it back to the raiser with your question; it returns to this level when answered.".into()
        }
        (Transition::Answer, _) => "Sends your answer and returns the document to the approver who asked.".into(),
        (Transition::Amend, _) => "Takes it back to draft so it can be changed; approvals so far are discarded.".into(),
        (Transition::Cancel, _) => "Withdraws the document for good; nobody can act on it afterwards.".into(),
        (Transition::MarkPaid, _) => "Records that the money was paid; the document is then closed.".into(),
    }
}

fn action_view(doc: &Document, t: Transition, md: bool) -> ActionView {
    let needs_note = matches!(
        t,
        Transition::Reject | Transition::Query | Transition::Answer | Transition::Amend | Transition::Cancel
    );
    ActionView {
        transition: t.as_str(),
        verb: format::verb(t),
        consequence: consequence(doc, t, md),
        style: match t {
            Transition::Approve | Transition::Submit | Transition::MarkPaid | Transition::Answer => "primary",
            Transition::Reject | Transition::Cancel => "danger",
            _ => "",
        },
        needs_note,
        note_label: match t {
            Transition::Query => "Your question for the raiser",
            Transition::Answer => "Your answer",
            _ => "Reason (recorded in the audit trail)",
        },
        note: String::new(),
        note_error: String::new(),
    }
}

fn ladder(doc: &Document, md: bool, names: &HashMap<Uuid, String>) -> Vec<Rung> {
    let name = |id: &Uuid| names.get(id).cloned().unwrap_or_default();
    let waiting_at = match doc.status {
        Status::Queried => doc.queried_from.unwrap_or(Status::Submitted),
        s => s,
    };
    let ended = matches!(doc.status, Status::Rejected | Status::Cancelled);
    let mut rungs = vec![Rung {
        label: "Raised",
        state: if doc.status == Status::Draft { "current" } else { "done" },
        state_words: if doc.status == Status::Draft { "draft, not yet submitted" } else { "submitted" },
        who: name(&doc.raised_by),
        when: String::new(),
    }];
    let levels: [(&str, &'static str, Status); 3] = [
        ("hod", "Head of department", Status::Submitted),
        ("finance", "Finance", Status::HodApproved),
        ("md", "Managing director", Status::FinanceApproved),
    ];
    for (level, label, waits_in) in levels {
        let approval = doc.approvals.iter().find(|a| a.level == level);
        let rung = match approval {
            Some(a) => Rung {
                label,
                state: "done",
                state_words: "approved",
                who: format!("{} ({})", name(&a.approver), format::role_name(&a.approver_role)),
                when: format::moment(a.approved_at),
            },
            None if level == "md" && !md => Rung {
                label,
                state: "skipped",
                state_words: "not needed below the MD threshold",
                who: String::new(),
                when: String::new(),
            },
            None if !ended && waiting_at == waits_in && doc.status != Status::Draft => Rung {
                label,
                state: "current",
                state_words: if doc.status == Status::Queried {
                    "queried: waiting for the raiser's answer"
                } else {
                    "waiting"
                },
                who: String::new(),
                when: String::new(),
            },
            None => Rung {
                label,
                state: "upcoming",
                state_words: if ended { "not reached" } else { "to come" },
                who: String::new(),
                when: String::new(),
            },
        };
        rungs.push(rung);
    }
    let (state, words) = match doc.status {
        Status::Paid => ("done", "paid"),
        Status::Approved => ("current", "approved: waiting for payment"),
        Status::Rejected => ("ended", "rejected"),
        Status::Cancelled => ("ended", "cancelled"),
        _ => ("upcoming", "to come"),
    };
    let label = match doc.status {
        Status::Rejected => "Rejected",
        Status::Cancelled => "Cancelled",
        _ => "Paid",
    };
    rungs.push(Rung { label, state, state_words: words, who: String::new(), when: String::new() });
    rungs
}

/// Everything the document page shows, read in the request's transaction.
async fn page(
    state: &AppState,
    tx: &mut TenantTx,
    m: &Member,
    headers: &HeaderMap,
    doc: &Document,
) -> Result<DocumentPage, ApiError> {
    let threshold = identity::directory::tenants::md_threshold(tx, &doc.currency).await?;
    let md = needs_md(doc, threshold);
    let people = std::iter::once(doc.raised_by)
        .chain(doc.approvals.iter().map(|a| a.approver))
        .chain(doc.discussion.iter().map(|r| r.who));
    let names = names(tx, people.collect::<Vec<_>>()).await;
    let department = identity::directory::departments::list(tx, None, 500)
        .await?
        .into_iter()
        .find(|d| d.id == doc.department_id)
        .map(|d| d.name)
        .unwrap_or_default();
    let chrome = Chrome::member(state, tx, m, headers, Section::Documents).await?;
    let actions: Vec<ActionView> =
        documents::permitted(&state.authz, m, doc).into_iter().map(|t| action_view(doc, t, md)).collect();
    let (edit_href, edit_words) = crate::ui::edit::edit_offer(state, m, doc);
    let history = crate::ui::trail::history(state, tx, m, doc.id).await?;
    let attachments = crate::ui::attachments::section(state, tx, m, doc.id, &chrome.csrf).await?;
    let requests = crate::ui::requests::section(state, tx.tenant(), m, doc).await?;
    let no_actions = if doc.status.is_final() {
        format!("This document is {}: nothing more can happen to it.", format::status(doc.status).to_lowercase())
    } else {
        "Nothing here is yours to do now. The approval ladder below shows whose turn it is.".to_owned()
    };
    Ok(DocumentPage {
        chrome,
        id: doc.id.to_string(),
        version: doc.version,
        reference: doc.number.clone(),
        kind: format::kind(doc.kind),
        title: doc.title.clone(),
        status: format::status(doc.status),
        tone: format::status_tone(doc.status),
        amount: format::amount(doc.amount_minor, &doc.currency),
        currency: doc.currency.clone(),
        department,
        date: format::date(doc.document_date),
        raised_by: names.get(&doc.raised_by).cloned().unwrap_or_default(),
        lines: doc
            .lines
            .iter()
            .map(|l| LineView {
                number: l.line_no,
                description: l.description.clone(),
                amount: format::amount(l.amount_minor, &doc.currency),
            })
            .collect(),
        ladder: ladder(doc, md, &names),
        discussion: doc
            .discussion
            .iter()
            .map(|r| RemarkView {
                who: names.get(&r.who).cloned().unwrap_or_default(),
                role: format::role_name(&r.role),
                kind: match r.kind {
                    RemarkKind::Query => "asked",
                    RemarkKind::Answer => "answered",
                    RemarkKind::Note => "noted",
                },
                when: format::moment(r.at),
                text: r.text.clone(),
            })
            .collect(),
        attachments,
        actions,
        no_actions,
        notice: String::new(),
        notice_tone: "success",
        edit_href,
        edit_words,
        history,
        requests,
    })
}

/// What just happened, after a successful action (`?done=`).
fn done_words(done: &str) -> &'static str {
    match done {
        "created" => "Saved as a draft. Submit it when it is ready.",
        "submit" => "Submitted: the head of department has it now.",
        "approve" => "Approved. It has moved on to the next level.",
        "reject" => "Rejected. The raiser can see your reason.",
        "query" => "Your question was sent to the raiser.",
        "answer" => "Your answer was sent; the document is back with the approver.",
        "amend" => "Back to draft: change it, then submit it again.",
        "cancel" => "Cancelled.",
        "mark_paid" => "Marked as paid.",
        "edited" => "Your changes were saved.",
        "attached" => "The file was attached.",
        "removed" => "The file was removed. It can be restored during the retention period.",
        "restored" => "The file was restored.",
        "asked" => "Your question was sent. Their people see it in the portal.",
        _ => "",
    }
}

/// `GET /documents/{id}` — another organisation's id, or one this person may not read, is the
/// not-found page.
pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let doc = match documents::get(&mut tx, &state.authz, &m, id).await {
        Ok(d) => d,
        Err(e) => return Err(refused(&state, &p, "GET /documents/{id}", tx, e).await),
    };
    let mut view = page(&state, &mut tx, &m, &headers, &doc).await?;
    p.checked.mark();
    tx.commit().await?;
    view.notice = done_words(q.get("done")).to_owned();
    Ok(view.into_response())
}

/// The document as it is now, with `notice`, answered with `status` (after a refused action).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn current_with(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    id: Uuid,
    status: StatusCode,
    notice: String,
    tone: &'static str,
    fill: impl FnOnce(&mut DocumentPage),
) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let doc = match documents::get(&mut tx, &state.authz, &m, id).await {
        Ok(d) => d,
        Err(e) => return Err(refused(state, p, "GET /documents/{id}", tx, e).await),
    };
    let mut view = page(state, &mut tx, &m, headers, &doc).await?;
    p.checked.mark();
    tx.commit().await?;
    view.notice = notice;
    view.notice_tone = tone;
    fill(&mut view);
    Ok((status, view).into_response())
}

pub(crate) fn unprocessable(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
        .with_details(serde_json::json!({ "field": field }))
}

/// `POST /documents/{id}/transitions` {transition, version, note?, csrf_token}
pub async fn transition(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let f = Fields::parse(&body)?;
    let Some(t) = Transition::ALL.iter().copied().find(|t| t.as_str() == f.get("transition")) else {
        return Err(unprocessable("transition", "transition: not an action on documents"));
    };
    let Ok(version) = f.get("version").parse::<i32>() else {
        return Err(unprocessable("version", "version: the form did not say which version you saw"));
    };
    let note = f.get("note");
    let note = (!note.is_empty()).then_some(note);
    let route = "POST /documents/{id}/transitions";
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    match documents::transition(&mut tx, &state.authz, &m, id, t, version, note).await {
        Ok(_) => {
            p.checked.mark();
            tx.commit().await?;
            Ok(Redirect::to(&format!("/documents/{id}?done={}", t.as_str())).into_response())
        }
        Err(ApprovalError::Stale { .. }) => {
            drop(tx);
            let notice = "Someone acted on this first — here is what it looks like now. Nothing you sent was applied; check it and act again if you still need to.".to_owned();
            current_with(&state, &p, &headers, id, StatusCode::CONFLICT, notice, "warning", |_| {}).await
        }
        Err(ApprovalError::NotAllowed(n)) => {
            drop(tx);
            let notice = format!(
                "This document is now “{}”, so it cannot be {} — here is what it looks like now.",
                format::status(n.from).to_lowercase(),
                past(t)
            );
            current_with(&state, &p, &headers, id, StatusCode::CONFLICT, notice, "warning", |_| {}).await
        }
        Err(ApprovalError::PeriodClosed { period }) => {
            drop(tx);
            let notice = format!(
                "The fiscal period {period} is closed: documents dated in it cannot change. Only the MD can reopen it."
            );
            current_with(&state, &p, &headers, id, StatusCode::CONFLICT, notice, "error", |_| {}).await
        }
        Err(ApprovalError::Invalid { field: "note", reason }) => {
            drop(tx);
            let typed = note.unwrap_or_default().to_owned();
            let error = if typed.is_empty() {
                let what = match t {
                    Transition::Query => "question",
                    Transition::Answer => "answer",
                    _ => "reason",
                };
                format!("Write your {what}: at least 3 characters")
            } else {
                format!("Too short or too long: {reason}")
            };
            current_with(
                &state,
                &p,
                &headers,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Nothing was changed: see the note below.".into(),
                "error",
                |page| {
                    if let Some(a) = page.actions.iter_mut().find(|a| a.transition == t.as_str()) {
                        a.note = typed;
                        a.note_error = error;
                    }
                },
            )
            .await
        }
        Err(e) => {
            let e = refused(&state, &p, route, tx, e).await;
            if e.status == StatusCode::FORBIDDEN {
                return Ok(forbidden(&e, t, &headers));
            }
            Err(e)
        }
    }
}

fn past(t: Transition) -> &'static str {
    match t {
        Transition::Submit => "submitted",
        Transition::Approve => "approved",
        Transition::Reject => "rejected",
        Transition::Query => "queried",
        Transition::Answer => "answered",
        Transition::Amend => "amended",
        Transition::Cancel => "cancelled",
        Transition::MarkPaid => "marked as paid",
    }
}

/// The 403 page for a refused action, saying which rule refused it.
fn forbidden(e: &ApiError, t: Transition, headers: &HeaderMap) -> Response {
    let rules: Vec<String> = e
        .details
        .as_ref()
        .and_then(|d| d.get("forbidden_by"))
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let why = if rules.iter().any(|r| r == "sod-raiser-never-decides") {
        "You raised this document, and the person who raises a document never decides it: someone else must.".to_owned()
    } else if rules.iter().any(|r| r == "sod-one-level-per-person") {
        "You already approved this document at another level, and nobody approves two levels of one document."
            .to_owned()
    } else if rules.iter().any(|r| r == "auditor-read-only") {
        "Auditors read everything and change nothing.".to_owned()
    } else {
        format!(
            "Your role does not allow you to {} this document at its current level (needed: permission to {}).",
            format::verb(t).to_lowercase(),
            t.action().as_str().replace(['.', '_'], " ")
        )
    };
    let id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let page = RefusalPage {
        chrome: Chrome::public(String::new()),
        heading: "You may not do this".into(),
        explanation: format!("{why} Nothing was changed, and the attempt was recorded."),
        hint: "Go back to the document to see whose turn it is.".into(),
        request_id: id,
    };
    (StatusCode::FORBIDDEN, page).into_response()
}

// --- Raising a document --------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) struct DepartmentOption {
    pub id: String,
    pub name: String,
    pub selected: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct LineInput {
    pub number: usize,
    pub description: String,
    pub amount: String,
}

#[derive(Debug, Clone)]
pub(crate) struct FieldError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "raise.html")]
pub(crate) struct RaisePage {
    pub chrome: Chrome,
    pub voucher: bool,
    pub title: String,
    pub departments: Vec<DepartmentOption>,
    pub currency: String,
    pub date: String,
    pub lines: Vec<LineInput>,
    /// Every error, in the order of the form (the summary links to each field).
    pub errors: Vec<FieldError>,
    /// The id of the field to focus: the first with an error.
    pub focus: &'static str,
    /// Editing (`crate::ui::edit`): the document's id (empty when raising a new one), its
    /// number, the version the form was filled from, and a message above the form.
    pub edit_id: String,
    pub reference: String,
    pub version: i32,
    pub notice: String,
}

impl RaisePage {
    fn error(&self, field: &str) -> String {
        self.errors.iter().find(|e| e.field == field).map(|e| e.message.clone()).unwrap_or_default()
    }

    pub fn kind_error(&self) -> String {
        self.error("kind")
    }

    pub fn title_error(&self) -> String {
        self.error("title")
    }

    pub fn department_error(&self) -> String {
        self.error("department")
    }

    pub fn currency_error(&self) -> String {
        self.error("currency")
    }

    pub fn date_error(&self) -> String {
        self.error("date")
    }

    pub fn lines_error(&self) -> String {
        self.error("lines")
    }
}

/// The departments `m` may raise in (the question `create` asks, per department).
pub(crate) async fn raise_departments(
    state: &AppState,
    tx: &mut TenantTx,
    m: &Member,
    selected: &str,
) -> Result<Vec<DepartmentOption>, ApiError> {
    let all = identity::directory::departments::list(tx, None, 500).await?;
    let mine = m.subject.department.map(|d| d.to_string()).unwrap_or_default();
    let pick = if selected.is_empty() { mine.as_str() } else { selected };
    Ok(all
        .into_iter()
        .filter(|d| documents::may_raise_in(&state.authz, m, d.id))
        .map(|d| DepartmentOption { selected: d.id.to_string() == pick, id: d.id.to_string(), name: d.name })
        .collect())
}

const BLANK_LINES: usize = 3;

/// `GET /documents/new`
pub async fn new(State(state): State<AppState>, p: Principal, headers: HeaderMap) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let departments = raise_departments(&state, &mut tx, &m, "").await?;
    if departments.is_empty() {
        return Err(ApiError::forbidden().with_details(serde_json::json!({ "action": "document.create" })));
    }
    let chrome = Chrome::member(&state, &mut tx, &m, &headers, Section::Documents).await?;
    p.checked.mark();
    tx.commit().await?;
    let lines = (1..=BLANK_LINES).map(|number| LineInput { number, ..LineInput::default() }).collect();
    let page = RaisePage {
        chrome,
        voucher: true,
        title: String::new(),
        departments,
        currency: "EUR".into(),
        date: chrono::Utc::now().date_naive().to_string(),
        lines,
        errors: Vec::new(),
        focus: "kind-voucher",
        edit_id: String::new(),
        reference: String::new(),
        version: 0,
        notice: String::new(),
    };
    Ok(page.into_response())
}

/// The fields of the raise form, as typed.
pub(crate) struct Typed {
    pub voucher: bool,
    pub title: String,
    pub department: String,
    pub currency: String,
    pub date: String,
    pub lines: Vec<LineInput>,
}

impl Typed {
    /// The raise (or edit) form's fields as typed, with a blank line added when asked for.
    ///
    /// # Errors
    /// 422 when the form carries more than 1000 lines.
    pub(crate) fn from_form(f: &Fields) -> Result<Self, ApiError> {
        let descriptions = f.all("line_description");
        let amounts = f.all("line_amount");
        let mut lines: Vec<LineInput> = descriptions
            .iter()
            .zip(amounts.iter().chain(std::iter::repeat(&"")))
            .map(|(d, a)| LineInput { number: 0, description: d.trim().to_owned(), amount: a.trim().to_owned() })
            .collect();
        if f.has("add_line") || lines.is_empty() {
            lines.push(LineInput::default());
        }
        if lines.len() > 1000 {
            return Err(unprocessable("lines", "lines: at most 1000"));
        }
        for (i, l) in lines.iter_mut().enumerate() {
            l.number = i + 1;
        }
        Ok(Self {
            voucher: f.get("kind") != "purchase_order",
            title: f.get("title").to_owned(),
            department: f.get("department_id").to_owned(),
            currency: f.get("currency").to_ascii_uppercase(),
            date: f.get("document_date").to_owned(),
            lines,
        })
    }

    /// The lines that carry something, with their row index (for renumbering domain errors).
    pub(crate) fn filled_lines(&self) -> Vec<(usize, &LineInput)> {
        self.lines.iter().enumerate().filter(|(_, l)| !l.description.is_empty() || !l.amount.is_empty()).collect()
    }
}

/// The HTML ids of the form's fields, in order: the first with an error gets the focus.
pub(crate) fn field_id(field: &str) -> &'static str {
    match field {
        "kind" => "kind-voucher",
        "title" => "title",
        "department" => "department",
        "currency" => "currency",
        "date" => "date",
        _ => "line-1-description",
    }
}

pub(crate) const ORDER: [&str; 6] = ["kind", "title", "department", "currency", "date", "lines"];

/// `POST /documents` {kind, title, department_id, currency, document_date,
/// line_description*, line_amount*, (add_line | save | submit), csrf_token}
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let typed = Typed::from_form(&f)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    if f.has("add_line") {
        return again(&state, &p, tx, &m, &headers, typed, Vec::new(), StatusCode::OK).await;
    }
    let (new, mut errors) = parse(&typed);
    let lines_typed = typed.filled_lines();
    let Some(new) = new.filter(|_| errors.is_empty()) else {
        return again(&state, &p, tx, &m, &headers, typed, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let created = match documents::create(&mut tx, &state.authz, &m, &new).await {
        Ok(doc) => doc,
        Err(ApprovalError::Invalid { field, reason }) => {
            errors.push(domain_error(field, &reason, &lines_typed));
            return again(&state, &p, tx, &m, &headers, typed, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(ApprovalError::Money(e)) => {
            let field = if matches!(e, approvals::MoneyError::OutOfRange) { "lines" } else { "currency" };
            errors.push(FieldError { field, message: money_words(&e) });
            return again(&state, &p, tx, &m, &headers, typed, errors, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(ApprovalError::PeriodClosed { period }) => {
            errors.push(FieldError {
                field: "date",
                message: format!("The fiscal period {period} is closed: choose a date in an open period"),
            });
            return again(&state, &p, tx, &m, &headers, typed, errors, StatusCode::CONFLICT).await;
        }
        Err(e) => return Err(refused(&state, &p, "POST /documents", tx, e).await),
    };
    let (id, mut done) = (created.id, "created");
    if f.has("submit") {
        match documents::transition(&mut tx, &state.authz, &m, id, Transition::Submit, created.version, None).await {
            Ok(_) => done = "submit",
            Err(e) => return Err(refused(&state, &p, "POST /documents", tx, e).await),
        }
    }
    p.checked.mark();
    tx.commit().await?;
    Ok(Redirect::to(&format!("/documents/{id}?done={done}")).into_response())
}

/// The raise form again, with what was typed and the errors (status `status`).
#[allow(clippy::too_many_arguments)]
async fn again(
    state: &AppState,
    p: &Principal,
    mut tx: TenantTx,
    m: &Member,
    headers: &HeaderMap,
    typed: Typed,
    mut errors: Vec<FieldError>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let departments = raise_departments(state, &mut tx, m, &typed.department).await?;
    if departments.is_empty() {
        return Err(ApiError::forbidden().with_details(serde_json::json!({ "action": "document.create" })));
    }
    let chrome = Chrome::member(state, &mut tx, m, headers, Section::Documents).await?;
    p.checked.mark();
    tx.commit().await?;
    errors.sort_by_key(|e| ORDER.iter().position(|f| *f == e.field).unwrap_or(ORDER.len()));
    let focus = errors.first().map_or("kind-voucher", |e| field_id(e.field));
    let page = RaisePage {
        chrome,
        voucher: typed.voucher,
        title: typed.title,
        departments,
        currency: typed.currency,
        date: typed.date,
        lines: typed.lines,
        errors,
        focus,
        edit_id: String::new(),
        reference: String::new(),
        version: 0,
        notice: String::new(),
    };
    Ok((status, page).into_response())
}

/// The form's text as a new document, with an error per field that does not parse.
pub(crate) fn parse(t: &Typed) -> (Option<NewDocument>, Vec<FieldError>) {
    let mut errors = Vec::new();
    let mut err = |field: &'static str, message: &str| errors.push(FieldError { field, message: message.to_owned() });
    if t.title.trim().is_empty() {
        err("title", "Enter a title that says what the money is for");
    }
    let department = Uuid::try_parse(&t.department).ok();
    if department.is_none() {
        err("department", "Choose the department this is for");
    }
    let currency = t.currency.parse::<Currency>().ok();
    if currency.is_none() {
        err("currency", "Enter a currency code such as EUR, USD or GBP");
    }
    let date = NaiveDate::parse_from_str(&t.date, "%Y-%m-%d").ok();
    if date.is_none() {
        err("date", "Enter the document's date, like 2026-03-31");
    }
    let mut lines = Vec::new();
    let mut line_errors = Vec::new();
    for (i, l) in t.lines.iter().enumerate() {
        if l.description.is_empty() && l.amount.is_empty() {
            continue;
        }
        if l.description.is_empty() {
            line_errors.push((i, "Describe this line".to_owned()));
        }
        match format::parse_amount(&l.amount, currency) {
            Some(minor) if minor > 0 => lines.push(NewLine { description: l.description.clone(), amount_minor: minor }),
            Some(_) => line_errors.push((i, "The amount must be above zero".to_owned())),
            None => line_errors.push((i, "Enter the amount as a number, like 1,250.00".to_owned())),
        }
    }
    if lines.is_empty() && line_errors.is_empty() {
        err("lines", "Add at least one line with a description and an amount");
    }
    if let Some((i, _)) = line_errors.first() {
        err("lines", &format!("Line {}: {}", i + 1, line_errors[0].1.to_lowercase()));
    }
    let new = match (department, currency, date) {
        (Some(department_id), Some(currency), Some(document_date)) if line_errors.is_empty() => Some(NewDocument {
            kind: if t.voucher { Kind::Voucher } else { Kind::PurchaseOrder },
            department_id,
            title: t.title.clone(),
            document_date,
            currency,
            lines,
            attachments: Vec::new(),
        }),
        _ => None,
    };
    (new, errors)
}

/// A domain `Invalid` (the API's 422 `invalid_field` with `details.field`) in the form's words.
pub(crate) fn domain_error(field: &str, reason: &str, typed: &[(usize, &LineInput)]) -> FieldError {
    // `reason` names lines by their position among the lines sent; the form numbers every row.
    let renumbered = reason
        .strip_prefix("line ")
        .and_then(|r| r.split_once(':'))
        .and_then(|(n, rest)| n.parse::<usize>().ok().map(|n| (n, rest)))
        .and_then(|(n, rest)| typed.get(n.wrapping_sub(1)).map(|(row, _)| format!("Line {}:{rest}", row + 1)));
    let (field, label) = match field {
        "title" => ("title", "Title"),
        "department_id" => ("department", "Department"),
        "document_date" => ("date", "Date"),
        "currency" => ("currency", "Currency"),
        "kind" => ("kind", "Kind"),
        _ => ("lines", "Lines"),
    };
    let message = renumbered.unwrap_or_else(|| format!("{label}: {reason}"));
    FieldError { field, message }
}

pub(crate) fn money_words(e: &approvals::MoneyError) -> String {
    match e {
        approvals::MoneyError::UnknownCurrency => "Enter a currency code such as EUR, USD or GBP".into(),
        approvals::MoneyError::OutOfRange => "The total is too large for one document".into(),
        approvals::MoneyError::MixedCurrencies => "All lines must be in the document's currency".into(),
    }
}
