//! Money-moving documents: payment vouchers and purchase orders.
//!
//! [`money`] (integer minor units of ISO 4217 currencies), [`machine`] (the approval state
//! machine), [`documents`] (storage, transitions, fiscal periods, in the caller's `TenantTx`,
//! audited), [`attachments`] (files attached to them: who may see, add, flag or remove one) and
//! [`inbox`] (lists with filters and pagination, bulk approval). The HTTP API
//! (`web::api::documents`) builds on these.

pub mod attachments;
pub mod documents;
pub mod inbox;
pub mod machine;
pub mod money;
pub mod portal;
pub mod requests;

pub use machine::{NotAllowed, State, Status, Step, Transition, allowed, step};
pub use money::{Currency, Money, MoneyError};
