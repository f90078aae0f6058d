#!/usr/bin/env bash
# Benchmark: backup_ext against pg_dump / pg_dumpall / pg_restore run directly, then the
# compression table (pg_dump 17's methods through the extension against this PostgreSQL 15),
# then backups into S3 (a SeaweedFS the bench binary starts on loopback ports and stops; awscli
# for comparison, both from the environment scripts/setup.sh makes), on a throwaway cluster.
# Builds and installs the extension in release mode, starts the cluster, runs the bench binary
# (report on stdout and in bench/results/<date>.md + .png), stops the cluster.
#
#   bash scripts/bench.sh                       # scale 50 (or $BENCH_SCALE), 3 runs per side
#   bash scripts/bench.sh --scale 2 --runs 1 --small-tables 50 --small-dbs 4 --s3-memory-mb 50
#   bash scripts/bench.sh --only compression    # the compression table alone: <date>-compression.md
#   bash scripts/bench.sh --only s3             # the S3 part alone: <date>-s3.md
#   bash scripts/bench.sh --only catalog        # catalog reads (status(), metrics()) alone: <date>-catalog.md
#
# Every argument is passed to the bench binary (see: cargo run -p backup_ext_bench -- --help).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cluster.sh

DIR=${BACKUP_EXT_BENCH_DIR:-/tmp/backup_ext-bench}
PORT=${BACKUP_EXT_BENCH_PORT:-54339}
SCALE=${BENCH_SCALE:-50}

bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# The chart's text needs a TrueType font.
if ! dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q 'install ok installed'; then
    echo "== installing fonts-dejavu-core for the chart"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core >/dev/null
fi

echo "== building and installing backup_ext (release)" >&2
# Unlinked first: a server that has the library mapped keeps its copy (never rewritten in place).
rm -f "$("$PGBIN/pg_config" --pkglibdir)/backup_ext.so"
cargo pgrx install --release --pg-config "$PGBIN/pg_config" >/dev/null
echo "== building the bench binary (release)" >&2
cargo build --release -p backup_ext_bench

echo "== starting a throwaway cluster in $DIR on port $PORT" >&2
cluster_start "$DIR" "$PORT" shared_buffers=256MB max_wal_size=4GB checkpoint_timeout=30min
trap 'cluster_stop "$DIR"' EXIT

start=$(date +%s)
# The compression table uses the PostgreSQL 17 tools that scripts/setup.sh installs.
cargo run --release -q -p backup_ext_bench -- --dir "$DIR" --port "$PORT" --scale "$SCALE" \
    --compression-bin "$(pg_bin_of 17)" "$@"
echo "== bench finished in $(( $(date +%s) - start )) s" >&2
