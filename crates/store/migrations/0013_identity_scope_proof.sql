-- The identity scope needs the process secret; every global table carries its own guard.
--
-- Until now `app.scope = 'identity'` opened every global identity table (users, argon2 hashes,
-- sealed TOTP secrets, recovery-code hashes, the mail outbox) to anyone who could connect as the
-- app role and set it. Now a GlobalTx begins with countersign_begin_identity(secret), which checks
-- the registered process secret (as the bypass does) and sets `app.identity` to a proof:
-- SHA-256(key ‖ backend pid ‖ transaction start), the key readable only by the owner. The proof is
-- good for that one transaction on that one backend; a guessed or copied value opens nothing.
-- No row is written per transaction (sign-in throughput), unlike the audited bypass.
--
-- Also here: owner-only tables get forced RLS with an owner policy (the guard now covers every
-- table), process secrets get a lease the live process renews (a killed process's secret dies
-- by itself), and only the signer (a process holding the secret) may insert platform checkpoints.

-- The proof key. Owner only; never leaves the database.
create table platform_proof_key (
    singleton boolean primary key default true check (singleton),
    key       bytea not null check (octet_length(key) = 32),
    created_at timestamptz not null default now()
);
insert into platform_proof_key (key)
values (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')));

-- The owner-only guard: RLS forced, one policy that admits only the owner role (migrations,
-- SECURITY DEFINER functions). The app role holds no privilege on these tables either.
create function countersign_owner_only(tbl regclass) returns void
    language plpgsql
    set search_path = public, pg_temp
as $$
begin
    execute format('alter table %s enable row level security', tbl);
    execute format('alter table %s force row level security', tbl);
    execute format($p$create policy owner_only on %s as permissive for all
        using (current_user = 'countersign_owner') with check (current_user = 'countersign_owner')$p$, tbl);
    execute format('revoke all on %s from countersign_app, public', tbl);
end
$$;
select countersign_owner_only('platform_proof_key');
select countersign_owner_only('platform_bypass_secrets');
select countersign_owner_only('platform_bypass_log');
select countersign_owner_only('schema_migrations');

-- Readiness asks for the schema version through this (the table itself is owner-only now).
create function countersign_schema_version() returns bigint
    language sql stable security definer
    set search_path = public, pg_temp
as $$ select max(version) from schema_migrations $$;

-- The proof for this backend and this transaction (now() is the transaction's start). The
-- message has a fixed length, so SHA-256(key ‖ message) admits no length extension.
create function countersign_identity_proof() returns bytea
    language sql stable security definer
    set search_path = public, pg_temp
as $$
    select sha256(k.key || int4send(pg_backend_pid()) || int8send((extract(epoch from now()) * 1000000)::bigint))
      from platform_proof_key k where k.singleton
$$;
revoke all on function countersign_identity_proof() from public;

-- True only in a transaction that called countersign_begin_identity() with a live process
-- secret. Compared as digests, so the comparison's timing says nothing about the proof.
create function countersign_identity_active() returns boolean
    language sql stable security definer
    set search_path = public, pg_temp
as $$
    select coalesce(sha256(convert_to(current_setting('app.identity', true), 'UTF8'))
                    = sha256(convert_to(encode(countersign_identity_proof(), 'hex'), 'UTF8')), false)
$$;

-- Opens the identity scope for this transaction when `secret` is a registered, unexpired process
-- secret. Writes nothing.
create function countersign_begin_identity(secret text) returns void
    language plpgsql volatile security definer
    set search_path = public, pg_temp
as $$
begin
    if secret is null or not exists (
        select 1 from platform_bypass_secrets
         where secret_hash = sha256(convert_to(secret, 'UTF8')) and expires_at > now()
    ) then
        raise exception 'identity scope refused: unknown or expired process secret'
            using errcode = '42501';
    end if;
    perform set_config('app.identity', encode(countersign_identity_proof(), 'hex'), true);
end
$$;

-- Every identity-scope policy now tests the proof, not the raw setting.
do $$
declare r record;
begin
    for r in
        select c.oid::regclass as tbl from pg_policy p join pg_class c on c.oid = p.polrelid
         join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'public' and p.polname = 'identity_scope'
    loop
        execute format('alter policy identity_scope on %s using ((select countersign_identity_active())) '
                       'with check ((select countersign_identity_active()))', r.tbl);
    end loop;
end
$$;

-- New global identity tables created after this migration get the guarded policy.
create or replace function countersign_identity_only(tbl regclass) returns void
    language plpgsql
    set search_path = public, pg_temp
as $$
begin
    execute format('alter table %s enable row level security', tbl);
    execute format('alter table %s force row level security', tbl);
    execute format($p$create policy identity_scope on %s as permissive for all
        using ((select countersign_identity_active())) with check ((select countersign_identity_active()))$p$, tbl);
    execute format($p$create policy platform_bypass on %s as permissive for all
        using ((select countersign_bypass_active())) with check ((select countersign_bypass_active()))$p$, tbl);
end
$$;

-- Joining by verified email needs a proven identity transaction (was: the raw setting).
create or replace function countersign_join_by_verified_email(p_user uuid)
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
    if not countersign_identity_active() then
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

-- The platform chain: RLS forced; the owner (the append functions) writes, a granted bypass
-- reads, and a checkpoint is inserted only by a process that proved its secret (the signer runs
-- in a GlobalTx). Was: `with check (true)`, any app-role connection could insert a forged one.
alter table platform_audit_head force row level security;
alter table platform_audit_events force row level security;
alter table platform_audit_checkpoints force row level security;
create policy owner_only on platform_audit_head as permissive for all
    using (current_user = 'countersign_owner') with check (current_user = 'countersign_owner');
create policy owner_only on platform_audit_events as permissive for all
    using (current_user = 'countersign_owner') with check (current_user = 'countersign_owner');
create policy owner_only on platform_audit_checkpoints as permissive for all
    using (current_user = 'countersign_owner') with check (current_user = 'countersign_owner');
drop policy platform_sign on platform_audit_checkpoints;
create policy platform_sign on platform_audit_checkpoints as permissive for insert
    with check ((select countersign_identity_active()));

-- Process secrets hold a lease (see store::connect): registered for minutes, renewed by the live
-- process through this function, which only extends an unexpired lease of a secret the caller
-- holds. A process killed with SIGKILL stops renewing and its secret expires by itself.
create function countersign_renew_process_secret(secret text, lease_seconds integer) returns boolean
    language plpgsql volatile security definer
    set search_path = public, pg_temp
as $$
declare
    v_found boolean;
begin
    update platform_bypass_secrets
       set expires_at = now() + make_interval(secs => least(greatest(coalesce(lease_seconds, 300), 1), 3600))
     where secret_hash = sha256(convert_to(secret, 'UTF8')) and expires_at > now();
    v_found := found;
    -- Dead processes' secrets are useless already; keep the table small.
    delete from platform_bypass_secrets where expires_at < now() - interval '1 day';
    return v_found;
end
$$;
revoke all on function countersign_renew_process_secret(text, integer) from public;
grant execute on function countersign_renew_process_secret(text, integer) to countersign_app;

-- Secrets registered before leases existed (400 days) die within one lease of this migration.
update platform_bypass_secrets set expires_at = least(expires_at, now() + interval '5 minutes');
