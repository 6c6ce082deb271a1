//! The route table and the middleware stack. Every route is registered here with its guard
//! (`crate::plumbing::guard`); the handlers live in `crate::api` (JSON) and `crate::ui` (pages).
//! Middleware order (outermost first): request id → trace span → client context (and HSTS) →
//! security headers → edge (URI/header limits, content type, query text, JSON shape of framework
//! refusals) → body limit → timeout → (pages: page CSP → refusals as pages → form CSRF token) →
//! the route's guard → handler.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::{Json, Router};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::api::{
    api_keys, audit, commissions, departments, documents, files, health, invitations, ip_allowlist, joining, mdf, me,
    members, mfa, oidc, openapi, portals, programs, saml, scim, scim_mappings, scim_tokens, security, sessions, sso,
};
use crate::plumbing::client;
use crate::plumbing::guard::{Guard, RouteInfo, Routes};
use crate::ui;
use crate::{ApiError, AppState};
use authz::Action;

/// Every API route with its guard (see `crate::plumbing::guard`), under `/api/v1`.
fn api_routes(r: Routes, dev_outbox: bool) -> Routes {
    use Guard::{Domain, Org, Own, Public, SignIn};
    let r = r
        .post("/auth/login", SignIn, sessions::login)
        .post("/auth/email-code", SignIn, mfa::request_code)
        .post("/auth/email-code/verify", SignIn, mfa::verify_code)
        .post("/auth/mfa", SignIn, mfa::complete)
        // Single sign-on begun by a script: the sign-in page's own start, answered as JSON.
        .post("/auth/sso/start", SignIn, sso::start)
        .post("/invitations/accept", SignIn, invitations::accept)
        .post("/portal/enter", SignIn, portals::enter)
        .post("/auth/refresh", Public("the refresh cookie is the credential"), sessions::refresh)
        .get("/auth/resume", Public("the refresh cookie is the credential; answers redirects"), ui::resume::resume)
        .post("/auth/resume", Public("the refresh cookie is the credential; answers redirects"), ui::resume::resume)
        .get("/status", Public("counters only, no tenant data"), health::status)
        .get("/security", Public("the published security claims and counters, no tenant data"), security::security)
        .post("/auth/logout", Own, sessions::logout)
        .get("/settings/ip-allowlist", Org(Action::SettingsManage), ip_allowlist::get)
        .put("/settings/ip-allowlist", Org(Action::SettingsManage), ip_allowlist::put)
        .get("/settings/mfa", Org(Action::SettingsManage), mfa::get_required)
        .put("/settings/mfa", Org(Action::SettingsManage), mfa::set_required)
        .get("/settings/joining", Org(Action::SettingsManage), joining::get)
        .put("/settings/joining", Org(Action::SettingsManage), joining::put)
        .post("/settings/scim-tokens", Org(Action::SettingsManage), scim_tokens::create)
        .get("/settings/scim-tokens", Org(Action::SettingsManage), scim_tokens::list)
        .delete("/settings/scim-tokens/{id}", Org(Action::SettingsManage), scim_tokens::revoke)
        .get("/settings/scim-group-mappings", Org(Action::SettingsManage), scim_mappings::list)
        .post("/settings/scim-group-mappings", Org(Action::SettingsManage), scim_mappings::create)
        .delete("/settings/scim-group-mappings/{id}", Org(Action::SettingsManage), scim_mappings::delete)
        .get("/settings/oidc", Org(Action::SettingsManage), oidc::get)
        .put("/settings/oidc", Org(Action::SettingsManage), oidc::put)
        .post("/settings/oidc/test", Org(Action::SettingsManage), oidc::test)
        .get("/settings/saml", Org(Action::SettingsManage), saml::get)
        .put("/settings/saml", Org(Action::SettingsManage), saml::put)
        .post("/settings/saml/test", Org(Action::SettingsManage), saml::test)
        .get("/settings/approvals", Domain(&[Action::SettingsManage]), documents::get_thresholds)
        .put("/settings/approvals", Domain(&[Action::SettingsManage]), documents::set_threshold)
        .get("/audit/events", Org(Action::AuditRead), audit::events)
        .get("/audit/export", Org(Action::AuditRead), audit::export)
        .get("/audit/chain", Org(Action::AuditRead), audit::chain)
        .get("/audit/bundle", Org(Action::AuditRead), audit::bundle)
        .post("/sessions/revoke", Org(Action::MembersManage), sessions::revoke)
        .post("/me/mfa/totp", Own, mfa::enrol)
        .delete("/me/mfa/totp", Own, mfa::disable)
        .post("/me/mfa/totp/confirm", Own, mfa::confirm)
        .post("/me/mfa/recovery-codes", Own, mfa::regenerate)
        .get("/me", Own, me::me)
        .get("/me/sessions", Own, me::sessions)
        .delete("/me/sessions/{id}", Own, me::revoke_session)
        .post("/me/password", Own, me::change_password)
        .get("/departments", Org(Action::DepartmentsRead), departments::list)
        .get("/members", Org(Action::MembersRead), members::list)
        .get("/members/{user_id}/sessions", Org(Action::MembersRead), members::sessions)
        .post("/members/{user_id}/sessions/revoke", Org(Action::MembersManage), members::revoke_sessions)
        .post("/members/{user_id}/deactivate", Org(Action::MembersManage), members::deactivate)
        .post("/members/{user_id}/reactivate", Org(Action::MembersManage), members::reactivate)
        .post("/members/{user_id}/unlock", Org(Action::MembersManage), members::unlock)
        .put("/members/{user_id}/role", Org(Action::MembersManage), members::change_role)
        .post("/members/{user_id}/approve", Org(Action::MembersManage), members::approve)
        .post("/members/{user_id}/decline", Org(Action::MembersManage), members::decline)
        .post("/api-keys", Org(Action::ApiKeysManage), api_keys::create)
        .get("/api-keys", Org(Action::ApiKeysManage), api_keys::list)
        .delete("/api-keys/{id}", Org(Action::ApiKeysManage), api_keys::revoke)
        .post("/invitations", Org(Action::MembersManage), invitations::create)
        .get("/invitations", Org(Action::MembersRead), invitations::list)
        .delete("/invitations/{id}", Org(Action::MembersManage), invitations::revoke)
        .post("/documents", Domain(&[Action::DocumentCreate]), documents::create)
        .get("/documents", Domain(&[Action::DocumentRead]), documents::list)
        .get("/documents/{id}", Domain(&[Action::DocumentRead]), documents::get)
        .add(axum::http::Method::PATCH, "/documents/{id}", Domain(&[Action::DocumentEdit]), documents::edit)
        .post("/documents/{id}/transitions", Domain(documents::TRANSITION_ACTIONS), documents::transition)
        .post("/documents/bulk-approve", Domain(&[Action::DocumentApprove]), documents::bulk_approve)
        .post("/documents/{id}/attachments/files", Domain(&[Action::DocumentEdit]), files::upload)
        .get("/documents/{id}/attachments", Domain(&[Action::AttachmentRead]), files::list)
        .post("/attachments/{id}/links", Domain(&[Action::AttachmentRead]), files::link)
        .delete("/attachments/{id}", Domain(&[Action::AttachmentRemove]), files::delete)
        .post("/attachments/{id}/restore", Domain(&[Action::AttachmentRemove]), files::restore)
        .put("/attachments/{id}/visibility", Domain(&[Action::AttachmentShare]), files::set_visibility)
        .get("/files/{token}", Domain(&[Action::AttachmentRead]), files::download)
        .get("/periods", Domain(&[Action::PeriodRead]), documents::periods)
        .post("/periods", Domain(&[Action::PeriodOpen]), documents::open_period)
        .get("/periods/{id}", Domain(&[Action::PeriodRead]), documents::get_period)
        .post("/periods/{id}/close", Domain(&[Action::PeriodClose]), documents::close_period)
        .post("/periods/{id}/reopen", Domain(&[Action::PeriodReopen]), documents::reopen_period)
        // Vendor and client portals (issue 16): the relation dimension is the database's
        // (relation_tx); the engine decides what a relation's person may see.
        .get("/relations", Org(Action::RelationsRead), portals::list)
        .post("/relations", Org(Action::RelationsManage), portals::create)
        .get("/relations/{id}", Org(Action::RelationsRead), portals::get)
        .post("/relations/{id}/end", Org(Action::RelationsManage), portals::end)
        .post("/relations/{id}/invite", Org(Action::RelationsManage), portals::invite)
        .post("/relations/{id}/links", Org(Action::RelationsManage), portals::mint_link)
        .post("/relations/{id}/links/{link_id}/revoke", Org(Action::RelationsManage), portals::revoke_link)
        .post("/relations/{id}/documents", Org(Action::RelationsManage), portals::address)
        .get("/portal/documents", Org(Action::PortalUse), portals::documents)
        .get("/portal/documents/{id}", Org(Action::PortalUse), portals::document)
        .post("/portal/documents/{id}/files", Org(Action::PortalUse), portals::upload)
        .post("/portal/attachments/{id}/links", Org(Action::PortalUse), portals::file_link)
        .post("/documents/{id}/requests", Domain(&[Action::PortalAsk]), portals::ask)
        .get("/documents/{id}/requests", Domain(&[Action::DocumentRead]), portals::document_requests)
        .get("/portal/requests", Org(Action::PortalUse), portals::requests)
        .post("/portal/requests/{id}/answer", Org(Action::PortalUse), portals::answer)
        // Partner programmes (issue 17): the partner dimension is the database's (program_tx).
        .get("/programme/partners", Org(Action::ProgramPartnersRead), programs::list_partners)
        .post("/programme/partners", Org(Action::ProgramPartnersManage), programs::create_partner)
        .get("/programme/partners/{id}", Org(Action::ProgramPartnersRead), programs::get_partner)
        .add(
            axum::http::Method::PATCH,
            "/programme/partners/{id}",
            Org(Action::ProgramPartnersManage),
            programs::update_partner,
        )
        .post("/programme/partners/{id}/invitations", Org(Action::PartnerInvite), invitations::create_for_partner)
        .get("/programme/partners/{id}/invitations", Org(Action::PartnerInvitationsRead), invitations::list_for_partner)
        .delete(
            "/programme/partners/{id}/invitations/{invitation}",
            Org(Action::PartnerInvitationRevoke),
            invitations::revoke_for_partner,
        )
        .get("/deals", Org(Action::DealRead), programs::list_deals)
        .post("/deals", Org(Action::DealRegister), programs::register_deal)
        .get("/deals/{id}", Org(Action::DealRead), programs::get_deal)
        .post("/deals/{id}/approve", Org(Action::DealDecide), programs::approve_deal)
        .post("/deals/{id}/reject", Org(Action::DealDecide), programs::reject_deal)
        .get("/leads", Org(Action::LeadRead), programs::list_leads)
        .post("/leads", Org(Action::LeadRegister), programs::register_lead)
        .get("/leads/export", Org(Action::LeadExport), programs::export_leads)
        .get("/programme/opportunities", Org(Action::OpportunityRead), commissions::list_opportunities)
        .post("/programme/opportunities", Org(Action::OpportunityCreate), commissions::create_opportunity)
        .get("/programme/opportunities/{id}", Org(Action::OpportunityRead), commissions::get_opportunity)
        .post("/programme/opportunities/{id}/stage", Org(Action::OpportunityAdvance), commissions::advance_opportunity)
        .get("/programme/commission-plans", Org(Action::CommissionPlanRead), commissions::list_plans)
        .post("/programme/commission-plans", Org(Action::CommissionPlanManage), commissions::create_plan)
        .get("/programme/commissions", Org(Action::CommissionRead), commissions::list_commissions)
        .get("/programme/commissions/statement", Org(Action::CommissionStatement), commissions::statement)
        .get("/programme/commissions/statement.pdf", Org(Action::CommissionStatement), commissions::statement_pdf)
        .get("/programme/commissions/{id}", Org(Action::CommissionRead), commissions::get_commission)
        .post("/programme/commissions/{id}/dispute", Org(Action::CommissionDispute), commissions::dispute_commission)
        .post(
            "/programme/commissions/{id}/approve",
            Domain(&[Action::CommissionApprove]),
            commissions::approve_commission,
        )
        // Market development funds: the partner dimension is the database's; decisions per row.
        .get("/programme/mdf/allowances", Org(Action::MdfBudgetManage), mdf::list_allowances)
        .put("/programme/mdf/allowances", Org(Action::MdfBudgetManage), mdf::set_allowance)
        .get("/programme/mdf/budgets", Org(Action::MdfRead), mdf::list_budgets)
        .post("/programme/mdf/budgets", Org(Action::MdfBudgetManage), mdf::create_budget)
        .get("/programme/mdf/budgets/{id}", Org(Action::MdfRead), mdf::get_budget)
        .get("/programme/mdf/requests", Org(Action::MdfRead), mdf::list_requests)
        .post("/programme/mdf/requests", Org(Action::MdfRequest), mdf::create_request)
        .get("/programme/mdf/requests/{id}", Org(Action::MdfRead), mdf::get_request)
        .post("/programme/mdf/requests/{id}/approve", Domain(&[Action::MdfRequestDecide]), mdf::approve_request)
        .post("/programme/mdf/requests/{id}/reject", Domain(&[Action::MdfRequestDecide]), mdf::reject_request)
        .get("/programme/mdf/claims", Org(Action::MdfRead), mdf::list_claims)
        .post("/programme/mdf/claims", Org(Action::MdfClaim), mdf::create_claim)
        .get("/programme/mdf/claims/{id}", Org(Action::MdfRead), mdf::get_claim)
        .post("/programme/mdf/claims/{id}/proofs", Org(Action::MdfClaim), mdf::upload_proof)
        .get("/programme/mdf/claims/{id}/proofs/{proof}", Org(Action::MdfRead), mdf::download_proof)
        .post("/programme/mdf/claims/{id}/approve", Domain(&[Action::MdfClaimDecide]), mdf::approve_claim)
        .post("/programme/mdf/claims/{id}/reject", Domain(&[Action::MdfClaimDecide]), mdf::reject_claim)
        .post("/programme/mdf/claims/{id}/pay", Domain(&[Action::MdfClaimPay]), mdf::pay_claim)
        .post("/programme/commissions/{id}/payable", Domain(&[Action::CommissionPay]), commissions::payable_commission)
        .post("/programme/commissions/{id}/pay", Domain(&[Action::CommissionPay]), commissions::pay_commission)
        .post(
            "/programme/commissions/{id}/resolve",
            Domain(&[Action::CommissionResolve]),
            commissions::resolve_commission,
        );
    // Reads every message, codes included: never routed unless asked for at start-up.
    if dev_outbox {
        r.get("/dev/outbox", Public("development only: routed only with --dev-outbox"), mfa::dev_outbox)
    } else {
        r
    }
}

/// SCIM 2.0 for an organisation's identity provider, under `/scim/v2` (`crate::api::scim`): every
/// route takes the organisation's SCIM token (`Guard::Scim`).
fn scim_routes(r: Routes) -> Routes {
    use Guard::Scim;
    use axum::http::Method;
    use scim::{discovery, groups, users};
    r.get("/ServiceProviderConfig", Scim, discovery::service_provider_config)
        .get("/ResourceTypes", Scim, discovery::resource_types)
        .get("/ResourceTypes/{id}", Scim, discovery::resource_type)
        .get("/Schemas", Scim, discovery::schemas)
        .get("/Schemas/{id}", Scim, discovery::schema)
        .post("/.search", Scim, discovery::search_all)
        .post("/Users", Scim, users::create)
        .get("/Users", Scim, users::list)
        .get("/Users/{id}", Scim, users::get)
        .put("/Users/{id}", Scim, users::replace)
        .add(Method::PATCH, "/Users/{id}", Scim, users::modify)
        .delete("/Users/{id}", Scim, users::delete)
        .post("/Groups", Scim, groups::create)
        .get("/Groups", Scim, groups::list)
        .get("/Groups/{id}", Scim, groups::get)
        .put("/Groups/{id}", Scim, groups::replace)
        .add(Method::PATCH, "/Groups/{id}", Scim, groups::modify)
        .delete("/Groups/{id}", Scim, groups::delete)
}

/// Routes outside `/api/v1`.
fn root_routes(r: Routes) -> Routes {
    use Guard::Public;
    r.get("/healthz", Public("liveness probe"), health::healthz)
        .get("/readyz", Public("readiness probe"), health::readyz)
        .get("/metrics", Public("process counters, no tenant data"), health::metrics)
        .get("/api/openapi.json", Public("the API description"), openapi_json)
}

/// The pages (`crate::ui`): the same guards as the API routes they stand beside.
fn page_routes(r: Routes) -> Routes {
    use Guard::{Domain, Org, Own, Public, SignIn};
    r.get("/", Domain(&[Action::DocumentRead]), ui::inbox::home)
        .get("/sign-in", Public("the sign-in form"), ui::sign_in::form)
        .post("/sign-in", SignIn, ui::sign_in::submit)
        .post("/sign-in/second-factor", SignIn, ui::sign_in::second_factor)
        // Single sign-on (issue 18): the start spends the sign-in budget like a password post.
        .get("/sign-in/sso", SignIn, ui::sso::start)
        .get("/sign-in/sso/callback", SignIn, ui::sso::callback)
        // SAML 2.0 (issue 18): the SP metadata is public; the ACS is a sign-in (the IdP's POST).
        .get("/sign-in/saml", SignIn, ui::saml::start)
        .get("/saml/{organisation}/metadata", Public("the organisation's SP metadata: URLs only"), ui::saml::metadata)
        .post("/saml/{organisation}/acs", SignIn, ui::saml::acs)
        .post("/sign-out", Own, ui::sign_in::sign_out)
        .get("/documents", Domain(&[Action::DocumentRead]), ui::inbox::all)
        .get("/documents/new", Domain(&[Action::DocumentCreate]), ui::documents::new)
        .post("/documents", Domain(&[Action::DocumentCreate]), ui::documents::create)
        .get("/documents/{id}", Domain(&[Action::DocumentRead]), ui::documents::show)
        .post("/documents/{id}/transitions", Domain(documents::TRANSITION_ACTIONS), ui::documents::transition)
        .get("/periods", Domain(&[Action::PeriodRead]), ui::periods::list)
        .get("/programme", Org(Action::CommissionRead), ui::programme::show)
        .post("/programme/deals", Org(Action::DealRegister), ui::programme::register)
        .get("/programme/deals/{id}", Org(Action::DealRead), ui::programme::deal)
        .post("/programme/deals/{id}/decide", Org(Action::DealDecide), ui::programme::decide)
        .post("/programme/opportunities", Org(Action::OpportunityCreate), ui::programme::open_opportunity)
        .post("/programme/opportunities/{id}/stage", Org(Action::OpportunityAdvance), ui::programme::advance)
        .post(
            "/programme/commissions/{id}/settle",
            Domain(&[Action::CommissionApprove, Action::CommissionPay]),
            ui::programme::settle,
        )
        .post("/programme/commissions/{id}/dispute", Org(Action::CommissionDispute), ui::programme::dispute)
        .post("/programme/commissions/{id}/resolve", Domain(&[Action::CommissionResolve]), ui::programme::resolve)
        .post("/programme/invitations", Org(Action::PartnerInvite), ui::programme::invite)
        .post(
            "/programme/partners/{id}/invitations/{invitation}/revoke",
            Org(Action::PartnerInvitationRevoke),
            ui::programme::revoke_invitation,
        )
        .get("/programme/commissions/statement", Org(Action::CommissionStatement), commissions::statement)
        .get("/programme/commissions/statement.pdf", Org(Action::CommissionStatement), commissions::statement_pdf)
        .get("/programme/leads/export", Org(Action::LeadExport), programs::export_leads)
        .get("/programme/mdf", Org(Action::MdfRead), ui::mdf::show)
        .post("/programme/mdf/budgets", Org(Action::MdfBudgetManage), ui::mdf::create_budget)
        .post("/programme/mdf/requests", Org(Action::MdfRequest), ui::mdf::create_request)
        .post("/programme/mdf/requests/{id}/decide", Domain(&[Action::MdfRequestDecide]), ui::mdf::decide_request)
        .post("/programme/mdf/claims", Org(Action::MdfClaim), ui::mdf::create_claim)
        .post("/programme/mdf/claims/{id}/proofs", Org(Action::MdfClaim), ui::mdf::upload_proof)
        .post(
            "/programme/mdf/claims/{id}/settle",
            Domain(&[Action::MdfClaimDecide, Action::MdfClaimPay]),
            ui::mdf::settle_claim,
        )
        .get("/programme/mdf/claims/{id}/proofs/{proof}", Org(Action::MdfRead), mdf::download_proof)
        .get("/members", Org(Action::MembersRead), ui::members::list)
        .post("/members/invitations", Org(Action::MembersManage), ui::members::invite)
        .post("/members/sign-out-everyone", Org(Action::MembersManage), ui::members::revoke_everyone)
        .get("/members/{user_id}", Org(Action::MembersRead), ui::members::show)
        .post("/members/{user_id}/role", Org(Action::MembersManage), ui::members::change_role)
        .post("/members/{user_id}/deactivate", Org(Action::MembersManage), ui::members::deactivate)
        .post("/members/{user_id}/reactivate", Org(Action::MembersManage), ui::members::reactivate)
        .post("/members/{user_id}/unlock", Org(Action::MembersManage), ui::members::unlock)
        .post("/members/{user_id}/sessions/revoke", Org(Action::MembersManage), ui::members::revoke_sessions)
        .post("/members/{user_id}/approve", Org(Action::MembersManage), ui::members::approve)
        .post("/members/{user_id}/decline", Org(Action::MembersManage), ui::members::decline)
        .get("/audit", Org(Action::AuditRead), ui::audit::page)
        .get("/settings", Org(Action::SettingsManage), ui::settings::show)
        .post("/settings/mfa", Org(Action::SettingsManage), ui::settings::set_mfa)
        .post("/settings/ip-allowlist", Org(Action::SettingsManage), ui::settings::set_allowlist)
        .post("/settings/thresholds", Org(Action::SettingsManage), ui::settings::set_thresholds)
        .post("/settings/joining", Org(Action::SettingsManage), ui::settings::set_joining)
        .post("/settings/sso", Org(Action::SettingsManage), ui::settings::set_sso)
        .post("/settings/sso/test", Org(Action::SettingsManage), ui::settings::test_sso)
        .post("/settings/saml", Org(Action::SettingsManage), ui::settings::set_saml)
        .post("/settings/saml/test", Org(Action::SettingsManage), ui::settings::test_saml)
        .get("/settings/scim", Org(Action::SettingsManage), ui::scim::show)
        .post("/settings/scim", Org(Action::SettingsManage), ui::scim::create)
        .post("/settings/scim/{id}/revoke", Org(Action::SettingsManage), ui::scim::revoke)
        .post("/settings/scim/mappings", Org(Action::SettingsManage), ui::scim::create_mapping)
        .post("/settings/scim/mappings/{id}/delete", Org(Action::SettingsManage), ui::scim::delete_mapping)
        .get("/settings/api-keys", Org(Action::ApiKeysManage), ui::api_keys::list)
        .post("/settings/api-keys", Org(Action::ApiKeysManage), ui::api_keys::create)
        .post("/settings/api-keys/{id}/revoke", Org(Action::ApiKeysManage), ui::api_keys::revoke)
        .get("/account", Own, ui::account::show)
        .post("/account/sessions/{id}/revoke", Own, ui::account::revoke_session)
        .post("/account/password", Own, ui::account::change_password)
        .post("/account/totp", Own, ui::account::enrol)
        .post("/account/totp/confirm", Own, ui::account::confirm)
        .post("/account/totp/remove", Own, ui::account::remove)
        .post("/account/recovery-codes", Own, ui::account::regenerate)
        .get("/security", Public("the published security claims and counters, no tenant data"), ui::security::page)
        .get("/static/{name}", Public("the stylesheet and script every page loads"), ui::assets::serve)
        .get("/documents/{id}/edit", Domain(&[Action::DocumentEdit]), ui::edit::form)
        .post("/documents/{id}/edit", Domain(&[Action::DocumentEdit]), ui::edit::save)
        .get("/documents/{id}/audit.csv", Org(Action::AuditRead), ui::trail::csv)
        .post("/documents/{id}/attachments", Domain(&[Action::DocumentEdit]), ui::attachments::upload)
        .get("/attachments/{id}/preview", Domain(&[Action::AttachmentRead]), ui::attachments::preview)
        .get("/attachments/{id}/download", Domain(&[Action::AttachmentRead]), ui::attachments::download)
        .get("/attachments/{id}/remove", Domain(&[Action::AttachmentRemove]), ui::attachments::confirm_remove)
        .post("/attachments/{id}/remove", Domain(&[Action::AttachmentRemove]), ui::attachments::remove)
        .post("/attachments/{id}/restore", Domain(&[Action::AttachmentRemove]), ui::attachments::restore)
        .post("/documents/bulk-approve", Domain(&[Action::DocumentApprove]), ui::bulk::confirm)
        .post("/documents/bulk-approve/confirm", Domain(&[Action::DocumentApprove]), ui::bulk::approve)
        .post("/periods", Domain(&[Action::PeriodOpen]), ui::periods::open)
        .post("/periods/{id}/close", Domain(&[Action::PeriodClose]), ui::periods::close)
        .post("/periods/{id}/reopen", Domain(&[Action::PeriodReopen]), ui::periods::reopen)
        // The sign-in side (ui::email_code, ui::authenticator, ui::invitation).
        .get("/sign-in/email-code", Public("the email-code sign-in form"), ui::email_code::form)
        .post("/sign-in/email-code", SignIn, ui::email_code::send)
        .post("/sign-in/email-code/verify", SignIn, ui::email_code::verify)
        .get("/account/authenticator", Own, ui::authenticator::show)
        .post("/account/authenticator", Own, ui::authenticator::start)
        .post("/account/authenticator/confirm", Own, ui::authenticator::confirm)
        .get(
            "/invitations/accept",
            Public("the invitation form; the token in the link is checked on accept"),
            ui::invitation::form,
        )
        .post("/invitations/accept", SignIn, ui::invitation::accept)
        // Vendor and client portals (issue 16): the organisation's side, then the outside one.
        .get("/relations", Org(Action::RelationsRead), ui::portal::list)
        .post("/relations", Org(Action::RelationsManage), ui::portal::create)
        .get("/relations/{id}", Org(Action::RelationsRead), ui::portal::show)
        .post("/relations/{id}/invite", Org(Action::RelationsManage), ui::portal::invite)
        .post("/relations/{id}/documents", Org(Action::RelationsManage), ui::portal::share)
        .post("/relations/{id}/links/{link_id}/revoke", Org(Action::RelationsManage), ui::portal::revoke_link)
        .post("/relations/{id}/end", Org(Action::RelationsManage), ui::portal::end)
        .get(
            "/portal/{relation}/enter",
            Public("the portal link's page; the link is checked and used only when its button is pressed"),
            ui::portal::enter_form,
        )
        .post("/portal/{relation}/enter", SignIn, ui::portal::enter)
        .get("/portal", Org(Action::PortalUse), ui::portal::home)
        .get("/portal/documents/{id}", Org(Action::PortalUse), ui::portal::document)
        .post("/portal/documents/{id}/files", Org(Action::PortalUse), ui::portal::upload)
        .get("/portal/attachments/{id}/download", Org(Action::PortalUse), ui::portal::download)
        .post("/documents/{id}/requests", Domain(&[Action::PortalAsk]), ui::requests::ask)
        .post("/portal/requests/{id}/answer", Org(Action::PortalUse), ui::requests::answer)
}

/// `GET /api/openapi.json`: the description of the routes in [`route_table`].
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi::spec(&route_table(false)))
}

/// Every route the server answers, API and pages, with its guard and face (tests walk this
/// list; the OpenAPI description takes the API's).
#[must_use]
pub fn route_table(dev_outbox: bool) -> Vec<RouteInfo> {
    let mut t = root_routes(Routes::new(None, "")).table;
    t.extend(api_routes(Routes::new(None, "/api/v1"), dev_outbox).table);
    t.extend(page_routes(Routes::pages(None)).table);
    t.extend(scim_routes(Routes::scim(None, "/scim/v2")).table);
    t
}

/// Every powerful browser feature denied to anything the API answers.
const PERMISSIONS_POLICY: &str = "accelerometer=(), autoplay=(), camera=(), clipboard-read=(), clipboard-write=(), \
display-capture=(), encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), hid=(), idle-detection=(), \
magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), publickey-credentials-get=(), \
screen-wake-lock=(), serial=(), usb=(), xr-spatial-tracking=()";

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The Content-Security-Policy of everything that is not a page: nothing may load or frame.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

pub fn router(state: AppState) -> Router {
    let api = api_routes(Routes::new(Some(state.clone()), "/api/v1"), state.dev_outbox).router;
    let pages = ui::layers(page_routes(Routes::pages(Some(state.clone()))).router);
    let scim = scim_routes(Routes::scim(Some(state.clone()), "/scim/v2")).router.fallback(scim::not_found);
    let routes = root_routes(Routes::new(Some(state.clone()), ""))
        .router
        .merge(pages)
        .nest("/api/v1", api)
        .nest("/scim/v2", scim);
    with_middleware(state, routes)
}

/// What the management listener (`serve --management-listen`) answers: the health probes and
/// the metrics, through the same middleware as everything else, and nothing of the application.
/// With it, the public listener answers `/metrics` 404 (`AppState::metrics_on_management_only`).
pub fn management_router(state: AppState) -> Router {
    use Guard::Public;
    let routes = Routes::new(Some(state.clone()), "")
        .get("/healthz", Public("liveness probe"), health::healthz)
        .get("/readyz", Public("readiness probe"), health::readyz)
        .get("/metrics", Public("process counters, no tenant data"), health::metrics)
        .router
        .layer(axum::Extension(health::Management));
    with_middleware(state, routes)
}

/// The span every request's log lines carry. `client_ip` is recorded by `client::capture`; the
/// organisation and the caller's id (`user_id` for a person, `api_key_id` for a key) by the
/// authentication, once it succeeds (`Principal::authenticate`). Ids only: never an email,
/// token or body.
fn request_span<B>(req: &Request<B>) -> tracing::Span {
    use tracing::field::Empty;
    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // The route template (`/api/v1/documents/{id}`): the layer runs after routing.
    let route =
        req.extensions().get::<axum::extract::MatchedPath>().map_or("(none)", axum::extract::MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        path = %req.uri().path(),
        request_id = %id,
        client_ip = Empty,
        tenant_id = Empty,
        user_id = Empty,
        api_key_id = Empty,
    )
}

/// The access log: one INFO line per answered request, inside its span (method, route template,
/// request id, organisation and caller ids), with the status and the time taken. Never a body,
/// header value, email or token.
fn access_log<B>(res: &axum::http::Response<B>, latency: std::time::Duration, _span: &tracing::Span) {
    tracing::info!(status = res.status().as_u16(), duration_ms = latency.as_secs_f64() * 1000.0, "access");
}

/// Wraps routes in the server's middleware stack and fallbacks (the real router uses it; tests
/// use it to serve routes of their own through the same stack).
pub fn with_middleware(state: AppState, routes: Router<AppState>) -> Router {
    routes
        .fallback(ui::refusals::not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this method is not allowed here")
        })
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(request_span).on_response(access_log))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(axum::middleware::from_fn(crate::plumbing::metrics::track))
                .layer(axum::middleware::from_fn_with_state(state.proxies.clone(), client::capture))
                .layer(SetResponseHeaderLayer::overriding(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
                .layer(SetResponseHeaderLayer::overriding(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ))
                // Nothing is cached, except what says otherwise (the pages' hashed static files).
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ))
                // The API serves data, never pages: nothing may load, frame or run from it. Pages
                // set their own, strict policy (`crate::ui::PAGE_CSP`); everything else gets this.
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(API_CSP),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    HeaderName::from_static("permissions-policy"),
                    HeaderValue::from_static(PERMISSIONS_POLICY),
                ))
                .layer(axum::middleware::from_fn(crate::plumbing::edge::guard))
                .layer(axum::middleware::from_fn(crate::plumbing::edge::body_limit))
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30))),
        )
        .with_state(state)
}
