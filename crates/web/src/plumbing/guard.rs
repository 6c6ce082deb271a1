//! One authorisation step per route, declared where the route is registered.
//!
//! Every route is added through [`Routes`], which takes a [`Guard`] next to the handler; there is
//! no other way to register one. The guard runs as the route's own layer:
//!
//! - [`Guard::Public`] / [`Guard::SignIn`]: no credential (sign-in routes spend the per-address
//!   budget first).
//! - Everything else authenticates first (401 without a valid credential).
//! - [`Guard::Org`]: the policy engine decides the action on the organisation *before* the
//!   handler runs; a refusal is audited (`access.denied`, in a transaction of its own,
//!   aggregated per organisation and address per minute with a count) and answered 403. The permit goes into the request for the handler.
//! - [`Guard::Domain`]: the decision needs the resource (a document's department, raiser and
//!   level), so the domain function asks the engine and its write requires the permit; the
//!   handler reports the decision with [`Principal::checked`].
//! - [`Guard::Own`]: the caller acts on their own account (sessions, password, MFA).
//! - [`Guard::Scim`]: an organisation's identity provider with its SCIM token
//!   (`crate::plumbing::scim`); the token is the decision — it only provisions that organisation's
//!   people, with an administrator's ceiling the domain enforces — and a refusal is a SCIM body.
//!
//! After the handler, a success response from a route whose decision was never reported is
//! replaced by 500 `authorisation_missing`: a handler that forgot to ask fails closed.
//! `route_table` lists every route with its guard; tests walk it.
//!
//! A route has a [`Face`]: the JSON API or an HTML page. Both are registered here with the same
//! guards and pass the same `enforce`; the face only says how a refusal is worded (the pages
//! layer turns the guard's `ApiError` into a page or a redirect to sign in) and keeps pages out
//! of the OpenAPI description.

use authz::{Action, Resource};
use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};

use crate::plumbing::auth::Caller;
use crate::plumbing::limits;
use crate::plumbing::refusals::Refusal;
use crate::{ApiError, AppState, ClientContext, Principal};

/// How a route is authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// No credential; the text says why that is safe.
    Public(&'static str),
    /// No credential; spends the caller's sign-in budget (per client address).
    SignIn,
    /// Any authenticated caller, acting on their own account or session.
    Own,
    /// An organisation-level action, decided before the handler runs.
    Org(Action),
    /// Decided per resource by the domain crate (the handler reports it).
    Domain(&'static [Action]),
    /// An organisation's identity provider: its SCIM bearer token (`/scim/v2`).
    Scim,
}

impl Guard {
    #[must_use]
    pub fn needs_credential(self) -> bool {
        !matches!(self, Self::Public(_) | Self::SignIn)
    }
}

/// Who a route answers: API clients (JSON) or people in a browser (HTML pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// JSON, described in the OpenAPI document.
    Api,
    /// HTML pages (`crate::ui`): same guard, refusals shown as pages.
    Page,
    /// SCIM 2.0 (`/scim/v2`, `application/scim+json`): described by its own discovery endpoints
    /// (ServiceProviderConfig, ResourceTypes, Schemas), as RFC 7643 has it, not by OpenAPI.
    Scim,
}

/// A registered route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    /// Full path with axum's `{param}` placeholders.
    pub path: String,
    pub guard: Guard,
    pub face: Face,
}

/// The route builder: records every route with its guard and (given a state) routes it.
pub struct Routes {
    state: Option<AppState>,
    prefix: &'static str,
    face: Face,
    pub(crate) router: Router<AppState>,
    pub(crate) table: Vec<RouteInfo>,
}

impl Routes {
    /// API routes. Without a state it only records the table. `prefix` is where the router will
    /// be nested.
    #[must_use]
    pub fn new(state: Option<AppState>, prefix: &'static str) -> Self {
        Self { state, prefix, face: Face::Api, router: Router::new(), table: Vec::new() }
    }

    /// Page routes (HTML), at the root: the same guards as the API.
    #[must_use]
    pub fn pages(state: Option<AppState>) -> Self {
        Self { face: Face::Page, ..Self::new(state, "") }
    }

    /// SCIM routes (`Guard::Scim`), nested at `prefix`.
    #[must_use]
    pub fn scim(state: Option<AppState>, prefix: &'static str) -> Self {
        Self { face: Face::Scim, ..Self::new(state, prefix) }
    }

    /// The routes added so far (wrap with `crate::with_middleware` to serve them).
    pub fn into_router(self) -> Router<AppState> {
        self.router
    }

    #[must_use]
    pub fn add<H, T>(mut self, method: Method, path: &'static str, guard: Guard, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let full = format!("{}{path}", self.prefix);
        self.table.push(RouteInfo { method: method.clone(), path: full.clone(), guard, face: self.face });
        if let Some(state) = &self.state {
            let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
            let route = format!("{method} {full}");
            let face = self.face;
            let layer = axum::middleware::from_fn_with_state(
                state.clone(),
                move |s: State<AppState>, req: Request, next: Next| enforce(s, guard, face, route.clone(), req, next),
            );
            self.router = std::mem::take(&mut self.router).route(path, on(filter, handler).route_layer(layer));
        }
        self
    }

    #[must_use]
    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, g: Guard, h: H) -> Self {
        self.add(Method::GET, path, g, h)
    }

    #[must_use]
    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, g: Guard, h: H) -> Self {
        self.add(Method::POST, path, g, h)
    }

    #[must_use]
    pub fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, g: Guard, h: H) -> Self {
        self.add(Method::PUT, path, g, h)
    }

    #[must_use]
    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, g: Guard, h: H) -> Self {
        self.add(Method::DELETE, path, g, h)
    }
}

async fn enforce(
    State(state): State<AppState>,
    guard: Guard,
    face: Face,
    route: String,
    req: Request,
    next: Next,
) -> Response {
    match guard {
        Guard::Public(_) => return next.run(req).await,
        Guard::SignIn => {
            let (mut parts, body) = req.into_parts();
            let ctx = match ClientContext::from_request_parts(&mut parts, &state).await {
                Ok(c) => c,
                Err(e) => return e.into_response(),
            };
            return limits::sign_in(State(state), ctx, Request::from_parts(parts, body), next).await;
        }
        Guard::Scim => {
            let (mut parts, body) = req.into_parts();
            match crate::plumbing::scim::authenticate(&mut parts, &state).await {
                Ok(idp) => parts.extensions.insert(idp),
                Err(refusal) => return refusal,
            };
            return next.run(Request::from_parts(parts, body)).await;
        }
        _ => {}
    }
    let (mut parts, body) = req.into_parts();
    let mut p = match Principal::authenticate(&mut parts, &state).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if p.enrolment_due && face == Face::Page && matches!(guard, Guard::Org(_) | Guard::Domain(_)) {
        return crate::ui::authenticator::setup_first(&parts);
    }
    match guard {
        Guard::Org(action) => match organisation(&state, &p, action, &route).await {
            Ok(permit) => {
                p.checked.mark();
                p.permit = Some(permit);
            }
            Err(e) => return e.into_response(),
        },
        Guard::Own => p.checked.mark(),
        _ => {}
    }
    let checked = p.checked.clone();
    parts.extensions.insert(p);
    let response = next.run(Request::from_parts(parts, body)).await;
    if response.status().is_success() && !checked.is_marked() {
        tracing::error!(%route, "a handler answered without an authorisation decision; refused");
        return ApiError::authorisation_missing("this route answered without an authorisation decision")
            .into_response();
    }
    response
}

/// The policy engine's answer for an organisation-level action (plus the API key's scope).
/// Refusals are recorded in a transaction of their own.
async fn organisation(state: &AppState, p: &Principal, action: Action, route: &str) -> Result<authz::Permit, ApiError> {
    let tenant = p.tenant.as_uuid();
    let decision = state.authz.decide(&p.subject(), action, &Resource::Organisation { tenant });
    let refusal = match (decision, &p.caller) {
        (Ok(permit), Caller::Person(_)) => return Ok(permit),
        // API keys: the scope `identity::directory::scopes` names for the action (none: people only).
        (Ok(permit), Caller::ApiKey { .. }) => match identity::directory::scopes::for_action(action) {
            Some(scope) if p.has_scope(scope) => return Ok(permit),
            Some(scope) => vec![format!("api key lacks scope {scope}")],
            None => vec![format!("no api key may take {action}")],
        },
        (Err(d), _) => d.forbidden_by,
    };
    denied(state, p, route, action, None, &refusal).await?;
    Err(ApiError::forbidden())
}

/// Records `access.denied` for `route` (and, when given, the resource) in its own transaction —
/// aggregated per organisation and address per minute ([`crate::plumbing::refusals`]), so a caller
/// hammering a route they may not use adds one event a minute, carrying the count.
///
/// # Errors
/// If the event cannot be described.
pub(crate) async fn denied(
    state: &AppState,
    p: &Principal,
    route: &str,
    action: Action,
    resource: Option<(&str, uuid::Uuid)>,
    forbidden_by: &[String],
) -> Result<(), ApiError> {
    let entity = match resource {
        Some((kind, id)) => audit::Entity::of(kind, id)?,
        None => audit::Entity::new("endpoint", Some(route.to_owned()))?,
    };
    let mut changes =
        audit::Changes::none().field("attempted", None::<&str>, route).field("action", None::<&str>, action.as_str());
    if !forbidden_by.is_empty() {
        changes = changes.field("forbidden_by", None::<&str>, forbidden_by.join(", "));
    }
    let event = audit::Event::new("access.denied", entity, changes)?;
    let ip = p.who.origin.ip.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let refusal = Refusal::Checked(Box::new((p.who.clone(), event)));
    state.refusals.record(&state.store, p.tenant, "access.denied", ip, refusal).await;
    Ok(())
}
