#!/usr/bin/env bash
# The backup benchmark on the local cluster (needs root):
#   bash tests/bench-backup.sh   (as root)
# On MariaDB (EBISU_BENCH_FLAVORS; MySQL's bulk load does not finish on the
# local cluster yet), with the data grown to 1 and
# 4 GiB (EBISU_BENCH_SIZES_GIB): writes blocked on the primary while a
# backup is taken, the backup's duration, restore to Ready, and a second
# instance of the restored cluster seeded by a stream clone; then, at each
# size, the binary log archive's lag under a steady writer
# (EBISU_BENCH_ARCHIVE_SECONDS) and a restore to a point replayed from it
# over 1 GiB of binary log written in bulk after the backup
# (EBISU_BENCH_BINLOG_MIB). The pods run release builds, as an image would.
# About 30 GiB of free disk at 4 GiB.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=tests/bench-build.sh
source tests/bench-build.sh
cargo bench --locked -p ebisu-testcluster --bench backup
