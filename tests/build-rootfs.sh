#!/usr/bin/env bash
# Build the root file systems the local cluster runs images in, from
# Debian's packages, into a cache outside the repository:
#   ${EBISU_CACHE:-$HOME/.cache/ebisu}/rootfs/mysql-sid-2/
# MySQL is not in Debian 12; Debian's `sid` suite serves mysql-server-core
# 9.7 (with the clone and semi-sync plugins), which needs a newer C library
# than this machine's, so it runs from a root of its own, as a container
# image would (with CA certificates, as images have: the agent calls S3
# over TLS). Built once (about a minute and 650 MB); if it is there this
# returns at once. The root's path is the last line printed on stdout.
#
# Usage: tests/build-rootfs.sh [--print-dir]
# Needs root (debootstrap); installs debootstrap when it is missing.
set -euo pipefail

root="${EBISU_CACHE:-$HOME/.cache/ebisu}/rootfs/mysql-sid-2"
case "${1:-}" in
  --print-dir) echo "$root"; exit 0 ;;
  "") ;;
  *) echo "build-rootfs: unknown argument: $1" >&2; exit 2 ;;
esac

if [[ -f $root/.ebisu-complete ]]; then
  echo "$root"
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  echo "build-rootfs: installing debootstrap" >&2
  # A machine whose package lists were never fetched knows no debootstrap yet.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2; }
fi
# The machine's own Debian mirror, as its apt sources name it.
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}
partial="$root.partial"
rm -rf "$partial"
mkdir -p "$(dirname "$root")"
echo "build-rootfs: debootstrap sid with mysql-server-core from $mirror into $root" >&2
debootstrap --variant=minbase --include=mysql-server-core,mysql-client-core,ca-certificates \
  sid "$partial" "$mirror" >&2
# What the pods' mount points need, and a check that the server runs.
mkdir -p "$partial/var/lib/mysql" "$partial/run/mysqld" "$partial/opt/ebisu/bin"
chroot "$partial" mysqld --version >&2
test -f "$partial/usr/lib/mysql/plugin/mysql_clone.so"
test -f "$partial/usr/lib/mysql/plugin/semisync_source.so"
chroot "$partial" mysqld --version | sed 's/^/mysql: /' > "$partial/.ebisu-complete"
rm -rf "$root"
mv "$partial" "$root"
echo "$root"
