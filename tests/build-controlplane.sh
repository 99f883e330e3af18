#!/usr/bin/env bash
# Build a real local Kubernetes control plane for the integration tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and
# helm, from the Go module proxy, pinned by tests/controlplane/go.mod (kubernetes +
# etcd) and tests/controlplane/helm/go.mod (helm).
#
# Binaries go to a cache outside the repository, keyed by the versions:
#   ${EBISU_CACHE:-$HOME/.cache/ebisu}/controlplane/<k8s>-etcd<etcd>-helm<helm>/bin/
#   (e.g. v1.34.4-etcd3.6.5-helm3.19.5)
# If they are all there already this returns at once. The bin directory is
# the last (and only) line printed on stdout; progress goes to stderr:
#   BIN=$(tests/build-controlplane.sh | tail -1)
#
# Usage: tests/build-controlplane.sh [--print-dir]
#   --print-dir   print the bin directory and exit, without building
# Environment:
#   EBISU_CACHE   cache root (default: $HOME/.cache/ebisu)
#   GO            go binary (default: go on PATH, else /usr/local/go/bin/go)
#
# Go's own caches (GOMODCACHE, GOCACHE) stay at their defaults. A cold build
# takes several minutes per Kubernetes binary on 2 cores; the builds run one at
# a time under `nice -n 19` so they do not starve other work on the machine.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod_k8s="$here/controlplane"
mod_helm="$here/controlplane/helm"

# Read a module's version from a go.mod require line ("<path> <version>").
modver() {
  awk -v m="$2" '$1 == m && $2 ~ /^v[0-9]/ { print $2; exit }' "$1"
}

k8s_version=$(modver "$mod_k8s/go.mod" k8s.io/kubernetes)
etcd_version=$(modver "$mod_k8s/go.mod" go.etcd.io/etcd/server/v3)
helm_version=$(modver "$mod_helm/go.mod" helm.sh/helm/v3)
if [[ -z $k8s_version || -z $etcd_version || -z $helm_version ]]; then
  echo "build-controlplane: cannot read versions from $mod_k8s/go.mod and $mod_helm/go.mod" >&2
  exit 1
fi

bin_dir="${EBISU_CACHE:-$HOME/.cache/ebisu}/controlplane/${k8s_version}-etcd${etcd_version#v}-helm${helm_version#v}/bin"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm)

case "${1:-}" in
  --print-dir) echo "$bin_dir"; exit 0 ;;
  "") ;;
  -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "build-controlplane: unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

all_built() {
  local b
  for b in "${binaries[@]}"; do [[ -x $bin_dir/$b ]] || return 1; done
}

# Fast path: nothing to do.
if all_built; then
  echo "$bin_dir"
  exit 0
fi

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [[ ! -x $GO ]]; then
  echo "build-controlplane: no go toolchain found (set GO=/path/to/go)" >&2
  exit 1
fi

mkdir -p "$bin_dir"
# One builder per cache directory at a time; a second caller waits, then
# finds the binaries built.
exec 9>"$bin_dir/.lock"
if ! flock -n 9; then
  echo "build-controlplane: another build is running in $bin_dir, waiting..." >&2
  flock 9
fi
if all_built; then
  echo "$bin_dir"
  exit 0
fi
# Leftovers of a build that was killed outright (SIGKILL, power loss).
rm -f "$bin_dir"/.*.tmp.*

# Static, reproducible-ish builds. -mod=readonly: go.mod/go.sum are complete,
# so a build never rewrites tracked files (run `go mod tidy` in the module
# directory after changing a version). -buildvcs=false: the modules sit inside
# the ebisu git repository, whose VCS state is not these binaries'.
export CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"

tmp=""
cleanup() { if [[ -n $tmp ]]; then rm -f "$tmp"; fi; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# No git checkout here, so no commit SHA: an all-zero one says "unknown".
no_commit=0000000000000000000000000000000000000000
k8s_minor=${k8s_version#v1.}; k8s_minor=${k8s_minor%%.*}
# Release time of the kubernetes tag, as recorded by the module proxy.
build_date=$(cd "$mod_k8s" && "$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)

k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $pkg.gitCommit=$no_commit -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${no_commit:0:7}"
# As helm's Makefile: without the chartutil/lint k8sVersion values, offline
# `helm template`/`helm lint` assume Kubernetes v1.20.
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.metadata="
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitCommit=$no_commit"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

build() { # name module-dir package ldflags
  local name=$1 dir=$2 pkg=$3 ldflags=$4
  if [[ -x $bin_dir/$name ]]; then
    echo "build-controlplane: $name: already built" >&2
    return
  fi
  echo "build-controlplane: building $name ($pkg) ..." >&2
  local start=$SECONDS
  tmp="$bin_dir/.$name.tmp.$$"
  (cd "$dir" && nice -n 19 "$GO" build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg")
  mv -f "$tmp" "$bin_dir/$name"
  tmp=""
  echo "build-controlplane: built $name in $((SECONDS - start))s" >&2
}

echo "build-controlplane: kubernetes $k8s_version, etcd $etcd_version, helm $helm_version -> $bin_dir" >&2
total_start=$SECONDS
build etcd "$mod_k8s" go.etcd.io/etcd/server/v3 "$etcd_ldflags"
build kube-apiserver "$mod_k8s" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kube-controller-manager "$mod_k8s" k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build kube-scheduler "$mod_k8s" k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build kubectl "$mod_k8s" k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
build helm "$mod_helm" helm.sh/helm/v3/cmd/helm "$helm_ldflags"
echo "build-controlplane: done in $((SECONDS - total_start))s" >&2
echo "$bin_dir"
