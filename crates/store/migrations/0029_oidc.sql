-- OpenID Connect single sign-on (issue 18): one identity provider per organisation, the sign-in
-- flows in flight, and the provider identities linked to users.
--
-- The client secret is sealed with AES-256-GCM (identity::signin::secret_box, the MFA key) bound
-- to the organisation, so the database never holds it in the clear. Flows are global (the
-- callback names no organisation until its `state` is looked up), single-use and short-lived;
-- only hashes of the state and of the browser binding are stored. A provider identity
-- (issuer, subject) belongs to one user, and a user links at most one subject per issuer.

create table oidc_configs (
    tenant_id         uuid not null references tenants (id),
    id                uuid not null,
    preset            text not null check (preset in ('generic', 'google', 'entra')),
    issuer            text not null check (issuer ~ '^https?://[^\s]+$' and length(issuer) <= 500),
    client_id         text not null check (length(client_id) between 1 and 500),
    secret_key_id     text not null check (length(secret_key_id) = 16),
    secret_nonce      bytea not null check (octet_length(secret_nonce) = 12),
    secret_ciphertext bytea not null check (octet_length(secret_ciphertext) between 17 and 4112),
    allowed_domains   citext[] not null default '{}' check (cardinality(allowed_domains) <= 20),
    email_claim       text not null default 'email' check (email_claim ~ '^[A-Za-z0-9_:./-]{1,100}$'),
    name_claim        text not null default 'name' check (name_claim ~ '^[A-Za-z0-9_:./-]{1,100}$'),
    groups_claim      text not null default 'groups' check (groups_claim ~ '^[A-Za-z0-9_:./-]{1,100}$'),
    -- {"<group>": {"role": "hod", "department": "OPS"}}: applied when a person is provisioned.
    group_mapping     jsonb not null default '{}' check (jsonb_typeof(group_mapping) = 'object'),
    -- `acr` values that count as multi-factor (besides `amr` containing "mfa").
    mfa_acr_values    text[] not null default '{}' check (cardinality(mfa_acr_values) <= 10),
    sso_only          boolean not null default false,
    break_glass_user  uuid references users (id),
    enabled           boolean not null default true,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id)
);
select countersign_protect('oidc_configs');

create table oidc_flows (
    id               uuid primary key,
    state_hash       bytea not null unique check (octet_length(state_hash) = 32),
    binding_hash     bytea not null check (octet_length(binding_hash) = 32),
    organisation_id  uuid not null references tenants (id),
    nonce            text not null check (length(nonce) between 32 and 128),
    pkce_verifier    text not null check (length(pkce_verifier) between 43 and 128),
    redirect_uri     text not null check (length(redirect_uri) <= 2000),
    created_at       timestamptz not null default now(),
    expires_at       timestamptz not null,
    used_at          timestamptz
);
create index oidc_flows_expiry on oidc_flows (expires_at);
select countersign_identity_only('oidc_flows');
grant select, insert, update, delete on oidc_flows to countersign_app;

create table oidc_identities (
    issuer           text not null check (length(issuer) <= 500),
    subject          text not null check (length(subject) between 1 and 255),
    user_id          uuid not null references users (id),
    organisation_id  uuid not null references tenants (id),
    linked_at        timestamptz not null default now(),
    primary key (issuer, subject),
    unique (user_id, issuer)
);
select countersign_identity_only('oidc_identities');
grant select, insert on oidc_identities to countersign_app;
