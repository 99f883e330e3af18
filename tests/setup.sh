#!/usr/bin/env bash
# Installs what the tests need on a new machine (idempotent, quick when done):
# Debian packages for the real MariaDB servers and the local cluster's node
# side. Run as root (CI machines are). Sourced or run by tests/all.sh.
set -euo pipefail

packages=(
  mariadb-server   # mariadbd, mariadb-install-db, mariadb client
  mariadb-backup   # mariadb-backup, mbstream
  mariadb-client   # mariadb-binlog (the agent reads relay logs with it)
  iproute2         # ip netns, bridges, veth, blackhole routes
  util-linux       # unshare, nsenter, setpriv, mount
  procps
  openssl
  curl
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's own service must not start: tests run their own servers.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The local EC2 API (moto), cached outside the repository.
bash "$(dirname "${BASH_SOURCE[0]}")/install-moto.sh" >/dev/null
