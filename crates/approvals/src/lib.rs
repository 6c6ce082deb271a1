//! Money-moving documents: payment vouchers and purchase orders.
//!
//! [`money`] (integer minor units of ISO 4217 currencies), [`machine`] (the approval state
//! machine) and [`documents`] (storage, transitions, fiscal periods, in the caller's `TenantTx`,
//! audited). The HTTP API, idempotency and bulk approval build on these.

pub mod documents;
pub mod machine;
pub mod money;

pub use machine::{NotAllowed, State, Status, Step, Transition, allowed, step};
pub use money::{Currency, Money, MoneyError};
