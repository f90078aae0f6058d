#!/usr/bin/env bash
# Every test, in tiers: format and lint, plain Rust unit tests, in-server #[pg_test]s, then
# end-to-end tests that start real clusters with the worker and the real dump tools.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PGRX_TEST_DIR=/tmp/backup_ext-pgrx-tests

echo "== format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== unit tests (no PostgreSQL)"
cargo test -p backup_core

echo "== in-server tests (cargo pgrx test)"
mkdir -p "$PGRX_TEST_DIR"
chown postgres:postgres "$PGRX_TEST_DIR"
cargo pgrx test pg15 --runas postgres --pgdata "$PGRX_TEST_DIR/pgdata"

echo "== end-to-end tests (real clusters, worker, pg_dump)"
cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null
cargo test -p backup_ext_e2e -- --test-threads=2
