-- Audit ledger: per-tenant hash chains plus one platform chain, append-only in the database.
--
-- Appends go through countersign_audit_append() / countersign_platform_audit_append(), which run
-- as the owner (SECURITY DEFINER) and are the only writers: the app role has SELECT on the
-- ledger, never INSERT/UPDATE/DELETE, so it cannot write a row whose hash it computed itself.
-- The head row is locked (SELECT .. FOR UPDATE) and advanced in the same transaction, so sequence
-- numbers are gap-free under concurrency and each append gets its predecessor's hash.
--
-- Canonical encoding (version 1), re-implementable by a third party (docs/AUDIT.md):
--   bytes  = "CSAUDIT1" || field(chain) || field(seq) || field(occurred_at_us) || field(actor_kind)
--            || field(actor_id) || field(actor_role) || field(action) || field(entity_type)
--            || field(entity_id) || field(changes) || field(reason) || field(request_id)
--            || field(ip) || field(user_agent)
--   field(NULL) = 0xFFFFFFFF;  field(s) = uint32 big-endian length of UTF-8(s) || UTF-8(s)
--   chain = tenant UUID (lowercase, hyphenated) or "platform"; seq and occurred_at_us (microseconds
--   since the Unix epoch) in decimal ASCII; ip in PostgreSQL host() form; changes verbatim JSON.
--   hash = SHA-256(prev_hash || bytes), prev_hash of seq 1 = 32 zero bytes.

-- SECURITY DEFINER functions run as the owner, which FORCE RLS subjects to the tenant policy like
-- anyone else. countersign_resolve_tenant() must find a slug before any tenant context exists,
-- so the owner (reachable only through migrations and the definer functions in this schema;
-- the app role cannot SET ROLE to it) may read organisations.
create policy owner_definer_read on tenants as permissive for select
    using (current_user = 'countersign_owner');

create function countersign_audit_field(v text) returns bytea
    language sql immutable parallel safe
as $$
    select case when v is null then '\xffffffff'::bytea
                else int4send(octet_length(convert_to(v, 'UTF8'))) || convert_to(v, 'UTF8') end
$$;

create function countersign_audit_encode(
    p_chain text, p_seq bigint, p_at timestamptz, p_actor_kind text, p_actor_id text, p_actor_role text,
    p_action text, p_entity_type text, p_entity_id text, p_changes text, p_reason text,
    p_request_id text, p_ip text, p_user_agent text) returns bytea
    language sql immutable parallel safe
as $$
    select convert_to('CSAUDIT1', 'UTF8')
        || countersign_audit_field(p_chain)
        || countersign_audit_field(p_seq::text)
        || countersign_audit_field(((extract(epoch from p_at) * 1000000)::bigint)::text)
        || countersign_audit_field(p_actor_kind)
        || countersign_audit_field(p_actor_id)
        || countersign_audit_field(p_actor_role)
        || countersign_audit_field(p_action)
        || countersign_audit_field(p_entity_type)
        || countersign_audit_field(p_entity_id)
        || countersign_audit_field(p_changes)
        || countersign_audit_field(p_reason)
        || countersign_audit_field(p_request_id)
        || countersign_audit_field(p_ip)
        || countersign_audit_field(p_user_agent)
$$;

-- Raised by every ledger table on UPDATE, DELETE and TRUNCATE — for the owner too. A superuser
-- can still disable triggers; the verifier and signed checkpoints exist for that case.
create function countersign_audit_immutable() returns trigger
    language plpgsql
as $$
begin
    raise exception 'audit ledger is append-only: % on % refused', tg_op, tg_table_name
        using errcode = '55000', hint = 'audit rows are never changed or removed';
end
$$;

create table audit_heads (
    tenant_id  uuid primary key references tenants (id),
    seq        bigint not null check (seq >= 0),
    hash       bytea not null check (octet_length(hash) = 32),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
select countersign_protect('audit_heads');
revoke insert, update, delete on audit_heads from countersign_app;

-- A head may only move forward, and is never removed.
create function countersign_audit_head_forward() returns trigger
    language plpgsql
as $$
begin
    if tg_op = 'UPDATE' and new.seq >= old.seq and new.tenant_id = old.tenant_id then
        return new;
    end if;
    raise exception 'audit head may only advance: % on % refused', tg_op, tg_table_name using errcode = '55000';
end
$$;
create trigger audit_heads_forward before update or delete on audit_heads
    for each row execute function countersign_audit_head_forward();
create trigger audit_heads_no_truncate before truncate on audit_heads
    for each statement execute function countersign_audit_immutable();

create table audit_events (
    tenant_id   uuid not null references tenants (id),
    seq         bigint not null check (seq > 0),
    occurred_at timestamptz not null,
    actor_kind  text not null check (actor_kind in ('user', 'api_key', 'system')),
    actor_id    text not null check (length(actor_id) between 1 and 200),
    actor_role  text check (length(actor_role) <= 64),
    action      text not null check (action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$' and length(action) <= 100),
    entity_type text not null check (entity_type ~ '^[a-z][a-z0-9_]*$' and length(entity_type) <= 64),
    entity_id   text check (length(entity_id) <= 200),
    changes     text not null check (length(changes) <= 65536),
    reason      text check (length(reason) <= 2000),
    request_id  text check (length(request_id) <= 200),
    ip          inet,
    user_agent  text check (length(user_agent) <= 1000),
    prev_hash   bytea not null check (octet_length(prev_hash) = 32),
    hash        bytea not null check (octet_length(hash) = 32),
    primary key (tenant_id, seq)
);
create index audit_events_entity on audit_events (tenant_id, entity_type, entity_id, seq desc);
create index audit_events_actor on audit_events (tenant_id, actor_id, seq desc);
create index audit_events_action on audit_events (tenant_id, action, seq desc);
create index audit_events_time on audit_events (tenant_id, occurred_at);
select countersign_protect('audit_events');
revoke insert, update, delete on audit_events from countersign_app;
create trigger audit_events_append_only before update or delete on audit_events
    for each row execute function countersign_audit_immutable();
create trigger audit_events_no_truncate before truncate on audit_events
    for each statement execute function countersign_audit_immutable();

-- Ed25519 signatures over (chain, seq, hash, signed_at), made by the server's key (store never
-- sees the key: the audit crate signs, the app role inserts).
create table audit_checkpoints (
    tenant_id  uuid not null references tenants (id),
    seq        bigint not null check (seq > 0),
    hash       bytea not null check (octet_length(hash) = 32),
    signed_at  timestamptz not null,
    key_id     text not null check (key_id ~ '^[0-9a-f]{16}$'),
    signature  bytea not null check (octet_length(signature) = 64),
    primary key (tenant_id, seq)
);
select countersign_protect('audit_checkpoints');
revoke update, delete on audit_checkpoints from countersign_app;
create trigger audit_checkpoints_append_only before update or delete on audit_checkpoints
    for each row execute function countersign_audit_immutable();
create trigger audit_checkpoints_no_truncate before truncate on audit_checkpoints
    for each statement execute function countersign_audit_immutable();

-- The platform chain: bypass grants, platform-admin actions, global identity changes. No
-- tenant_id (so no tenant policy); the app role reads it only inside a granted bypass.
create function countersign_platform_head_forward() returns trigger
    language plpgsql
as $$
begin
    if tg_op = 'UPDATE' and new.seq >= old.seq then
        return new;
    end if;
    raise exception 'audit head may only advance: % on % refused', tg_op, tg_table_name using errcode = '55000';
end
$$;

create table platform_audit_head (
    singleton  boolean primary key default true check (singleton),
    seq        bigint not null check (seq >= 0),
    hash       bytea not null check (octet_length(hash) = 32),
    updated_at timestamptz not null default now()
);
create trigger platform_audit_head_forward before update or delete on platform_audit_head
    for each row execute function countersign_platform_head_forward();
create trigger platform_audit_head_no_truncate before truncate on platform_audit_head
    for each statement execute function countersign_audit_immutable();

create table platform_audit_events (
    seq         bigint primary key check (seq > 0),
    occurred_at timestamptz not null,
    actor_kind  text not null check (actor_kind in ('user', 'api_key', 'system')),
    actor_id    text not null check (length(actor_id) between 1 and 200),
    actor_role  text check (length(actor_role) <= 64),
    action      text not null check (action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$' and length(action) <= 100),
    entity_type text not null check (entity_type ~ '^[a-z][a-z0-9_]*$' and length(entity_type) <= 64),
    entity_id   text check (length(entity_id) <= 200),
    changes     text not null check (length(changes) <= 65536),
    reason      text check (length(reason) <= 2000),
    request_id  text check (length(request_id) <= 200),
    ip          inet,
    user_agent  text check (length(user_agent) <= 1000),
    prev_hash   bytea not null check (octet_length(prev_hash) = 32),
    hash        bytea not null check (octet_length(hash) = 32)
);
create trigger platform_audit_events_append_only before update or delete on platform_audit_events
    for each row execute function countersign_audit_immutable();
create trigger platform_audit_events_no_truncate before truncate on platform_audit_events
    for each statement execute function countersign_audit_immutable();

create table platform_audit_checkpoints (
    seq        bigint primary key check (seq > 0),
    hash       bytea not null check (octet_length(hash) = 32),
    signed_at  timestamptz not null,
    key_id     text not null check (key_id ~ '^[0-9a-f]{16}$'),
    signature  bytea not null check (octet_length(signature) = 64)
);
create trigger platform_audit_checkpoints_append_only before update or delete on platform_audit_checkpoints
    for each row execute function countersign_audit_immutable();
create trigger platform_audit_checkpoints_no_truncate before truncate on platform_audit_checkpoints
    for each statement execute function countersign_audit_immutable();

alter table platform_audit_head enable row level security;
alter table platform_audit_events enable row level security;
alter table platform_audit_checkpoints enable row level security;
create policy platform_read on platform_audit_head for select using ((select countersign_bypass_active()));
create policy platform_read on platform_audit_events for select using ((select countersign_bypass_active()));
create policy platform_read on platform_audit_checkpoints for select using ((select countersign_bypass_active()));
-- Checkpoints are signed in the server process; inserting one needs no bypass (the signature,
-- not the writer, is what a verifier trusts).
create policy platform_sign on platform_audit_checkpoints for insert with check (true);
grant select on platform_audit_head, platform_audit_events, platform_audit_checkpoints to countersign_app;
grant insert on platform_audit_checkpoints to countersign_app;

-- Appends one event to a tenant's chain. The tenant must be the transaction's tenant, or the
-- transaction must hold a granted bypass. Returns the new sequence number and hash.
create function countersign_audit_append(
    p_tenant uuid, p_actor_kind text, p_actor_id text, p_actor_role text, p_action text,
    p_entity_type text, p_entity_id text, p_changes text, p_reason text, p_request_id text,
    p_ip inet, p_user_agent text) returns table (o_seq bigint, o_hash bytea)
    language plpgsql volatile security definer
    set search_path = public, pg_temp
as $$
declare
    v_seq  bigint;
    v_prev bytea;
    v_at   timestamptz;
    v_hash bytea;
begin
    if p_tenant is null then
        raise exception 'audit: a tenant is required' using errcode = '22004';
    end if;
    if p_tenant is distinct from countersign_current_tenant() and not countersign_bypass_active() then
        raise exception 'audit: tenant % is not this transaction''s tenant', p_tenant using errcode = '42501';
    end if;
    perform p_changes::jsonb; -- must be JSON; raises 22P02 otherwise
    -- Lock the head (creating it at seq 0 for a new chain); one new head version per append.
    select h.seq, h.hash into v_seq, v_prev from audit_heads h where h.tenant_id = p_tenant for update;
    if not found then
        insert into audit_heads (tenant_id, seq, hash)
        values (p_tenant, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
        on conflict (tenant_id) do nothing;
        select h.seq, h.hash into v_seq, v_prev from audit_heads h where h.tenant_id = p_tenant for update;
    end if;
    v_seq := v_seq + 1;
    -- Taken after the head lock, so time never runs backwards along a chain.
    v_at := date_trunc('microseconds', clock_timestamp());
    v_hash := sha256(v_prev || countersign_audit_encode(p_tenant::text, v_seq, v_at, p_actor_kind, p_actor_id,
        p_actor_role, p_action, p_entity_type, p_entity_id, p_changes, p_reason, p_request_id, host(p_ip),
        p_user_agent));
    insert into audit_events (tenant_id, seq, occurred_at, actor_kind, actor_id, actor_role, action, entity_type,
        entity_id, changes, reason, request_id, ip, user_agent, prev_hash, hash)
    values (p_tenant, v_seq, v_at, p_actor_kind, p_actor_id, p_actor_role, p_action, p_entity_type,
        p_entity_id, p_changes, p_reason, p_request_id, p_ip, p_user_agent, v_prev, v_hash);
    update audit_heads set seq = v_seq, hash = v_hash, updated_at = now() where tenant_id = p_tenant;
    return query select v_seq, v_hash;
end
$$;

create function countersign_platform_audit_append(
    p_actor_kind text, p_actor_id text, p_actor_role text, p_action text,
    p_entity_type text, p_entity_id text, p_changes text, p_reason text, p_request_id text,
    p_ip inet, p_user_agent text) returns table (o_seq bigint, o_hash bytea)
    language plpgsql volatile security definer
    set search_path = public, pg_temp
as $$
declare
    v_seq  bigint;
    v_prev bytea;
    v_at   timestamptz;
    v_hash bytea;
begin
    perform p_changes::jsonb;
    select h.seq, h.hash into v_seq, v_prev from platform_audit_head h where h.singleton for update;
    if not found then
        insert into platform_audit_head (singleton, seq, hash)
        values (true, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
        on conflict (singleton) do nothing;
        select h.seq, h.hash into v_seq, v_prev from platform_audit_head h where h.singleton for update;
    end if;
    v_seq := v_seq + 1;
    v_at := date_trunc('microseconds', clock_timestamp());
    v_hash := sha256(v_prev || countersign_audit_encode('platform', v_seq, v_at, p_actor_kind, p_actor_id,
        p_actor_role, p_action, p_entity_type, p_entity_id, p_changes, p_reason, p_request_id, host(p_ip),
        p_user_agent));
    insert into platform_audit_events (seq, occurred_at, actor_kind, actor_id, actor_role, action, entity_type,
        entity_id, changes, reason, request_id, ip, user_agent, prev_hash, hash)
    values (v_seq, v_at, p_actor_kind, p_actor_id, p_actor_role, p_action, p_entity_type,
        p_entity_id, p_changes, p_reason, p_request_id, p_ip, p_user_agent, v_prev, v_hash);
    update platform_audit_head set seq = v_seq, hash = v_hash, updated_at = now() where singleton;
    return query select v_seq, v_hash;
end
$$;

-- The platform head and its newest checkpoint, for the checkpoint signer (nothing about tenants).
create function countersign_platform_audit_head() returns table (o_seq bigint, o_hash bytea, o_checkpointed bigint)
    language sql stable security definer
    set search_path = public, pg_temp
as $$ select h.seq, h.hash, (select max(c.seq) from platform_audit_checkpoints c) from platform_audit_head h $$;

revoke all on function countersign_audit_append(uuid, text, text, text, text, text, text, text, text, text, inet, text) from public;
revoke all on function countersign_platform_audit_append(text, text, text, text, text, text, text, text, text, inet, text) from public;
grant execute on function countersign_audit_append(uuid, text, text, text, text, text, text, text, text, text, inet, text) to countersign_app;
grant execute on function countersign_platform_audit_append(text, text, text, text, text, text, text, text, text, inet, text) to countersign_app;

-- Every bypass grant now also lands on the platform chain, in the same transaction.
create or replace function countersign_begin_bypass(secret text, actor text, reason text) returns void
    language plpgsql volatile security definer
    set search_path = public, pg_temp
as $$
declare
    v_nonce text := encode(sha256(gen_random_uuid()::text::bytea || convert_to(secret, 'UTF8')), 'hex');
    v_id    bigint;
begin
    if not exists (
        select 1 from platform_bypass_secrets
         where secret_hash = sha256(convert_to(secret, 'UTF8')) and expires_at > now()
    ) then
        raise exception 'bypass refused: unknown or expired process secret'
            using errcode = '42501';
    end if;
    insert into platform_bypass_log (actor, reason, backend_pid, xact_start, nonce)
    values (actor, reason, pg_backend_pid(), now(), v_nonce)
    returning id into v_id;
    perform countersign_platform_audit_append('system', actor, null, 'platform.bypass_granted', 'bypass',
        v_id::text, '{}', reason, null, null, null);
    perform set_config('app.bypass', v_nonce, true);
end
$$;
