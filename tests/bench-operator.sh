#!/usr/bin/env bash
# The operator benchmark on the local cluster (needs root):
#   bash tests/bench-operator.sh   (as root)
# Times `kubectl apply` -> 3 Ready (empty data) and `kubectl scale` -> 5 Ready
# with 1 GiB of data (EBISU_BENCH_GIB), then samples the operator's idle CPU
# and memory (EBISU_BENCH_IDLE_SECS). The pods run release builds, as an
# image would.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=tests/bench-build.sh
source tests/bench-build.sh
cargo bench --locked -p ebisu-testcluster --bench operator
