-- Multi-factor authentication: TOTP with recovery codes, email one-time codes, MFA challenges
-- between the password and the session, and the mail outbox.
--
-- MFA state is per user (one user belongs to many organisations), so every table here is global
-- and visible only in the identity scope (GlobalTx), like user_credentials: a tenant transaction
-- sees none of it. None of these tables has a tenant_id column; where a row is bound to an
-- organisation the column is `organisation_id` (a binding, not a tenant row).

alter table tenants add column require_mfa boolean not null default false;
alter table users add column platform_admin boolean not null default false;

-- The identity-scope and bypass policies every table below carries.
create function countersign_identity_only(tbl regclass) returns void
    language plpgsql
    set search_path = public, pg_temp
as $$
begin
    execute format('alter table %s enable row level security', tbl);
    execute format('alter table %s force row level security', tbl);
    execute format($p$create policy identity_scope on %s as permissive for all
        using (current_setting('app.scope', true) = 'identity')
        with check (current_setting('app.scope', true) = 'identity')$p$, tbl);
    execute format($p$create policy platform_bypass on %s as permissive for all
        using ((select countersign_bypass_active())) with check ((select countersign_bypass_active()))$p$, tbl);
end
$$;

-- A TOTP secret, sealed with AES-256-GCM (see identity::secret_box): the key id names the key
-- that sealed it, the AAD binds it to this user. `confirmed_at` null = enrolment pending.
-- `last_used_step` refuses a code (time step) that was already used.
create table user_totp (
    user_id         uuid primary key references users (id),
    key_id          text not null check (key_id ~ '^[0-9a-f]{16}$'),
    nonce           bytea not null check (octet_length(nonce) = 12),
    ciphertext      bytea not null check (octet_length(ciphertext) between 17 and 256),
    confirmed_at    timestamptz,
    last_used_step  bigint not null default 0,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
select countersign_identity_only('user_totp');
grant select, insert, update, delete on user_totp to countersign_app;

-- Recovery codes: SHA-256 of a high-entropy random code, each usable once.
create table user_recovery_codes (
    user_id     uuid not null references users (id),
    code_hash   bytea not null check (octet_length(code_hash) = 32),
    created_at  timestamptz not null default now(),
    used_at     timestamptz,
    primary key (user_id, code_hash)
);
select countersign_identity_only('user_recovery_codes');
grant select, insert, update, delete on user_recovery_codes to countersign_app;

-- Email one-time codes. A row exists for every request (also for unknown addresses, with
-- user_id null and a code nobody receives), so the per-address rate limit and the answer are the
-- same whether or not the address belongs to a member. Stored as SHA-256(salt ‖ code).
create table email_codes (
    id               uuid primary key,
    email            citext not null check (length(email) <= 254),
    user_id          uuid references users (id),
    organisation_id  uuid references tenants (id),
    purpose          text not null check (purpose in ('login', 'verify_email', 'mfa')),
    salt             bytea not null check (octet_length(salt) = 16),
    code_hash        bytea not null check (octet_length(code_hash) = 32),
    attempts         integer not null default 0 check (attempts >= 0),
    created_at       timestamptz not null default now(),
    expires_at       timestamptz not null,
    used_at          timestamptz
);
create index email_codes_recent on email_codes (email, purpose, created_at desc);
select countersign_identity_only('email_codes');
grant select, insert, update on email_codes to countersign_app;

-- The step between a correct password and a session when a second factor is needed. The token
-- is opaque, stored as SHA-256, single use, short-lived, and dies after 5 wrong codes.
create table mfa_challenges (
    id               uuid primary key,
    token_hash       bytea not null unique check (octet_length(token_hash) = 32),
    user_id          uuid not null references users (id),
    organisation_id  uuid not null references tenants (id),
    methods          text[] not null,
    email_code_id    uuid references email_codes (id),
    attempts         integer not null default 0 check (attempts >= 0),
    created_at       timestamptz not null default now(),
    expires_at       timestamptz not null,
    used_at          timestamptz
);
select countersign_identity_only('mfa_challenges');
grant select, insert, update on mfa_challenges to countersign_app;

-- Mail written by the default OutboxMailer (no SMTP configured): read by operators with
-- `countersign admin outbox` and, on servers started with --dev-outbox, over HTTP.
create table mail_outbox (
    id          uuid primary key,
    to_address  citext not null check (length(to_address) <= 254),
    subject     text not null check (length(subject) <= 998),
    body        text not null check (length(body) <= 100000),
    created_at  timestamptz not null default now()
);
create index mail_outbox_recent on mail_outbox (to_address, created_at desc);
select countersign_identity_only('mail_outbox');
grant select, insert on mail_outbox to countersign_app;
