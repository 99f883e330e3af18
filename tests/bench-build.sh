#!/usr/bin/env bash
# Sourced by the benchmarks: the machine set up, the control plane and the
# MySQL image's root built, and the release binaries the pods run (as an
# image would); exports EBISU_CONTROLPLANE_BIN and EBISU_BIN_DIR.
bash tests/setup.sh
EBISU_CONTROLPLANE_BIN=$(bash tests/build-controlplane.sh)
export EBISU_CONTROLPLANE_BIN
bash tests/build-rootfs.sh >/dev/null # the MySQL cluster's image
cargo build --release --locked -p ebisu-operator -p ebisu-sidecar --bins
EBISU_BIN_DIR=$PWD/target/release
export EBISU_BIN_DIR
