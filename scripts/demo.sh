#!/usr/bin/env bash
# The main job, end to end on a throwaway cluster: build and install backup_ext, start a
# PostgreSQL cluster (15 by default; `--pg 16|17|18` for another major) with it preloaded,
# create a sample database, ask for a custom-format backup and a globals backup from SQL, list
# them, look inside the dump, verify it with a test restore, restore it with
# restore_backup(jobs => 2) and compare row counts, send a backup to a local SeaweedFS (S3) and
# restore from there, then back up the whole cluster as one set and show status().
#
#   bash scripts/demo.sh            # PostgreSQL 15
#   bash scripts/demo.sh --pg 17    # PostgreSQL 17 (the tree scripts/setup.sh installs)
set -euo pipefail
cd "$(dirname "$0")/.."

MAJOR=15
while [ $# -gt 0 ]; do
    case $1 in
        --pg) MAJOR=${2:?--pg needs a major version}; shift 2 ;;
        --pg=*) MAJOR=${1#--pg=}; shift ;;
        *) echo "demo: unknown argument $1 (usage: demo.sh [--pg 15|16|17|18])" >&2; exit 2 ;;
    esac
done
case $MAJOR in
    15 | 16 | 17 | 18) ;;
    *) echo "demo: PostgreSQL $MAJOR is not supported (15, 16, 17, 18)" >&2; exit 2 ;;
esac
. scripts/cluster.sh
PGBIN=$(pg_bin_of "$MAJOR")

DIR=${BACKUP_EXT_DEMO_DIR:-/tmp/backup_ext-demo}
PORT=${BACKUP_EXT_DEMO_PORT:-54329}

bash scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
echo "== building and installing backup_ext for PostgreSQL $MAJOR (release)"
# Unlinked first: a server that has the library mapped keeps its copy (never rewritten in place).
rm -f "$("$PGBIN/pg_config" --pkglibdir)/backup_ext.so"
cargo pgrx install --release --pg-config "$PGBIN/pg_config" \
    --no-default-features --features "pg$MAJOR" >/dev/null

echo "== starting a throwaway cluster in $DIR on port $PORT"
cluster_start "$DIR" "$PORT"
psql_() { cluster_psql "$DIR" "$PORT" "$@"; }

psql_ postgres -q -c "CREATE EXTENSION backup_ext"
psql_ postgres -q -c "CREATE DATABASE shop"
psql_ shop -q <<'SQL'
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int REFERENCES customers,
                     placed_at timestamptz NOT NULL, total numeric(10,2), items jsonb);
INSERT INTO customers SELECT i, 'Customer ' || i || ' – Zoë', 'c' || i || '@example.com'
  FROM generate_series(1, 2000) i;
INSERT INTO orders SELECT i, 1 + i % 2000, now() - i * interval '1 minute', (i % 500) + 0.99,
                          jsonb_build_object('sku', 'A-' || i % 97, 'qty', 1 + i % 5)
  FROM generate_series(1, 50000) i;
CREATE INDEX ON orders (customer_id);
SQL
"$PGBIN/pgbench" --version >/dev/null 2>&1 && \
    runuser -u postgres -- "$PGBIN/pgbench" -q -i -s 2 -h "$DIR/socket" -p "$PORT" shop >/dev/null 2>&1

echo
echo "== asking for backups from SQL"
read -r DUMP_JOB GLOBALS_JOB < <(psql_ postgres -At -F ' ' -c \
    "SELECT backup_ext.backup_database('shop', 'custom', label => 'demo'), backup_ext.backup_globals(label => 'demo')")
echo "backup_database('shop') -> job $DUMP_JOB; backup_globals() -> job $GLOBALS_JOB"
psql_ postgres -At -c "SELECT 'job $DUMP_JOB: ' || backup_ext.wait_for($DUMP_JOB, '10 min')"
psql_ postgres -At -c "SELECT 'job $GLOBALS_JOB: ' || backup_ext.wait_for($GLOBALS_JOB, '10 min')"

echo
echo "== SELECT * FROM backup_ext.list_backups()"
psql_ postgres -c "SELECT backup_id, job_id, kind, database, format, status, label,
                          pg_size_pretty(size_bytes) AS size, left(sha256, 16) AS sha256_prefix,
                          duration, tool_version
                     FROM backup_ext.list_backups()"
DUMP_PATH=$(psql_ postgres -At -c "SELECT path FROM backup_ext.backups WHERE job_id = $DUMP_JOB")
echo "dump file: $DUMP_PATH"
echo "sha256sum: $(sha256sum "$DUMP_PATH" | cut -c1-64)"
echo "catalog  : $(psql_ postgres -At -c "SELECT sha256 FROM backup_ext.backups WHERE job_id = $DUMP_JOB")"

echo
echo "== what is inside: backup_ext.backup_contents($DUMP_JOB), tables only"
psql_ postgres -c "SELECT toc_id, kind, schema, name FROM backup_ext.backup_contents($DUMP_JOB)
                    WHERE kind = 'TABLE' ORDER BY name"

echo "== verify_backup($DUMP_JOB, test_restore => true)"
VERIFY_JOB=$(psql_ postgres -At -c "SELECT backup_ext.verify_backup($DUMP_JOB, test_restore => true)")
psql_ postgres -At -c "SELECT 'job $VERIFY_JOB: ' || backup_ext.wait_for($VERIFY_JOB, '10 min')"
psql_ postgres -c "SELECT backup_id, verify_status, verify_message FROM backup_ext.backups
                    WHERE backup_id = $DUMP_JOB"

echo "== restore_backup($DUMP_JOB, 'shop_restored', jobs => 2)"
RESTORE_JOB=$(psql_ postgres -At -c "SELECT backup_ext.restore_backup($DUMP_JOB, 'shop_restored', jobs => 2)")
psql_ postgres -At -c "SELECT 'job $RESTORE_JOB: ' || backup_ext.wait_for($RESTORE_JOB, '10 min')"

COUNTS="SELECT c.relname || '=' || (xpath('/row/n/text()',
                 query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY c.relname"
original=$(psql_ shop -At -c "$COUNTS")
restored=$(psql_ shop_restored -At -c "$COUNTS")
printf '%-28s %-28s\n' "shop" "shop_restored"
paste -d' ' <(echo "$original") <(echo "$restored") | awk '{printf "%-28s %-28s\n", $1, $2}'
if [ "$original" = "$restored" ]; then
    echo "row counts match"
else
    echo "row counts DIFFER" >&2
    exit 1
fi
echo "the restore job's own check: $(psql_ postgres -At -c "SELECT message FROM backup_ext.jobs WHERE job_id = $RESTORE_JOB")"

echo
echo "== before restoring over the live database: backup_ext.restore_plan()"
psql_ shop -q -c "DELETE FROM orders WHERE id <= 100; UPDATE orders SET total = 0 WHERE id <= 200"
psql_ postgres -c "SELECT step, action, kind, schema, name, left(detail, 70) AS detail
                     FROM backup_ext.restore_plan($DUMP_JOB, 'shop', create_db => false)
                    WHERE action <> 'create' ORDER BY step LIMIT 8"
echo "restore_backup() with the same arguments is refused with the plan's first blocking row:"
psql_ postgres -At -c "SELECT backup_ext.restore_backup($DUMP_JOB, 'shop', create_db => false)" 2>&1 \
    | sed 's/^/  /' || true

echo
echo "== yesterday's orders beside today's: restore_table($DUMP_JOB, 'orders')"
TABLE_JOB=$(psql_ postgres -At -c "SELECT backup_ext.restore_table($DUMP_JOB, 'orders')")
psql_ postgres -At -c "SELECT 'job $TABLE_JOB: ' || backup_ext.wait_for($TABLE_JOB, '10 min')"
psql_ shop -c "SELECT 'orders (live)' AS table, count(*), sum(total) FROM orders
               UNION ALL
               SELECT 'orders_restored_$DUMP_JOB', count(*), sum(total) FROM orders_restored_$DUMP_JOB"
live=$(psql_ shop -At -c "SELECT count(*) FROM orders")
back=$(psql_ shop -At -c "SELECT count(*) FROM orders_restored_$DUMP_JOB")
[ "$live" = 49900 ] && [ "$back" = 50000 ] || {
    echo "demo: expected 49900 live and 50000 restored orders, got $live and $back" >&2; exit 1; }

echo
echo "== least privilege: a restorer restores her own data, as herself, and nothing else"
psql_ postgres -q <<'SQL'
CREATE ROLE ann LOGIN CREATEDB IN ROLE backup_ext_operator, backup_ext_restorer;
CREATE DATABASE notes OWNER ann;
SQL
psql_ notes -q -U ann -c "CREATE TABLE notes (id int PRIMARY KEY, body text);
                          INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 100) i;"
ANN_JOB=$(psql_ postgres -U ann -At -c "SELECT backup_ext.backup_database('notes')")
psql_ postgres -U ann -At -c "SELECT 'ann: job $ANN_JOB ' || backup_ext.wait_for($ANN_JOB, '10 min')"
ANN_RESTORE=$(psql_ postgres -U ann -At -c "SELECT backup_ext.restore_backup($ANN_JOB, 'notes_copy')")
psql_ postgres -U ann -At -c "SELECT 'ann: restore job $ANN_RESTORE ' || backup_ext.wait_for($ANN_RESTORE, '10 min')"
psql_ notes_copy -At -c "SELECT 'notes_copy belongs to ' || pg_get_userbyid(datdba) || ', its table to '
                          || (SELECT tableowner FROM pg_tables WHERE tablename = 'notes')
                          FROM pg_database WHERE datname = 'notes_copy'"
echo "ann asks for shop's backup (shop's tables are not hers):"
psql_ postgres -U ann -At -c "SELECT backup_ext.restore_backup($DUMP_JOB, 'shop_for_ann')" 2>&1 | sed 's/^/  /' || true
echo "what ann sees of the catalog:"
psql_ postgres -U ann -c "SELECT backup_id, kind, database, status FROM backup_ext.list_backups()"

echo
echo "== off-host storage: a local SeaweedFS (S3) as a storage target"
S3_PORT=${BACKUP_EXT_DEMO_S3_PORT:-18333}
s3_start "$DIR/s3" "$S3_PORT" demo
psql_ postgres -q -c "ALTER SYSTEM SET backup_ext.s3_credentials_file = '$DIR/s3/credentials'" \
    -c "SELECT pg_reload_conf()"
# add_storage() makes an authenticated request: it succeeds once the bucket is there.
for _ in $(seq 30); do
    psql_ postgres -q -c "SELECT backup_ext.add_storage('offsite', 's3://demo/prod',
        '{\"endpoint\": \"http://127.0.0.1:$S3_PORT\", \"path_style\": true, \"allow_http\": true}')" \
        2>/dev/null && break
    sleep 1
done
psql_ postgres -c "SELECT name, url, options FROM backup_ext.storages"
# shop changed above (orders deleted, a table restored beside them): counted again.
original=$(psql_ shop -At -c "$COUNTS")
S3_JOB=$(psql_ postgres -At -c "SELECT backup_ext.backup_database('shop', options => '{\"storage\": \"offsite\"}')")
psql_ postgres -At -c "SELECT 'job $S3_JOB: ' || backup_ext.wait_for($S3_JOB, '10 min')"
psql_ postgres -c "SELECT backup_id, storage, key, size_bytes, left(sha256, 16) AS sha256
                     FROM backup_ext.backups WHERE backup_id = $S3_JOB"
echo "-- the bucket, listed with the AWS command-line tool:"
s3_aws "$DIR/s3" "$S3_PORT" s3 ls --recursive s3://demo/ | sed 's/^/  /'
S3_RESTORE=$(psql_ postgres -At -c "SELECT backup_ext.restore_backup($S3_JOB, 'shop_from_s3')")
psql_ postgres -At -c "SELECT 'restore job $S3_RESTORE: ' || backup_ext.wait_for($S3_RESTORE, '10 min')"
from_s3=$(psql_ shop_from_s3 -At -c "$COUNTS")
echo "shop_from_s3: $from_s3"
[ "$original" = "$from_s3" ] || { echo "demo: the restore from S3 differs" >&2; exit 1; }
s3_stop "$DIR/s3"

echo
echo "== backup_cluster(): globals plus every database, as one set"
SET_ID=$(psql_ postgres -At -c "SELECT backup_ext.backup_cluster(label => 'demo-cluster')")
for job in $(psql_ postgres -At -c "SELECT job_id FROM backup_ext.jobs WHERE set_id = $SET_ID"); do
    psql_ postgres -At -c "SELECT backup_ext.wait_for($job, '10 min')" >/dev/null
done
psql_ postgres -c "SELECT set_id, members, succeeded, failed, status, pg_size_pretty(size_bytes) AS size
                     FROM backup_ext.sets WHERE set_id = $SET_ID"
echo "== SELECT * FROM backup_ext.status()"
psql_ postgres -c "SELECT database, last_success_at, last_size_bytes, backups_kept, status
                     FROM backup_ext.status()"
psql_ postgres -At -c "SELECT backup_ext.check_status()"

echo
echo "== the cluster is still running"
echo "connect:  runuser -u postgres -- psql -h $DIR/socket -p $PORT postgres"
echo "stop:     runuser -u postgres -- $PGBIN/pg_ctl -D $DIR/data stop"
