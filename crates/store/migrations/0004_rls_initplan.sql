-- Tenant context is read once per statement, not once per row.
--
-- `tenant_id = countersign_current_tenant()` sits in a policy ORed with the bypass policy, so the
-- planner evaluated it per row: a GUC lookup and a uuid parse for every row scanned (about a
-- quarter of the cost of streaming a tenant's audit chain). Wrapped in a scalar subquery it
-- becomes an init plan, evaluated once. The meaning is unchanged; the migration guard accepts
-- only this form from now on.
create or replace function countersign_protect(tbl regclass) returns void
    language plpgsql
as $$
begin
    execute format('alter table %s enable row level security', tbl);
    execute format('alter table %s force row level security', tbl);
    execute format(
        'create policy tenant_isolation on %s as permissive for all '
        'using (tenant_id = (select countersign_current_tenant())) '
        'with check (tenant_id = (select countersign_current_tenant()))', tbl);
    execute format(
        'create policy platform_bypass on %s as permissive for all '
        'using ((select countersign_bypass_active())) '
        'with check ((select countersign_bypass_active()))', tbl);
    execute format('grant select, insert, update, delete on %s to countersign_app', tbl);
end
$$;

do $$
declare
    r record;
begin
    for r in
        select p.polrelid::regclass as tbl, case when c.relname = 'tenants' then 'id' else 'tenant_id' end as col
          from pg_policy p join pg_class c on c.oid = p.polrelid
         where p.polname = 'tenant_isolation'
    loop
        execute format(
            'alter policy tenant_isolation on %s using (%I = (select countersign_current_tenant())) '
            'with check (%I = (select countersign_current_tenant()))', r.tbl, r.col, r.col);
    end loop;
end
$$;
