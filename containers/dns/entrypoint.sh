#!/bin/bash
# knotd with the deployment's /deploy/knot.conf and zone files /deploy/zones/*.zone
# (read-only bind mount). Zone files are copied to /var/lib/knot/zones on the FIRST start
# only: afterwards knot's own copy (changes made with knotc, flushed there) is the truth,
# so a container restart keeps both the zone contents and the signing keys.
#
# DS_PARENT / DS_CHILDREN (optional): put the DS of each signed child zone into the parent
# zone served here (the harness' fake root ".") and keep it current; in a real deployment
# the DS goes to your registrar instead. ANCHORS_OUT (optional): write the DNSKEY RRset of
# ANCHOR_ZONE (default ".") there, in the format of the module's dns_trust_anchors.
set -euo pipefail
install -d -o knot -g knot /var/lib/knot /var/lib/knot/zones /run/knot
if [ ! -e /var/lib/knot/.seeded ]; then
  cp /deploy/zones/*.zone /var/lib/knot/zones/
  chown knot:knot /var/lib/knot/zones/*.zone
  touch /var/lib/knot/.seeded
fi
ln -sf /deploy/knot.conf /etc/knot/knot.conf
rm -f /run/knot-ready
knotd -c /etc/knot/knot.conf &
knot=$!
trap 'kill -TERM $knot 2>/dev/null; wait $knot; exit 0' TERM INT

dig1() { kdig @127.0.0.1 +tcp +time=2 +retry=0 +short "$@" 2>/dev/null || true; }
wait_for() { # wait_for WHAT CMD...
  local i
  for i in $(seq 1 150); do
    if "${@:2}"; then return 0; fi
    kill -0 $knot 2>/dev/null || { echo "dns: knotd exited while waiting for $1" >&2; exit 1; }
    sleep 0.2
  done
  echo "dns: timed out waiting for $1" >&2
  exit 1
}
has_dnskey() { [ -n "$(dig1 "$1" DNSKEY)" ]; }
for z in ${DS_PARENT:-} ${DS_CHILDREN:-} ${ANCHOR_ZONE:-}; do
  wait_for "DNSKEY $z" has_dnskey "$z"
done
if [ -n "${DS_PARENT:-}" ]; then
  for child in ${DS_CHILDREN:-}; do
    want=$(keymgr -c /etc/knot/knot.conf "$child" ds | awk '$2 == "DS" && $5 == 2 { print $3, $4, $5, $6 }' | head -1)
    [ -n "$want" ] || { echo "dns: no DS for $child" >&2; exit 1; }
    have=$(dig1 "$child." DS | head -1)
    if [ "${have,,}" != "${want,,}" ]; then
      knotc zone-begin "$DS_PARENT" >/dev/null
      knotc zone-unset "$DS_PARENT" "$child." DS >/dev/null 2>&1 || true
      # shellcheck disable=SC2086
      knotc zone-set "$DS_PARENT" "$child." 300 DS $want >/dev/null
      knotc zone-commit "$DS_PARENT" >/dev/null
      echo "dns: DS $child. $want -> $DS_PARENT"
    fi
    has_ds() { [ -n "$(dig1 "$child." DS)" ]; }
    wait_for "DS $child" has_ds
  done
fi
if [ -n "${ANCHORS_OUT:-}" ]; then
  kdig @127.0.0.1 +tcp +noall +answer "${ANCHOR_ZONE:-.}" DNSKEY >"$ANCHORS_OUT.tmp"
  grep -q DNSKEY "$ANCHORS_OUT.tmp" || { echo "dns: no DNSKEY for anchors" >&2; exit 1; }
  mv "$ANCHORS_OUT.tmp" "$ANCHORS_OUT"
fi
touch /run/knot-ready
echo "dns: ready"
wait $knot
