#!/usr/bin/env bash
# Builds and installs libiotsafe_pkcs11.so where Debian's wpa_supplicant
# accepts PKCS#11 modules: its CVE-2024-5290 patch realpath()s
# pkcs11_module_path and refuses anything outside /usr/lib/.
#   iotsafe/install-pkcs11.sh            # release build, install
#   iotsafe/install-pkcs11.sh --uninstall
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=/usr/lib/x86_64-linux-gnu/pkcs11/libiotsafe_pkcs11.so
if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$dest"; echo "removed $dest"; exit 0
fi
(cd "$here" && cargo build -q --release -p iotsafe-pkcs11)
install -D -m 0644 "$here/target/release/libiotsafe_pkcs11.so" "$dest"
echo "installed $dest"
