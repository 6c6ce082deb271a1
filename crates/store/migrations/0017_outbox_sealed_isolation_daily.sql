-- The mail outbox keeps no plaintext secrets, and the cross-tenant figure is shared and daily.
--
-- Outbox bodies (one-time codes, invitation links) are sealed with AES-256-GCM under the MFA key
-- (identity::secret_box; AAD = the row id) and purged once delivered or expired. Rows written
-- before this migration held plaintext: they are deleted (their codes expire within minutes;
-- an invitation can be sent again).
delete from mail_outbox;
alter table mail_outbox drop column body;
alter table mail_outbox
    add column key_id       text not null check (key_id ~ '^[0-9a-f]{16}$'),
    add column nonce        bytea not null check (octet_length(nonce) = 12),
    add column ciphertext   bytea not null check (octet_length(ciphertext) between 17 and 400016),
    add column expires_at   timestamptz not null,
    add column delivered_at timestamptz;
create index mail_outbox_expiry on mail_outbox (expires_at);
grant update (delivered_at), delete on mail_outbox to countersign_app;

-- Cross-tenant attempts refused, per UTC day, by every node (see store::metrics). Owner only;
-- the app role adds to it and reads it through the two functions below.
create table platform_isolation_daily (
    day                  date primary key,
    cross_tenant_refused bigint not null default 0 check (cross_tenant_refused >= 0),
    updated_at           timestamptz not null default now()
);
select countersign_owner_only('platform_isolation_daily');

create function countersign_count_cross_tenant(n bigint) returns void
    language sql volatile security definer
    set search_path = public, pg_temp
as $$
    insert into platform_isolation_daily as d (day, cross_tenant_refused)
    values ((now() at time zone 'utc')::date, greatest(n, 0))
    on conflict (day) do update set cross_tenant_refused = d.cross_tenant_refused + greatest(n, 0),
                                    updated_at = now()
$$;
revoke all on function countersign_count_cross_tenant(bigint) from public;
grant execute on function countersign_count_cross_tenant(bigint) to countersign_app;

create function countersign_cross_tenant_today() returns table (o_day date, o_refused bigint)
    language sql stable security definer
    set search_path = public, pg_temp
as $$
    select (now() at time zone 'utc')::date,
           coalesce((select d.cross_tenant_refused from platform_isolation_daily d
                      where d.day = (now() at time zone 'utc')::date), 0)
$$;
revoke all on function countersign_cross_tenant_today() from public;
grant execute on function countersign_cross_tenant_today() to countersign_app;
