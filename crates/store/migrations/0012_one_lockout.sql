-- One lockout for every credential check (identity::lockout).
--
-- A row per lock key: HMAC-SHA-256, under a key only the server holds, of what the attempt
-- named — for sign-in the organisation (its id, or the name as typed when it names none), the
-- email and the source address (IPv6 by /64); for a signed-in user's own checks (password
-- change, MFA management) the user. Unknown emails get rows exactly like members, so the table
-- and the answers say nothing about which addresses exist, and a row never holds an email or an
-- address in the clear. `user_id` is set when the key belongs to a known user, so an admin
-- unlock clears every lock of that user. Rows quiet for a day are pruned by the failure path.
--
-- `user_credentials.failed_attempts` / `locked_until` are no longer read or written (they were
-- the account-wide lock an outsider could trigger); they are dropped in a later migration.
create table credential_failures (
    lock_key        bytea primary key check (octet_length(lock_key) = 32),
    user_id         uuid references users (id),
    failures        integer not null default 0 check (failures >= 0),
    locked_until    timestamptz,
    last_failure_at timestamptz not null default now()
);
create index credential_failures_user on credential_failures (user_id) where user_id is not null;
create index credential_failures_last on credential_failures (last_failure_at);
alter table credential_failures enable row level security;
alter table credential_failures force row level security;
create policy identity_scope on credential_failures as permissive for all
    using (current_setting('app.scope', true) = 'identity')
    with check (current_setting('app.scope', true) = 'identity');
create policy platform_bypass on credential_failures as permissive for all
    using ((select countersign_bypass_active())) with check ((select countersign_bypass_active()));
grant select, insert, update, delete on credential_failures to countersign_app;
