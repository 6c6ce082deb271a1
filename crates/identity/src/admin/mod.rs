//! Administration of an organisation: members, invitations, API keys, guest expiry, founding,
//! SCIM provisioning.
//! Every change takes the policy engine's permit for its action (`crate::permitted`) and is
//! audited in the transaction that makes it.
//!
//! The top layer: may use [`crate::signin`], [`crate::directory`] and [`crate::revocation`];
//! nothing imports it.

pub mod api_keys;
pub mod founding;
pub mod guest_expiry;
pub mod invitations;
pub mod members;
pub mod relations;
pub mod scim;
