#!/usr/bin/env bash
# Starts the local Kubernetes cluster (real control plane, pods as processes,
# EBS-like volumes) for a demo, building whatever is missing first:
#   sudo bash tests/demo.sh
# It returns once the cluster is up; the cluster keeps running in the
# background until `target/debug/testcluster down`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) != 0 ]]; then
  echo "demo: the local cluster needs root (network namespaces, bind mounts)" >&2
  exit 1
fi

step() { printf '==> %s\n' "$*" >&2; }

step "machine setup (tests/setup.sh)"
bash tests/setup.sh

step "control plane binaries (tests/build-controlplane.sh; cached)"
EBISU_CONTROLPLANE_BIN=$(bash tests/build-controlplane.sh)
export EBISU_CONTROLPLANE_BIN

step "workspace binaries (cargo build)"
cargo build --workspace --bins --locked >&2

step "starting the cluster (testcluster up)"
state_dir=${EBISU_TESTCLUSTER_DIR:-/tmp/ebisu-testcluster}
./target/debug/testcluster --state-dir "$state_dir" up >/dev/null

cat <<EOT

The cluster is up: 6 nodes in 3 zones, an ebs.csi.aws.com provisioner.

  export KUBECONFIG=$state_dir/kubeconfig
  kubectl get nodes -L topology.kubernetes.io/zone

  target/debug/testcluster status                 # nodes and readiness
  target/debug/testcluster logs POD [-c CONTAINER] [-n NAMESPACE]
  target/debug/testcluster node stop NAME         # simulate a crashed machine
  target/debug/testcluster node start NAME
  target/debug/testcluster down                   # stop everything, remove all state
EOT
