//! Money-moving documents: payment vouchers and purchase orders.
//!
//! Today: [`money`] (integer minor units of ISO 4217 currencies) and [`machine`] (the approval
//! state machine). Storage, fiscal periods, the HTTP API and bulk approval build on these.

pub mod machine;
pub mod money;

pub use machine::{NotAllowed, State, Status, Step, Transition, allowed, step};
pub use money::{Currency, Money, MoneyError};
