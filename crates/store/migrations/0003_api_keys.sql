-- API keys: created by tenant admins, shown once, stored as SHA-256 of 32 random bytes (a
-- high-entropy secret needs no slow hash), scoped to one tenant, a role and a set of
-- permissions, optionally expiring, instantly revocable, last use recorded.
--
-- The presented key carries its tenant (csk_<tenant>_<key id>_<secret>), so a key is looked up
-- inside that tenant's RLS context: no cross-tenant lookup function exists.
create table api_keys (
    tenant_id    uuid not null references tenants (id),
    id           uuid not null,
    name         text not null check (length(name) between 1 and 100),
    role         text not null check (role in (
                    'owner', 'admin', 'staff', 'hod', 'finance', 'md', 'auditor',
                    'vendor', 'client', 'partner', 'agent')),
    scopes       text[] not null default '{}' check (cardinality(scopes) <= 50),
    secret_hash  bytea not null check (octet_length(secret_hash) = 32),
    created_by   text not null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    primary key (tenant_id, id)
);
select countersign_protect('api_keys');
