//! What a member is to an organisation: the role policies read as `principal.role`. Defined here,
//! with the policies that give it meaning; `identity` stores it and re-exports it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a member is to an organisation. External kinds (vendor, client, partner, agent) see only
/// what is shared with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Staff,
    Hod,
    Finance,
    Md,
    Auditor,
    Vendor,
    Client,
    Partner,
    Agent,
    /// Vendor side of a partner programme: manages partners, decides deal registrations.
    ChannelManager,
    /// A partner company's administrator (a member of the vendor with a `partner_id`).
    PartnerAdmin,
    /// A partner company's agent (a member of the vendor with a `partner_id`).
    PartnerAgent,
}

impl Role {
    pub const ALL: &'static [Role] = &[
        Self::Owner,
        Self::Admin,
        Self::Staff,
        Self::Hod,
        Self::Finance,
        Self::Md,
        Self::Auditor,
        Self::Vendor,
        Self::Client,
        Self::Partner,
        Self::Agent,
        Self::ChannelManager,
        Self::PartnerAdmin,
        Self::PartnerAgent,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Staff => "staff",
            Self::Hod => "hod",
            Self::Finance => "finance",
            Self::Md => "md",
            Self::Auditor => "auditor",
            Self::Vendor => "vendor",
            Self::Client => "client",
            Self::Partner => "partner",
            Self::Agent => "agent",
            Self::ChannelManager => "channel_manager",
            Self::PartnerAdmin => "partner_admin",
            Self::PartnerAgent => "partner_agent",
        }
    }

    /// A partner person (their membership names their partner company).
    #[must_use]
    pub fn is_partner_person(self) -> bool {
        matches!(self, Self::PartnerAdmin | Self::PartnerAgent)
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected one of: {}", Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))]
pub struct UnknownRole;

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s).ok_or(UnknownRole)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
