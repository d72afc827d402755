#!/usr/bin/env bash
# Lints the protos with buf, fetched from npm into target/tools on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/target/tools"
buf="$tools/buf"
if [ ! -x "$buf" ]; then
  echo "proto/lint.sh: fetching buf (npm @bufbuild/buf-linux-x64)" >&2
  mkdir -p "$tools"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @bufbuild/buf-linux-x64@1.75.0 >/dev/null && tar xzf ./*.tgz)
  install -m 755 "$tmp/package/bin/buf" "$buf"
  rm -rf "$tmp"
fi
cd proto
"$buf" lint
echo "proto/lint.sh: ok"
