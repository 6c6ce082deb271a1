//! Leads a partner registers, listed and exported as CSV. The partner dimension is the
//! database's: a partner's transaction sees (and so lists and exports) only its own leads.

use audit::{Changes, Entity, Event, Who};
use authz::{Action, Permit};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::TenantTx;
use uuid::Uuid;

use crate::{ProgramError, Scope, invalid, parse_domain, parse_name, scope};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lead {
    pub id: Uuid,
    pub partner_id: Uuid,
    pub company_name: String,
    pub customer_domain: Option<String>,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    pub notes: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewLead {
    pub company_name: String,
    #[serde(default)]
    pub customer_domain: Option<String>,
    #[serde(default)]
    pub contact_name: Option<String>,
    #[serde(default)]
    pub contact_email: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

fn optional(field: &'static str, v: Option<&String>) -> Result<Option<String>, ProgramError> {
    v.map(|s| s.trim()).filter(|s| !s.is_empty()).map(|s| parse_name(field, s)).transpose()
}

/// Registers a lead for the caller's partner. Leads belong to partners: vendor staff do not
/// register them (their own pipeline is deal registrations without a partner).
pub async fn register(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    by: Uuid,
    new: &NewLead,
) -> Result<Lead, ProgramError> {
    permit.require(Action::LeadRegister, tx.tenant().as_uuid())?;
    let Scope::Partner(partner) = scope(tx).await? else {
        return Err(ProgramError::Forbidden {
            code: "partners_only",
            reason: "leads are registered by partner people".into(),
        });
    };
    let company = parse_name("companyName", &new.company_name)?;
    let domain = new
        .customer_domain
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|d| parse_domain("customerDomain", d))
        .transpose()?;
    let contact_name = optional("contactName", new.contact_name.as_ref())?;
    let contact_email = new.contact_email.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    if let Some(e) = &contact_email {
        let ok = e.len() <= 254
            && e.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !e.contains(char::is_whitespace));
        if !ok {
            return Err(invalid("contactEmail", "must be an email address"));
        }
    }
    let notes = new.notes.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    if notes.as_ref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(invalid("notes", "at most 2000 characters"));
    }
    let id = Uuid::now_v7();
    let created_at = sqlx::query_scalar!(
        "insert into partner_leads (tenant_id, id, partner_id, company_name, customer_domain, contact_name,
                                    contact_email, notes, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning created_at",
        tx.tenant().as_uuid(),
        id,
        partner,
        company,
        domain,
        contact_name,
        contact_email,
        notes,
        by
    )
    .fetch_one(tx.conn())
    .await?;
    let lead = Lead {
        id,
        partner_id: partner,
        company_name: company,
        customer_domain: domain,
        contact_name,
        contact_email,
        notes,
        created_at,
    };
    let changes = Changes::none()
        .field("partner_id", None::<String>, partner.to_string())
        .field("company_name", None::<String>, &lead.company_name)
        .field("customer_domain", None::<String>, &lead.customer_domain);
    audit::record_by(tx, who, &Event::new("lead.registered", Entity::of("lead", id)?, changes)?).await?;
    Ok(lead)
}

/// The leads the caller may see, newest first, after `before` (keyset pagination for exports).
pub async fn page(
    tx: &mut TenantTx,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Lead>, ProgramError> {
    // No partner filter on purpose: the partner_isolation policy is the filter. The first page
    // and the next ones are separate statements so the cursor is always an index condition on
    // partner_leads_export (a cached generic plan cannot use `$2 is null or …`).
    let limit = limit.clamp(1, 1000);
    let tenant = tx.tenant().as_uuid();
    Ok(match before {
        None => {
            sqlx::query_as!(
                Lead,
                r#"select id, partner_id, company_name, customer_domain::text, contact_name, contact_email::text, notes, created_at
                     from partner_leads
                    where tenant_id = $1
                    order by created_at desc, id desc limit $2"#,
                tenant,
                limit
            )
            .fetch_all(tx.conn())
            .await?
        }
        Some((at, id)) => {
            sqlx::query_as!(
                Lead,
                r#"select id, partner_id, company_name, customer_domain::text, contact_name, contact_email::text, notes, created_at
                     from partner_leads
                    where tenant_id = $1 and (created_at, id) < ($2, $3)
                    order by created_at desc, id desc limit $4"#,
                tenant,
                at,
                id,
                limit
            )
            .fetch_all(tx.conn())
            .await?
        }
    })
}

/// The CSV header of a leads export.
pub const CSV_HEADER: [&str; 8] =
    ["id", "partner_id", "company_name", "customer_domain", "contact_name", "contact_email", "notes", "created_at"];

/// A spreadsheet would run a cell starting with one of these as a formula (`=cmd|' /C calc'!A0`):
/// such cells are prefixed with a single quote, which shows the text and runs nothing.
#[must_use]
pub fn neutralise(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell.to_owned() }
}

/// One lead as CSV bytes (one record, quoted as needed, formulas neutralised).
pub fn csv_record(lead: &Lead) -> Result<Vec<u8>, ProgramError> {
    let cells = [
        lead.id.to_string(),
        lead.partner_id.to_string(),
        neutralise(&lead.company_name),
        neutralise(lead.customer_domain.as_deref().unwrap_or("")),
        neutralise(lead.contact_name.as_deref().unwrap_or("")),
        neutralise(lead.contact_email.as_deref().unwrap_or("")),
        neutralise(lead.notes.as_deref().unwrap_or("")),
        lead.created_at.to_rfc3339(),
    ];
    write_record(&cells)
}

/// The header line as CSV bytes.
pub fn csv_header() -> Result<Vec<u8>, ProgramError> {
    write_record(&CSV_HEADER)
}

fn write_record<S: AsRef<[u8]>>(cells: &[S]) -> Result<Vec<u8>, ProgramError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(cells).map_err(|e| invalid("csv", e.to_string()))?;
    w.into_inner().map_err(|e| invalid("csv", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_others_kept() {
        for f in ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=x", "\r=x"] {
            assert!(neutralise(f).starts_with('\''), "{f:?}");
        }
        assert_eq!(neutralise("Acme"), "Acme");
        assert_eq!(neutralise(""), "");
    }

    #[test]
    fn a_record_quotes_commas_and_neutralises_formulas() {
        let lead = Lead {
            id: Uuid::nil(),
            partner_id: Uuid::nil(),
            company_name: "=HYPERLINK(\"http://x\",\"a,b\")".into(),
            customer_domain: None,
            contact_name: Some("Ann, Smith".into()),
            contact_email: None,
            notes: None,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
        };
        let line = String::from_utf8(csv_record(&lead).expect("record")).expect("utf8");
        assert!(line.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"a,b\"\")\""), "{line}");
        assert!(line.contains("\"Ann, Smith\""), "{line}");
    }
}
