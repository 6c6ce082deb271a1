//! The partner scope the database put in force for this transaction. Read back from Postgres
//! (never taken from a request), so application decisions agree with the row filter.

use store::TenantTx;
use uuid::Uuid;

use crate::ProgramError;

/// On whose behalf a programme transaction sees rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Vendor staff (or the operator): every partner's rows of this organisation.
    Vendor,
    /// A partner person: only this partner's rows.
    Partner(Uuid),
}

/// The transaction's scope; [`ProgramError::NotFound`] when it has none (not a programme
/// transaction, or a caller with no programme role: they see nothing at all).
pub async fn scope(tx: &mut TenantTx) -> Result<Scope, ProgramError> {
    let s = tx.partner_scope().await?;
    match s.as_deref() {
        Some("vendor") => Ok(Scope::Vendor),
        Some(id) => id.parse::<Uuid>().map(Scope::Partner).map_err(|_| ProgramError::NotFound),
        None => Err(ProgramError::NotFound),
    }
}
