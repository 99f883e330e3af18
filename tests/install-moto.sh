#!/usr/bin/env bash
# Installs the local EC2 API the test cluster serves (moto's server, from
# PyPI) into a virtualenv in a cache outside the repository, keyed by its
# version, and prints the path of its `moto_server` program:
#   ${EBISU_CACHE:-$HOME/.cache/ebisu}/moto-<version>/bin/moto_server
# Quick when installed. `--print-path` only prints the path.
set -euo pipefail

moto_version=5.2.5
dir="${EBISU_CACHE:-$HOME/.cache/ebisu}/moto-${moto_version}"
server="$dir/bin/moto_server"
if [[ ${1:-} == --print-path ]]; then
  echo "$server"
  exit 0
fi
# The stamp is written last: an interrupted install is redone from scratch.
if [[ ! -e $dir/.installed ]]; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "install-moto: installing python3-venv" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >&2
  fi
  echo "install-moto: installing moto[server]==$moto_version into $dir" >&2
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$moto_version" >&2
  touch "$dir/.installed"
fi
echo "$server"
