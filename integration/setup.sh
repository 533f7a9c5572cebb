#!/usr/bin/env bash
# Installs what the end-to-end tests need on a fresh machine (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
# command-or-file:package pairs. Everything a stock Debian 12 lacks for the
# tests: the PostgreSQL tools, a JDK for pgjdbc, Node for node-postgres,
# python3-venv for the Python tools, git (dbt debug checks for it), and the
# small system tools the tests call (ss, prlimit, runuser; the tests send
# signals with kill(2) themselves).
for pair in python3:python3 psql:postgresql-client /usr/share/java/postgresql.jar:libpostgresql-jdbc-java \
  /usr/lib/postgresql/15/bin/initdb:postgresql-15 promtool:prometheus openssl:openssl \
  javac:default-jdk-headless node:nodejs npm:npm ss:iproute2 prlimit:util-linux \
  unzip:unzip curl:curl git:git; do
  what=${pair%%:*}
  if [[ $what == /* ]]; then [ -e "$what" ]; else command -v "$what" >/dev/null; fi ||
    need_apt+=("${pair#*:}")
done
# PgBouncer is built from Debian's source archive (see below) and the Rust
# build compiles C (librdkafka, whose configure also wants a C++ compiler;
# ring) and links with the C toolchain: they need these (gcc without its
# recommends lacks libc6-dev); python3-venv
# gives the virtual environments below their pip.
for pkg in libevent-dev libssl-dev pkg-config make gcc g++ libc6-dev ca-certificates python3-venv; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# PgBouncer 1.21+ (for max_prepared_statements); Debian 12 packages 1.18, so
# build Debian 13's 1.24.1 from its source archive, checksum pinned.
if [ ! -x /opt/pgbouncer-1.24/bin/pgbouncer ]; then
  src=$(mktemp -d)
  # The Debian archive this machine's apt is configured with (no host is
  # named here): where apt finds the packaged pgbouncer, the pool is too.
  mirror() { apt-cache policy pgbouncer | awk '$1 ~ /^[0-9]+$/ && $2 ~ /^https?:/ {print $2; exit}'; }
  archive=$(mirror)
  [ -n "$archive" ] || { apt-get update -qq; archive=$(mirror); }
  curl -fsSL -o "$src/pgbouncer.tgz" \
    "$archive/pool/main/p/pgbouncer/pgbouncer_1.24.1.orig.tar.gz"
  echo "da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0  $src/pgbouncer.tgz" | sha256sum -c --quiet
  tar -xzf "$src/pgbouncer.tgz" -C "$src" --strip-components=1
  (cd "$src" && ./configure -q --prefix=/opt/pgbouncer-1.24 --without-cares --without-pam --without-systemd >/dev/null &&
    make -s -j"$(nproc)" >/dev/null 2>&1 && make -s install >/dev/null 2>&1)
  rm -rf "$src"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest@0.9.143
# Every Python dependency lives in a virtual environment of its own (a
# stock Debian refuses pip into the system Python): the drivers' and the
# catalog-reading tools', whose dependencies must not meet.
# venv DIR PACKAGE...: creates DIR with exactly these packages, unless it
# was made from the same list (a changed pin makes it again).
venv() {
  local dir=$1
  shift
  [ "$(cat "$dir/.velo-packages" 2>/dev/null)" = "$*" ] && return
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "$@"
  echo "$*" > "$dir/.velo-packages"
}
venv /opt/velo-drivers "psycopg[binary]==3.3.9" "psycopg2-binary==2.9.13" "asyncpg==0.32.0"
# dbt-core 1.12 fetches a parser wheel from outside the package index
# while installing; 1.11 is the newest that installs from the index alone.
venv /opt/velo-tools "dbt-core==1.11.16" "dbt-postgres==1.11.0" "pgcli==4.7.1" \
  "SQLAlchemy==2.0.44" "pandas==2.3.3" "psycopg2-binary==2.9.13" "asyncpg==0.32.0" \
  "kubernetes-validate==1.37.0"
# The current SQLAlchemy beside the tools' 2.0: their reflection SQL differs.
venv /opt/velo-sqlalchemy-2.1 "SQLAlchemy==2.1.9" "psycopg2-binary==2.9.13"
[ -d integration/drivers/node/node_modules/pg-cursor ] ||
  (cd integration/drivers/node && npm ci --silent --no-audit --no-fund)
# Deployment tests (helm, kubectl, manifest validation).
if [ -x integration/setup-k8s.sh ]; then ./integration/setup-k8s.sh; fi
