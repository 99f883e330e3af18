#!/usr/bin/env bash
# The failover benchmark on the local cluster (needs root):
#   bash tests/bench-failover.sh   (as root)
# Every kind of fault of the primary (drain, operator cut off, pod cut off,
# server frozen, server killed, agent frozen, node stopped; EBISU_BENCH_FAULTS
# picks some), EBISU_BENCH_DRILLS times each
# (default 5), held EBISU_BENCH_OUTAGE_SECS (default 20), on MariaDB and on
# MySQL (EBISU_BENCH_FLAVORS), under a writer that counts only acknowledged
# commits and a poller of every server's read-only flag. The pods run
# release builds, as an image would.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=tests/bench-build.sh
source tests/bench-build.sh
cargo bench --locked -p ebisu-testcluster --bench failover
