#!/usr/bin/env bash
# Regenerates docs/screenshots/*.png (shown in the README) from a fresh demo: builds the binary,
# runs `countersign demo` on a private database, and lets scripts/screenshots.mjs sign in as the
# demo people in Debian's Chromium (playwright-core, pinned in package-lock.json) and capture the
# main pages. Needs chromium and node (apt-get install chromium nodejs npm); never downloads a
# browser. Uses the PostgreSQL at $PGURL (default postgres://postgres@127.0.0.1:5432) when it
# answers, otherwise the demo's embedded cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x /usr/bin/chromium ] || { echo "screenshots: /usr/bin/chromium is missing (apt-get install chromium)" >&2; exit 1; }
command -v node >/dev/null || { echo "screenshots: node is missing (apt-get install nodejs npm)" >&2; exit 1; }
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund
cargo build --quiet --bin countersign

PORT="${SCREENSHOTS_PORT:-18390}"
PGURL="${PGURL:-postgres://postgres@127.0.0.1:5432}"
DATA="$(mktemp -d)"
DB="countersign_screenshots_$$"
pid=""
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  if [ -n "${DATABASE_URL:-}" ]; then psql -q "$PGURL/postgres" -c "drop database if exists $DB with (force)" || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT

if psql -q "$PGURL/postgres" -c "create database $DB" 2>/dev/null; then
  export DATABASE_URL="$PGURL/$DB"
else
  unset DATABASE_URL
  echo "screenshots: no PostgreSQL at $PGURL; the demo starts its embedded cluster under $DATA" >&2
fi

target/debug/countersign demo --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$DATA/demo.out" 2>"$DATA/demo.err" &
pid=$!
for _ in $(seq 1 600); do
  grep -q "signs in with the password" "$DATA/demo.out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$DATA/demo.err" >&2; exit 1; }
  sleep 0.2
done
PASSWORD="$(sed -n 's/.*signs in with the password \([^ ]*\).*/\1/p' "$DATA/demo.out" | head -n 1)"
[ -n "$PASSWORD" ] || { echo "screenshots: the demo printed no password" >&2; exit 1; }

mkdir -p docs/screenshots
BASE_URL="http://127.0.0.1:$PORT" PASSWORD="$PASSWORD" OUT="docs/screenshots" node scripts/screenshots.mjs
