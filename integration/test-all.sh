#!/usr/bin/env bash
# Runs every test: installs what the tests need, then the whole workspace's
# unit and end-to-end tests (real engine nodes, real gateway, real psql).
set -euo pipefail
cd "$(dirname "$0")/.."
./integration/setup.sh
# The end-to-end tests start the workspace's binaries as real processes.
# All targets at once: the tests' dev-dependencies turn on more features of
# shared crates (serde, hashbrown, ...), and building the binaries without
# them would compile DataFusion and everything under it a second time.
cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast "$@"
