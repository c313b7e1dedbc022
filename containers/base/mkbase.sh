#!/usr/bin/env bash
# Builds the harness base image from nothing pulled: a debootstrap'd Debian bookworm
# rootfs (minbase), the packages of packages.txt installed with `chroot ... apt-get`, then
# `docker import`. Usage: mkbase.sh TAG [MIRROR]. Run as root. Part of the base image's
# content hash (build-images.sh): editing this file rebuilds the base.
set -euo pipefail
tag=$1
mirror=${2:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/packages.txt" | grep -v '^$')

root=$(mktemp -d /var/tmp/rlm-base-rootfs.XXXXXX)
cleanup() {
  for m in dev/pts dev proc; do mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m" || true; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT

echo "base: debootstrap bookworm (minbase) into $root"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 \
  || { tail -30 "$root.debootstrap.log" >&2; exit 1; }
rm -f "$root.debootstrap.log"

cat >"$root/etc/apt/sources.list" <<SRC
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SRC
# No daemon may start inside the chroot while packages install.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"

echo "base: apt-get install ${pkgs[*]}"
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
  sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends "$@" && apt-get clean' \
  sh "${pkgs[@]}" >"$root.apt.log" 2>&1 || { tail -40 "$root.apt.log" >&2; rm -f "$root.apt.log"; exit 1; }
rm -f "$root.apt.log"

for m in dev/pts dev proc; do umount -l "$root/$m"; done
# Leave no host state in the image; services are started by the images' entrypoints.
rm -f "$root/etc/resolv.conf" "$root/usr/sbin/policy-rc.d"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* "$root"/var/log/*.log
: >"$root/etc/hostname"

echo "base: docker import -> $tag"
tar --numeric-owner -C "$root" -c . \
  | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
      --message "rlm_rust harness base (debootstrap bookworm + packages.txt)" - "$tag" >/dev/null
echo "base: done"
