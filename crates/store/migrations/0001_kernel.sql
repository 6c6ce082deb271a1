-- Countersign data kernel: tenant isolation primitives.
--
-- Runs as the owner role (see store::migrate). The application role owns nothing and has no
-- BYPASSRLS; every tenant table is protected with countersign_protect(), which the migration
-- guard re-checks before commit.

-- Per-process bypass secrets. Only the owner can read or write; the app role reaches it solely
-- through the SECURITY DEFINER functions below, which compare SHA-256 digests.
create table platform_bypass_secrets (
    secret_hash   bytea primary key,
    label         text not null,
    registered_at timestamptz not null default now(),
    expires_at    timestamptz not null
);

-- Every bypass grant is a log row: who, why, when, in which backend transaction.
create table platform_bypass_log (
    id           bigint generated always as identity primary key,
    actor        text not null check (length(actor) between 1 and 200),
    reason       text not null check (length(reason) between 3 and 1000),
    backend_pid  integer not null,
    xact_start   timestamptz not null,
    nonce        text not null,
    granted_at   timestamptz not null default clock_timestamp()
);
create index platform_bypass_log_active on platform_bypass_log (backend_pid, xact_start);

-- True only inside a transaction that was granted a bypass by countersign_begin_bypass().
-- A connection that merely sets app.bypass to a guessed value matches no log row.
create function countersign_bypass_active() returns boolean
    language sql stable security definer
    set search_path = public, pg_temp
as $$
    select coalesce(current_setting('app.bypass', true), '') <> ''
       and exists (
            select 1 from platform_bypass_log
             where backend_pid = pg_backend_pid()
               and xact_start = now()
               and nonce = current_setting('app.bypass', true))
$$;

-- Grants a transaction-scoped bypass when `secret` is a registered, unexpired process secret.
-- Records actor and reason before anything becomes visible.
create function countersign_begin_bypass(secret text, actor text, reason text) returns void
    language plpgsql volatile security definer
    set search_path = public, pg_temp
as $$
declare
    v_nonce text := encode(sha256(gen_random_uuid()::text::bytea || convert_to(secret, 'UTF8')), 'hex');
begin
    if not exists (
        select 1 from platform_bypass_secrets
         where secret_hash = sha256(convert_to(secret, 'UTF8')) and expires_at > now()
    ) then
        raise exception 'bypass refused: unknown or expired process secret'
            using errcode = '42501';
    end if;
    insert into platform_bypass_log (actor, reason, backend_pid, xact_start, nonce)
    values (actor, reason, pg_backend_pid(), now(), v_nonce);
    perform set_config('app.bypass', v_nonce, true);
end
$$;

-- The tenant in force for this transaction, or NULL.
create function countersign_current_tenant() returns uuid
    language sql stable
as $$ select nullif(current_setting('app.tenant_id', true), '')::uuid $$;

-- Applies the standard protection to a tenant table: RLS enabled and forced, an isolation policy
-- with USING + WITH CHECK on app.tenant_id, a bypass policy, and DML grants for the app role.
create function countersign_protect(tbl regclass) returns void
    language plpgsql
as $$
begin
    execute format('alter table %s enable row level security', tbl);
    execute format('alter table %s force row level security', tbl);
    execute format(
        'create policy tenant_isolation on %s as permissive for all '
        'using (tenant_id = countersign_current_tenant()) '
        'with check (tenant_id = countersign_current_tenant())', tbl);
    execute format(
        'create policy platform_bypass on %s as permissive for all '
        'using ((select countersign_bypass_active())) '
        'with check ((select countersign_bypass_active()))', tbl);
    execute format('grant select, insert, update, delete on %s to countersign_app', tbl);
end
$$;

-- Tenants (organisations). Not a tenant_id table, but protected the same way on `id`.
create table tenants (
    id              uuid primary key,
    slug            text not null unique check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'),
    name            text not null check (length(name) between 1 and 200),
    plan            text not null default 'standard' check (plan in ('trial', 'standard', 'enterprise')),
    status          text not null default 'active' check (status in ('active', 'suspended', 'closed')),
    allowed_email_domains citext[] not null default '{}',
    join_policy     text not null default 'admin_approval' check (join_policy in ('auto_join', 'admin_approval')),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    deleted_at      timestamptz
);
alter table tenants enable row level security;
alter table tenants force row level security;
create policy tenant_isolation on tenants as permissive for all
    using (id = countersign_current_tenant()) with check (id = countersign_current_tenant());
create policy platform_bypass on tenants as permissive for all
    using ((select countersign_bypass_active())) with check ((select countersign_bypass_active()));
grant select, update on tenants to countersign_app;
grant insert, delete on tenants to countersign_app; -- only effective under bypass (WITH CHECK)

-- Resolve a slug to an active tenant before any tenant context exists (routing, login).
-- Reveals only the id of an active tenant, nothing else.
create function countersign_resolve_tenant(p_slug text) returns uuid
    language sql stable security definer
    set search_path = public, pg_temp
as $$ select id from tenants where slug = lower(p_slug) and status = 'active' and deleted_at is null $$;

-- Users: global identity. Email unique case-insensitively. Reached only through GlobalTx
-- (identity operations); tenant-facing reads go through memberships.
create table users (
    id            uuid primary key,
    email         citext not null unique check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and length(email) <= 254),
    display_name  text not null check (length(display_name) between 1 and 200),
    status        text not null default 'active' check (status in ('active', 'disabled')),
    email_verified_at timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

create table departments (
    tenant_id   uuid not null references tenants (id),
    id          uuid not null,
    code        text not null check (code ~ '^[A-Z0-9_-]{1,32}$'),
    name        text not null check (length(name) between 1 and 200),
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    deleted_at  timestamptz,
    primary key (tenant_id, id),
    unique (tenant_id, code)
);
select countersign_protect('departments');

create table memberships (
    tenant_id     uuid not null references tenants (id),
    id            uuid not null,
    user_id       uuid not null references users (id),
    role          text not null check (role in (
                    'owner', 'admin', 'staff', 'hod', 'finance', 'md', 'auditor',
                    'vendor', 'client', 'partner', 'agent')),
    department_id uuid,
    status        text not null default 'active' check (status in ('invited', 'pending', 'active', 'suspended', 'ended')),
    valid_from    timestamptz not null default now(),
    valid_until   timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    deleted_at    timestamptz,
    primary key (tenant_id, id),
    unique (tenant_id, user_id),
    foreign key (tenant_id, department_id) references departments (tenant_id, id),
    check (valid_until is null or valid_until > valid_from)
);
create index memberships_user on memberships (user_id);
select countersign_protect('memberships');

-- Users are global, but not globally visible: a tenant transaction sees only users who hold a
-- membership in its tenant (the subquery is itself filtered by memberships' RLS); identity
-- operations (sign-up, login by email) run in a GlobalTx, which sets app.scope = 'identity'.
alter table users enable row level security;
alter table users force row level security;
create policy identity_scope on users as permissive for all
    using (current_setting('app.scope', true) = 'identity')
    with check (current_setting('app.scope', true) = 'identity');
create policy tenant_members on users as permissive for select
    using (exists (select 1 from memberships m where m.user_id = users.id));
create policy platform_bypass on users as permissive for all
    using ((select countersign_bypass_active())) with check ((select countersign_bypass_active()));
grant select, insert, update on users to countersign_app;
