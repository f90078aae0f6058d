# Shared by the demo and the benchmark: a throwaway PostgreSQL cluster run as `postgres`
# under /tmp (never under the checkout, whose parents `postgres` may not be able to enter).
# PGBIN defaults to the Debian PostgreSQL 15; pg_bin_of MAJOR gives another major's tree.
pg_bin_of() {
    if [ "$1" = 15 ]; then
        echo /usr/lib/postgresql/15/bin
    else
        echo "${BACKUP_EXT_PG_TREES:-/opt/backup_ext-pg}/$1/bin"
    fi
}
PGBIN=${PGBIN:-$(pg_bin_of 15)}

# cluster_start DIR PORT [extra -c settings...]
cluster_start() {
    local dir=$1 port=$2
    shift 2
    cluster_stop "$dir"
    rm -rf "$dir"
    mkdir -p "$dir/backups" "$dir/socket"
    chown -R postgres:postgres "$dir"
    runuser -u postgres -- "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log"
    local opts="-p $port -k $dir/socket -c listen_addresses='' -c shared_preload_libraries=backup_ext"
    opts+=" -c backup_ext.directory=$dir/backups"
    for setting in "$@"; do opts+=" -c $setting"; done
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o "$opts" start >/dev/null
}

cluster_stop() {
    local dir=$1
    if [ -f "$dir/data/postmaster.pid" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
}

# cluster_psql DIR PORT DB [psql args...]
cluster_psql() {
    local dir=$1 port=$2 db=$3
    shift 3
    runuser -u postgres -- "$PGBIN/psql" -X -v ON_ERROR_STOP=1 -h "$dir/socket" -p "$port" -d "$db" "$@"
}
