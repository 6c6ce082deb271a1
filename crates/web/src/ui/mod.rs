//! The HTML pages: another face of the same routes. Pages are registered in `crate::router`
//! through the same [`Routes`](crate::guard::Routes) table with the same guards as the API, take
//! the same `Principal`, open the same `TenantTx` and call the same domain functions; they add
//! only wording. A page is never a second authorisation path.
//!
//! - templates (`crates/web/templates`) are compiled and auto-escaped (askama);
//! - every page works as a plain form post; htmx (vendored, [`assets`]) only smooths;
//! - pages carry their own CSP ([`PAGE_CSP`]): no inline script or style, nothing from elsewhere;
//! - refusals from the guard or a handler become pages ([`refusals`]): sign-in redirects,
//!   403/404/429/500 pages with words instead of codes.

pub(crate) mod account;
pub(crate) mod api_keys;
pub(crate) mod assets;
// Files on the document page (issue 16).
pub(crate) mod attachments;
pub(crate) mod audit;
pub(crate) mod authenticator;
mod chrome;
pub(crate) mod documents;
pub(crate) mod email_code;
pub(crate) mod form;
pub(crate) mod format;
pub(crate) mod inbox;
pub(crate) mod invitation;
pub(crate) mod mdf;
pub(crate) mod members;
pub(crate) mod periods;
// Vendor and client portals (issue 16).
pub(crate) mod portal;
pub(crate) mod programme;
// Questions to relations and their answers (issue 16).
pub(crate) mod refusals;
pub(crate) mod requests;
pub(crate) mod resume;
pub(crate) mod scim;
pub(crate) mod security;
pub(crate) mod settings;
pub(crate) mod sign_in;
// Single sign-on in a browser (issue 18).
pub(crate) mod saml;
pub(crate) mod sso;
// The documents side (issue 15): editing, bulk approval, a document's ledger history.
pub(crate) mod bulk;
pub(crate) mod edit;
pub(crate) mod trail;

use axum::Router;
use axum::http::{HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;

/// The pages' Content-Security-Policy: our own script and stylesheet only, no inline code, no
/// framing, forms only to ourselves. (The API keeps `default-src 'none'`.)
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The layers every page route sits in (outermost first): the page CSP, refusals worded as
/// pages, and the form's CSRF token lifted out of the body for the guard's authentication.
pub(crate) fn layers(pages: Router<AppState>) -> Router<AppState> {
    pages
        .layer(axum::middleware::from_fn(crate::plumbing::cookies::form_token))
        .layer(axum::middleware::from_fn(refusals::as_pages))
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP)))
}

#[cfg(test)]
mod tests {
    /// A page's title is plain words on one line: markup left inside a `title` block (as once
    /// happened to the SCIM page, whose whole mappings section became its browser-tab title) is
    /// shown to people as raw text.
    #[test]
    fn every_template_title_block_is_words_on_one_line() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("templates folder") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("template");
            let Some(start) = text.find("{% block title %}") else { continue };
            let rest = &text[start + "{% block title %}".len()..];
            let end = rest.find("{% endblock %}").expect("title block ends");
            let title = &rest[..end];
            assert!(!title.contains('<') && !title.contains('\n'), "{}: title block holds {title:?}", path.display());
            seen += 1;
        }
        assert!(seen > 20, "only {seen} templates have a title block");
    }
}
