//! The audit ledger. Every change is recorded in the caller's transaction on a per-tenant hash
//! chain that the database refuses to edit; the verifier recomputes chains; Ed25519 checkpoints
//! let a third party check an export offline. See docs/AUDIT.md for the canonical encoding.

mod append;
pub mod bundle;
pub mod checkpoint;
mod copy;
mod delta;
pub mod encoding;
mod error;
mod event;
pub mod export;
mod keys;
pub mod query;
pub mod verify;
pub mod watch;

pub use append::{Receipt, appended_total, record, record_by, record_for, record_platform};
pub use delta::{Changes, REDACTED, is_secret_field};
pub use error::AuditError;
pub use event::{Action, Actor, ActorKind, Entity, Event, Origin, Who};
pub use keys::{CheckpointKey, TrustedKeys, create_seed, key_id, load_or_create_seed, load_seed, public_pem};
