-- Network-level defences: failed-login tracking for the suspicious-login signal (global,
-- identity scope) and the per-organisation IP allowlist (tenant table).

-- One row per failed password check of an existing account, with the client address. Shared by
-- every server process, so "one account, failures from N distinct addresses within an hour" is
-- seen across nodes. Rows older than a day are pruned by the login path itself.
create table login_failures (
    user_id uuid not null references users (id),
    ip      inet not null,
    at      timestamptz not null default now()
);
create index login_failures_user_at on login_failures (user_id, at);
create index login_failures_at on login_failures (at);
alter table login_failures enable row level security;
alter table login_failures force row level security;
create policy identity_scope on login_failures as permissive for all
    using (current_setting('app.scope', true) = 'identity')
    with check (current_setting('app.scope', true) = 'identity');
create policy platform_bypass on login_failures as permissive for all
    using ((select countersign_bypass_active())) with check ((select countersign_bypass_active()));
grant select, insert, delete on login_failures to countersign_app;

-- When the suspicious-login signal last fired for an account: at most once per hour, decided by
-- one atomic upsert so two nodes seeing the same burst do not both emit it.
create table login_signals (
    user_id            uuid primary key references users (id),
    suspicious_at      timestamptz not null
);
alter table login_signals enable row level security;
alter table login_signals force row level security;
create policy identity_scope on login_signals as permissive for all
    using (current_setting('app.scope', true) = 'identity')
    with check (current_setting('app.scope', true) = 'identity');
create policy platform_bypass on login_signals as permissive for all
    using ((select countersign_bypass_active())) with check ((select countersign_bypass_active()));
grant select, insert, update on login_signals to countersign_app;

-- Per-organisation IP allowlist. No rows: every address may use the organisation. One or more
-- rows: sign-in, refresh and every authenticated request must come from inside one of the
-- CIDRs. The list is replaced as a whole (history lives in the audit ledger).
create table tenant_ip_allowlist (
    tenant_id  uuid not null references tenants (id),
    id         uuid not null,
    cidr       cidr not null,
    note       text not null default '' check (length(note) <= 200),
    created_at timestamptz not null default now(),
    created_by text not null check (length(created_by) between 1 and 200),
    primary key (tenant_id, id),
    unique (tenant_id, cidr)
);
select countersign_protect('tenant_ip_allowlist');
