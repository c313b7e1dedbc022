#!/usr/bin/env bash
# The local demo on embedded defaults: installs what is needed, builds, then runs the
# whole stack on loopback (signed DNS zone, HTTPS CA server, radiusd with rlm_rust) and
# authenticates devices with eapol_test: one accepted, cross-domain and revoked rejected.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/setup.sh"
cargo build --locked --quiet --release --bin rlm-rust --example demo
exec "$top/target/release/examples/demo"
