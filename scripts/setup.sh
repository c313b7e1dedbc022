#!/usr/bin/env bash
# Installs everything rlm_rust needs on Debian bookworm (run as root), then assembles the
# FreeRADIUS headers the module compiles against. Idempotent and quick when done already.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  # the server we load into, its headers and what its autoconf.h needs
  freeradius libfreeradius-dev libtalloc-dev libpcre3-dev libssl-dev
  # build: bindgen needs libclang; pkg-config finds libpcsclite
  clang libclang-dev pkg-config dpkg-dev xz-utils
  # real parts for tests: supplicant, authoritative DNS with DNSSEC signing
  eapoltest freeradius-utils knot knot-dnsutils openssl ca-certificates valgrind
  # IoT SAFE rig: PC/SC daemon, virtual reader, PKCS#11 engine for eapol_test
  pcscd libpcsclite-dev vsmartcard-vpcd libengine-pkcs11-openssl
  # benchmarks and the Python reference we compare with
  python3 python3-venv
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo (Rust toolchain) is required" >&2; exit 1; }
"$top/scripts/freeradius-headers.sh"
echo "setup: ok"
