#!/usr/bin/env bash
# Sourced by the benchmarks: the machine set up, the control plane and the
# MySQL image's root built, and ebisu's images built from release binaries
# for this machine's platform (the cluster's registry gets them when the
# chart is installed); exports EBISU_CONTROLPLANE_BIN, EBISU_IMAGE_PROFILE
# and EBISU_IMAGE_PLATFORMS.
bash tests/setup.sh
EBISU_CONTROLPLANE_BIN=$(bash tests/build-controlplane.sh)
export EBISU_CONTROLPLANE_BIN
bash tests/build-rootfs.sh >/dev/null # the MySQL cluster's image
EBISU_IMAGE_PROFILE=release
case $(uname -m) in
  aarch64 | arm64) EBISU_IMAGE_PLATFORMS=arm64 ;;
  *) EBISU_IMAGE_PLATFORMS=amd64 ;;
esac
export EBISU_IMAGE_PROFILE EBISU_IMAGE_PLATFORMS
bash tests/build-images.sh --profile "$EBISU_IMAGE_PROFILE" --platforms "$EBISU_IMAGE_PLATFORMS"
