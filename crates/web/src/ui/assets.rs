//! The pages' static files, compiled into the binary: our stylesheet, the icon, the upload
//! form's script (`static/attach.js`), and htmx (vendored from
//! the npm package `htmx.org`, pinned in `package-lock.json`; `tests/pages.rs` fails when the
//! copy and the pin drift apart). No CDN, no node at run time.
//!
//! Each is served under a name that carries its content hash (`/static/app-<hash>.css`), so it
//! can be cached for a year, and referenced with a Subresource Integrity hash computed here from
//! the very bytes served — the two cannot disagree.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256, Sha384};

use crate::ApiError;

/// The vendored htmx (2.x, BSD-0), byte for byte `node_modules/htmx.org/dist/htmx.min.js`.
pub const HTMX_JS: &[u8] = include_bytes!("static/htmx.min.js");
/// The npm version the vendored file was copied from (checked against `package-lock.json`).
pub const HTMX_VERSION: &str = "2.0.11";
/// Our one stylesheet.
pub const APP_CSS: &[u8] = include_bytes!("static/app.css");
/// The upload form's progress bar (`crate::ui::attachments`): ours, no library.
pub const UPLOAD_JS: &[u8] = include_bytes!("static/attach.js");
/// The tab icon (without one, every browser asks for `/favicon.ico` and logs the 404).
pub const ICON_SVG: &[u8] = include_bytes!("static/icon.svg");

/// One served file: its hashed URL, its SRI value, its bytes and type.
#[derive(Debug)]
pub struct Asset {
    pub href: String,
    pub integrity: String,
    pub bytes: &'static [u8],
    pub content_type: &'static str,
}

impl Asset {
    fn new(stem: &str, ext: &str, bytes: &'static [u8], content_type: &'static str) -> Self {
        let short = hex::encode(&Sha256::digest(bytes)[..6]);
        let sri = base64::engine::general_purpose::STANDARD.encode(Sha384::digest(bytes));
        Self { href: format!("/static/{stem}-{short}.{ext}"), integrity: format!("sha384-{sri}"), bytes, content_type }
    }

    fn name(&self) -> &str {
        self.href.trim_start_matches("/static/")
    }
}

/// The stylesheet.
pub static CSS: LazyLock<Asset> = LazyLock::new(|| Asset::new("app", "css", APP_CSS, "text/css; charset=utf-8"));
/// The tab icon.
pub static ICON: LazyLock<Asset> = LazyLock::new(|| Asset::new("icon", "svg", ICON_SVG, "image/svg+xml"));
/// The upload script.
pub static UPLOAD: LazyLock<Asset> =
    LazyLock::new(|| Asset::new("attach", "js", UPLOAD_JS, "text/javascript; charset=utf-8"));
/// htmx.
pub static HTMX: LazyLock<Asset> =
    LazyLock::new(|| Asset::new("htmx", "min.js", HTMX_JS, "text/javascript; charset=utf-8"));

/// `GET /static/{name}`: a hashed name serves its file for a year; any other name is 404.
pub async fn serve(Path(name): Path<String>) -> Response {
    let Some(asset) = [&*CSS, &*HTMX, &*ICON, &*UPLOAD].into_iter().find(|a| a.name() == name) else {
        return ApiError::not_found().into_response();
    };
    let mut r = (StatusCode::OK, asset.bytes).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash_and_integrity_is_sha384_of_the_bytes() {
        assert!(CSS.href.starts_with("/static/app-") && CSS.href.ends_with(".css"));
        assert!(HTMX.href.starts_with("/static/htmx-") && HTMX.href.ends_with(".min.js"));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(HTMX.integrity.trim_start_matches("sha384-"))
            .expect("base64");
        assert_eq!(raw, Sha384::digest(HTMX_JS).to_vec());
    }
}
