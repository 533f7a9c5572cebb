#!/usr/bin/env bash
# Installs what the end-to-end tests need on a fresh machine (idempotent).
set -euo pipefail
need_apt=()
command -v psql >/dev/null || need_apt+=(postgresql-client)
ls /usr/lib/postgresql/15/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql-15)
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# Deployment tests (helm, kubectl, manifest validation).
if [ -x integration/setup-k8s.sh ]; then ./integration/setup-k8s.sh; fi
