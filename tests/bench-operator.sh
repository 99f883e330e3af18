#!/usr/bin/env bash
# The operator benchmark on the local cluster (needs root):
#   bash tests/bench-operator.sh   (as root)
# Times `kubectl apply` -> 3 Ready (empty data) and `kubectl scale` -> 5 Ready
# with 1 GiB of data (EBISU_BENCH_GIB), then samples the operator's idle CPU
# and memory (EBISU_BENCH_IDLE_SECS). The pods run release builds, as an
# image would.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/setup.sh
EBISU_CONTROLPLANE_BIN=$(bash tests/build-controlplane.sh)
export EBISU_CONTROLPLANE_BIN
bash tests/build-rootfs.sh >/dev/null # the MySQL cluster's image
cargo build --release --locked -p ebisu-operator -p ebisu-sidecar --bins
EBISU_BIN_DIR=$PWD/target/release cargo bench --locked -p ebisu-testcluster --bench operator
