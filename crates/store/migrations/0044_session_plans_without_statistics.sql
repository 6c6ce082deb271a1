-- compatible-with: 43
-- A refresh and a session check find their rows by primary key whatever the statistics say.
--
-- Seen with `countersign-bench login` (EXPLAIN ANALYZE of the refresh statement on the live
-- benchmark database, 2026-12-08): right after sign-ins started, before autovacuum had analysed
-- `sessions` and `refresh_tokens`, the planner knew the tables' sizes but nothing of their
-- columns (equality then counts as 0.5 % of the rows), and chose
--   * `refresh_tokens_session (tenant_id, session_id)` for the presented token, filtering every
--     token the session's family had ever had by its hash (1,949 rows per refresh), and
--   * the partial `sessions_user (tenant_id, user_id) where revoked_at is null` for the session,
--     filtering every live session of the organisation by id (~700 rows per refresh and per
--     uncached session check),
-- so each refresh cost more than the one before until an ANALYZE came; database CPU per refresh
-- was 1.1-1.2 ms, and 0.46 ms once the same run was analysed.
--
-- 1. Every statement on `refresh_tokens` names `(tenant_id, token_hash)`, its primary key:
--    `refresh_tokens_session` and `refresh_tokens_hash` (0018, from when statements named the
--    hash alone) serve no statement. Dropped: nothing else can be chosen, and each sign-in and
--    refresh maintains one index instead of three. (Families are revoked on `sessions`, never by
--    walking their tokens; the foreign key to `sessions` needs no index on this side, as
--    sessions are never deleted or re-keyed.)
-- 2. `sessions_user` leads with `user_id`. As `(tenant_id, user_id) where revoked_at is null` it
--    served a condition on the tenant alone, and without column statistics a walk of the
--    organisation's live sessions costed the same as the unique primary-key probe for
--    `tenant_id = $1 and id = $2 and revoked_at is null` (dropping only the predicate still left
--    a tie, seen by tests/migration_guard.rs). Led by `user_id` it serves no
--    condition on the tenant alone, so only the primary key (or `sessions_id`) can find a
--    session by its id; listing or revoking a person's sessions still walks only theirs; and
--    setting `revoked_at` or `last_seen_at` touches no indexed column (heap-only updates).
drop index refresh_tokens_session;
drop index refresh_tokens_hash;
drop index sessions_user;
create index sessions_user on sessions (user_id, tenant_id);
