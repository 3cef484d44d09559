#!/usr/bin/env bash
# Builds the real Kubernetes parts the k8s test suites run: etcd, kube-apiserver, kubectl (which also
# renders Kustomize) and helm, from the Go module proxy. Nothing upstream is kept in the repo: the Go
# module and binaries live in a cache outside it (default ~/.cache/kvix-k8s), and a second run with
# the same versions is a no-op. Prints the bin directory on stdout (progress goes to stderr).
#
#   scripts/k8s/build.sh            build if needed, print the bin dir
#   KVIX_K8S_CACHE=/dir ...         cache somewhere else
#
# Needs Go >= the version k8s.io/kubernetes's go.mod asks for (CI installs it; a missing toolchain is
# an error here, never a skipped test).
set -euo pipefail

K8S_VERSION="${KVIX_K8S_VERSION:-1.37.2}"   # k8s.io/kubernetes; its staging modules are v0.<minor>.<patch>
ETCD_VERSION="${KVIX_ETCD_VERSION:-3.7.0}"  # the version k8s.io/kubernetes requires
HELM_VERSION="${KVIX_HELM_VERSION:-4.3.2}"  # built against the same k8s.io/* v0.37 libraries
# CRDs the manifests tests install besides GAIE's: Gateway API (Gateway, HTTPRoute) and the
# Prometheus Operator's ServiceMonitor and PrometheusRule, read from their Go modules (no binary built).
GATEWAY_API_VERSION="${KVIX_GATEWAY_API_VERSION:-1.6.3}"
PROMETHEUS_OPERATOR_VERSION="${KVIX_PROMETHEUS_OPERATOR_VERSION:-0.85.0}"

cache="${KVIX_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvix-k8s}"
stamp_want="v3 k8s=$K8S_VERSION etcd=$ETCD_VERSION helm=$HELM_VERSION gateway-api=$GATEWAY_API_VERSION prometheus-operator=$PROMETHEUS_OPERATOR_VERSION"
bin="$cache/bin"
log() { echo "k8s-build: $*" >&2; }

# Test suites may call this concurrently: one builds, the others wait for it.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$stamp_want" ] \
  && [ -x "$bin/etcd" ] && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ] && [ -x "$bin/helm" ]; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null 2>&1 || { log "go is not installed (needed to build kube-apiserver/etcd/helm)"; exit 1; }
export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

staging_minor="v0.${K8S_VERSION#*.}"   # 1.37.2 -> v0.37.2
src="$cache/src-$K8S_VERSION"
mkdir -p "$src/cmd/etcd" "$src/cmd/kube-apiserver" "$src/cmd/kubectl" "$bin"

# k8s.io/kubernetes requires its staging modules at v0.0.0 (it replaces them with ./staging in its own
# repo); a module depending on it must pin each to the published v0.<minor>.<patch>.
log "resolving k8s.io/kubernetes v$K8S_VERSION"
kmod="$(cd "$src" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
[ -f "$kmod" ] || { log "could not download k8s.io/kubernetes v$K8S_VERSION's go.mod"; exit 1; }
mapfile -t staging < <(awk '/^require|^\t/ {for (i=1;i<=NF;i++) if ($i ~ /^k8s\.io\// && $(i+1) == "v0.0.0") print $i}' "$kmod" | sort -u)
[ "${#staging[@]}" -gt 0 ] || { log "found no v0.0.0 staging modules in $kmod"; exit 1; }
log "pinning ${#staging[@]} staging modules to $staging_minor"

{
  echo "module kvix.local/k8s-testenv"
  echo
  echo "go $(sed -n 's/^go //p' "$kmod")"
  echo
  echo "require ("
  echo "	k8s.io/kubernetes v$K8S_VERSION"
  echo "	go.etcd.io/etcd/server/v3 v$ETCD_VERSION"
  echo ")"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m $staging_minor"; done
  echo ")"
} > "$src/go.mod"

cat > "$src/cmd/kube-apiserver/main.go" <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
GO
cat > "$src/cmd/etcd/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
cat > "$src/cmd/kubectl/main.go" <<'GO'
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}
GO

cd "$src"
log "go mod tidy (cold: ~0.5 GB of modules)"
go mod tidy >&2
log "building etcd, kube-apiserver, kubectl (cold: ~12 CPU-minutes)"
# The version the binaries report (/version, kubectl version); without it they say v0.0.0-master.
minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags="$version_flags -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=${K8S_VERSION%%.*} -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
go build -trimpath -ldflags "-s -w$version_flags" -o "$bin/" ./cmd/etcd ./cmd/kube-apiserver ./cmd/kubectl >&2

log "building helm v$HELM_VERSION"
GOBIN="$bin" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v4/cmd/helm@v$HELM_VERSION" >&2

log "fetching the Gateway API v$GATEWAY_API_VERSION and Prometheus Operator v$PROMETHEUS_OPERATOR_VERSION CRDs"
module_dir() { (cd "$src" && go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)",/\1/p'); }
gw="$(module_dir "sigs.k8s.io/gateway-api@v$GATEWAY_API_VERSION")"
po="$(module_dir "github.com/prometheus-operator/prometheus-operator@v$PROMETHEUS_OPERATOR_VERSION")"
[ -d "$gw/config/crd/standard" ] || { log "no config/crd/standard in $gw"; exit 1; }
for crd in servicemonitors prometheusrules; do
  [ -f "$po/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" ] || { log "no $crd CRD in $po"; exit 1; }
done
rm -rf "$cache/crds"
mkdir -p "$cache/crds/gateway-api" "$cache/crds/prometheus-operator"
cp "$gw"/config/crd/standard/*.yaml "$cache/crds/gateway-api/"
cp "$po"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml "$cache/crds/prometheus-operator/"
chmod -R u+w "$cache/crds"

echo "$stamp_want" > "$bin/.stamp"
log "done: $(ls "$bin" | tr '\n' ' ')"
echo "$bin"
