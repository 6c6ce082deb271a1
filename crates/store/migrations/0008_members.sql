-- Member management: invitations, joining by verified email domain, guest expiry.
--
-- Invitations are tenant rows (composite key, protected like every tenant table). The token a
-- person receives names its organisation (csi_<tenant>_<invitation>_<secret>), so accepting it
-- looks the invitation up under that organisation's RLS: no cross-tenant lookup exists. Only the
-- SHA-256 of the token is stored.
create table invitations (
    tenant_id              uuid not null references tenants (id),
    id                     uuid not null,
    email                  citext not null check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and length(email) <= 254),
    role                   text not null check (role in (
                              'owner', 'admin', 'staff', 'hod', 'finance', 'md', 'auditor',
                              'vendor', 'client', 'partner', 'agent')),
    department_id          uuid,
    -- Guests (auditors, board members): the membership created on acceptance ends then.
    membership_valid_until timestamptz,
    expires_at             timestamptz not null default now() + interval '7 days',
    token_hash             bytea not null check (octet_length(token_hash) = 32),
    created_by             text not null check (length(created_by) between 1 and 200),
    created_at             timestamptz not null default now(),
    accepted_at            timestamptz,
    accepted_user_id       uuid references users (id),
    revoked_at             timestamptz,
    primary key (tenant_id, id),
    foreign key (tenant_id, department_id) references departments (tenant_id, id),
    check (expires_at > created_at),
    check (accepted_at is null or revoked_at is null)
);
create index invitations_open on invitations (tenant_id, email) where accepted_at is null and revoked_at is null;
select countersign_protect('invitations');
-- Invitations are history: revoked or accepted, never deleted by the application.
revoke delete on invitations from countersign_app;

-- The sweeper and the pending-members list filter on these.
create index memberships_due on memberships (tenant_id, valid_until)
    where status = 'active' and valid_until is not null and deleted_at is null;

-- Joining by verified email domain. Called from an identity transaction (GlobalTx) right after a
-- user's email address was verified. For every active organisation that lists the address's
-- domain (exact, case-insensitive match) and where the user holds no membership yet, it creates
-- one: `active` with role `staff` under auto_join, `pending` under admin_approval, and appends
-- `membership.joined_by_domain` to that organisation's audit chain in the same transaction.
--
-- SECURITY DEFINER because it must see organisations other than the caller's; it reveals only
-- the organisations the user has just joined, acts only for a user whose email is verified, and
-- sets the tenant context for each insert itself, restoring the caller's (empty) context before
-- it returns.
create function countersign_join_by_verified_email(p_user uuid)
    returns table (o_tenant uuid, o_membership uuid, o_status text)
    language plpgsql volatile security definer
    set search_path = public, pg_temp
as $$
declare
    v_caller text := coalesce(current_setting('app.tenant_id', true), '');
    v_domain text;
    v_tenant record;
    v_id     uuid;
    v_status text;
begin
    if current_setting('app.scope', true) is distinct from 'identity' then
        raise exception 'join: an identity transaction is required' using errcode = '42501';
    end if;
    select lower(split_part(u.email::text, '@', 2)) into v_domain
      from users u where u.id = p_user and u.status = 'active' and u.email_verified_at is not null;
    if v_domain is null or v_domain = '' then
        return;
    end if;
    for v_tenant in
        select t.id, t.join_policy from tenants t
         where t.status = 'active' and t.deleted_at is null
           and v_domain::citext = any (t.allowed_email_domains)
         order by t.id
    loop
        perform set_config('app.tenant_id', v_tenant.id::text, true);
        if exists (select 1 from memberships m where m.tenant_id = v_tenant.id and m.user_id = p_user) then
            continue;
        end if;
        v_status := case when v_tenant.join_policy = 'auto_join' then 'active' else 'pending' end;
        v_id := gen_random_uuid();
        insert into memberships (tenant_id, id, user_id, role, status)
        values (v_tenant.id, v_id, p_user, 'staff', v_status);
        perform countersign_audit_append(v_tenant.id, 'user', p_user::text, null, 'membership.joined_by_domain',
            'membership', v_id::text,
            format('{"role":{"from":null,"to":"staff"},"status":{"from":null,"to":%s},"user_id":{"from":null,"to":%s}}',
                   to_json(v_status)::text, to_json(p_user::text)::text),
            'verified email domain ' || v_domain || ' (' || v_tenant.join_policy || ')', null, null, null);
        o_tenant := v_tenant.id;
        o_membership := v_id;
        o_status := v_status;
        return next;
    end loop;
    perform set_config('app.tenant_id', v_caller, true);
end
$$;
revoke all on function countersign_join_by_verified_email(uuid) from public;
grant execute on function countersign_join_by_verified_email(uuid) to countersign_app;
