#!/usr/bin/env bash
# CI for the IoT SAFE workspace: installs the Debian bookworm
# packages the tests need (idempotent), then fmt, clippy and the tests.
# Run as root: the integration tests start their own pcscd (it owns
# /run/pcscd) and install a module copy under /usr/lib for eapol_test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

packages=(
  # build: pcsc-sys links libpcsclite via pkg-config; openssl-sys needs headers
  pkg-config libpcsclite-dev libssl-dev
  # rig: PC/SC daemon and the vpcd virtual reader driver
  pcscd vsmartcard-vpcd
  # verification and the EAP-TLS end-to-end test
  openssl eapoltest freeradius libengine-pkcs11-openssl
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "iotsafe ci: installing ${missing[*]}"
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "iotsafe ci: cargo (Rust toolchain) is required" >&2; exit 1; }

# Debian starts pcscd (socket-activated) on install where systemd runs; the
# tests need the one pcscd slot for their private reader config.
if command -v systemctl >/dev/null && systemctl is-active --quiet pcscd.socket 2>/dev/null; then
  systemctl stop pcscd.socket pcscd.service || true
fi

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# Test binaries queue on the rig lock anyway; one job keeps the 2-core box usable.
cargo test --locked -j1
