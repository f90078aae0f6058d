#!/usr/bin/env bash
# Every test, in tiers: format and lint, plain Rust unit tests, in-server #[pg_test]s, then
# end-to-end tests that start real clusters with the worker and the real dump tools.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PGRX_TEST_DIR=/tmp/backup_ext-pgrx-tests
LOG=$(mktemp /tmp/backup_ext-test-XXXXXX.log)
trap 'rm -f "$LOG"' EXIT

# Runs a test command, keeping its output for the summary at the end.
run_tests() {
    "$@" 2>&1 | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
}

echo "== format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== unit tests (no PostgreSQL)"
run_tests cargo test -p backup_core --tests

echo "== in-server tests (cargo pgrx test)"
mkdir -p "$PGRX_TEST_DIR"
chown postgres:postgres "$PGRX_TEST_DIR"
# With --runas, cargo pgrx installs through `sudo cp`, which rewrites backup_ext.so in place
# under every running server that has it mapped (they crash, e.g. SIGILL). Unlinked first, a
# running server keeps its mapped copy and the new library is a new file.
rm -f "$("$PG_CONFIG" --pkglibdir)/backup_ext.so"
run_tests cargo pgrx test pg15 --runas postgres --pgdata "$PGRX_TEST_DIR/pgdata"

echo "== end-to-end tests (real clusters, worker, pg_dump)"
cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null
run_tests cargo test -p backup_ext_e2e --tests -- --test-threads=2

# One closing line over every tier.
sed 's/\x1b\[[0-9;]*m//g' "$LOG" | awk '
    /^test result:/ { for (i = 1; i <= NF; i++) {
        if ($(i+1) ~ /^passed/) passed += $i; if ($(i+1) ~ /^failed/) failed += $i;
        if ($(i+1) ~ /^ignored/) ignored += $i } }
    END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }'
