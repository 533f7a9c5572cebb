#!/usr/bin/env bash
# Runs every test: installs what the tests need, then the whole workspace's
# unit and end-to-end tests (real engine nodes, real gateway, real psql).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase says how long it took (a cold first build dominates).
phase() {
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "test-all: $name took $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s" >&2
}
phase setup ./integration/setup.sh
# The end-to-end tests start the workspace's binaries as real processes.
# All targets at once: the tests' dev-dependencies turn on more features of
# shared crates (serde, hashbrown, ...), and building the binaries without
# them would compile DataFusion and everything under it a second time.
phase build cargo build --workspace --all-targets
phase tests cargo nextest run --workspace --no-fail-fast "$@"
