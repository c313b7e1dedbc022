#!/usr/bin/env bash
# Assemble a FreeRADIUS include tree that can compile a module against the installed server.
#
# Debian's libfreeradius-dev omits headers that radiusd.h needs (ARCHITECTURE.md).
# We take those from the source package of the *same* version, then copy the installed
# headers over them: the installed autoconf.h/radpaths.h/attributes.h come from Debian's
# build, so struct layouts and RADIUSD_MAGIC_NUMBER match the running radiusd.
#
# usage: scripts/freeradius-headers.sh [DEST]   (default: .deps/freeradius-include)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$top/.deps/freeradius-include}
[ -f /usr/include/freeradius/radiusd.h ] || { echo "install libfreeradius-dev first (scripts/setup.sh)" >&2; exit 1; }
version=$(dpkg-query -W -f='${Version}' libfreeradius-dev)
stamp="$dest/.version"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ]; then exit 0; fi

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
if ! ls /etc/apt/sources.list.d/*src* >/dev/null 2>&1 && ! grep -rqs '^deb-src\|deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$codename" > /etc/apt/sources.list.d/rlm-rust-src.sources
  apt-get update -q >/dev/null
fi
(cd "$work" && apt-get source -q --download-only "freeradius=$version" >/dev/null 2>&1 || apt-get source -q --download-only freeradius >/dev/null)
tar -C "$work" -xJf "$work"/freeradius_*.orig.tar.xz --wildcards '*/src/include/*'
src=$(echo "$work"/freeradius-server-*/src/include)

rm -rf "$dest"; mkdir -p "$dest/freeradius"
for h in "$src"/*.h; do sed 's#freeradius-devel/#freeradius/#g' "$h" > "$dest/freeradius/$(basename "$h")"; done
cp /usr/include/freeradius/*.h "$dest/freeradius/"
ln -s freeradius "$dest/freeradius-devel"
echo "$version" > "$stamp"
echo "FreeRADIUS $version headers in $dest"
