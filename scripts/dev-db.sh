#!/usr/bin/env bash
# Recreates the development database that sqlx's query macros check against, then refreshes the
# committed offline data in .sqlx (needs sqlx-cli 0.8: `cargo install sqlx-cli --version 0.8.6
# --no-default-features --features postgres,rustls`).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DEV_DB:=countersign_dev}"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/${DEV_DB}"
psql -q -h 127.0.0.1 -U postgres -d postgres -c "drop database if exists ${DEV_DB} with (force)" -c "create database ${DEV_DB}"
cargo run -q -p countersign -- migrate
if [ "${1:-}" = "--prepare" ]; then
  cargo sqlx prepare --workspace -- --all-targets --all-features
fi
