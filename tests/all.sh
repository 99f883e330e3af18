#!/usr/bin/env bash
# Everything CI runs, from a fresh clone on a new machine:
#   bash tests/all.sh
# formatting, lints, the CRD drift check and every test of the workspace.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "machine setup (tests/setup.sh)"
bash tests/setup.sh

step "control plane binaries (tests/build-controlplane.sh; cached outside the clone)"
EBISU_CONTROLPLANE_BIN=$(bash tests/build-controlplane.sh)
export EBISU_CONTROLPLANE_BIN

step "formatting (cargo fmt --check)"
cargo fmt --all -- --check

step "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "generated CRD is current (crdgen + git diff)"
cargo run --quiet --locked -p ebisu-operator --bin crdgen
if ! git diff --exit-code -- crds/ charts/ebisu/crds/; then
  echo "crds/ is stale: run 'cargo run -p ebisu-operator --bin crdgen' and commit it" >&2
  exit 1
fi

step "tests (cargo test --workspace)"
cargo test --workspace --locked
