-- SAML 2.0 single sign-on (issue 18): one identity provider per organisation (its metadata as
-- the administrator uploaded it), the AuthnRequests in flight, and the assertions already used.
--
-- All three are tenant tables: the SP metadata, start and ACS routes name the organisation, so a
-- response is only ever looked up inside that organisation's RLS context. A request is bound to
-- the browser that started it (only a hash of the binding is stored) and is single-use. The
-- replay cache keeps each accepted assertion id (per issuer) until its validity has passed, in
-- the database, so a replay to another node of the same deployment is refused as well.

create table saml_configs (
    tenant_id       uuid not null references tenants (id),
    id              uuid not null,
    idp_entity_id   text not null check (length(idp_entity_id) between 1 and 1000),
    sso_url         text not null check (sso_url ~ '^https?://[^\s]+$' and length(sso_url) <= 2000),
    -- The metadata document as uploaded; its signing certificates are what responses verify with.
    metadata_xml    text not null check (length(metadata_xml) between 1 and 262144),
    signing_certs   integer not null check (signing_certs between 1 and 20),
    allowed_domains citext[] not null check (cardinality(allowed_domains) between 1 and 20),
    enabled         boolean not null default true,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id)
);
select countersign_protect('saml_configs');

create table saml_requests (
    tenant_id     uuid not null references tenants (id),
    id            uuid not null,
    request_id    text not null check (request_id ~ '^_[0-9a-f]{64}$'),
    binding_hash  bytea not null check (octet_length(binding_hash) = 32),
    created_at    timestamptz not null default now(),
    expires_at    timestamptz not null,
    used_at       timestamptz,
    primary key (tenant_id, id),
    unique (tenant_id, request_id)
);
create index saml_requests_binding on saml_requests (tenant_id, binding_hash);
select countersign_protect('saml_requests');

create table saml_assertions_seen (
    tenant_id     uuid not null references tenants (id),
    id            uuid not null,
    issuer        text not null check (length(issuer) between 1 and 1000),
    assertion_id  text not null check (length(assertion_id) between 1 and 256),
    seen_at       timestamptz not null default now(),
    keep_until    timestamptz not null,
    primary key (tenant_id, id),
    unique (tenant_id, issuer, assertion_id)
);
select countersign_protect('saml_assertions_seen');
