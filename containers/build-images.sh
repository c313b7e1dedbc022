#!/usr/bin/env bash
# Builds the harness images from nothing pulled (there is no registry here):
#
#   rlm-harness-base:<hash>   debootstrap'd bookworm + base/packages.txt (base/mkbase.sh),
#                             `docker import`ed. <hash> = sha256 of packages.txt + mkbase.sh:
#                             reused when that tag exists, rebuilt when either file changes.
#   rlm-harness-radiusd       FROM base: our rlm-rust .deb (dpkg -i), module + sites enabled
#   rlm-harness-dns           FROM base: knotd signing the zones it is given
#   rlm-harness-web           FROM base: nginx-light serving .well-known/ca over HTTPS
#   rlm-harness-supplicant    FROM base: eapol_test + pkcs11 engine + libiotsafe_pkcs11.so
#   rlm-harness-iotsafe       FROM base: pcscd + vpcd + iotsafe-sim (+ iotsafe CLI)
#
# The app images are `docker build`s (legacy builder, layer cache; FROM is the local base
# tag, so nothing is pulled). Their inputs: the .deb files (scripts/build-deb.sh, run here
# unless --debs DIR is given) and iotsafe-sim (built here).
#
# Usage: containers/build-images.sh [--debs DIR] [--no-build] [--mirror URL]
# Prints the base tag on the last line ("BASE=<tag>") and writes it to
# target/containers/images.env.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
debs=""
build=1
mirror=${RLMH_MIRROR:-http://deb.debian.org/debian}
while [ $# -gt 0 ]; do
  case $1 in
    --debs) debs=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --mirror) mirror=$2; shift 2 ;;
    *) echo "usage: $0 [--debs DIR] [--no-build] [--mirror URL]" >&2; exit 2 ;;
  esac
done
export DOCKER_BUILDKIT=0
out=$top/target/containers
mkdir -p "$out"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---- base ----
t=$(now)
hash=$(cat "$here/base/packages.txt" "$here/base/mkbase.sh" | sha256sum | cut -c1-12)
base=rlm-harness-base:$hash
if docker image inspect "$base" >/dev/null 2>&1; then
  echo "images: base $base (cached)"
else
  command -v debootstrap >/dev/null || {
    echo "images: installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
  }
  "$here/base/mkbase.sh" "$base" "$mirror"
  echo "images: base $base built in $(since "$t") s"
fi

# ---- inputs of the app images ----
t=$(now)
if [ -z "$debs" ]; then
  debs=$top/target/deb
  if [ "$build" = 1 ]; then
    "$top/scripts/build-deb.sh" --out "$debs" >/dev/null
  fi
fi
if [ "$build" = 1 ]; then
  cargo build --release --locked --manifest-path "$top/iotsafe/Cargo.toml" -p iotsafe-sim
fi
rlm_deb=$(ls -t "$debs"/rlm-rust_*.deb | head -1)
iot_deb=$(ls -t "$debs"/iotsafe-tools_*.deb | head -1)
sim=$top/iotsafe/target/release/iotsafe-sim
for f in "$rlm_deb" "$iot_deb" "$sim"; do
  [ -f "$f" ] || { echo "images: missing $f" >&2; exit 1; }
done
echo "images: inputs ready in $(since "$t") s ($(basename "$rlm_deb"), $(basename "$iot_deb"))"

# ---- app images ----
ctx=$out/ctx
rm -rf "$ctx"
build_image() { # build_image NAME FILES...
  local name=$1 dir=$ctx/$1 t
  t=$(now)
  shift
  mkdir -p "$dir"
  cp "$here/$name"/* "$dir/"
  for f in "$@"; do cp "$f" "$dir/"; done
  if ! docker build -q --pull=false --build-arg "BASE=$base" -t "rlm-harness-$name:latest" \
    --label "rlm-harness.base=$base" "$dir" >"$out/build-$name.log" 2>&1; then
    cat "$out/build-$name.log" >&2
    echo "images: docker build $name failed" >&2
    exit 1
  fi
  echo "images: rlm-harness-$name in $(since "$t") s"
}
build_image radiusd "$rlm_deb"
build_image dns
build_image web
build_image supplicant "$iot_deb"
objcopy --strip-debug "$sim" "$ctx/iotsafe-sim.stripped" 2>/dev/null || cp "$sim" "$ctx/iotsafe-sim.stripped"
mkdir -p "$ctx/iotsafe" && mv "$ctx/iotsafe-sim.stripped" "$ctx/iotsafe/iotsafe-sim"
build_image iotsafe "$iot_deb"
docker image prune -f --filter "label=rlm-harness.base" >/dev/null || true
echo "BASE=$base" >"$out/images.env"
echo "BASE=$base"
