//! `GET /api/openapi.json`: the OpenAPI 3.1 description, generated from the route table.
//!
//! Every route the router serves (`crate::route_table`, passed in by the router) becomes an operation with a camelCase
//! `operationId`: its path and query parameters, the headers it reads and sends
//! (`Idempotency-Key`, `If-Match`, `X-CSRF-Token`, `ETag`, `Retry-After`, `Set-Cookie`), bearer
//! or cookie security unless the route is public, and the error schema for every 4XX and 5XX
//! answer. Request and response schemas are derived (utoipa `ToSchema`/`IntoParams`) from the
//! types the handlers actually parse and return, so they cannot drift.

use utoipa::openapi::header::Header;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, OpenApi as Spec, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{IntoParams, OpenApi, PartialSchema, ToSchema};

use crate::plumbing::access::ListPage;
use crate::plumbing::guard::{Face, Guard, RouteInfo};

/// The error body every refusal carries.
#[derive(serde::Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorInner,
}

#[derive(serde::Serialize, ToSchema)]
pub struct ErrorInner {
    /// Stable snake_case code, e.g. `not_found`, `stale_version`, `invalid_field`.
    pub code: String,
    pub message: String,
    /// Specifics: the field at fault, the allowed transitions, the current version...
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Countersign",
        description = "Multi-tenant approvals: vouchers, purchase orders, members, audit.\n\n\
Sign-in (`/auth/login`, `/auth/email-code/verify`, `/auth/mfa`, `/auth/refresh`) answers with \
cookies by default (browsers: `cs_access`, `cs_refresh`, `cs_csrf`; state-changing requests then \
echo `cs_csrf` in `X-CSRF-Token`). API clients send `\"token_delivery\": \"body\"` to get \
`access_token` and `refresh_token` in the JSON answer instead, and send \
`Authorization: Bearer <access token>`. Lists answer `{items, next_cursor}`; `limit` is 1-200 \
(default 50)."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// A named schema and the schemas it refers to.
struct Shape {
    name: String,
    schema: RefOr<Schema>,
    deps: Vec<(String, RefOr<Schema>)>,
}

fn of<T: ToSchema>() -> Shape {
    let mut deps = Vec::new();
    T::schemas(&mut deps);
    Shape { name: T::name().into_owned(), schema: T::schema(), deps }
}

/// The list envelope of `T`, named `<T>List`.
fn list_of<T: ToSchema>() -> Shape {
    let mut deps = Vec::new();
    <ListPage<T> as ToSchema>::schemas(&mut deps);
    deps.push((T::name().into_owned(), T::schema()));
    T::schemas(&mut deps);
    Shape { name: format!("{}List", T::name()), schema: <ListPage<T> as PartialSchema>::schema(), deps }
}

/// What a route answers on success.
enum Success {
    Json(&'static str, Box<Shape>),
    /// One of several bodies (sign-in: the tokens, or a second-factor challenge).
    OneOf(&'static str, Vec<Shape>),
    NoContent,
    Text(&'static str, &'static [&'static str]),
    /// This description itself (an OpenAPI document: free-form by design).
    Document,
    /// A redirect without a body (the status and what `Location` names).
    Redirect(&'static str, &'static str),
}

/// The request body and success answer of a route, from the types its handler parses and
/// returns. Every route is listed: a new one without a line here gets no typed body, and the
/// description test (tests/openapi.rs) fails.
#[allow(clippy::too_many_lines)]
fn shapes(method: &str, path: &str) -> (Option<Shape>, Success) {
    use crate::api::oidc::ConnectionTest;
    use crate::api::saml::SamlSettings;
    use crate::api::{
        api_keys as keys, departments as depts, documents as docs, files as fls, health, invitations as inv,
        ip_allowlist as ipl, joining, me, members as mem, mfa, portals, scim_tokens, sessions as sess, sign_in,
    };
    use Success::{NoContent, OneOf, Text};
    use identity::signin::oidc_config::{NewOidcConfig, OidcConfig};
    use identity::signin::saml_config::NewSamlConfig;
    let json = |status: &'static str, shape: Shape| Success::Json(status, Box::new(shape));
    let sign_in = || OneOf("200", vec![of::<sign_in::TokenResponse>(), of::<sign_in::MfaRequired<'static>>()]);
    let p = path.trim_start_matches("/api/v1");
    match (method, p) {
        ("GET", "/healthz") => (None, json("200", of::<health::Health>())),
        ("GET", "/readyz") => (None, json("200", of::<health::Readiness>())),
        ("GET", "/metrics") => (None, Text("Prometheus text", &["text/plain"])),
        ("GET", "/api/openapi.json") => (None, Success::Document),
        ("GET", "/status") => (None, json("200", of::<health::Status>())),
        ("GET", "/security") => (None, json("200", of::<crate::api::security::SecurityMatrix>())),
        ("POST", "/auth/login") => (Some(of::<sess::LoginRequest>()), sign_in()),
        ("POST", "/auth/email-code") => (Some(of::<mfa::CodeRequest>()), json("202", of::<mfa::Accepted>())),
        ("POST", "/auth/email-code/verify") => (Some(of::<mfa::VerifyRequest>()), sign_in()),
        ("POST", "/auth/mfa") => (Some(of::<mfa::MfaRequest>()), json("200", of::<sign_in::TokenResponse>())),
        ("POST", "/auth/sso/start") => {
            (Some(of::<crate::api::sso::SsoStartRequest>()), json("200", of::<crate::api::sso::SsoStarted>()))
        }
        ("POST", "/auth/refresh") => (Some(of::<sess::RefreshRequest>()), json("200", of::<sign_in::TokenResponse>())),
        ("GET", "/auth/resume") => {
            (None, Success::Redirect("303", "to `next` with new session cookies, or to /sign-in?next=… when refused"))
        }
        ("POST", "/auth/resume") => (
            None,
            Success::Redirect(
                "307",
                "to `next` (the form is sent again there) with new session cookies; 303 to /sign-in when refused",
            ),
        ),
        ("POST", "/auth/logout") => (None, NoContent),
        ("POST", "/invitations/accept") => (Some(of::<inv::AcceptBody>()), json("200", of::<inv::Accepted>())),
        ("GET", "/settings/ip-allowlist") => (None, json("200", of::<ipl::ListResponse>())),
        ("PUT", "/settings/ip-allowlist") => (Some(of::<ipl::PutBody>()), json("200", of::<ipl::ListResponse>())),
        ("GET", "/settings/mfa") => (None, json("200", of::<mfa::MfaSettingBody>())),
        ("PUT", "/settings/mfa") => (Some(of::<mfa::MfaSetting>()), json("200", of::<mfa::MfaSettingBody>())),
        ("GET", "/settings/joining") => (None, json("200", of::<joining::JoiningBody>())),
        ("PUT", "/settings/joining") => {
            (Some(of::<joining::JoiningSetting>()), json("200", of::<joining::JoiningBody>()))
        }
        ("GET", "/settings/oidc") => (None, json("200", of::<OidcConfig>())),
        ("PUT", "/settings/oidc") => (Some(of::<NewOidcConfig>()), json("200", of::<OidcConfig>())),
        ("POST", "/settings/oidc/test") => (None, json("200", of::<ConnectionTest>())),
        ("GET", "/settings/saml") => (None, json("200", of::<SamlSettings>())),
        ("PUT", "/settings/saml") => (Some(of::<NewSamlConfig>()), json("200", of::<SamlSettings>())),
        ("POST", "/settings/saml/test") => {
            (None, json("200", of::<identity::signin::saml_check::SamlConnectionTest>()))
        }
        ("GET", "/settings/approvals") => (None, json("200", of::<approvals::documents::MdThresholds>())),
        ("PUT", "/settings/approvals") => {
            (Some(of::<approvals::documents::MdThresholds>()), json("200", of::<approvals::documents::MdThresholds>()))
        }
        ("GET", "/audit/events") => (None, json("200", list_of::<audit::query::EventRow>())),
        ("GET", "/audit/export") => (None, Text("NDJSON or CSV stream", &["application/x-ndjson", "text/csv"])),
        ("GET", "/audit/chain") => (None, json("200", of::<audit::watch::ChainStatus>())),
        ("GET", "/audit/bundle") => (None, Text("the regulator bundle (POSIX tar)", &["application/x-tar"])),
        ("POST", "/sessions/revoke") => (Some(of::<sess::RevokeRequest>()), json("200", of::<sess::Revoked>())),
        ("POST", "/me/mfa/totp") => (None, json("200", of::<mfa::EnrolmentBody<'static>>())),
        ("DELETE", "/me/mfa/totp") => (Some(of::<mfa::CodeBody>()), NoContent),
        ("POST", "/me/mfa/totp/confirm" | "/me/mfa/recovery-codes") => {
            (Some(of::<mfa::CodeBody>()), json("200", of::<mfa::RecoveryCodes>()))
        }
        ("GET", "/me") => (None, json("200", of::<me::Me>())),
        ("GET", "/me/sessions" | "/members/{user_id}/sessions") => {
            (None, json("200", list_of::<identity::admin::members::SessionInfo>()))
        }
        ("DELETE", "/me/sessions/{id}" | "/api-keys/{id}" | "/invitations/{id}" | "/settings/scim-tokens/{id}") => {
            (None, NoContent)
        }
        ("POST", "/me/password") => (Some(of::<me::PasswordChange>()), NoContent),
        ("GET", "/members") => (None, json("200", list_of::<identity::admin::members::Member>())),
        ("POST", "/members/{user_id}/sessions/revoke" | "/members/{user_id}/deactivate") => {
            (Some(of::<mem::ReasonBody>()), json("200", of::<mem::Revoked>()))
        }
        ("POST", "/members/{user_id}/reactivate" | "/members/{user_id}/decline") => {
            (Some(of::<mem::ReasonBody>()), json("200", of::<mem::Status>()))
        }
        ("POST", "/members/{user_id}/unlock") => (None, json("200", of::<mem::Unlocked>())),
        ("PUT", "/members/{user_id}/role") => (Some(of::<mem::RoleBody>()), json("200", of::<mem::RoleChanged>())),
        ("POST", "/members/{user_id}/approve") => (Some(of::<mem::ApproveBody>()), json("200", of::<mem::Status>())),
        ("GET", "/departments") => (None, json("200", list_of::<depts::DepartmentView>())),
        ("POST", "/api-keys") => (Some(of::<keys::CreateBody>()), json("201", of::<keys::Created>())),
        ("POST", "/settings/scim-tokens") => {
            (Some(of::<scim_tokens::CreateBody>()), json("201", of::<scim_tokens::Created>()))
        }
        ("GET", "/settings/scim-tokens") => (None, json("200", list_of::<scim_tokens::TokenView>())),
        ("GET", "/settings/scim-group-mappings") => {
            (None, json("200", list_of::<identity::admin::scim::mappings::GroupMapping>()))
        }
        ("POST", "/settings/scim-group-mappings") => (
            Some(of::<identity::admin::scim::mappings::NewMapping>()),
            json("201", of::<identity::admin::scim::mappings::GroupMapping>()),
        ),
        ("DELETE", "/settings/scim-group-mappings/{id}") => (None, NoContent),
        ("GET", "/api-keys") => (None, json("200", list_of::<keys::KeyView>())),
        ("POST", "/invitations") => (Some(of::<inv::CreateBody>()), json("201", of::<inv::Created>())),
        ("GET", "/invitations") => (None, json("200", list_of::<identity::admin::invitations::Invitation>())),
        ("POST", "/documents") => (Some(of::<docs::CreateBody>()), json("201", of::<approvals::documents::Document>())),
        ("GET", "/documents") => (None, json("200", list_of::<approvals::inbox::Item>())),
        ("GET", "/documents/{id}") => (None, json("200", of::<approvals::documents::Document>())),
        ("PATCH", "/documents/{id}") => {
            (Some(of::<docs::EditBody>()), json("200", of::<approvals::documents::Document>()))
        }
        ("POST", "/documents/{id}/transitions") => {
            (Some(of::<docs::TransitionBody>()), json("200", of::<approvals::documents::Document>()))
        }
        ("POST", "/documents/bulk-approve") => (Some(of::<docs::BulkBody>()), json("200", of::<docs::BulkApproved>())),
        ("GET", "/periods") => (None, json("200", list_of::<approvals::documents::Period>())),
        ("GET", "/periods/{id}") => (None, json("200", of::<approvals::documents::Period>())),
        ("POST", "/periods") => (Some(of::<docs::OpenBody>()), json("201", of::<approvals::documents::Period>())),
        ("POST", "/periods/{id}/close" | "/periods/{id}/reopen") => {
            (Some(of::<docs::ReasonBody>()), json("200", of::<approvals::documents::Period>()))
        }
        // The upload's body is the file itself (`upload_body`), not JSON.
        ("POST", "/documents/{id}/attachments/files") => (None, json("201", of::<fls::AttachmentFile>())),
        ("GET", "/documents/{id}/attachments") => (None, json("200", list_of::<fls::AttachmentFile>())),
        ("POST", "/attachments/{id}/links") => (Some(of::<fls::LinkBody>()), json("201", of::<fls::LinkMinted>())),
        ("GET", "/files/{token}") => {
            (None, Text("the file (206 with Content-Range for a single range)", &["application/octet-stream"]))
        }
        ("DELETE", "/attachments/{id}") => (None, json("200", of::<fls::AttachmentFile>())),
        ("POST", "/attachments/{id}/restore") => {
            (Some(of::<fls::RestoreBody>()), json("200", of::<fls::AttachmentFile>()))
        }
        ("PUT", "/attachments/{id}/visibility") => {
            (Some(of::<fls::VisibilityBody>()), json("200", of::<approvals::attachments::AttachmentRow>()))
        }
        ("GET", "/relations") => (None, json("200", list_of::<identity::admin::relations::Relation>())),
        ("POST", "/relations") => {
            (Some(of::<portals::CreateBody>()), json("201", of::<identity::admin::relations::Relation>()))
        }
        ("GET", "/relations/{id}") => (None, json("200", of::<portals::RelationDetail>())),
        ("POST", "/relations/{id}/end") => {
            (Some(of::<portals::ReasonBody>()), json("200", of::<identity::admin::relations::Relation>()))
        }
        ("POST", "/relations/{id}/invite") => {
            (Some(of::<portals::InviteBody>()), json("201", of::<portals::LinkIssued>()))
        }
        ("POST", "/relations/{id}/links") => {
            (Some(of::<portals::LinkBody>()), json("201", of::<portals::LinkIssued>()))
        }
        ("POST", "/relations/{id}/links/{link_id}/revoke") => (Some(of::<portals::ReasonBody>()), NoContent),
        ("POST", "/relations/{id}/documents") => (Some(of::<portals::AddressBody>()), NoContent),
        ("POST", "/portal/enter") => (Some(of::<portals::EnterBody>()), json("200", of::<sign_in::TokenResponse>())),
        ("GET", "/portal/documents") => (None, json("200", list_of::<approvals::portal::SharedDocument>())),
        ("GET", "/portal/documents/{id}") => (None, json("200", of::<portals::SharedWithFiles>())),
        // The upload's body is the file itself (`upload_body`), not JSON.
        ("POST", "/portal/documents/{id}/files") => (None, json("201", of::<fls::AttachmentFile>())),
        ("POST", "/portal/attachments/{id}/links") => {
            (Some(of::<portals::FileLinkBody>()), json("201", of::<portals::FileLink>()))
        }
        ("POST", "/documents/{id}/requests") => {
            (Some(of::<portals::AskBody>()), json("201", of::<approvals::requests::RelationRequest>()))
        }
        ("GET", "/documents/{id}/requests") => (None, json("200", list_of::<approvals::requests::RelationRequest>())),
        ("GET", "/portal/requests") => (None, json("200", list_of::<approvals::requests::RelationRequest>())),
        ("POST", "/portal/requests/{id}/answer") => {
            (Some(of::<portals::AnswerBody>()), json("200", of::<approvals::requests::RelationRequest>()))
        }
        ("GET", "/programme/partners") => (None, json("200", list_of::<::programs::partners::Partner>())),
        ("POST", "/programme/partners") => {
            (Some(of::<::programs::partners::NewPartner>()), json("201", of::<::programs::partners::Partner>()))
        }
        ("GET", "/programme/partners/{id}") => (None, json("200", of::<::programs::partners::Partner>())),
        ("POST", "/programme/partners/{id}/invitations") => {
            (Some(of::<inv::PartnerCreateBody>()), json("201", of::<inv::PartnerCreated>()))
        }
        ("GET", "/programme/partners/{id}/invitations") => {
            (None, json("200", list_of::<identity::admin::invitations::Invitation>()))
        }
        ("DELETE", "/programme/partners/{id}/invitations/{invitation}") => (None, NoContent),
        ("PATCH", "/programme/partners/{id}") => {
            (Some(of::<::programs::partners::PartnerChange>()), json("200", of::<::programs::partners::Partner>()))
        }
        ("GET", "/deals") => (None, json("200", list_of::<::programs::deals::Deal>())),
        ("POST", "/deals") => (Some(of::<::programs::deals::NewDeal>()), json("201", of::<::programs::deals::Deal>())),
        ("GET", "/deals/{id}") => (None, json("200", of::<::programs::deals::Deal>())),
        ("POST", "/deals/{id}/approve" | "/deals/{id}/reject") => {
            (Some(of::<crate::api::programs::DecisionBody>()), json("200", of::<::programs::deals::Deal>()))
        }
        ("GET", "/leads") => (None, json("200", list_of::<::programs::leads::Lead>())),
        ("POST", "/leads") => (Some(of::<::programs::leads::NewLead>()), json("201", of::<::programs::leads::Lead>())),
        ("GET", "/leads/export") => (None, Text("CSV stream", &["text/csv"])),
        ("GET", "/programme/opportunities") => (None, json("200", list_of::<::programs::opportunities::Opportunity>())),
        ("POST", "/programme/opportunities") => (
            Some(of::<::programs::opportunities::NewOpportunity>()),
            json("201", of::<::programs::opportunities::Opportunity>()),
        ),
        ("GET", "/programme/opportunities/{id}") => (None, json("200", of::<::programs::opportunities::Opportunity>())),
        ("POST", "/programme/opportunities/{id}/stage") => (
            Some(of::<crate::api::commissions::StageBody>()),
            json("200", of::<::programs::opportunities::Opportunity>()),
        ),
        ("GET", "/programme/commission-plans") => (None, json("200", list_of::<::programs::commissions::Plan>())),
        ("POST", "/programme/commission-plans") => {
            (Some(of::<::programs::commissions::NewPlan>()), json("201", of::<::programs::commissions::Plan>()))
        }
        ("GET", "/programme/commissions") => (None, json("200", list_of::<::programs::commissions::Commission>())),
        ("GET", "/programme/commissions/statement") => (None, Text("CSV stream", &["text/csv"])),
        ("GET", "/programme/commissions/statement.pdf") => (None, Text("PDF document", &["application/pdf"])),
        ("GET", "/programme/commissions/{id}") => (None, json("200", of::<::programs::commissions::Commission>())),
        (
            "POST",
            "/programme/commissions/{id}/approve"
            | "/programme/commissions/{id}/payable"
            | "/programme/commissions/{id}/pay",
        ) => {
            (Some(of::<crate::api::commissions::StepBody>()), json("200", of::<::programs::commissions::Commission>()))
        }
        ("POST", "/programme/commissions/{id}/dispute") => (
            Some(of::<crate::api::commissions::DisputeBody>()),
            json("200", of::<::programs::commissions::Commission>()),
        ),
        ("POST", "/programme/commissions/{id}/resolve") => (
            Some(of::<crate::api::commissions::ResolveBody>()),
            json("200", of::<::programs::commissions::Commission>()),
        ),
        ("GET", "/programme/mdf/allowances") => (None, json("200", list_of::<::programs::mdf::Allowance>())),
        ("PUT", "/programme/mdf/allowances") => {
            (Some(of::<::programs::mdf::NewAllowance>()), json("200", of::<::programs::mdf::Allowance>()))
        }
        ("GET", "/programme/mdf/budgets") => (None, json("200", list_of::<::programs::mdf::Budget>())),
        ("POST", "/programme/mdf/budgets") => {
            (Some(of::<::programs::mdf::NewBudget>()), json("201", of::<::programs::mdf::Budget>()))
        }
        ("GET", "/programme/mdf/budgets/{id}") => (None, json("200", of::<::programs::mdf::Budget>())),
        ("GET", "/programme/mdf/requests") => (None, json("200", list_of::<::programs::mdf::Request>())),
        ("POST", "/programme/mdf/requests") => {
            (Some(of::<::programs::mdf::NewRequest>()), json("201", of::<::programs::mdf::Request>()))
        }
        ("GET", "/programme/mdf/requests/{id}") => (None, json("200", of::<::programs::mdf::Request>())),
        ("POST", "/programme/mdf/requests/{id}/approve" | "/programme/mdf/requests/{id}/reject") => {
            (Some(of::<crate::api::mdf::ReasonBody>()), json("200", of::<::programs::mdf::Request>()))
        }
        ("GET", "/programme/mdf/claims") => (None, json("200", list_of::<::programs::mdf::Claim>())),
        ("POST", "/programme/mdf/claims") => {
            (Some(of::<::programs::mdf::NewClaim>()), json("201", of::<crate::api::mdf::ClaimWithProofs>()))
        }
        ("GET", "/programme/mdf/claims/{id}") => (None, json("200", of::<crate::api::mdf::ClaimWithProofs>())),
        // The upload's body is the file itself (`upload_body`), not JSON.
        ("POST", "/programme/mdf/claims/{id}/proofs") => (None, json("201", of::<::programs::mdf::Proof>())),
        ("GET", "/programme/mdf/claims/{id}/proofs/{proof}") => (None, Text("the file", &["application/octet-stream"])),
        (
            "POST",
            "/programme/mdf/claims/{id}/approve"
            | "/programme/mdf/claims/{id}/reject"
            | "/programme/mdf/claims/{id}/pay",
        ) => (Some(of::<crate::api::mdf::ReasonBody>()), json("200", of::<::programs::mdf::Claim>())),
        _ => (None, Text("untyped", &["application/json"])),
    }
}

/// The query parameters of a route, from the type its handler parses them into.
fn query(method: &str, path: &str) -> Vec<utoipa::openapi::path::Parameter> {
    let none = || None;
    match (method, path.trim_start_matches("/api/v1")) {
        ("GET", "/documents") => crate::api::documents::ListQuery::into_params(none),
        ("GET", "/members") => crate::api::members::ListQuery::into_params(none),
        ("GET", "/departments") => crate::api::departments::ListQuery::into_params(none),
        ("GET", "/deals" | "/leads") => crate::api::programs::ListQuery::into_params(none),
        ("GET", "/programme/opportunities" | "/programme/commissions") => {
            crate::api::commissions::ListQuery::into_params(none)
        }
        ("GET", "/programme/commissions/statement" | "/programme/commissions/statement.pdf") => {
            crate::api::commissions::StatementQuery::into_params(none)
        }
        ("GET", "/audit/events") => crate::api::audit::EventsQuery::into_params(none),
        ("GET", "/audit/export") => crate::api::audit::ExportQuery::into_params(none),
        ("GET", "/audit/bundle") => crate::api::audit::BundleQuery::into_params(none),
        ("GET" | "POST", "/auth/resume") => vec![
            ParameterBuilder::new()
                .name("next")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some("The page to go back to: a path on this site (anything else means /)"))
                .schema(Some(string()))
                .build(),
        ],
        ("POST", "/documents/{id}/attachments/files") => crate::api::files::UploadQuery::into_params(none),
        ("GET", "/programme/mdf/budgets" | "/programme/mdf/requests" | "/programme/mdf/claims") => {
            crate::api::mdf::ListQuery::into_params(none)
        }
        ("POST", "/programme/mdf/claims/{id}/proofs") => crate::api::mdf::ProofQuery::into_params(none),
        ("POST", "/portal/documents/{id}/files") => crate::api::portals::UploadQuery::into_params(none),
        _ => Vec::new(),
    }
}

fn json_content(schema: RefOr<Schema>) -> Content {
    Content::new(Some(schema))
}

fn string() -> RefOr<Schema> {
    RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(Type::String).build()))
}

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn method(m: &axum::http::Method) -> HttpMethod {
    match m.as_str() {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        _ => HttpMethod::Get,
    }
}

fn header_param(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(string()))
        .build()
}

fn header(description: &str) -> Header {
    let mut h = Header::new(string());
    h.description = Some(description.to_owned());
    h
}

/// Routes that take `Idempotency-Key` (the write is applied once; a replay answers the first
/// answer with `Idempotent-Replayed: true`).
fn idempotent(method: &str, path: &str) -> bool {
    method == "POST"
        && matches!(path, "/api/v1/documents" | "/api/v1/documents/{id}/transitions" | "/api/v1/documents/bulk-approve")
}

/// Routes whose answer carries the document's version as `ETag`.
fn etagged(method: &str, path: &str) -> bool {
    matches!(
        (method, path),
        ("POST", "/api/v1/documents" | "/api/v1/documents/{id}/transitions") | ("GET", "/api/v1/documents/{id}")
    )
}

/// The operation's name for code generators: a unique camelCase identifier.
#[must_use]
pub fn operation_id(method: &str, path: &str) -> String {
    let p = path.trim_start_matches("/api/v1");
    let named = match (method, p) {
        ("POST", "/auth/login") => "login",
        ("POST", "/auth/email-code") => "requestEmailCode",
        ("POST", "/auth/email-code/verify") => "verifyEmailCode",
        ("POST", "/auth/mfa") => "completeMfa",
        ("POST", "/auth/refresh") => "refreshSession",
        ("GET", "/auth/resume") => "resumeSession",
        ("POST", "/auth/resume") => "resumeSessionForm",
        ("POST", "/auth/logout") => "logout",
        ("POST", "/auth/sso/start") => "startSso",
        ("POST", "/invitations/accept") => "acceptInvitation",
        ("GET", "/status") => "getStatus",
        ("GET", "/settings/ip-allowlist") => "getIpAllowlist",
        ("PUT", "/settings/ip-allowlist") => "setIpAllowlist",
        ("GET", "/settings/mfa") => "getMfaSetting",
        ("PUT", "/settings/mfa") => "setMfaSetting",
        ("GET", "/settings/joining") => "getJoiningSetting",
        ("PUT", "/settings/joining") => "setJoiningSetting",
        ("GET", "/settings/oidc") => "getOidcConfig",
        ("PUT", "/settings/oidc") => "setOidcConfig",
        ("POST", "/settings/oidc/test") => "testOidcConnection",
        ("GET", "/settings/saml") => "getSamlConfig",
        ("PUT", "/settings/saml") => "setSamlConfig",
        ("POST", "/settings/saml/test") => "testSamlConnection",
        ("GET", "/settings/approvals") => "getApprovalSettings",
        ("PUT", "/settings/approvals") => "setApprovalSettings",
        ("GET", "/audit/events") => "listAuditEvents",
        ("GET", "/audit/export") => "exportAuditEvents",
        ("GET", "/audit/chain") => "getAuditChain",
        ("GET", "/audit/bundle") => "downloadAuditBundle",
        ("POST", "/sessions/revoke") => "revokeSessions",
        ("POST", "/me/mfa/totp") => "enrolTotp",
        ("DELETE", "/me/mfa/totp") => "disableTotp",
        ("POST", "/me/mfa/totp/confirm") => "confirmTotp",
        ("POST", "/me/mfa/recovery-codes") => "regenerateRecoveryCodes",
        ("GET", "/me") => "getMe",
        ("GET", "/me/sessions") => "listMySessions",
        ("DELETE", "/me/sessions/{id}") => "revokeMySession",
        ("POST", "/me/password") => "changePassword",
        ("GET", "/members") => "listMembers",
        ("GET", "/members/{user_id}/sessions") => "listMemberSessions",
        ("POST", "/members/{user_id}/sessions/revoke") => "revokeMemberSessions",
        ("POST", "/members/{user_id}/deactivate") => "deactivateMember",
        ("POST", "/members/{user_id}/reactivate") => "reactivateMember",
        ("POST", "/members/{user_id}/unlock") => "unlockMember",
        ("PUT", "/members/{user_id}/role") => "changeMemberRole",
        ("POST", "/members/{user_id}/approve") => "approveMember",
        ("POST", "/members/{user_id}/decline") => "declineMember",
        ("GET", "/departments") => "listDepartments",
        ("POST", "/api-keys") => "createApiKey",
        ("GET", "/api-keys") => "listApiKeys",
        ("DELETE", "/api-keys/{id}") => "revokeApiKey",
        ("POST", "/settings/scim-tokens") => "createScimToken",
        ("GET", "/settings/scim-tokens") => "listScimTokens",
        ("DELETE", "/settings/scim-tokens/{id}") => "revokeScimToken",
        ("GET", "/settings/scim-group-mappings") => "listScimGroupMappings",
        ("POST", "/settings/scim-group-mappings") => "createScimGroupMapping",
        ("DELETE", "/settings/scim-group-mappings/{id}") => "deleteScimGroupMapping",
        ("POST", "/invitations") => "createInvitation",
        ("GET", "/invitations") => "listInvitations",
        ("DELETE", "/invitations/{id}") => "revokeInvitation",
        ("POST", "/documents") => "createDocument",
        ("GET", "/documents") => "listDocuments",
        ("GET", "/documents/{id}") => "getDocument",
        ("POST", "/documents/{id}/transitions") => "transitionDocument",
        ("POST", "/documents/bulk-approve") => "bulkApproveDocuments",
        ("GET", "/periods") => "listPeriods",
        ("GET", "/programme/partners") => "listPartners",
        ("POST", "/programme/partners") => "createPartner",
        ("GET", "/programme/partners/{id}") => "getPartner",
        ("POST", "/programme/partners/{id}/invitations") => "invitePartnerPerson",
        ("GET", "/programme/partners/{id}/invitations") => "listPartnerInvitations",
        ("DELETE", "/programme/partners/{id}/invitations/{invitation}") => "revokePartnerInvitation",
        ("PATCH", "/programme/partners/{id}") => "updatePartner",
        ("GET", "/deals") => "listDeals",
        ("POST", "/deals") => "registerDeal",
        ("GET", "/deals/{id}") => "getDeal",
        ("POST", "/deals/{id}/approve") => "approveDeal",
        ("POST", "/deals/{id}/reject") => "rejectDeal",
        ("GET", "/leads") => "listLeads",
        ("POST", "/leads") => "registerLead",
        ("GET", "/leads/export") => "exportLeads",
        ("GET", "/programme/opportunities") => "listOpportunities",
        ("POST", "/programme/opportunities") => "createOpportunity",
        ("GET", "/programme/opportunities/{id}") => "getOpportunity",
        ("POST", "/programme/opportunities/{id}/stage") => "advanceOpportunity",
        ("GET", "/programme/commission-plans") => "listCommissionPlans",
        ("POST", "/programme/commission-plans") => "createCommissionPlan",
        ("GET", "/programme/commissions") => "listCommissions",
        ("GET", "/programme/commissions/statement") => "commissionStatement",
        ("GET", "/programme/commissions/statement.pdf") => "commissionStatementPdf",
        ("GET", "/programme/commissions/{id}") => "getCommission",
        ("POST", "/programme/commissions/{id}/approve") => "approveCommission",
        ("POST", "/programme/commissions/{id}/payable") => "markCommissionPayable",
        ("POST", "/programme/commissions/{id}/pay") => "payCommission",
        ("POST", "/programme/commissions/{id}/dispute") => "disputeCommission",
        ("POST", "/programme/commissions/{id}/resolve") => "resolveCommission",
        ("GET", "/programme/mdf/allowances") => "listMdfAllowances",
        ("PUT", "/programme/mdf/allowances") => "setMdfAllowance",
        ("GET", "/programme/mdf/budgets") => "listMdfBudgets",
        ("POST", "/programme/mdf/budgets") => "createMdfBudget",
        ("GET", "/programme/mdf/budgets/{id}") => "getMdfBudget",
        ("GET", "/programme/mdf/requests") => "listMdfRequests",
        ("POST", "/programme/mdf/requests") => "requestMdf",
        ("GET", "/programme/mdf/requests/{id}") => "getMdfRequest",
        ("POST", "/programme/mdf/requests/{id}/approve") => "approveMdfRequest",
        ("POST", "/programme/mdf/requests/{id}/reject") => "rejectMdfRequest",
        ("GET", "/programme/mdf/claims") => "listMdfClaims",
        ("POST", "/programme/mdf/claims") => "fileMdfClaim",
        ("GET", "/programme/mdf/claims/{id}") => "getMdfClaim",
        ("POST", "/programme/mdf/claims/{id}/proofs") => "uploadMdfProof",
        ("GET", "/programme/mdf/claims/{id}/proofs/{proof}") => "downloadMdfProof",
        ("POST", "/programme/mdf/claims/{id}/approve") => "approveMdfClaim",
        ("POST", "/programme/mdf/claims/{id}/reject") => "rejectMdfClaim",
        ("POST", "/programme/mdf/claims/{id}/pay") => "payMdfClaim",
        ("POST", "/periods") => "openPeriod",
        ("GET", "/periods/{id}") => "getPeriod",
        ("POST", "/periods/{id}/close") => "closePeriod",
        ("POST", "/periods/{id}/reopen") => "reopenPeriod",
        ("POST", "/documents/{id}/attachments/files") => "uploadAttachmentFile",
        ("GET", "/documents/{id}/attachments") => "listAttachments",
        ("POST", "/attachments/{id}/links") => "createFileLink",
        ("GET", "/files/{token}") => "downloadFile",
        ("DELETE", "/attachments/{id}") => "deleteAttachment",
        ("POST", "/attachments/{id}/restore") => "restoreAttachment",
        ("PUT", "/attachments/{id}/visibility") => "setAttachmentVisibility",
        ("GET", "/dev/outbox") => "listDevOutbox",
        ("GET", "/healthz") => "healthz",
        ("GET", "/readyz") => "readyz",
        ("GET", "/metrics") => "getMetrics",
        ("GET", "/api/openapi.json") => "getOpenApi",
        _ => "",
    };
    if !named.is_empty() {
        return named.to_owned();
    }
    // A route not named above still gets a camelCase identifier: method, then path words.
    let mut id = method.to_ascii_lowercase();
    for word in p.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        let mut cs = word.chars();
        if let Some(first) = cs.next() {
            id.push(first.to_ascii_uppercase());
            id.extend(cs);
        }
    }
    id
}

fn operation(r: &RouteInfo, components: &mut utoipa::openapi::Components) -> utoipa::openapi::path::Operation {
    let m = r.method.as_str();
    let path = r.path.as_str();
    let mut op = OperationBuilder::new()
        .operation_id(Some(operation_id(m, path)))
        .tag(path.trim_start_matches("/api/v1/").split('/').next().unwrap_or("api").trim_start_matches('/'));
    for segment in path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(string())),
            );
        }
    }
    for p in query(m, path) {
        op = op.parameter(p);
    }
    if idempotent(m, path) {
        op = op.parameter(header_param(
            "Idempotency-Key",
            "Optional, 1-200 visible ASCII characters: the write is applied once per key; a repeat \
             answers the first answer again (with `Idempotent-Replayed: true`), a different body under \
             the same key is 422 `idempotency_key_reused`.",
        ));
    }
    if matches!((m, path), ("POST", "/api/v1/documents/{id}/transitions") | ("PATCH", "/api/v1/documents/{id}")) {
        op = op.parameter(header_param(
            "If-Match",
            "The document version read (its `ETag`, e.g. `\"3\"`); stale: 412 `stale_version`. \
             Alternatively send `version` in the body.",
        ));
    }
    let unsafe_method = matches!(m, "POST" | "PUT" | "PATCH" | "DELETE");
    if unsafe_method && (r.guard.needs_credential() || path == "/api/v1/auth/refresh") {
        op = op.parameter(header_param(
            "X-CSRF-Token",
            "Required when the request is authenticated by the `cs_access` (or, for refresh, \
             `cs_refresh`) cookie: the value of the `cs_csrf` cookie. Not needed with a bearer token.",
        ));
    }
    if matches!(path, "/api/v1/auth/refresh" | "/api/v1/auth/resume") {
        op = op.parameter(
            ParameterBuilder::new()
                .name("cs_refresh")
                .parameter_in(ParameterIn::Cookie)
                .required(Required::False)
                .description(Some("The refresh cookie (browsers); API clients send `refresh_token` in the body."))
                .schema(Some(string())),
        );
    }
    let (request, success) = shapes(m, path);
    let mut register = |shape: Shape| {
        for (name, schema) in shape.deps {
            components.schemas.entry(name).or_insert(schema);
        }
        components.schemas.entry(shape.name.clone()).or_insert(shape.schema);
        reference(&shape.name)
    };
    if matches!(
        (m, path),
        (
            "POST",
            "/api/v1/documents/{id}/attachments/files"
                | "/api/v1/programme/mdf/claims/{id}/proofs"
                | "/api/v1/portal/documents/{id}/files"
        )
    ) {
        let binary = ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/octet-stream")
            .description(Some("The file, streamed; its type is sniffed from the content (allow list)"))
            .build();
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/octet-stream", Content::new(Some(RefOr::T(Schema::Object(binary)))))
                .required(Some(Required::True))
                .build(),
        ));
    }
    if (m, path) == ("GET", "/api/v1/files/{token}") {
        op = op.parameter(header_param(
            "Range",
            "One range, `bytes=a-b`, `bytes=a-` or `bytes=-n` (206); others: the whole file",
        ));
    }
    if let Some(body) = request {
        // A body is optional where every field is (e.g. refresh from the cookie, period close).
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json_content(register(body)))
                .required(Some(Required::False))
                .build(),
        ));
    }
    let cookies = match path {
        "/api/v1/auth/login" | "/api/v1/auth/email-code/verify" | "/api/v1/auth/mfa" | "/api/v1/auth/refresh" => {
            Some("`cs_access`, `cs_refresh` and `cs_csrf` unless `token_delivery` is `body`")
        }
        "/api/v1/auth/sso/start" => Some(
            "The flow's browser binding, HttpOnly: `cs_sso` (Path=/sign-in/sso) for OpenID Connect, `cs_saml` \
             (Path=/saml) for SAML; the provider's return to this site must carry it",
        ),
        _ => None,
    };
    let response = |status: &str, description: &str, content: Option<Content>| {
        let mut b = ResponseBuilder::new().description(description);
        if let Some(c) = content {
            b = b.content("application/json", c);
        }
        if let Some(cookies) = cookies {
            b = b.header("Set-Cookie", header(cookies));
        }
        if etagged(m, path) {
            b = b.header("ETag", header("The document's version, for `If-Match`"));
        }
        if idempotent(m, path) {
            b = b.header("Idempotent-Replayed", header("`true` when this answers a repeated Idempotency-Key"));
        }
        (status.to_owned(), b.build())
    };
    // A replayed form that is refused goes to sign in (303) instead.
    let refused_redirect = matches!(success, Success::Redirect("307", _));
    let (status, ok) = match success {
        Success::Json(status, shape) => response(status, "success", Some(json_content(register(*shape)))),
        Success::OneOf(status, shapes) => {
            let mut one = OneOfBuilder::new();
            for s in shapes {
                one = one.item(register(s));
            }
            response(status, "success", Some(json_content(RefOr::T(Schema::OneOf(one.build())))))
        }
        Success::NoContent => response("204", "done", None),
        Success::Document => {
            let doc = ObjectBuilder::new().description(Some("An OpenAPI 3.1 document")).build();
            response("200", "this description", Some(json_content(RefOr::T(Schema::Object(doc)))))
        }
        Success::Redirect(status, description) => {
            let b = ResponseBuilder::new()
                .description(description)
                .header("Location", header("Where the browser goes next: a path on this site"))
                .header("Set-Cookie", header("`cs_access`, `cs_refresh` (and `cs_resumed`) after a rotation"));
            (status.to_owned(), b.build())
        }
        Success::Text(description, types) => {
            let mut b = ResponseBuilder::new().description(description);
            for t in types {
                b = b.content(*t, Content::new(Some(string())));
            }
            ("200".to_owned(), b.build())
        }
    };
    op = op.response(status, ok);
    if refused_redirect {
        let to_sign_in = ResponseBuilder::new()
            .description("refused (no or a dead refresh cookie, a form without its CSRF token): to /sign-in")
            .header("Location", header("/sign-in"))
            .build();
        op = op.response("303", to_sign_in);
    }
    let error = || {
        ResponseBuilder::new()
            .description("refused")
            .content("application/json", json_content(reference("ErrorBody")))
            .build()
    };
    if matches!(r.guard, Guard::SignIn) || path == "/api/v1/auth/refresh" {
        let mut limited = error();
        limited.headers.insert("Retry-After".to_owned(), header("Seconds until a new attempt is accepted"));
        op = op.response("429", limited);
    }
    op = op.response("4XX", error()).response("5XX", error());
    if r.guard.needs_credential() {
        op = op
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .security(SecurityRequirement::new("session_cookie", Vec::<String>::new()));
    }
    let summary = match r.guard {
        Guard::Public(why) => format!("public: {why}"),
        Guard::SignIn => "public: spends the per-address sign-in budget".to_owned(),
        Guard::Own => "the caller's own account".to_owned(),
        Guard::Org(a) => format!("organisation permission {a}"),
        Guard::Domain(actions) => {
            format!("decided per resource: {}", actions.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "))
        }
        // Never reached: SCIM routes are described by SCIM's own discovery endpoints.
        Guard::Scim => "an organisation's SCIM token".to_owned(),
    };
    op.summary(Some(summary)).build()
}

/// Adds an operation per route, and the security schemes they name.
fn add_routes(spec: &mut Spec, routes: &[RouteInfo]) {
    let mut paths = utoipa::openapi::Paths::new();
    let components = spec.components.get_or_insert_with(Default::default);
    // Pages are another face of the same capabilities, not part of the API.
    for r in routes.iter().filter(|r| r.face == Face::Api) {
        paths.add_path_operation(&r.path, vec![method(&r.method)], operation(r, components));
    }
    spec.paths = paths;
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An access token (from /api/v1/auth/login with \"token_delivery\": \"body\") or an API key (csk_...)",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "session_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "cs_access",
            "The access cookie a browser sign-in sets; state-changing requests must also send \
             X-CSRF-Token (the cs_csrf cookie's value)",
        ))),
    );
}

/// The description of `routes` (the router passes its table).
#[must_use]
pub fn spec(routes: &[RouteInfo]) -> Spec {
    let mut spec = ApiDoc::openapi();
    add_routes(&mut spec, routes);
    spec
}
