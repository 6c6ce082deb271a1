-- How each session was opened ("password", "password+totp", "email_code", "oidc+idp_mfa",
-- "portal_link", ...: the `method` of its `auth.login_succeeded` event). An organisation that
-- requires a second factor sends a member without an authenticator app to its setup on every
-- page until it is on (web::plumbing::guard), except sessions whose second factor was the
-- identity provider's (`oidc+idp_mfa`) and portal sessions, which such a page never reaches.
-- Sessions opened before this column have none: they count as the strictest case.
alter table sessions add column method text check (length(method) <= 40);
