//! Who is calling. `Principal` is an extractor: a handler that names it cannot run for an
//! unauthenticated request. Today the credential is an API key (`Authorization: Bearer csk_…`);
//! sessions and SSO arrive as further ways to produce the same `Principal`.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use identity::Role;
use identity::api_keys::{self, PresentedKey};
use store::TenantId;

use crate::{ApiError, AppState, ClientContext};

/// An authenticated caller, bound to one organisation.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: TenantId,
    pub role: Role,
    pub scopes: Vec<String>,
    /// The actor and request origin every audited write of this request records.
    pub who: audit::Who,
}

impl Principal {
    /// API keys are limited to their scopes; (future) interactive sessions carry their role only.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

pub(crate) fn origin(ctx: &ClientContext) -> audit::Origin {
    audit::Origin::new(Some(&ctx.request_id), Some(ctx.ip), ctx.user_agent.as_deref())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ctx = ClientContext::from_request_parts(parts, state).await?;
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthenticated());
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(ApiError::unauthenticated)?;
        let key: PresentedKey = token.parse().map_err(|_| ApiError::unauthenticated())?;
        let mut tx = state.store.tenant_tx(key.tenant).await?;
        match api_keys::authenticate(&mut tx, &key).await {
            Ok(p) => {
                tx.commit().await?;
                let actor = audit::Actor::api_key(p.key_id, Some(p.role.as_str()));
                Ok(Self { tenant: p.tenant, role: p.role, scopes: p.scopes, who: audit::Who::new(actor, origin(&ctx)) })
            }
            Err(identity::IdentityError::Unauthenticated) => {
                drop(tx);
                rejected(state, &key, &ctx).await;
                Err(ApiError::unauthenticated())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Records a refused key in the organisation it names (if that organisation exists); a key for
/// no organisation leaves only a log line.
async fn rejected(state: &AppState, key: &PresentedKey, ctx: &ClientContext) {
    let result = async {
        let mut tx = state.store.tenant_tx(key.tenant).await?;
        if identity::tenants::current(&mut tx).await.is_err() {
            return Ok::<(), ApiError>(());
        }
        let event =
            audit::Event::new("auth.api_key_rejected", audit::Entity::of("api_key", key.id)?, audit::Changes::none())?;
        audit::record(&mut tx, &audit::Actor::system("web:auth"), &origin(ctx), &event).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = ?e, "could not audit a rejected api key");
    }
    tracing::info!(tenant = %key.tenant, key_id = %key.id, ip = %ctx.ip, "api key rejected");
}
