#!/usr/bin/env bash
# Installs what the end-to-end tests need on a fresh machine (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v psql >/dev/null || need_apt+=(postgresql-client)
[ -e /usr/share/java/postgresql.jar ] || need_apt+=(libpostgresql-jdbc-java)
command -v pgbouncer >/dev/null || need_apt+=(pgbouncer)
ls /usr/lib/postgresql/15/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql-15)
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# Driver test dependencies (pinned).
python3 -c 'import psycopg, psycopg2, asyncpg' 2>/dev/null ||
  pip install -q --disable-pip-version-check --root-user-action=ignore \
    "psycopg[binary]==3.2.13" "psycopg2-binary==2.9.13" "asyncpg==0.32.0"
[ -d integration/drivers/node/node_modules/pg-cursor ] ||
  (cd integration/drivers/node && npm ci --silent --no-audit --no-fund)
# Deployment tests (helm, kubectl, manifest validation).
if [ -x integration/setup-k8s.sh ]; then ./integration/setup-k8s.sh; fi
