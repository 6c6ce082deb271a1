-- compatible-with: 40
-- The checks behind every policy and every audit append, without parsing and planning SQL
-- function bodies again on each call. Same answers for every input; only the cost changes.
--
-- A SQL function is inlined into the statement that calls it (planned once with it, cached with
-- its plan) only if it is neither SECURITY DEFINER nor has SET, and, when declared IMMUTABLE,
-- calls nothing less than immutable. Otherwise each call site parses, analyses and plans the body
-- again every time its statement runs (fmgr_sql) — measured at 40-90 µs per call here.
--
-- 1. `countersign_audit_field` and `countersign_audit_encode` were declared IMMUTABLE but call
--    `convert_to`, which is STABLE, so neither was ever inlined: every append planned fifteen
--    function bodies (one encode, fourteen fields) — most of an append's ~1 ms in the database.
--    STABLE is their true label (no index or constraint uses them); now they inline into the
--    append's cached plan. The encoding (docs/AUDIT.md) is byte for byte the same.
-- 2. `(select countersign_bypass_active())` opens every tenant table's policies (and the
--    restrictive partner and relation policies), `countersign_identity_active()` those of `users`
--    and of every global identity table. Both were SQL functions with SECURITY DEFINER and SET
--    search_path. Each is now an inlinable SQL-standard function (its body parsed here, never
--    under the caller's search_path) that tests first whether the setting is there at all — which
--    only the caller's own transaction decides, and where it is empty the old check answered
--    false too — and only then asks the SECURITY DEFINER check, now PL/pgSQL (plans cached per
--    connection) with the old body.
-- 3. `countersign_identity_proof` and `countersign_resolve_tenant` (every identity transaction,
--    every sign-in) become PL/pgSQL with the same bodies, for the same reason.

create or replace function countersign_audit_field(v text) returns bytea
    language sql stable parallel safe
as $$
    select case when v is null then '\xffffffff'::bytea
                else int4send(octet_length(convert_to(v, 'UTF8'))) || convert_to(v, 'UTF8') end
$$;

create or replace function countersign_audit_encode(
    p_chain text, p_seq bigint, p_at timestamptz, p_actor_kind text, p_actor_id text, p_actor_role text,
    p_action text, p_entity_type text, p_entity_id text, p_changes text, p_reason text,
    p_request_id text, p_ip text, p_user_agent text) returns bytea
    language sql stable parallel safe
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

create function countersign_bypass_proven() returns boolean
    language plpgsql stable security definer
    set search_path = public, pg_temp
as $$
begin
    return exists (
        select 1 from platform_bypass_log
         where backend_pid = pg_backend_pid()
           and xact_start = now()
           and nonce = current_setting('app.bypass', true));
end
$$;

create or replace function countersign_bypass_active() returns boolean
    language sql stable
begin atomic
    select coalesce(current_setting('app.bypass', true), '') <> '' and countersign_bypass_proven();
end;

create or replace function countersign_identity_proof() returns bytea
    language plpgsql stable security definer
    set search_path = public, pg_temp
as $$
begin
    return (select sha256(k.key || int4send(pg_backend_pid()) || int8send((extract(epoch from now()) * 1000000)::bigint))
              from platform_proof_key k where k.singleton);
end
$$;

-- Compared as digests, as before, so the comparison's timing says nothing about the proof.
create function countersign_identity_proven() returns boolean
    language plpgsql stable security definer
    set search_path = public, pg_temp
as $$
begin
    return coalesce(sha256(convert_to(current_setting('app.identity', true), 'UTF8'))
                    = sha256(convert_to(encode(countersign_identity_proof(), 'hex'), 'UTF8')), false);
end
$$;

create or replace function countersign_identity_active() returns boolean
    language sql stable
begin atomic
    select coalesce(current_setting('app.identity', true), '') <> '' and countersign_identity_proven();
end;

create or replace function countersign_resolve_tenant(p_slug text) returns uuid
    language plpgsql stable security definer
    set search_path = public, pg_temp
as $$
begin
    return (select id from tenants where slug = lower(p_slug) and status = 'active' and deleted_at is null);
end
$$;
