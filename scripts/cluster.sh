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

# A local S3 server for the demo: SeaweedFS's `weed mini` (installed by scripts/setup.sh) in DIR,
# serving bucket BUCKET on 127.0.0.1:PORT; its other ports follow PORT (+1..+4, and +10000 each
# for gRPC). Writes DIR/credentials (AWS format) with a key made for this run.
WEED=${BACKUP_EXT_PY:-/opt/backup_ext-py}/bin/weed
s3_start() {
    local dir=$1 port=$2 bucket=$3 key secret
    s3_stop "$dir"
    rm -rf "$dir" && mkdir -p "$dir/data"
    key=demo$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
    secret=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
    printf '{"identities":[{"name":"demo","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List"]}]}\n' \
        "$key" "$secret" >"$dir/s3.json"
    printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$key" "$secret" >"$dir/credentials"
    chown postgres:postgres "$dir/credentials" && chmod 600 "$dir/credentials"
    local args=(mini "-dir=$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 "-bucket=$bucket"
        -master.telemetry=false "-s3.config=$dir/s3.json" -webdav=false -s3.port.iceberg=0
        -s3.port.lance=0 -volume.preStopSeconds=0)
    local i=0 server
    for server in s3 filer master volume admin; do
        args+=("-$server.port=$((port + i))" "-$server.port.grpc=$((port + i + 10000))")
        i=$((i + 1))
    done
    nohup "$WEED" "${args[@]}" >"$dir/weed.log" 2>&1 &
}

s3_stop() {
    pkill -f -- "-dir=$1/data" 2>/dev/null || true
    local _
    for _ in $(seq 50); do pgrep -f -- "-dir=$1/data" >/dev/null || return 0; sleep 0.1; done
    pkill -9 -f -- "-dir=$1/data" 2>/dev/null || true
}

# s3_aws DIR PORT ARGS...: the AWS command-line tool against that server.
s3_aws() {
    local dir=$1 port=$2
    shift 2
    AWS_SHARED_CREDENTIALS_FILE=$dir/credentials AWS_DEFAULT_REGION=us-east-1 \
        "${BACKUP_EXT_PY:-/opt/backup_ext-py}/bin/aws" --endpoint-url "http://127.0.0.1:$port" "$@"
}
