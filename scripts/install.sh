#!/usr/bin/env bash
# Builds and installs rlm_rust into Debian's FreeRADIUS (as root): the module as
# /usr/lib/freeradius/rlm_rust.so, the rlm-rust CLI in /usr/local/bin, and the shipped raddb
# files under /etc/freeradius/3.0/*-available/ (never overwriting an operator's edited copy,
# and enabling nothing: see README "Install"). For a package instead: scripts/build-deb.sh.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/setup.sh"
cargo build --release --locked
raddb=${RADDB:-/etc/freeradius/3.0}
install -m 0644 target/release/librlm_rust.so /usr/lib/freeradius/rlm_rust.so
install -m 0755 target/release/rlm-rust /usr/local/bin/rlm-rust
for f in mods-available/rust mods-available/eap-dane sites-available/dane-eap-tls sites-available/check-eap-tls-dane; do
  if [ -e "$raddb/$f" ] && ! cmp -s "raddb/$f" "$raddb/$f"; then
    install -m 0640 "raddb/$f" "$raddb/$f.rlm_rust-new"
    echo "install: $raddb/$f differs from the shipped file; wrote $raddb/$f.rlm_rust-new"
  else
    install -m 0640 "raddb/$f" "$raddb/$f"
  fi
done
install -d -o freerad -g freerad -m 0750 /var/lib/rlm_rust
# eap_dane's TLS session cache (persist_dir = ${logdir}/tlscache): radiusd does not create
# it. Made only when missing, so an operator's ownership and mode are kept.
[ -d /var/log/freeradius/tlscache ] || install -d -o freerad -g freerad -m 0700 /var/log/freeradius/tlscache
echo "install: done. Enable with the symlinks in README (Install), then: freeradius -XC"
