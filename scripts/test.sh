#!/usr/bin/env bash
# Runs every test of the project: lint, unit and real-parts integration tests (radiusd,
# eapol_test, knotd, HTTPS), then the IoT SAFE workspace. This is the README's test command.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/setup.sh"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== IoT SAFE binaries and PKCS#11 module (tests/iotsafe_rig.rs runs them)"
cargo build --locked --manifest-path iotsafe/Cargo.toml -p iotsafe -p iotsafe-sim -p iotsafe-pkcs11
# The rig needs the host's one pcscd slot (Debian socket-activates the system pcscd).
if command -v systemctl >/dev/null && systemctl is-active --quiet pcscd.socket 2>/dev/null; then
  systemctl stop pcscd.socket pcscd.service || true
fi
echo "== cargo test (unit + integration with real radiusd, eapol_test, knotd, HTTPS)"
cargo test -- --test-threads="${TEST_THREADS:-2}"
echo "== benches as smoke tests (one pass each, no timing)"
cargo test --benches
if [ -x "$top/iotsafe/ci.sh" ]; then
  echo "== IoT SAFE workspace"
  "$top/iotsafe/ci.sh"
fi
echo "== all tests passed"
