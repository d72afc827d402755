#!/usr/bin/env bash
# The Helm chart's checks (`make chart-lint`, run by CI), with the real tools, fetched on first
# use into target/tools by deploy/tools.sh:
#   1. helm lint --strict, with the least values (deploy/helm/ci/minimal-values.yaml) and with
#      every toggle on (deploy/helm/ci/all-on-values.yaml);
#   2. helm template with both, every manifest validated against the Kubernetes 1.33 schemas
#      (kubernetes-validate --strict; the ServiceMonitor and cert-manager's Certificate, CRDs
#      it does not know, against deploy/helm/ci/servicemonitor.schema.json and
#      certificate.schema.json);
#   3. values the chart must refuse: values.schema.json and the templates' own checks;
#   4. the rendered phantom.toml loads in the binary (`phantom config`; $PHANTOM_BIN, else
#      target/debug/phantom when built);
#   5. checkov on the chart, with both values files, skipping only deploy/helm/.checkov.yaml's
#      justified list, and on deploy/Dockerfile (its one skip is justified inline);
#   6. k8s/ is what the chart renders now (deploy/render-k8s.sh): no drift.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/tools.sh
. deploy/tools.sh

chart=deploy/helm/phantom
values=(deploy/helm/ci/minimal-values.yaml deploy/helm/ci/all-on-values.yaml)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
step() { echo "--- check-chart: $*" >&2; }
fail() { echo "check-chart: FAILED: $*" >&2; exit 1; }

step "helm $("$helm" version --template '{{.Version}}'), kubernetes-validate $("$venv/bin/kubernetes-validate" --version), checkov $("$venv/bin/checkov" --version)"

for v in "${values[@]}"; do
  name=$(basename "$v" .yaml)
  step "helm lint --strict -f $v"
  "$helm" lint --strict "$chart" -f "$v" >"$out/lint.log" || { cat "$out/lint.log" >&2; fail "helm lint ($v)"; }
  step "helm template -f $v, validated against Kubernetes 1.33"
  "$helm" template phantom "$chart" --namespace phantom -f "$v" >"$out/$name.yaml"
  # CRD kinds apart: kubernetes-validate only warns on kinds it has no schema for, so any
  # warning left is a failure.
  "$venv/bin/python" - "$out/$name.yaml" "$out/$name.k8s.yaml" "$out/$name.crds.json" <<'PY'
import json, sys, yaml
crds = ("ServiceMonitor", "Certificate")
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
yaml.safe_dump_all([d for d in docs if d["kind"] not in crds], open(sys.argv[2], "w"))
json.dump([d for d in docs if d["kind"] in crds], open(sys.argv[3], "w"))
PY
  "$venv/bin/kubernetes-validate" --strict --quiet -k 1.33.0 "$out/$name.k8s.yaml" 2>&1 | tee "$out/validate.log" >&2
  [ ! -s "$out/validate.log" ] || fail "kubernetes-validate ($v)"
  "$venv/bin/python" - "$out/$name.crds.json" deploy/helm/ci <<'PY' || fail "CRD schema ($v)"
import json, sys, jsonschema
schemas = {kind: json.load(open(f"{sys.argv[2]}/{kind.lower()}.schema.json"))
           for kind in ("ServiceMonitor", "Certificate")}
for doc in json.load(open(sys.argv[1])):
    jsonschema.validate(doc, schemas[doc["kind"]])
PY
done
# Auth is on by default: what the least values render authenticates.
grep -q 'name: PHANTOM_AUTH_KEY_SECRET' "$out/minimal-values.yaml" || fail "the minimal values render no auth key secret"
grep -q '^kind: Certificate' "$out/all-on-values.yaml" || fail "the all-on values render no Certificate"
grep -q '^kind: ServiceMonitor' "$out/all-on-values.yaml" || fail "the all-on values render no ServiceMonitor"
grep -q '^kind: HorizontalPodAutoscaler' "$out/all-on-values.yaml" || fail "the all-on values render no HPA"
if awk '/^kind: Deployment/{d=1} /^---/{d=0} d && /^  replicas:/{found=1} END{exit !found}' "$out/all-on-values.yaml"; then
  fail "a Deployment sets replicas while its HPA is on"
fi

step "values the chart must refuse"
refuse() { # refuse <what the error says> <helm args...>
  local expect=$1; shift
  if "$helm" template phantom "$chart" "$@" >/dev/null 2>"$out/refused.log"; then
    fail "rendered with $*"
  fi
  grep -q "$expect" "$out/refused.log" || { cat "$out/refused.log" >&2; fail "refused $* without saying '$expect'"; }
}
minimal=(-f deploy/helm/ci/minimal-values.yaml)
schema="don't meet the specifications of the schema"
refuse "$schema" "${minimal[@]}" --set services.notifier.port=abc
refuse "$schema" "${minimal[@]}" --set probes.port=70000
refuse "$schema" "${minimal[@]}" --set image.pullPolicy=Sometimes
refuse "$schema" "${minimal[@]}" --set scope.allowedCidrs[0]=everything
refuse "$schema" "${minimal[@]}" --set services.vulnAnalyzer.replicaz=3
refuse "$schema" "${minimal[@]}" --set podSecurityContext.runAsNonRoot=false
refuse "$schema" "${minimal[@]}" --set database.url=postgres://phantom:secret@db/phantom
refuse "database.existingSecret is required"
refuse "never as values" "${minimal[@]}" --set config.storage.database_url=postgres://phantom:secret@db/phantom
refuse "never as values" "${minimal[@]}" --set config.auth.key_secret=secret
refuse "auth.existingSecret is required" --set database.existingSecret=phantom-db
refuse "$schema" "${minimal[@]}" --set auth.unauthenticated.perSecond=0
tls=("${minimal[@]}" --set tls.enabled=true)
refuse "tls.enabled needs certificates" "${tls[@]}"
refuse "are exclusive" "${tls[@]}" --set tls.existingSecret=phantom-tls --set tls.certManager.enabled=true
refuse "tls.certManager.issuerRef.name is required" "${tls[@]}" --set tls.certManager.enabled=true
refuse "$schema" "${tls[@]}" --set tls.certManager.enabled=true --set tls.certManager.issuerRef.name=ca \
  --set tls.certManager.duration=90d
jwt=("${minimal[@]}" --set auth.jwt.enabled=true)
refuse "auth.jwt.issuer is required" "${jwt[@]}" --set auth.jwt.jwksUrl=https://issuer.example.com/jwks.json
refuse "exactly one JWKS source" "${jwt[@]}" --set auth.jwt.issuer=https://issuer.example.com/
refuse "exactly one JWKS source" "${jwt[@]}" --set auth.jwt.issuer=https://issuer.example.com/ \
  --set auth.jwt.jwksUrl=https://issuer.example.com/jwks.json --set auth.jwt.jwksConfigMap.name=phantom-jwks

phantom="${PHANTOM_BIN:-target/debug/phantom}"
configuration="configuration skipped"
if [ -x "$phantom" ]; then
  configuration="configuration"
  step "the rendered phantom.toml loads in $phantom"
  for v in "${values[@]}"; do
    name=$(basename "$v" .yaml)
    "$venv/bin/python" - "$out/$name.yaml" "$out/$name.toml" <<'PY'
import sys, yaml
maps = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap"]
open(sys.argv[2], "w").write(maps[0]["data"]["phantom.toml"])
PY
    "$phantom" config --config "$out/$name.toml" >/dev/null || fail "phantom config rejects the TOML rendered with $v"
  done
elif [ -n "${PHANTOM_BIN:-}" ]; then
  fail "PHANTOM_BIN=$PHANTOM_BIN is not an executable"
else
  echo "check-chart: $phantom not built; skipping the configuration check (cargo build -p phantom)" >&2
fi

for v in "${values[@]}"; do
  step "checkov -f $v"
  # checkov templates the chart with the helm on PATH; --skip-download: no calls to its vendor.
  status=0
  PATH="$tools:$PATH" "$venv/bin/checkov" --quiet --skip-download -d "$chart" --framework helm \
    --config-file deploy/helm/.checkov.yaml --var-file "$v" -o json >"$out/checkov.json" || status=$?
  "$venv/bin/python" - "$out/checkov.json" <<'PY' || fail "checkov ($v)"
import json, sys
report = json.load(open(sys.argv[1]))
reports = report if isinstance(report, list) else [report]
summary = {k: sum(r.get("summary", {}).get(k, 0) for r in reports) for k in ("passed", "failed", "skipped")}
for r in reports:
    for c in r.get("results", {}).get("failed_checks", []):
        print(f"  {c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})", file=sys.stderr)
print(f"checkov: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped", file=sys.stderr)
# Nothing passed means nothing was scanned: the chart did not render.
sys.exit(0 if summary["passed"] > 0 and summary["failed"] == 0 else 1)
PY
  [ "$status" -eq 0 ] || fail "checkov exited with $status ($v)"
done

step "checkov on deploy/Dockerfile (it cannot be built here: no Docker engine)"
"$venv/bin/checkov" --quiet --compact --skip-download -f deploy/Dockerfile --framework dockerfile >&2 \
  || fail "checkov (deploy/Dockerfile)"

step "k8s/ is what the chart renders (deploy/render-k8s.sh)"
deploy/render-k8s.sh "$out/k8s" 2>/dev/null
for f in migrate.yaml phantom.yaml; do
  diff -u "k8s/$f" "$out/k8s/$f" >&2 || fail "k8s/$f differs from the chart: run \`make k8s\` and commit"
done

echo "check-chart: ok (lint, render and validate x${#values[@]}, refusals, $configuration, checkov on chart and Dockerfile, no drift in k8s/)"
