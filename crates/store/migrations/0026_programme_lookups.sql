-- Measured by `countersign-bench deals` (1,000 partners, 1M leads, 10,000 earlier deals):
--
-- * Deal registration p99 was ~230 ms at 8 clients: the conflict check's single statement ORed
--   "same domain" with "same normalised company", so neither partial index of 0021 could serve
--   it, and every registration scanned all of the vendor's registrations, normalising each
--   company name with a regex (29 ms on a quiet database, growing with every registration).
--   Each match now has its own arm, written with the partial indexes' own predicates (status in
--   submitted/conflict/approved) and the tenant named, so each is one index probe.
-- * The leads CSV export ran at ~3,400 rows/s: no index gave its order, so each 1,000-row page
--   sorted the vendor's million leads again. (tenant, created_at desc, id desc) walks them in
--   export order (the bench measured ~530,000 rows/s with it).
create index partner_leads_export on partner_leads (tenant_id, created_at desc, id desc);

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
             where o.tenant_id = v_deal.tenant_id and o.customer_domain = v_deal.customer_domain
               and o.status in ('submitted', 'conflict', 'approved')
            union
            select o.id, o.partner_id, o.status, o.created_at, o.protected_until from deal_registrations o
             where o.tenant_id = v_deal.tenant_id
               and countersign_company_norm(o.customer_company) = countersign_company_norm(v_deal.customer_company)
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
