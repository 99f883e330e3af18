#!/usr/bin/env bash
# Builds ebisu's two images, ebisu-operator and ebisu-sidecar, for linux/amd64
# and linux/arm64 (Graviton), without a container daemon:
#   1. static (musl) binaries with cargo-zigbuild, checked with `file` to be
#      statically linked executables of the right architecture;
#   2. one layer per image and platform: the binary at /<name>, the CA
#      certificates at /etc/ssl/certs/ca-certificates.crt, and /etc/passwd and
#      /etc/group naming uid/gid 65532 `nonroot`; nothing else (no shell);
#      the tar is reproducible (sorted, mtime 0, owner 0), so is its gzip;
#   3. with --push, go-containerregistry's crane assembles each image
#      (empty OCI base + the layer, platform, user 65532:65532, entrypoint
#      /<name>), pushes it as PREFIX/<name>:TAG-<arch> and then the
#      multi-platform index PREFIX/<name>:TAG.
#
# Usage: tests/build-images.sh [--push PREFIX] [--tag TAG] [--profile PROFILE]
#                              [--platforms LIST] [--digests FILE]
#   (no --push)     steps 1 and 2 only: build and check
#   --push PREFIX   registry and owner to push to, e.g. ghcr.io/ebisu-dev (the
#                   release) or 127.0.0.1:5000/ebisu-dev (the local cluster's
#                   registry; crane speaks plain HTTP to a loopback registry)
#   --tag TAG       default: the workspace version, which is the chart's
#                   appVersion, so the chart's default image references match
#   --profile NAME  cargo profile: image-dev (default: unoptimised, no debug
#                   info, quick) or release (what the release workflow ships)
#   --platforms L   amd64,arm64 (default) or one of them (the benchmarks build
#                   only the machine's own)
#   --digests FILE  write one line per pushed index: PREFIX/<name>@sha256:...
#
# Tools are installed on first use into ${EBISU_CACHE:-$HOME/.cache/ebisu}:
# ziglang 0.17.0 and cargo-zigbuild 0.24.0 from PyPI (a venv), crane v0.22.1
# from the Go module proxy; the two musl targets with rustup; `file` with
# apt-get when missing. Binaries land in target/<triple>/<profile>/, layers in
# target/images/<profile>/. Progress goes to stderr; stdout carries only the
# pushed references (<ref>@<digest>, one per image) with --push.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ZIG_VERSION=0.17.0
ZIGBUILD_VERSION=0.24.0
CRANE_VERSION=v0.22.1
IMAGES=(ebisu-operator ebisu-sidecar)
PLATFORMS=("amd64 x86_64-unknown-linux-musl x86-64" "arm64 aarch64-unknown-linux-musl aarch64")
NONROOT=65532

push="" tag="" profile=image-dev digests="" platforms=amd64,arm64
while (($#)); do
  case $1 in
    --push) push=${2:?--push needs a registry/owner prefix}; shift 2 ;;
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    --profile) profile=${2:?--profile needs a cargo profile}; shift 2 ;;
    --digests) digests=${2:?--digests needs a file}; shift 2 ;;
    --platforms) platforms=${2:?--platforms needs amd64, arm64 or both}; shift 2 ;;
    -h | --help) sed -n '2,35p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-images: unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
wanted=()
for p in "${PLATFORMS[@]}"; do
  [[ ,$platforms, == *,${p%% *},* ]] && wanted+=("$p")
done
if ((${#wanted[@]} == 0)); then
  echo "build-images: --platforms must name amd64 and/or arm64, not '$platforms'" >&2
  exit 2
fi
PLATFORMS=("${wanted[@]}")
if [[ -z $tag ]]; then
  tag=$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)
fi
say() { printf 'build-images: %s\n' "$*" >&2; }

cache=${EBISU_CACHE:-$HOME/.cache/ebisu}

# --- tools ----------------------------------------------------------------
venv=$cache/zig-venv
if ! "$venv/bin/python3" -m pip show ziglang cargo-zigbuild 2>/dev/null |
  awk '/^Version:/ { v = v $2 " " } END { exit !(v == "'"$ZIG_VERSION $ZIGBUILD_VERSION "'") }'; then
  say "installing ziglang $ZIG_VERSION and cargo-zigbuild $ZIGBUILD_VERSION from PyPI into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python3" -m pip install -q "ziglang==$ZIG_VERSION" "cargo-zigbuild==$ZIGBUILD_VERSION" >&2
fi
export PATH=$venv/bin:$PATH

crane=$cache/tools/crane-$CRANE_VERSION/crane
if [[ ! -x $crane ]]; then
  say "building crane $CRANE_VERSION from the Go module proxy"
  GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
  GOBIN=$(dirname "$crane") GOFLAGS=-trimpath "$GO" install \
    "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" >&2
fi

if ! command -v file >/dev/null; then
  say "installing file (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends file >&2 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends file >&2; }
fi

targets=()
for p in "${PLATFORMS[@]}"; do
  read -r _ triple _ <<<"$p"
  targets+=("$triple")
done
installed=$(rustup target list --installed)
for triple in "${targets[@]}"; do
  grep -qx "$triple" <<<"$installed" || rustup target add "$triple" >&2
done

# --- 1. static binaries ---------------------------------------------------
say "cargo zigbuild --profile $profile for ${targets[*]}"
target_args=()
for triple in "${targets[@]}"; do target_args+=(--target "$triple"); done
bin_args=()
for name in "${IMAGES[@]}"; do bin_args+=(--bin "$name"); done
cargo zigbuild --locked --profile "$profile" "${target_args[@]}" "${bin_args[@]}" >&2

# `dev` builds into target/<triple>/debug; every other profile into its name.
profile_dir=$profile
[[ $profile == dev ]] && profile_dir=debug

for p in "${PLATFORMS[@]}"; do
  read -r _ triple machine <<<"$p"
  for name in "${IMAGES[@]}"; do
    bin=target/$triple/$profile_dir/$name
    what=$(file -b "$bin")
    if [[ $what != *"ELF 64-bit"*"executable"*"$machine"* || $what != *static*linked* ]]; then
      echo "build-images: $bin is not a static $machine executable: $what" >&2
      exit 1
    fi
    say "$bin: $what"
  done
done

# --- 2. layers --------------------------------------------------------------
layers=target/images/$profile_dir
mkdir -p "$layers"
ca=/etc/ssl/certs/ca-certificates.crt
[[ -r $ca ]] || { echo "build-images: no CA bundle at $ca (install ca-certificates)" >&2; exit 1; }
for p in "${PLATFORMS[@]}"; do
  read -r arch triple _ <<<"$p"
  for name in "${IMAGES[@]}"; do
    bin=target/$triple/$profile_dir/$name
    layer=$layers/$name-$arch.tar.gz
    [[ -s $layer && $layer -nt $bin && $layer -nt $ca && $layer -nt "${BASH_SOURCE[0]}" ]] && continue
    staging=$(mktemp -d)
    mkdir -p "$staging/etc/ssl/certs"
    install -m 0755 "$bin" "$staging/$name"
    install -m 0644 "$ca" "$staging/etc/ssl/certs/ca-certificates.crt"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
      $NONROOT $NONROOT >"$staging/etc/passwd"
    printf 'root:x:0:\nnonroot:x:%s:\n' $NONROOT >"$staging/etc/group"
    chmod 0644 "$staging/etc/passwd" "$staging/etc/group"
    tar -C "$staging" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
      --mode='u+rwX,go+rX,go-w' -cf - "$name" etc | gzip -n >"$layer.tmp"
    mv "$layer.tmp" "$layer"
    rm -rf "$staging"
  done
done
for name in "${IMAGES[@]}"; do
  for p in "${PLATFORMS[@]}"; do
    read -r arch _ _ <<<"$p"
    say "layer $layers/$name-$arch.tar.gz: $(du -h "$layers/$name-$arch.tar.gz" | cut -f1) compressed"
  done
done

[[ -z $push ]] && exit 0

# --- 3. images and indexes ---------------------------------------------------
source_url=$(awk -F'"' '/^repository *=/ { print $2; exit }' Cargo.toml)
if [[ -n $digests ]]; then : >"$digests"; fi
# crane's progress lines only when it fails.
quiet() {
  local out
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    return 1
  fi
}
for name in "${IMAGES[@]}"; do
  manifests=()
  for p in "${PLATFORMS[@]}"; do
    read -r arch _ _ <<<"$p"
    ref=$push/$name:$tag-$arch
    quiet "$crane" append --oci-empty-base -f "$layers/$name-$arch.tar.gz" -t "$ref"
    quiet "$crane" mutate "$ref" -t "$ref" \
      --set-platform "linux/$arch" --user "$NONROOT:$NONROOT" --entrypoint "/$name" \
      --label "org.opencontainers.image.source=$source_url" \
      --label "org.opencontainers.image.version=$tag" \
      --label "org.opencontainers.image.licenses=Apache-2.0"
    manifests+=(-m "$ref")
  done
  quiet "$crane" index append "${manifests[@]}" -t "$push/$name:$tag"
  digest=$("$crane" digest "$push/$name:$tag")
  say "pushed $push/$name:$tag ($digest) for ${platforms}"
  echo "$push/$name@$digest"
  if [[ -n $digests ]]; then echo "$push/$name@$digest" >>"$digests"; fi
done
