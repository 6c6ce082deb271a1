-- Passwords and interactive sessions.
--
-- Credentials are global (a user signs in to any organisation they belong to with one password)
-- and visible only in the identity scope (GlobalTx), never to a tenant transaction.
-- Sessions and refresh tokens are tenant rows: a session is one user in one organisation, and
-- every refresh token names its organisation so it is looked up under that organisation's RLS.
create table user_credentials (
    user_id             uuid primary key references users (id),
    password_hash       text not null check (password_hash like '$argon2id$%' and length(password_hash) <= 512),
    password_changed_at timestamptz not null default now(),
    failed_attempts     integer not null default 0 check (failed_attempts >= 0),
    locked_until        timestamptz,
    updated_at          timestamptz not null default now()
);
alter table user_credentials enable row level security;
alter table user_credentials force row level security;
create policy identity_scope on user_credentials as permissive for all
    using (current_setting('app.scope', true) = 'identity')
    with check (current_setting('app.scope', true) = 'identity');
create policy platform_bypass on user_credentials as permissive for all
    using ((select countersign_bypass_active())) with check ((select countersign_bypass_active()));
grant select, insert, update on user_credentials to countersign_app;

-- Bumped by deactivation and password change: every session issued under an older epoch dies.
alter table users add column session_epoch bigint not null default 0 check (session_epoch >= 0);

create table sessions (
    tenant_id       uuid not null references tenants (id),
    id              uuid not null,
    user_id         uuid not null references users (id),
    membership_id   uuid not null,
    role            text not null,
    user_epoch      bigint not null,
    created_at      timestamptz not null default now(),
    last_seen_at    timestamptz not null default now(),
    expires_at      timestamptz not null,
    revoked_at      timestamptz,
    revoked_reason  text check (length(revoked_reason) <= 200),
    ip              inet,
    user_agent      text check (length(user_agent) <= 1000),
    primary key (tenant_id, id),
    foreign key (tenant_id, membership_id) references memberships (tenant_id, id)
);
create index sessions_user on sessions (tenant_id, user_id) where revoked_at is null;
select countersign_protect('sessions');
revoke delete on sessions from countersign_app;

-- One family per session: a token is used once; presenting a used token again revokes the family.
create table refresh_tokens (
    tenant_id   uuid not null references tenants (id),
    token_hash  bytea not null check (octet_length(token_hash) = 32),
    session_id  uuid not null,
    created_at  timestamptz not null default now(),
    used_at     timestamptz,
    primary key (tenant_id, token_hash),
    foreign key (tenant_id, session_id) references sessions (tenant_id, id)
);
create index refresh_tokens_session on refresh_tokens (tenant_id, session_id);
select countersign_protect('refresh_tokens');
revoke delete on refresh_tokens from countersign_app;
