-- Sessions and refresh tokens are looked up by their own id / hash, under RLS.
--
-- The tenant policy is ORed with the bypass policy, so the planner cannot use the tenant-leading
-- primary keys for `where id = $1` (sessions) or `where token_hash = $1` (refresh tokens) — the
-- same reason 0011 added lookup indexes for documents. Every refresh therefore scanned the whole
-- sessions table and every token its family had ever had (through refresh_tokens_session), and
-- every request's session check scanned sessions: a refresh got slower with each rotation.
-- Indexes on the identifiers alone make each lookup one index probe; RLS still filters the row.
create index sessions_id on sessions (id);
create index refresh_tokens_hash on refresh_tokens (token_hash);
