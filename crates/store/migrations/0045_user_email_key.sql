-- compatible-with: 43
-- Finding a person by email read the whole `users` table. citext's `=` is not LEAKPROOF, so under
-- row-level security (every application statement on `users`: identity scope, organisation
-- members, bypass) Postgres may not use it to drive an index ahead of the policies and filtered
-- every row instead — each sign-in, email code, SCIM create and invitation check cost a scan
-- growing with every person in the deployment (seen as the SCIM benchmark's second round running
-- at a third of the first: pg_stat_activity showed `users where email = …` busy with no wait).
-- The same cause as 0043, the same cure: the case-folded address as a plain text column
-- (what citext compares: lower() of both sides), compared with text `=`, which is leakproof.
-- The unique constraint on `email` is unchanged.
alter table users add column email_key text generated always as (lower(email::text)) stored;
create index users_email_key_lookup on users (email_key);
