-- Expand/contract upgrades (issue 19): a migration may declare the oldest binary schema version
-- that still runs correctly against it, with a header line `-- compatible-with: <version>`.
-- The migrator records it here; a server whose newest known migration is at least that version
-- starts and reports ready against the newer schema. No declaration: incompatible.
alter table schema_migrations add column compatible_with bigint;

-- Readiness runs as the app role, and schema_migrations is owner-only: every applied version
-- with its declaration, nothing else (descriptions and checksums stay with the owner).
create function countersign_schema_versions()
    returns table (version bigint, compatible_with bigint)
    language sql stable security definer
    set search_path = public, pg_temp
as $$ select version, compatible_with from schema_migrations order by version $$;
revoke all on function countersign_schema_versions() from public;
grant execute on function countersign_schema_versions() to countersign_app;
