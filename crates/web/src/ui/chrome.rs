//! What surrounds every page: the organisation and the person in the top bar, the sign-out form,
//! and the left navigation — only the sections this person may open, as the policy engine
//! decides for them (the same decisions the sections' routes take).

use approvals::documents::Member;
use authz::{Action, Resource};
use axum::http::HeaderMap;
use store::TenantTx;

use crate::plumbing::cookies::{CSRF_COOKIE, cookie, remembered_organisations};
use crate::ui::assets::{Asset, CSS, HTMX, ICON, UPLOAD};
use crate::ui::format;
use crate::{ApiError, AppState};

/// The sections of the left navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Inbox,
    Documents,
    Periods,
    Programme,
    Mdf,
    Relations,
    Members,
    Audit,
    Account,
    ApiKeys,
    Settings,
}

#[derive(Debug, Clone)]
pub(crate) struct NavItem {
    pub label: &'static str,
    pub href: &'static str,
    pub current: bool,
}

/// The frame of a page.
#[derive(Debug, Clone)]
pub(crate) struct Chrome {
    pub signed_in: bool,
    pub organisation: String,
    /// The other organisations this browser has signed in to (short names): the switcher in
    /// the top bar offers a sign-in to each (see `plumbing::cookies::ORGS_COOKIE`).
    pub switch_to: Vec<String>,
    pub person: String,
    pub role: String,
    pub nav: Vec<NavItem>,
    /// Whether the "Raise a document" link shows (the person may raise somewhere).
    pub may_raise: bool,
    /// The CSRF token every form of the page carries (the `cs_csrf` cookie's value).
    pub csrf: String,
    pub css: &'static Asset,
    pub js: &'static Asset,
    /// The upload form's progress script (signed-in pages only).
    pub upload: &'static Asset,
    pub icon: &'static Asset,
}

impl Chrome {
    /// The frame of a page nobody is signed in to (sign-in, `/security`, refusals).
    pub(crate) fn public(csrf: String) -> Self {
        Self {
            signed_in: false,
            organisation: String::new(),
            switch_to: Vec::new(),
            person: String::new(),
            role: String::new(),
            nav: Vec::new(),
            may_raise: false,
            csrf,
            css: &CSS,
            js: &HTMX,
            upload: &UPLOAD,
            icon: &ICON,
        }
    }

    /// The frame of an outside party's portal page (a vendor's or client's person): the
    /// portal is all they have, so it is all the navigation shows.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn portal(tx: &mut TenantTx, m: &Member, headers: &HeaderMap) -> Result<Self, ApiError> {
        let organisation = identity::directory::tenants::current(tx).await?.name;
        let person = identity::directory::users::get_member(tx, m.subject.user).await?.display_name;
        Ok(Self {
            signed_in: true,
            organisation,
            switch_to: Vec::new(),
            person,
            role: format::role(m.subject.role).to_owned(),
            nav: vec![NavItem { label: "Shared with you", href: "/portal", current: true }],
            may_raise: false,
            csrf: cookie(headers, CSRF_COOKIE).unwrap_or_default(),
            css: &CSS,
            js: &HTMX,
            upload: &UPLOAD,
            icon: &ICON,
        })
    }

    /// The frame of a signed-in member's page, read in the request's own transaction.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn member(
        state: &AppState,
        tx: &mut TenantTx,
        m: &Member,
        headers: &HeaderMap,
        current: Section,
    ) -> Result<Self, ApiError> {
        let tenant = identity::directory::tenants::current(tx).await?;
        let switch_to = remembered_organisations(headers).into_iter().filter(|s| *s != tenant.slug).collect();
        let organisation = tenant.name;
        let person = identity::directory::users::get_member(tx, m.subject.user).await?.display_name;
        let s = &m.subject;
        let tenant = s.tenant;
        let periods = Resource::Period { tenant, id: uuid::Uuid::nil(), status: "open", reason: "" };
        let mut nav = vec![
            NavItem { label: "Inbox", href: "/", current: current == Section::Inbox },
            NavItem { label: "Documents", href: "/documents", current: current == Section::Documents },
        ];
        if state.authz.decide(s, Action::PeriodRead, &periods).is_ok() {
            nav.push(NavItem { label: "Periods", href: "/periods", current: current == Section::Periods });
        }
        let organisation_wide = Resource::Organisation { tenant };
        if state.authz.decide(s, Action::CommissionRead, &organisation_wide).is_ok() {
            nav.push(NavItem {
                label: "Partner programme",
                href: "/programme",
                current: current == Section::Programme,
            });
        }
        if state.authz.decide(s, Action::MdfRead, &organisation_wide).is_ok() {
            nav.push(NavItem { label: "Market funds", href: "/programme/mdf", current: current == Section::Mdf });
        }
        if state.authz.decide(s, Action::RelationsRead, &organisation_wide).is_ok() {
            nav.push(NavItem {
                label: "Vendors and clients",
                href: "/relations",
                current: current == Section::Relations,
            });
        }
        if state.authz.decide(s, Action::MembersRead, &organisation_wide).is_ok() {
            nav.push(NavItem { label: "Members", href: "/members", current: current == Section::Members });
        }
        if state.authz.decide(s, Action::AuditRead, &organisation_wide).is_ok() {
            nav.push(NavItem { label: "Audit", href: "/audit", current: current == Section::Audit });
        }
        if state.authz.decide(s, Action::SettingsManage, &organisation_wide).is_ok() {
            nav.push(NavItem { label: "Settings", href: "/settings", current: current == Section::Settings });
        }
        if state.authz.decide(s, Action::ApiKeysManage, &organisation_wide).is_ok() {
            nav.push(NavItem { label: "API keys", href: "/settings/api-keys", current: current == Section::ApiKeys });
        }
        nav.push(NavItem { label: "My account", href: "/account", current: current == Section::Account });
        let may_raise =
            approvals::documents::may_raise_in(&state.authz, m, s.department.unwrap_or_else(uuid::Uuid::nil));
        Ok(Self {
            signed_in: true,
            organisation,
            switch_to,
            person,
            role: format::role(s.role).to_owned(),
            nav,
            may_raise,
            csrf: cookie(headers, CSRF_COOKIE).unwrap_or_default(),
            css: &CSS,
            js: &HTMX,
            upload: &UPLOAD,
            icon: &ICON,
        })
    }
}
