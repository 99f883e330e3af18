#!/usr/bin/env bash
# The failover benchmark on the local cluster (needs root):
#   bash tests/bench-failover.sh   (as root)
# N drains and N crashes of the primary's node (EBISU_BENCH_DRILLS, default
# 10) under a writer that counts only acknowledged commits, then the same
# with spec.replication.failover: Manual as the baseline. The pods run
# release builds, as an image would.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/setup.sh
EBISU_CONTROLPLANE_BIN=$(bash tests/build-controlplane.sh)
export EBISU_CONTROLPLANE_BIN
cargo build --release --locked -p ebisu-operator -p ebisu-sidecar --bins
EBISU_BIN_DIR=$PWD/target/release cargo bench --locked -p ebisu-testcluster --bench failover
