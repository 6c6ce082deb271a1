-- Deal registration p99 (issue 17; `countersign-bench deals`, 10,000 earlier registrations in the
-- vendor, 8 clients): ~270 ms, with pgbench on the same statements just as slow, because
-- `countersign_deal_conflicts` took ~35 ms alone and ~160 ms at 8 clients on 2 cores. EXPLAIN
-- ANALYZE of its probes as the app role in the vendor scope showed two SEQUENTIAL scans of the
-- vendor's registrations (10,535 rows removed by the filter each), not the partial indexes of
-- 0021 that 0026 wrote the probes for. The reason is row-level security: a query's own conditions
-- may only run before the policies' (i.e. drive an index scan) when every function in them is
-- LEAKPROOF. citext's `=` is not, and neither is the regexp inside countersign_company_norm, so
-- Postgres evaluated them row by row after the tenant and partner policies. (Marking them
-- leakproof needs a superuser and would be a claim about code we do not own.)
--
-- So each key is stored as plain text in a generated column, compared with text `=` (leakproof):
-- the domain lower-cased (what citext compared case-insensitively), the company normalised. Each
-- probe is one index scan again (~0.9 ms for both, measured the same way).
alter table deal_registrations
    add column customer_domain_key text generated always as (lower(customer_domain::text)) stored,
    add column customer_company_key text generated always as (countersign_company_norm(customer_company)) stored;
drop index deal_registrations_domain;
drop index deal_registrations_company;
create index deal_registrations_domain_key on deal_registrations (tenant_id, customer_domain_key)
    where status in ('submitted', 'conflict', 'approved');
create index deal_registrations_company_key on deal_registrations (tenant_id, customer_company_key)
    where status in ('submitted', 'conflict', 'approved');

create or replace function countersign_deal_conflicts(p_deal uuid) returns boolean
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
        select c.id from (
            select o.id, o.partner_id, o.status, o.created_at, o.protected_until from deal_registrations o
             where o.tenant_id = v_deal.tenant_id and o.customer_domain_key = v_deal.customer_domain_key
               and o.status in ('submitted', 'conflict', 'approved')
            union
            select o.id, o.partner_id, o.status, o.created_at, o.protected_until from deal_registrations o
             where o.tenant_id = v_deal.tenant_id and o.customer_company_key = v_deal.customer_company_key
               and o.status in ('submitted', 'conflict', 'approved')
        ) c
         where c.id <> v_deal.id
           and c.partner_id is distinct from v_deal.partner_id
           and ((c.status in ('submitted', 'conflict') and c.created_at > now() - make_interval(days => v_days))
                or (c.status = 'approved' and c.protected_until > now()))
         order by c.created_at, c.id
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
