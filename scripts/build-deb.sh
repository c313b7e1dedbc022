#!/usr/bin/env bash
# Builds the Debian packages with dpkg-deb (no cargo-deb, nothing from outside Debian):
#
#   rlm-rust_<ver>-1_amd64.deb       /usr/lib/freeradius/rlm_rust.so, the shipped raddb files
#                                    under /etc/freeradius/3.0/{mods,sites}-available/ (conffiles,
#                                    not enabled), /usr/bin/rlm-rust.
#                                    Depends: freeradius (>= 3.2.1), freeradius (<< 3.2.2~), libssl3
#   iotsafe-tools_<ver>-1_amd64.deb  /usr/bin/iotsafe, the PKCS#11 module
#                                    /usr/lib/x86_64-linux-gnu/pkcs11/libiotsafe_pkcs11.so
#                                    Depends: libpcsclite1, libssl3 (skipped with --no-iotsafe)
#
# Usage: scripts/build-deb.sh [--out DIR] [--no-build] [--no-iotsafe]
#   --out DIR     where the .deb files go (default target/deb); their paths are printed last
#   --no-build    package what target/release and iotsafe/target/release already hold
#
# The module is built against the FreeRADIUS headers of the host's freeradius package
# (scripts/setup.sh); install the .deb on a server running that same FreeRADIUS version.
# Enabling stays the operator's step (see README.md "Install" and containers/README.md):
#   cd /etc/freeradius/3.0 && ln -s ../mods-available/rust mods-enabled/ && ...
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/target/deb
build=1
iotsafe=1
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-iotsafe) iotsafe=0; shift ;;
    *) echo "usage: $0 [--out DIR] [--no-build] [--no-iotsafe]" >&2; exit 2 ;;
  esac
done

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)
iot_version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$top/iotsafe/Cargo.toml" | head -1)
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
fr_version=$(dpkg-query -W -f='${Version}' freeradius 2>/dev/null || echo unknown)

if [ "$build" = 1 ]; then
  (cd "$top" && cargo build --release --locked --lib --bin rlm-rust)
  if [ "$iotsafe" = 1 ]; then
    cargo build --release --locked --manifest-path "$top/iotsafe/Cargo.toml" -p iotsafe -p iotsafe-pkcs11
  fi
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
# Reproducible packages: same inputs, same bytes (so image layers built from them stay cached).
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || echo 1700000000)}
export SOURCE_DATE_EPOCH
stage=$(mktemp -d "${TMPDIR:-/tmp}/rlm-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# Files for /DEBIAN/md5sums and Installed-Size, then dpkg-deb.
finish() { # finish ROOT NAME
  local root=$1 name=$2
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    >"$root/DEBIAN/md5sums"
  local kb
  kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  sed -i "s/^Installed-Size: .*/Installed-Size: $kb/" "$root/DEBIAN/control"
  find "$root" -type d -exec chmod 0755 {} +
  find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  dpkg-deb --root-owner-group -Zgzip --build "$root" "$out/$name" >/dev/null
  echo "$out/$name"
}

# ---- rlm-rust ----
r=$stage/rlm-rust
conf=etc/freeradius/3.0
install -d "$r/DEBIAN" "$r/usr/lib/freeradius" "$r/usr/bin" "$r/$conf/mods-available" \
  "$r/$conf/sites-available" "$r/usr/share/doc/rlm-rust"
# Debug info stays in target/; the package gets stripped binaries.
objcopy --strip-debug "$top/target/release/librlm_rust.so" "$r/usr/lib/freeradius/rlm_rust.so"
chmod 0644 "$r/usr/lib/freeradius/rlm_rust.so"
objcopy --strip-debug "$top/target/release/rlm-rust" "$r/usr/bin/rlm-rust"
chmod 0755 "$r/usr/bin/rlm-rust"
for f in mods-available/rust mods-available/eap-dane sites-available/dane-eap-tls \
  sites-available/check-eap-tls-dane; do
  install -m 0644 "$top/raddb/$f" "$r/$conf/$f"
  echo "/$conf/$f" >>"$r/DEBIAN/conffiles"
done
install -m 0644 "$top/README.md" "$r/usr/share/doc/rlm-rust/README.md"
cat >"$r/DEBIAN/control" <<EOF
Package: rlm-rust
Version: $version-1
Architecture: $arch
Maintainer: rlm_rust developers <root@localhost>
Installed-Size: 0
Depends: freeradius (>= 3.2.1), freeradius (<< 3.2.2~), libssl3
Section: net
Priority: optional
Description: FreeRADIUS module: admit EAP-TLS devices by their DNS name (DANE)
 rlm_rust checks that the certificate an EAP-TLS device presented is the one DNS
 publishes (TLSA, DNSSEC or a CA chain from .well-known/ca) for the name it
 claims, and that the name is allowed on the SSID. Ships the module, the
 mods-available/rust and mods-available/eap-dane configurations, the
 dane-eap-tls and check-eap-tls-dane virtual servers (not enabled) and the
 rlm-rust operator tool.
 .
 Built against FreeRADIUS $fr_version headers.
EOF
cat >"$r/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# State the trust sync and eap_dane's TLS session cache write, owned by the user radiusd
# runs as.
set -e
if [ "$1" = configure ]; then
  owner=root:root
  if getent passwd freerad >/dev/null && getent group freerad >/dev/null; then owner=freerad:freerad; fi
  install -d -m 0750 /var/lib/rlm_rust
  install -d -m 0755 /etc/freeradius/3.0/certs/dane-ca
  chown "$owner" /var/lib/rlm_rust /etc/freeradius/3.0/certs/dane-ca
  # eap_dane's TLS session cache (persist_dir = ${logdir}/tlscache), which radiusd does
  # not create. Only when missing: an operator's ownership and mode are kept.
  if [ ! -d /var/log/freeradius/tlscache ]; then
    install -d -m 0700 /var/log/freeradius/tlscache
    chown "$owner" /var/log/freeradius/tlscache
  fi
fi
exit 0
EOF
cat >"$r/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  rm -rf /var/lib/rlm_rust /etc/freeradius/3.0/certs/dane-ca /var/log/freeradius/tlscache
fi
exit 0
EOF
chmod 0755 "$r/DEBIAN/postinst" "$r/DEBIAN/postrm"
finish "$r" "rlm-rust_${version}-1_${arch}.deb"

# ---- iotsafe-tools ----
if [ "$iotsafe" = 1 ]; then
  i=$stage/iotsafe-tools
  install -d "$i/DEBIAN" "$i/usr/bin" "$i/usr/lib/$multiarch/pkcs11" "$i/usr/share/doc/iotsafe-tools"
  objcopy --strip-debug "$top/iotsafe/target/release/iotsafe" "$i/usr/bin/iotsafe"
  chmod 0755 "$i/usr/bin/iotsafe"
  objcopy --strip-debug "$top/iotsafe/target/release/libiotsafe_pkcs11.so" \
    "$i/usr/lib/$multiarch/pkcs11/libiotsafe_pkcs11.so"
  chmod 0644 "$i/usr/lib/$multiarch/pkcs11/libiotsafe_pkcs11.so"
  install -m 0644 "$top/iotsafe/README.md" "$i/usr/share/doc/iotsafe-tools/README.md"
  cat >"$i/DEBIAN/control" <<EOF
Package: iotsafe-tools
Version: $iot_version-1
Architecture: $arch
Maintainer: rlm_rust developers <root@localhost>
Installed-Size: 0
Depends: libpcsclite1, libssl3
Recommends: pcscd, libengine-pkcs11-openssl
Section: utils
Priority: optional
Description: GSMA IoT SAFE tools: PC/SC helper and PKCS#11 module
 The iotsafe CLI (keys, CSR, certificates and TLSA lines of an IoT SAFE applet
 on a SIM, over PC/SC) and libiotsafe_pkcs11.so, a PKCS#11 module for OpenSSL's
 pkcs11 engine so that eapol_test / wpa_supplicant sign with the SIM-held key.
EOF
  finish "$i" "iotsafe-tools_${iot_version}-1_${arch}.deb"
fi
