#!/usr/bin/env bash
# Everything CI runs, from a fresh clone on a new machine:
#   bash tests/all.sh
# formatting, lints, the CRD drift check, every test of the workspace and
# the README's demo, with each server flavor.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "machine setup (tests/setup.sh)"
bash tests/setup.sh

step "control plane binaries (tests/build-controlplane.sh; cached outside the clone)"
EBISU_CONTROLPLANE_BIN=$(bash tests/build-controlplane.sh)
export EBISU_CONTROLPLANE_BIN

step "MySQL image root file system (tests/build-rootfs.sh; cached outside the clone)"
bash tests/build-rootfs.sh >/dev/null

step "formatting (cargo fmt --check)"
cargo fmt --all -- --check

step "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "generated CRD is current (crdgen + git diff)"
cargo run --quiet --locked -p ebisu-operator --bin crdgen
if ! git diff --exit-code -- crds/ charts/ebisu/files/crds/; then
  echo "crds/ is stale: run 'cargo run -p ebisu-operator --bin crdgen' and commit it" >&2
  exit 1
fi

step "ebisu's images: static binaries for linux/amd64 and linux/arm64, checked (tests/build-images.sh)"
bash tests/build-images.sh

step "tests (cargo test --workspace)"
cargo test --workspace --locked

step "the README's demo works (tests/demo.sh on its own cluster)"
demo_dir=/tmp/ebisu-testcluster-demo-check
trap './target/debug/testcluster --state-dir "$demo_dir" down >/dev/null 2>&1 || true' EXIT
EBISU_TESTCLUSTER_DIR=$demo_dir bash tests/demo.sh

step "the README's MySQL demo works (EBISU_DEMO_FLAVOR=mysql tests/demo.sh)"
./target/debug/testcluster --state-dir "$demo_dir" down >/dev/null
EBISU_TESTCLUSTER_DIR=$demo_dir EBISU_DEMO_FLAVOR=mysql bash tests/demo.sh
