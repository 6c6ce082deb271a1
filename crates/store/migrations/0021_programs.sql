-- Partner programs (issue 17): partners, partner people, leads, deal registration.
--
-- The vendor organisation is the tenant. Partner-owned rows carry a second isolation dimension,
-- `partner_id`, enforced here by a RESTRICTIVE policy `partner_isolation` (ANDed with the
-- permissive tenant policies): a row is visible only when
--   * the platform bypass is active, or
--   * the transaction's partner scope is 'vendor' (vendor staff), or
--   * the row's partner_id equals the transaction's partner scope (a partner person).
-- With no scope set, partner tables show nothing (deny by default). The scope is set only by
-- store::TenantTx::begin_program, which derives it IN THE DATABASE from the caller's own active
-- membership (countersign_program_scope): the application passes the authenticated user id,
-- never a partner id, so no request input can name a partner scope.

-- The scope in force: 'vendor', a partner id, 'none', or NULL when unset.
create function countersign_partner_scope() returns text
    language sql stable
as $$ select nullif(current_setting('app.partner_scope', true), '') $$;

-- The partner id in force, or NULL (for 'vendor', 'none', unset, or anything malformed).
create function countersign_partner_scope_id() returns uuid
    language sql stable
as $$
    select case when s ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then s::uuid end
      from (select countersign_partner_scope() as s) x
$$;

-- Applies the partner dimension to a table (after countersign_protect). `col` is the column
-- naming the owning partner (`partner_id`, or `id` on partners itself).
create function countersign_protect_partner(tbl regclass, col name) returns void
    language plpgsql
as $$
begin
    execute format(
        'create policy partner_isolation on %s as restrictive for all '
        'using ((select countersign_bypass_active()) or (select countersign_partner_scope()) = ''vendor'' '
        'or %I = (select countersign_partner_scope_id())) '
        'with check ((select countersign_bypass_active()) or (select countersign_partner_scope()) = ''vendor'' '
        'or %I = (select countersign_partner_scope_id()))', tbl, col, col);
end
$$;

-- Per-organisation programme settings (one row per vendor; absent = defaults).
create table program_settings (
    tenant_id            uuid not null references tenants (id),
    id                   uuid not null,
    deal_protection_days integer not null default 90 check (deal_protection_days between 1 and 3650),
    updated_at           timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id)
);
select countersign_protect('program_settings');

create table partners (
    tenant_id    uuid not null references tenants (id),
    id           uuid not null,
    company_name text not null check (length(company_name) between 1 and 200),
    domain       citext not null check (domain ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$' and length(domain) <= 253),
    tier         text not null default 'registered' check (tier in ('registered', 'silver', 'gold')),
    status       text not null default 'active' check (status in ('active', 'suspended', 'ended')),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, domain)
);
select countersign_protect('partners');
select countersign_protect_partner('partners', 'id');

-- Partner people are members of the vendor organisation with a partner role and their partner.
alter table memberships drop constraint memberships_role_check;
alter table memberships add constraint memberships_role_check check (role in (
    'owner', 'admin', 'staff', 'hod', 'finance', 'md', 'auditor',
    'vendor', 'client', 'partner', 'agent', 'channel_manager', 'partner_admin', 'partner_agent'));
alter table memberships add column partner_id uuid;
alter table memberships add constraint memberships_partner_fk
    foreign key (tenant_id, partner_id) references partners (tenant_id, id);
alter table memberships add constraint memberships_partner_role
    check ((role in ('partner_admin', 'partner_agent')) = (partner_id is not null));

alter table invitations drop constraint invitations_role_check;
alter table invitations add constraint invitations_role_check check (role in (
    'owner', 'admin', 'staff', 'hod', 'finance', 'md', 'auditor',
    'vendor', 'client', 'partner', 'agent', 'channel_manager', 'partner_admin', 'partner_agent'));
alter table invitations add column partner_id uuid;
alter table invitations add constraint invitations_partner_fk
    foreign key (tenant_id, partner_id) references partners (tenant_id, id);
alter table invitations add constraint invitations_partner_role
    check ((role in ('partner_admin', 'partner_agent')) = (partner_id is not null));

-- The scope of `p_user`'s active membership in the current tenant: 'vendor' for vendor-side
-- roles, the partner id for partner roles, 'none' when there is no such membership. Runs as the
-- invoker: it sees only the current tenant's memberships (RLS), which carry no partner policy.
create function countersign_program_scope(p_user uuid) returns text
    language sql stable
as $$
    select coalesce((
        select case when m.role in ('partner_admin', 'partner_agent') then m.partner_id::text
                    when m.role in ('partner', 'agent', 'vendor', 'client') then 'none'
                    else 'vendor' end
          from memberships m
         where m.user_id = p_user and m.status = 'active' and m.deleted_at is null
           and (m.valid_until is null or m.valid_until > now())
    ), 'none')
$$;

create table partner_leads (
    tenant_id       uuid not null references tenants (id),
    id              uuid not null,
    partner_id      uuid not null,
    company_name    text not null check (length(company_name) between 1 and 200),
    customer_domain citext check (customer_domain is null or length(customer_domain) between 3 and 253),
    contact_name    text check (contact_name is null or length(contact_name) between 1 and 200),
    contact_email   citext check (contact_email is null or (contact_email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and length(contact_email) <= 254)),
    notes           text check (notes is null or length(notes) <= 2000),
    created_by      uuid not null,
    created_at      timestamptz not null default now(),
    primary key (tenant_id, id),
    foreign key (tenant_id, partner_id) references partners (tenant_id, id)
);
create index partner_leads_partner on partner_leads (tenant_id, partner_id, created_at);
select countersign_protect('partner_leads');
select countersign_protect_partner('partner_leads', 'partner_id');

-- A company name as conflict detection compares it: lower case, letters and digits only.
create function countersign_company_norm(p text) returns text
    language sql immutable strict parallel safe
as $$ select lower(regexp_replace(p, '[^[:alnum:]]+', '', 'g')) $$;

-- Deal registrations. partner_id NULL: registered by the vendor's own sales (visible to vendor
-- staff only).
create table deal_registrations (
    tenant_id             uuid not null references tenants (id),
    id                    uuid not null,
    partner_id            uuid,
    customer_company      text not null check (length(customer_company) between 1 and 200),
    customer_domain       citext not null check (customer_domain ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$' and length(customer_domain) <= 253),
    amount_minor          bigint not null check (amount_minor > 0),
    currency              text not null check (currency ~ '^[A-Z]{3}$'),
    expected_close        date not null,
    status                text not null default 'submitted'
                          check (status in ('submitted', 'conflict', 'approved', 'rejected', 'expired')),
    decision_reason       text check (decision_reason is null or length(decision_reason) between 1 and 2000),
    decided_by            uuid,
    decided_at            timestamptz,
    protected_until       timestamptz,
    registered_by         uuid not null,
    created_at            timestamptz not null default now(),
    updated_at            timestamptz not null default now(),
    primary key (tenant_id, id),
    foreign key (tenant_id, partner_id) references partners (tenant_id, id),
    check ((status in ('approved', 'expired')) = (protected_until is not null)),
    check ((status in ('approved', 'rejected', 'expired')) = (decided_at is not null and decision_reason is not null))
);
create index deal_registrations_domain on deal_registrations (tenant_id, customer_domain)
    where status in ('submitted', 'conflict', 'approved');
create index deal_registrations_company on deal_registrations (tenant_id, countersign_company_norm(customer_company))
    where status in ('submitted', 'conflict', 'approved');
create index deal_registrations_partner on deal_registrations (tenant_id, partner_id, created_at);
create index deal_registrations_due on deal_registrations (tenant_id, protected_until) where status = 'approved';
select countersign_protect('deal_registrations');
select countersign_protect_partner('deal_registrations', 'partner_id');

-- Which registration a flagged one collides with. Vendor staff only: partner_id is always NULL,
-- so the partner policy shows these rows to the 'vendor' scope and to no partner (the partner is
-- told "conflict", never whose).
create table deal_conflicts (
    tenant_id  uuid not null references tenants (id),
    id         uuid not null,
    partner_id uuid check (partner_id is null),
    deal_id    uuid not null,
    other_id   uuid not null,
    created_at timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, deal_id, other_id),
    foreign key (tenant_id, deal_id) references deal_registrations (tenant_id, id),
    foreign key (tenant_id, other_id) references deal_registrations (tenant_id, id)
);
select countersign_protect('deal_conflicts');
select countersign_protect_partner('deal_conflicts', 'partner_id');

-- Conflict detection for a just-inserted registration: another live registration of the same
-- customer (domain, or normalised company name) by another partner or by the vendor itself,
-- created within the protection window (or still protected). Needs to look across partners, so
-- it switches the partner scope to 'vendor' for its own statements and restores the caller's
-- before returning. It stays inside the current tenant (RLS), reveals nothing to the caller but
-- a boolean, and records the pairs in deal_conflicts (vendor-only).
create function countersign_deal_conflicts(p_deal uuid) returns boolean
    language plpgsql volatile security definer
    set search_path = public, pg_temp
as $$
declare
    v_caller text := coalesce(current_setting('app.partner_scope', true), '');
    v_deal   record;
    v_days   integer;
    v_found  boolean := false;
    v_other  record;
begin
    -- The caller must see the deal in its own scope: a partner cannot probe others' ids.
    select d.* into v_deal from deal_registrations d
     where d.tenant_id = countersign_current_tenant() and d.id = p_deal;
    if not found then
        return false;
    end if;
    perform set_config('app.partner_scope', 'vendor', true);
    select coalesce((select s.deal_protection_days from program_settings s
                      where s.tenant_id = v_deal.tenant_id), 90) into v_days;
    for v_other in
        select o.id from deal_registrations o
         where o.tenant_id = v_deal.tenant_id and o.id <> v_deal.id
           and o.partner_id is distinct from v_deal.partner_id
           and (o.customer_domain = v_deal.customer_domain or countersign_company_norm(o.customer_company) = countersign_company_norm(v_deal.customer_company))
           and ((o.status in ('submitted', 'conflict') and o.created_at > now() - make_interval(days => v_days))
                or (o.status = 'approved' and o.protected_until > now()))
         order by o.created_at, o.id
    loop
        insert into deal_conflicts (tenant_id, id, partner_id, deal_id, other_id)
        values (v_deal.tenant_id, gen_random_uuid(), null, v_deal.id, v_other.id)
        on conflict do nothing;
        v_found := true;
    end loop;
    if v_found and v_deal.status = 'submitted' then
        update deal_registrations set status = 'conflict', updated_at = now()
         where tenant_id = v_deal.tenant_id and id = v_deal.id;
    end if;
    perform set_config('app.partner_scope', v_caller, true);
    return v_found;
end
$$;
revoke all on function countersign_deal_conflicts(uuid) from public;
grant execute on function countersign_deal_conflicts(uuid) to countersign_app;
