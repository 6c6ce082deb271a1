//! Signing in: credentials (passwords, TOTP, email codes), OpenID Connect and SAML 2.0 single sign-on, the one lockout, the suspicious-login
//! signal, tokens and sessions, and the orchestration of a login from first factor to session.
//!
//! Stands on [`crate::directory`] and [`crate::revocation`]; knows nothing of administration.

pub mod account;
pub mod email_codes;
pub(crate) mod hmac;
pub mod lockout;
pub mod login;
pub mod mail;
pub mod mfa;
pub mod oidc;
pub mod oidc_config;
pub mod passwords;
pub mod portal;
pub mod saml;
pub mod saml_check;
pub mod saml_config;
pub(crate) mod saml_verify;
pub mod secret_box;
pub mod sessions;
pub mod suspicious;
pub mod tokens;
