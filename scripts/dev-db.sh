#!/usr/bin/env bash
# Recreates the development database that sqlx's query macros check against, then (with
# --prepare) refreshes the committed offline data in .sqlx. Needs sqlx-cli 0.8:
#   cargo install sqlx-cli --version 0.8.6 --no-default-features --features postgres,rustls
#
# The schema is applied with psql straight from crates/store/migrations (not through the binary,
# which cannot compile until .sqlx knows its new queries). This database is for type-checking
# only; run `countersign migrate` against a real one.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DEV_DB:=countersign_dev}"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/${DEV_DB}"
PSQL=(psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres)
"${PSQL[@]}" -d postgres -c "drop database if exists ${DEV_DB} with (force)" -c "create database ${DEV_DB}"
{
  cat <<'SQL'
DO $$ BEGIN CREATE ROLE countersign_owner NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE countersign_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT countersign_owner TO postgres;
CREATE EXTENSION IF NOT EXISTS citext;
GRANT USAGE, CREATE ON SCHEMA public TO countersign_owner;
GRANT USAGE ON SCHEMA public TO countersign_app;
BEGIN;
SET LOCAL ROLE countersign_owner;
CREATE TABLE IF NOT EXISTS schema_migrations (
    version bigint primary key, description text not null, checksum bytea not null,
    applied_at timestamptz not null default now());
SQL
  for f in crates/store/migrations/*.sql; do cat "$f"; echo; done
  echo "COMMIT;"
} | "${PSQL[@]}" -d "${DEV_DB}" >/dev/null
echo "schema applied to ${DEV_DB}"
if [ "${1:-}" = "--prepare" ]; then
  SQLX_OFFLINE=false cargo sqlx prepare --workspace -- --all-targets --all-features
fi
