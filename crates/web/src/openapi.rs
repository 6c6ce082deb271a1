//! `GET /api/openapi.json`: the OpenAPI 3.1 description, generated from the route table.
//!
//! Every route the router serves (`crate::route_table`) becomes an operation: its path
//! parameters, bearer security unless the route is public, and the error schema for every 4XX
//! and 5XX answer. Documents, periods and approval settings also name their request and response
//! schemas, derived (utoipa `ToSchema`) from the types the handlers actually parse and return.

use axum::Json;
use axum::response::IntoResponse;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Spec, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::guard::{Guard, RouteInfo};

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
    info(title = "Countersign", description = "Multi-tenant approvals: vouchers, purchase orders, members, audit."),
    components(schemas(
        ErrorBody,
        approvals::documents::Document,
        approvals::inbox::Page,
        approvals::documents::Period,
        crate::documents_api::CreateBody,
        crate::documents_api::TransitionBody,
        crate::documents_api::BulkBody,
        crate::documents_api::BulkApproved,
        crate::documents_api::OpenBody,
        crate::documents_api::ReasonBody,
        approvals::documents::MdThresholds,
        crate::documents_api::EditBody,
        crate::documents_api::PeriodList,
    )),
    modifiers(&FromRoutes)
)]
struct ApiDoc;

struct FromRoutes;

/// Request and success-response schemas of the routes that declare them.
fn declared(method: &str, path: &str) -> Option<(Option<&'static str>, &'static str, &'static str)> {
    Some(match (method, path) {
        ("POST", "/api/v1/documents") => (Some("CreateBody"), "201", "Document"),
        ("GET", "/api/v1/documents") => (None, "200", "Page"),
        ("GET", "/api/v1/documents/{id}") => (None, "200", "Document"),
        ("POST", "/api/v1/documents/{id}/transitions") => (Some("TransitionBody"), "200", "Document"),
        ("POST", "/api/v1/documents/bulk-approve") => (Some("BulkBody"), "200", "BulkApproved"),
        ("GET", "/api/v1/periods") => (None, "200", "PeriodList"),
        ("POST", "/api/v1/periods") => (Some("OpenBody"), "201", "Period"),
        ("POST", "/api/v1/periods/{id}/close" | "/api/v1/periods/{id}/reopen") => (Some("ReasonBody"), "200", "Period"),
        ("PATCH", "/api/v1/documents/{id}") => (Some("EditBody"), "200", "Document"),
        ("GET", "/api/v1/periods/{id}") => (None, "200", "Period"),
        ("GET", "/api/v1/settings/approvals") => (None, "200", "MdThresholds"),
        ("PUT", "/api/v1/settings/approvals") => (Some("MdThresholds"), "200", "MdThresholds"),
        _ => return None,
    })
}

/// Query parameters of the document list (all optional).
const LIST_QUERY: &[(&str, &str)] = &[
    ("view", "waiting, raised or all (default)"),
    ("status", "a document status"),
    ("kind", "voucher or purchase_order"),
    ("department_id", "department UUID"),
    ("date_from", "YYYY-MM-DD"),
    ("date_to", "YYYY-MM-DD"),
    ("min_amount_minor", "minor units of `currency`"),
    ("max_amount_minor", "minor units of `currency`"),
    ("currency", "ISO 4217 code"),
    ("cursor", "next_cursor of the previous page"),
    ("limit", "1-100, default 50"),
];

fn json_content(schema: RefOr<Schema>) -> Content {
    Content::new(Some(schema))
}

fn any_object() -> RefOr<Schema> {
    RefOr::T(Schema::Object(ObjectBuilder::new().build()))
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

fn operation(r: &RouteInfo) -> utoipa::openapi::path::Operation {
    let m = r.method.as_str();
    let mut op = OperationBuilder::new()
        .operation_id(Some(format!("{} {}", m.to_lowercase(), r.path)))
        .tag(r.path.trim_start_matches("/api/v1/").split('/').next().unwrap_or("api").trim_start_matches('/'));
    for segment in r.path.split('/') {
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
    if (m, r.path.as_str()) == ("GET", "/api/v1/documents") {
        for (name, description) in LIST_QUERY {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some(*description))
                    .schema(Some(string())),
            );
        }
    }
    let declared = declared(m, &r.path);
    let request = match declared {
        Some((Some(body), _, _)) => Some(reference(body)),
        _ if matches!(m, "POST" | "PUT" | "PATCH") => Some(any_object()),
        _ => None,
    };
    if let Some(schema) = request {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", json_content(schema))
                .required(Some(Required::False))
                .build(),
        ));
    }
    let success = match (declared, r.path.as_str()) {
        (Some((_, status, schema)), _) => (
            status,
            ResponseBuilder::new().description("success").content("application/json", json_content(reference(schema))),
        ),
        (None, "/metrics") => (
            "2XX",
            ResponseBuilder::new().description("Prometheus text").content("text/plain", Content::new(Some(string()))),
        ),
        (None, "/api/v1/audit/export") => (
            "2XX",
            ResponseBuilder::new()
                .description("NDJSON or CSV stream")
                .content("application/x-ndjson", Content::new(Some(string())))
                .content("text/csv", Content::new(Some(string()))),
        ),
        (None, _) => (
            "2XX",
            ResponseBuilder::new().description("success").content("application/json", json_content(any_object())),
        ),
    };
    op = op.response(success.0, success.1.build());
    let error = || {
        ResponseBuilder::new()
            .description("refused")
            .content("application/json", json_content(reference("ErrorBody")))
            .build()
    };
    op = op.response("4XX", error()).response("5XX", error());
    if r.guard.needs_credential() {
        op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
    }
    let summary = match r.guard {
        Guard::Public(why) => format!("public: {why}"),
        Guard::SignIn => "public: spends the per-address sign-in budget".to_owned(),
        Guard::Own => "the caller's own account".to_owned(),
        Guard::Org(a) => format!("organisation permission {a}"),
        Guard::Domain(actions) => {
            format!("decided per resource: {}", actions.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "))
        }
    };
    op.summary(Some(summary)).build()
}

impl Modify for FromRoutes {
    fn modify(&self, spec: &mut Spec) {
        let mut paths = utoipa::openapi::Paths::new();
        for r in crate::route_table(false) {
            paths.add_path_operation(&r.path, vec![method(&r.method)], operation(&r));
        }
        spec.paths = paths;
        let components = spec.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An access token (from /api/v1/auth/login) or an API key (csk_...)"))
                    .build(),
            ),
        );
    }
}

/// The description as a value (tests and `serve`).
#[must_use]
pub fn spec() -> Spec {
    ApiDoc::openapi()
}

/// `GET /api/openapi.json`
pub async fn serve() -> impl IntoResponse {
    Json(spec())
}
