#!/usr/bin/env bash
# The fast check a contributor runs before every commit: formatting, lints and the tests
# of the pure parts (trust model, request path, sync planning, fuzz regressions, the
# layering of src/). No root, no apt, no network, no radiusd/knotd/eapol_test; under a
# minute once built.
#
# It needs the FreeRADIUS include tree that scripts/setup.sh assembled once (as root) in
# .deps/freeradius-include, or FREERADIUS_INCLUDE_DIR pointing at one.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
if [ -z "${FREERADIUS_INCLUDE_DIR:-}" ] && [ ! -f .deps/freeradius-include/freeradius/radiusd.h ]; then
  echo "check: no FreeRADIUS include tree: run scripts/setup.sh once as root, or set FREERADIUS_INCLUDE_DIR" >&2
  exit 1
fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== unit tests and fuzz regressions"
cargo test --locked --lib --bins --test fuzz_regressions --test layers
echo "check: ok (the full suite with real parts: scripts/test.sh)"
