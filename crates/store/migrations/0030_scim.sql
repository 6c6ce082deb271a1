-- SCIM 2.0 provisioning (issue 18): an organisation's identity provider creates, changes,
-- suspends and removes its people through /scim/v2, with a bearer token of that organisation.
--
-- Tokens are like API keys: 32 random bytes shown once, stored as SHA-256, revocable at once.
-- The presented token names its organisation (css_<tenant>_<token id>_<secret>), so it is looked
-- up inside that organisation's RLS context: no cross-tenant lookup exists.
create table scim_tokens (
    tenant_id    uuid not null references tenants (id),
    id           uuid not null,
    name         text not null check (length(name) between 1 and 100),
    secret_hash  bytea not null check (octet_length(secret_hash) = 32),
    created_by   text not null,
    created_at   timestamptz not null default now(),
    revoked_at   timestamptz,
    last_used_at timestamptz,
    primary key (tenant_id, id)
);
select countersign_protect('scim_tokens');

-- A provisioned person: the SCIM view of one membership. The global account (users) is shared
-- with other organisations, so what the identity provider says about the person (userName,
-- names, emails, externalId) is kept here, per organisation, and never written to the shared account.
-- `version` is the ETag; `deleted_at` marks a SCIM DELETE (the membership stays, suspended, so
-- the audit trail keeps naming it).
create table scim_users (
    tenant_id     uuid not null references tenants (id),
    user_id       uuid not null,
    user_name     text not null check (length(user_name) between 1 and 254),
    external_id   text check (length(external_id) between 1 and 254),
    display_name  text check (length(display_name) between 1 and 200),
    given_name    text check (length(given_name) <= 200),
    family_name   text check (length(family_name) <= 200),
    -- The addresses the identity provider lists (value, type, primary), as it sent them; the
    -- account's own email is set once, when the account is created.
    emails        jsonb not null default '[]' check (jsonb_typeof(emails) = 'array' and jsonb_array_length(emails) <= 20),
    version       bigint not null default 1 check (version > 0),
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    deleted_at    timestamptz,
    primary key (tenant_id, user_id),
    foreign key (tenant_id, user_id) references memberships (tenant_id, user_id)
);
-- userName and externalId are unique among the organisation's live provisioned people
-- (SCIM `uniqueness: server`); case-insensitively, as identity providers compare them.
create unique index scim_users_user_name on scim_users (tenant_id, lower(user_name)) where deleted_at is null;
create unique index scim_users_external_id on scim_users (tenant_id, external_id)
    where deleted_at is null and external_id is not null;
select countersign_protect('scim_users');

-- The identity provider is an actor of its own in the ledger ("identity_provider", named by the
-- token id): everything provisioning changes says so.
alter table audit_events drop constraint audit_events_actor_kind_check;
alter table audit_events add constraint audit_events_actor_kind_check
    check (actor_kind in ('user', 'api_key', 'system', 'identity_provider'));
alter table platform_audit_events drop constraint platform_audit_events_actor_kind_check;
alter table platform_audit_events add constraint platform_audit_events_actor_kind_check
    check (actor_kind in ('user', 'api_key', 'system', 'identity_provider'));
