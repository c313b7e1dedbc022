#!/usr/bin/env bash
# The container harness, end to end, in one command (root, Docker engine, Debian bookworm):
#
#   1. build: the module + CLIs (cargo), the .deb files (scripts/build-deb.sh), the images
#      (build-images.sh: debootstrap'd base reused by content hash, docker build layers cached)
#   2. generate the deployment (harness/gen.sh): test PKI, DNSSEC zones, policy, configs
#   3. scenarios, each asserting the RADIUS outcome (eapol_test) AND the module's log line in
#      the radiusd container's log, including the digest of the certificate the TLS hook
#      captured (cert=<first 8 bytes of its SHA-256>, which must be the one the device sent):
#        dpkg -i on a fresh bookworm container + enabling the module -> freeradius -XC passes,
#        and refuses to start when the TLS context to hook does not exist
#        TLS hook installed, accept, other org, cross-domain reject, SSID policy (each
#        authentication under TLS 1.2 and again under TLS 1.3), TLS 1.2
#        session resumption (eapol_test -r 1, checked on the cached capture), IoT Registry,
#        revocation within TTL, SIM-held key (PKCS#11 engine -> iotsafe container's pcscd +
#        simulator), CA server cut off, DNS down, radiusd restart while DNS is down, DNS back,
#        restart over a version 1 (pin-era) persisted trust map
#   4. a table scenario -> expected -> result, timings; exit 1 on any failure.
#   Teardown (compose down, volumes, network) always runs; container logs are kept in
#   target/container-harness/logs/.
#
# Environment: RLMH_KEEP=1 leaves the stack up (no teardown) for a post-mortem;
# RLMH_SKIP_SIM=1 skips the SIM scenario; RLMH_NO_BUILD=1 uses what is already built;
# RLMH_TLS="1.2 1.3" (default) the TLS versions every authentication scenario runs under.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
out=$top/target/container-harness
W=$out/run
LOGS=$out/logs
PROJECT=rlmh
NET=${PROJECT}_lab
COMPOSE=(docker-compose -p "$PROJECT" -f "$here/compose.yaml")

export RLMH_WORK=$W
export RLMH_SUBNET=172.29.53.0/24
export RLMH_DNS_IP=172.29.53.10 RLMH_WEB_IP=172.29.53.11 RLMH_RADIUS_IP=172.29.53.12
export RLMH_SUPPLICANT_IP=172.29.53.13 RLMH_IOTSAFE_IP=172.29.53.14
export DOCKER_BUILDKIT=0 COMPOSE_INTERACTIVE_NO_CLI=1
TTL=2     # TTL of every test record: the revocation bound under test
SLACK=3   # resolver TTL rounding + one sync poll (the bound tests/dane_sync.rs asserts)
# radiusd offers TLS 1.2 and 1.3 (raddb/mods-available/eap-dane); the supplicant picks.
read -r -a TLS_VERSIONS <<<"${RLMH_TLS:-1.2 1.3}"

CARS=Cars-WiFi
METERS=Meters-WiFi
CAR54=car54._device.cars.example
CAR55=car55._device.cars.example
CAR56=car56._device.cars.example
METER7=meter7._device.meters.example
REG1=reg1._device.cars.example
SIM1=sim1._device.cars.example

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "harness: $*"; }
T0=$(now)
TIMINGS=()
timing() { TIMINGS+=("$1|$2"); }

# ---- results ----
NAMES=() EXPECTS=() RESULTS=() DETAILS=()
PASSED=0 FAILED=0
record() { # record NAME EXPECTED ok|fail DETAIL
  NAMES+=("$1") EXPECTS+=("$2") DETAILS+=("$4")
  if [ "$3" = ok ]; then RESULTS+=(PASS); PASSED=$((PASSED + 1)); else RESULTS+=(FAIL); FAILED=$((FAILED + 1)); fi
  say "[$([ "$3" = ok ] && echo PASS || echo FAIL)] $1 -- $4"
}
table() {
  echo
  printf '%-48s | %-52s | %s\n' "scenario" "expected" "result"
  printf '%s\n' "$(printf '%.0s-' $(seq 1 130))"
  local i
  for i in "${!NAMES[@]}"; do
    printf '%-48s | %-52s | %s\n' "${NAMES[$i]}" "${EXPECTS[$i]}" "${RESULTS[$i]}: ${DETAILS[$i]}"
  done
  echo
  echo "timings (s):"
  local t
  for t in "${TIMINGS[@]}"; do printf '  %-28s %s\n' "${t%%|*}" "${t#*|}"; done
  printf '  %-28s %s\n' "total" "$(since "$T0")"
  echo
}

# ---- teardown, always ----
teardown() {
  local rc=$? t
  t=$(now)
  if [ "${RLMH_KEEP:-}" = 1 ]; then
    say "RLMH_KEEP=1: stack left up (docker-compose -p $PROJECT -f $here/compose.yaml down -v)"
  else
    mkdir -p "$LOGS"
    for c in dns web radiusd supplicant iotsafe; do
      docker logs "$PROJECT-$c" >"$LOGS/$c.log" 2>&1 || true
    done
    "${COMPOSE[@]}" down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
    for c in dns web radiusd supplicant iotsafe; do docker rm -f "$PROJECT-$c" >/dev/null 2>&1 || true; done
    docker network rm "$NET" >/dev/null 2>&1 || true
    say "torn down in $(since "$t") s (logs: $LOGS)"
  fi
  exit "$rc"
}

fail_setup() { # a step the scenarios depend on failed
  record "$1" "$2" fail "$3"
  table
  say "$PASSED passed, $FAILED failed"
  exit 1
}

# ---- helpers ----
# A mark is a time: `docker logs` prints stdout and stderr through two pipes, so line
# counts are not stable between two calls; --since is.
rmark() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }
# wait_log MARK PATTERN [SECONDS]: the fixed string appears in the radiusd log after MARK.
# (grep reads to the end, never -q: with pipefail, `docker logs` killed by SIGPIPE when grep
# -q stops at the first match would fail the pipeline whenever more than a pipe buffer of
# log follows the match.)
wait_log() {
  local mark=$1 pat=$2 limit=${3:-5} t
  t=$(now)
  while :; do
    docker logs --since "$mark" "$PROJECT-radiusd" 2>&1 | grep -F -- "$pat" >/dev/null && return 0
    awk -v a="$t" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }' && return 1
    sleep 0.2
  done
}
published() { # published NAME: is NAME in the trust map the sync persisted?
  docker exec "$PROJECT-radiusd" cat /var/lib/rlm_rust/trustmap.json 2>/dev/null \
    | python3 -c 'import json, sys; sys.exit(0 if sys.argv[1] in json.load(sys.stdin).get("names", {}) else 1)' "$1" 2>/dev/null
}
wait_published() { # wait_published NAME yes|no SECONDS -> prints elapsed seconds
  local name=$1 want=$2 limit=$3 t
  t=$(now)
  while :; do
    if published "$name"; then [ "$want" = yes ] && break; else [ "$want" = no ] && break; fi
    awk -v a="$t" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }' && { since "$t"; return 1; }
    sleep 0.2
  done
  since "$t"
}
knotc_edit() { # knotc_edit ZONE ARGS... (one transaction: "set OWNER TTL TYPE RDATA" / "unset OWNER TYPE")
  local zone=$1
  shift
  docker exec "$PROJECT-dns" sh -c '
    set -e; z=$1; shift
    knotc zone-begin "$z" >/dev/null
    case $1 in
      set) shift; knotc zone-unset "$z" "$1" "$3" >/dev/null 2>&1 || true; knotc zone-set "$z" "$@" >/dev/null ;;
      unset) shift; knotc zone-unset "$z" "$@" >/dev/null ;;
    esac || { knotc zone-abort "$z"; exit 1; }
    knotc zone-commit "$z" >/dev/null' sh "$zone" "$@"
}
tlsa_hex() { openssl x509 -in "$1" -outform DER | od -An -v -tx1 | tr -d ' \n'; }
publish() { knotc_edit "$1" set "$2" "$TTL" TLSA 4 0 0 "$(tlsa_hex "$3")"; }
withdraw() { knotc_edit "$1" unset "$2" TLSA; }
set_policy() { # set_policy "SSID|name"... (atomic replace: the module polls the file)
  printf '%s\n' "$@" >"$W/radiusd/policy.txt.tmp"
  chmod 0644 "$W/radiusd/policy.txt.tmp"
  mv "$W/radiusd/policy.txt.tmp" "$W/radiusd/policy.txt"
}

# eap STEM IDENTITY SSID [files|engine|resume] [1.2|1.3]: one EAP-TLS authentication from
# the supplicant container under that TLS version (default 1.2; 1.3 offers 1.3 and 1.2, as
# a device that does 1.3 would). "resume": TLS 1.2 only (FreeRADIUS 3.2 resumes no TLS 1.3
# session), then one re-authentication on the same supplicant, eapol_test -r 1, which
# offers to resume the TLS session.
# Sets EAP (accept | reject | other), EAP_LOG (eapol_test's output, kept in $W/eapol) and
# EAP_TLS (the version the handshake negotiated, or empty).
EAP_N=0
eap() {
  local stem=$1 identity=$2 ssid=$3 mode=${4:-files} tls=${5:-1.2} conf rc
  EAP_N=$((EAP_N + 1))
  [ "$mode" = resume ] && tls=1.2
  conf=$W/eapol/$EAP_N-$stem-tls$tls.conf
  EAP_LOG=$W/eapol/$EAP_N-$stem-tls$tls.log
  local envs=() args=() phase1
  # wpa_supplicant leaves TLS 1.3 off for EAP-TLS unless told.
  if [ "$tls" = 1.3 ]; then phase1='tls_disable_tlsv1_3=0'; else phase1='tls_disable_tlsv1_3=1'; fi
  if [ "$mode" = engine ]; then
    # The key stays on the (simulated) SIM: pkcs11 engine -> libiotsafe_pkcs11.so -> pcscd.
    cat >"$conf" <<EOF
pkcs11_engine_path=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
pkcs11_module_path=/usr/lib/x86_64-linux-gnu/pkcs11/libiotsafe_pkcs11.so
network={
	key_mgmt=IEEE8021X
	eap=TLS
	identity="$identity"
	ca_cert="/pki/server-ca.pem"
	engine=1
	engine_id="pkcs11"
	key_id="pkcs11:token=iotsafe;id=%01;type=private"
	cert_id="pkcs11:token=iotsafe;id=%01;type=cert"
	phase1="$phase1"
	eapol_flags=0
}
EOF
    envs=(-e "IOTSAFE_READER=IoTSAFE Sim 00 00")
  else
    [ "$mode" = resume ] && args=(-r 1)
    cat >"$conf" <<EOF
network={
	key_mgmt=WPA-EAP
	eap=TLS
	identity="$identity"
	ca_cert="/pki/server-ca.pem"
	client_cert="/pki/$stem.chain.pem"
	private_key="/pki/$stem.key"
	phase1="$phase1"
	eapol_flags=3
}
EOF
  fi
  chmod 0644 "$conf"
  docker exec "${envs[@]}" "$PROJECT-supplicant" timeout 45 eapol_test -c "/eapol/$(basename "$conf")" \
    -a "$RLMH_RADIUS_IP" -p 1812 -s testing123 -t 15 -N "30:s:00-00-00-00-00-01:$ssid" "${args[@]}" >"$EAP_LOG" 2>&1
  rc=$?
  local success=no failure=no
  grep -q "EAP: Received EAP-Success\|CTRL-EVENT-EAP-SUCCESS" "$EAP_LOG" && success=yes
  grep -q "EAP: Received EAP-Failure\|CTRL-EVENT-EAP-FAILURE" "$EAP_LOG" && failure=yes
  if [ $rc = 0 ] && grep -qx SUCCESS "$EAP_LOG" && grep -qF "(Access-Accept)" "$EAP_LOG" && [ $success = yes ]; then
    EAP=accept
  elif [ $rc != 0 ] && grep -qF "(Access-Reject)" "$EAP_LOG" && ! grep -qF "(Access-Accept)" "$EAP_LOG" \
    && [ $failure = yes ] && [ $success = no ]; then
    EAP=reject
  else
    EAP=other
  fi
  EAP_TLS=$(negotiated "$EAP_LOG")
}
# negotiated LOG: the TLS version(s) eapol_test's handshakes negotiated, one per handshake
# ("1.2", "1.3"). wpa_supplicant prints "SSL: Using TLS version" before the server chose
# (naming its own highest), so the line after "Handshake finished" counts; a handshake the
# server aborted is known by its messages (EncryptedExtensions: 1.3, ServerHelloDone: 1.2).
negotiated() {
  awk '
    function end() { v = printed != "" ? printed : msg; if (v != "") out = out (out == "" ? "" : " ") v; printed = msg = ""; fin = 0 }
    /EAP-TLS: Start/ { end() }
    /OpenSSL: Handshake finished/ { fin = 1 }
    /SSL: Using TLS version TLSv1\.[0-9]/ { if (fin && printed == "") { printed = $NF; sub(/^TLSv/, "", printed) } }
    /OpenSSL: RX ver=.*\(handshake\/encrypted extensions\)$/ { msg = "1.3" }
    /OpenSSL: RX ver=.*\(handshake\/server hello done\)$/ { msg = "1.2" }
    END { end(); print out }' "$1"
}

# expect NAME STEM IDENTITY SSID accept|reject LOG-PATTERN [engine]: the auth under each of
# TLS_VERSIONS (one row each), each with both checks and its negotiated version checked.
# Sets EAP_LOGS (one log per version); fails (1) if any version failed.
expect() {
  local name=$1 stem=$2 identity=$3 ssid=$4 want=$5 pat=$6 mode=${7:-files} mark tls rc=0
  local what
  if [ "$want" = accept ]; then what="Access-Accept + log: accept"; else what="Access-Reject/EAP-Failure + log: reason"; fi
  EAP_LOGS=()
  for tls in "${TLS_VERSIONS[@]}"; do
    mark=$(rmark)
    eap "$stem" "$identity" "$ssid" "$mode" "$tls"
    EAP_LOGS+=("$EAP_LOG")
    if [ "$EAP" != "$want" ]; then
      record "$name [TLS $tls]" "$what" fail "eapol_test: $EAP (want $want), see $EAP_LOG"
      rc=1
    elif [ "$EAP_TLS" != "$tls" ]; then
      record "$name [TLS $tls]" "$what" fail "negotiated TLS '${EAP_TLS:-none}', not $tls, see $EAP_LOG"
      rc=1
    elif ! wait_log "$mark" "$pat" 5; then
      record "$name [TLS $tls]" "$what" fail "$want, but no '$pat' in the radiusd log"
      rc=1
    else
      record "$name [TLS $tls]" "$what" ok "$want; log '$(printf '%s' "${pat#rlm_rust\[rust\]: }" | sed 's/ ($//')'"
    fi
  done
  return $rc
}
# The module's decision lines. CERT is the PEM file of the certificate the device sends:
# the line must name it by its digest (what the TLS hook captured), followed by " (" for a
# full handshake (every eapol_test run starts with one) or " resumed (" for a session
# restored from the TLS session cache.
cert_hex() { openssl x509 -in "$1" -outform DER | sha256sum | cut -c1-16; }
accept_line() { # accept_line NAME SSID CERT [resumed]
  echo "rlm_rust[rust]: accept name=$1 ssid=$2 cert=$(cert_hex "$3")${4:+ $4} ("
}
reject_line() { # reject_line NAME SSID REASON CERT
  echo "rlm_rust[rust]: reject name=$1 ssid=$2 reason=$3 cert=$(cert_hex "$4") ("
}

# ================================================================================
exec 9>/tmp/rlm-container-harness.lock
flock -n 9 || { say "another harness run holds /tmp/rlm-container-harness.lock"; exit 1; }
# Leftovers of an interrupted run.
"${COMPOSE[@]}" down -v --remove-orphans -t 1 >/dev/null 2>&1 || true
for c in dns web radiusd supplicant iotsafe; do docker rm -f "$PROJECT-$c" >/dev/null 2>&1 || true; done
trap teardown EXIT
trap 'exit 130' INT TERM

# ---- 1. build ----
t=$(now)
mkdir -p "$out"
if [ "${RLMH_NO_BUILD:-}" = 1 ]; then
  "$here/build-images.sh" --no-build >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; fail_setup "build images" "images built" "see $out/build.log"; }
else
  "$here/build-images.sh" >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; fail_setup "build images" "images built" "see $out/build.log"; }
fi
grep '^images:' "$out/build.log" | sed 's/^/  /'
BASE=$(sed -n 's/^BASE=//p' "$top/target/containers/images.env")
timing "build (cargo, deb, images)" "$(since "$t")"

# ---- 2. generate ----
t=$(now)
DNS_IP=$RLMH_DNS_IP WEB_IP=$RLMH_WEB_IP SUBNET=$RLMH_SUBNET TTL=$TTL "$here/harness/gen.sh" "$W" >/dev/null \
  || fail_setup "generate PKI/zones/config" "generated" "gen.sh failed"
mkdir -p "$W/sim" && chmod 0777 "$W/sim"
set_policy "$CARS|$CAR54" "$CARS|$CAR55" "$CARS|$CAR56" "$CARS|$REG1" "$CARS|$SIM1" "$METERS|$METER7"
timing "generate PKI, zones, config" "$(since "$t")"

# ---- 3. scenarios ----
# dpkg -i on a fresh bookworm container (the base image, no network), enable, -XC.
t=$(now)
deb=$(ls -t "$top"/target/deb/rlm-rust_*.deb | head -1)
docker run --rm --network none -v "$deb:/tmp/rlm-rust.deb:ro" -v "$W/radiusd:/deploy:ro" "$BASE" bash -c '
  set -e
  dpkg -i /tmp/rlm-rust.deb
  cd /etc/freeradius/3.0
  rm -f sites-enabled/default sites-enabled/inner-tunnel mods-enabled/eap
  ln -s ../mods-available/rust mods-enabled/rust
  ln -s ../mods-available/eap-dane mods-enabled/eap-dane
  ln -s ../sites-available/dane-eap-tls sites-enabled/dane-eap-tls
  ln -s ../sites-available/check-eap-tls-dane sites-enabled/check-eap-tls-dane
  install -m 0640 -g freerad /deploy/server.pem /deploy/server.key certs/
  echo "tlscache: $(stat -c "%U:%G %a" /var/log/freeradius/tlscache)"
  freeradius -XC
  # The hook is not optional: naming a tls-config eap_dane does not have must stop radiusd.
  sed -i -e "/^[[:space:]]*tls_config[[:space:]]*=/d" -e "/^rust {/a\\\ttls_config = no-such-tls-config" \
    mods-available/rust
  echo "=== -XC with tls_config = no-such-tls-config"
  if freeradius -XC; then echo "HOOK-REFUSAL: started"; else echo "HOOK-REFUSAL: refused rc=$?"; fi' \
  >"$out/dpkg-xc.log" 2>&1
rc=$?
first=$(sed '/^=== -XC with tls_config/q' "$out/dpkg-xc.log")
second=$(sed -n '/^=== -XC with tls_config/,$p' "$out/dpkg-xc.log")
if [ $rc = 0 ] && grep -q "Configuration appears to be OK" <<<"$first" \
  && grep -q 'Instantiating module "rust"' <<<"$first" \
  && grep -qF "rlm_rust: verification hook installed on eap_dane/tls-common" <<<"$first"; then
  record "dpkg -i + enable on fresh bookworm" "freeradius -XC: Configuration appears to be OK" ok \
    "module instantiated, TLS hook on eap_dane/tls-common, config OK"
else
  record "dpkg -i + enable on fresh bookworm" "freeradius -XC: Configuration appears to be OK" fail \
    "rc=$rc, see $out/dpkg-xc.log"
fi
if grep -qx "tlscache: freerad:freerad 700" <<<"$first"; then
  record "dpkg -i: TLS session cache directory" "/var/log/freeradius/tlscache freerad:freerad 0700" ok "created by postinst"
else
  record "dpkg -i: TLS session cache directory" "/var/log/freeradius/tlscache freerad:freerad 0700" fail \
    "$(grep '^tlscache:' <<<"$first" || echo "no such directory"), see $out/dpkg-xc.log"
fi
if grep -q "^HOOK-REFUSAL: refused" <<<"$second" \
  && grep -qF 'tls_config = "no-such-tls-config": eap eap_dane has no "tls-config no-such-tls-config { }" section' <<<"$second"; then
  record "dpkg -i: no TLS context to hook" "freeradius -XC refuses to start, names the option" ok \
    "refused: tls_config = \"no-such-tls-config\""
else
  record "dpkg -i: no TLS context to hook" "freeradius -XC refuses to start, names the option" fail \
    "$(grep '^HOOK-REFUSAL' <<<"$second" || echo "no result"), see $out/dpkg-xc.log"
fi
timing "scenario dpkg -i + -XC" "$(since "$t")"

# The stack.
t=$(now)
sims=()
[ "${RLMH_SKIP_SIM:-}" = 1 ] || sims=(iotsafe)
"${COMPOSE[@]}" up -d dns web "${sims[@]}" >"$out/up.log" 2>&1 || { cat "$out/up.log"; fail_setup "compose up" "stack up" "docker-compose up failed"; }
for _ in $(seq 1 150); do [ -s "$W/dns-out/anchors.dnskey" ] && break; sleep 0.2; done
[ -s "$W/dns-out/anchors.dnskey" ] || fail_setup "DNS up" "zones signed, anchors written" "no anchors (docker logs $PROJECT-dns)"
cp "$W/dns-out/anchors.dnskey" "$W/radiusd/anchors.dnskey"
chmod 0644 "$W/radiusd/anchors.dnskey"
mark=$(rmark)
"${COMPOSE[@]}" up -d radiusd supplicant >>"$out/up.log" 2>&1 || fail_setup "compose up" "stack up" "radiusd/supplicant"
wait_log "$mark" "Ready to process requests" 30 || fail_setup "radiusd up" "Ready to process requests" "radiusd did not start"
if wait_log "$mark" "rlm_rust: verification hook installed on eap_dane/tls-common" 1; then
  record "radiusd: TLS hook installed at instantiate" "log: verification hook installed on eap_dane/tls-common" ok "hooked"
else
  record "radiusd: TLS hook installed at instantiate" "log: verification hook installed on eap_dane/tls-common" fail "no such line"
fi
ok=1
for n in "$CAR54" "$METER7" "$REG1"; do wait_published "$n" yes 30 >/dev/null || ok=0; done
[ $ok = 1 ] || fail_setup "first sync" "$CAR54, $METER7, $REG1 published" "not published within 30 s"
timing "stack up + first sync" "$(since "$t")"
# The lab network is internal: Docker gives it no NAT out (no MASQUERADE for the subnet)
# and drops its traffic to other interfaces. (The route to the bridge gateway stays.)
nat=$( { iptables -t nat -S POSTROUTING; iptables-legacy -t nat -S POSTROUTING; } 2>/dev/null | grep -F -- "$RLMH_SUBNET" | grep MASQUERADE)
if [ "$(docker network inspect -f '{{.Internal}}' "$NET" 2>/dev/null)" = true ] && [ -z "$nat" ]; then
  record "isolation: internal network, no NAT out" "Internal=true, no MASQUERADE for $RLMH_SUBNET" ok "internal"
else
  record "isolation: internal network, no NAT out" "Internal=true, no MASQUERADE for $RLMH_SUBNET" fail "nat: ${nat:-none}"
fi

t=$(now)
expect "accept: car54 (Cars CA) on $CARS" car54 "$CAR54" "$CARS" accept "$(accept_line "$CAR54" "$CARS" "$W/pki/car54.pem")"
expect "accept: meter7 (Meters CA) on $METERS" meter7 "$METER7" "$METERS" accept \
  "$(accept_line "$METER7" "$METERS" "$W/pki/meter7.pem")"
# The hook captured the forged certificate (its digest is in the line), not car54's.
expect "cross-domain: Meters CA cert for car54" car54-forged "$CAR54" "$CARS" reject \
  "$(reject_line "$CAR54" "$CARS" "certificate matches no association of the name" "$W/pki/car54-forged.pem")"
expect "SSID policy: car54 on $METERS" car54 "$CAR54" "$METERS" reject \
  "$(reject_line "$CAR54" "$METERS" "name not allowed on SSID" "$W/pki/car54.pem")"
timing "scenarios: accept/reject" "$(since "$t")"

# TLS 1.2 session resumption: the re-authentication resumes the session (no certificate is
# sent or verified), and the check binds to the capture FreeRADIUS restored from its
# session cache (persist_dir ${logdir}/tlscache): same certificate digest, marked resumed.
t=$(now)
mark=$(rmark)
eap car54 "$CAR54" "$CARS" resume
res1=$(grep -c "Handshake finished - resumed=1" "$EAP_LOG")
res0=$(grep -c "Handshake finished - resumed=0" "$EAP_LOG")
accepts=$(grep -c "(Access-Accept)" "$EAP_LOG")
what="2 Access-Accepts, resumed=1 + log: accept ... resumed"
if [ "$EAP" != accept ] || [ "$res0" != 1 ] || [ "$res1" != 1 ] || [ "$accepts" != 2 ] || [ "$EAP_TLS" != "1.2 1.2" ]; then
  record "resumption: car54 re-auth (eapol_test -r 1)" "$what" fail \
    "eapol_test: $EAP, full=$res0 resumed=$res1 accepts=$accepts, TLS '$EAP_TLS', see $EAP_LOG"
elif ! wait_log "$mark" "$(accept_line "$CAR54" "$CARS" "$W/pki/car54.pem")" 5 \
  || ! wait_log "$mark" "$(accept_line "$CAR54" "$CARS" "$W/pki/car54.pem" resumed)" 5; then
  record "resumption: car54 re-auth (eapol_test -r 1)" "$what" fail \
    "eapol_test resumed, but no full + resumed accept lines with cert=$(cert_hex "$W/pki/car54.pem") in the log"
else
  record "resumption: car54 re-auth (eapol_test -r 1)" "$what" ok \
    "full + resumed accepted; log 'accept ... cert=$(cert_hex "$W/pki/car54.pem") resumed'"
fi
cached=$(docker exec "$PROJECT-radiusd" sh -c 'ls /var/log/freeradius/tlscache/*.asn1 2>/dev/null | wc -l')
cache_mode=$(docker exec "$PROJECT-radiusd" stat -c "%U:%G %a" /var/log/freeradius/tlscache 2>/dev/null)
if [ "${cached:-0}" -ge 1 ] && [ "$cache_mode" = "freerad:freerad 700" ]; then
  record "resumption: session persisted in tlscache" "session file in /var/log/freeradius/tlscache (0700)" ok \
    "$cached session file(s), $cache_mode"
else
  record "resumption: session persisted in tlscache" "session file in /var/log/freeradius/tlscache (0700)" fail \
    "files: ${cached:-?}, dir: ${cache_mode:-missing}"
fi
timing "scenario TLS resumption" "$(since "$t")"

t=$(now)
expect "IoT Registry: reg1 listed" reg1 "$REG1" "$CARS" accept "$(accept_line "$REG1" "$CARS" "$W/pki/reg1.pem")"
# Unlisting from the registry revokes like a TLSA removal.
knotc_edit iotregistry.ca unset reg1.cars TLSA
if took=$(wait_published "$REG1" no $((TTL + SLACK + 5))); then
  expect "IoT Registry: reg1 unlisted (gone in ${took}s)" reg1 "$REG1" "$CARS" reject \
    "$(reject_line "$REG1" "$CARS" "name has no published certificate association" "$W/pki/reg1.pem")"
else
  record "IoT Registry: reg1 unlisted" "dropped from the trust map, then reject" fail "still published after ${took}s"
fi
timing "scenarios: IoT Registry" "$(since "$t")"

# Revocation: TLSA removed -> the next auth after TTL + slack is rejected.
t=$(now)
withdraw cars.example car54._device
removed=$(now)
took=$(wait_published "$CAR54" no 15)
left=$(awk -v a="$removed" -v b="$(now)" -v l="$((TTL + SLACK))" 'BEGIN { d = l - (b - a); print (d > 0 ? d : 0) }')
sleep "$left"
expect "revocation: TLSA removed, auth after TTL+${SLACK}s" car54 "$CAR54" "$CARS" reject \
  "$(reject_line "$CAR54" "$CARS" "name has no published certificate association" "$W/pki/car54.pem")"
say "revocation: TLSA removed -> out of the trust map in ${took}s (TTL ${TTL}s)"
publish cars.example car54._device "$W/pki/car54.pem"
took=$(wait_published "$CAR54" yes 30)
expect "re-published car54 accepted (${took}s)" car54 "$CAR54" "$CARS" accept "$(accept_line "$CAR54" "$CARS" "$W/pki/car54.pem")"
timing "scenario revocation" "$(since "$t")"

# SIM-held key: key generated on the card, CSR signed by the Cars CA, certificate written
# back, TLSA published; eapol_test signs through the pkcs11 engine.
if [ "${RLMH_SKIP_SIM:-}" != 1 ]; then
  t=$(now)
  sim_ok=1
  for _ in $(seq 1 75); do docker logs "$PROJECT-iotsafe" 2>&1 | grep '^READY' >/dev/null && break; sleep 0.2; done
  docker logs "$PROJECT-iotsafe" 2>&1 | grep '^READY' >/dev/null || sim_ok=0
  if [ $sim_ok = 1 ]; then
    {
      docker exec "$PROJECT-iotsafe" iotsafe csr --key 01 --name "$SIM1" -o /sim/sim1.csr \
        && SAN=$SIM1 openssl x509 -req -in "$W/sim/sim1.csr" -CA "$W/pki/cars-ca.pem" -CAkey "$W/pki/cars-ca.key" \
          -set_serial "0x1$(openssl rand -hex 15)" -days 825 -sha256 -extfile "$W/pki/openssl.cnf" \
          -extensions device -out "$W/sim/sim1.pem" \
        && chmod 0644 "$W/sim/sim1.pem" \
        && docker exec "$PROJECT-iotsafe" iotsafe cert write --id 02 --in /sim/sim1.pem \
        && publish cars.example sim1._device "$W/sim/sim1.pem"
    } >"$out/sim-enrol.log" 2>&1 || sim_ok=0
  fi
  if [ $sim_ok = 1 ] && wait_published "$SIM1" yes 30 >/dev/null; then
    if expect "SIM-held key: sim1 via PKCS#11 engine" sim1 "$SIM1" "$CARS" accept \
      "$(accept_line "$SIM1" "$CARS" "$W/sim/sim1.pem")" engine; then
      engine_ok=1
      for log in "${EAP_LOGS[@]}"; do grep -q "TLS: Using private key from engine" "$log" || engine_ok=0; done
      if [ $engine_ok = 1 ]; then
        record "SIM-held key: TLS signature made on the card" "eapol_test: private key from engine" ok \
          "key never left the card (TLS ${TLS_VERSIONS[*]})"
      else
        record "SIM-held key: TLS signature made on the card" "eapol_test: private key from engine" fail "see ${EAP_LOGS[*]}"
      fi
    fi
  else
    record "SIM-held key: sim1 via PKCS#11 engine" "Access-Accept + log: accept" fail \
      "card not ready or enrolment failed (see $out/sim-enrol.log, docker logs $PROJECT-iotsafe)"
  fi
  timing "scenario SIM-held key" "$(since "$t")"
fi

# CA server cut off the network: published devices keep being accepted; a device whose CA
# was never fetched cannot be admitted until the CA server is back.
t=$(now)
docker network disconnect "$NET" "$PROJECT-web"
if docker exec "$PROJECT-radiusd" timeout 3 bash -c "</dev/tcp/$RLMH_WEB_IP/443" 2>/dev/null; then
  record "CA server cut off (network disconnect)" "web unreachable" fail "still reachable"
else
  mark=$(rmark)
  publish cars.example car56._device "$W/pki/car56.pem"
  sleep $((2 * TTL + SLACK))
  expect "CA server cut off: car54 still accepted" car54 "$CAR54" "$CARS" accept "$(accept_line "$CAR54" "$CARS" "$W/pki/car54.pem")"
  line=$(docker logs --since "$mark" "$PROJECT-radiusd" 2>&1 | grep -F "rlm_rust[rust]: $CAR56: " | tail -1)
  if published "$CAR56"; then
    record "CA server cut off: car56 (new CA) not admitted" "not published; sync logs why" fail "car56 published without its CA"
  elif [ -z "$line" ]; then
    record "CA server cut off: car56 (new CA) not admitted" "not published; sync logs why" fail "no sync log line for car56"
  else
    for tls in "${TLS_VERSIONS[@]}"; do
      eap car56 "$CAR56" "$CARS" files "$tls"
      if [ "$EAP" = reject ] && [ "$EAP_TLS" = "$tls" ]; then
        record "CA server cut off: car56 (new CA) not admitted [TLS $tls]" "Access-Reject + sync log line" ok \
          "reject; log '${line#*rlm_rust\[rust\]: }'"
      else
        record "CA server cut off: car56 (new CA) not admitted [TLS $tls]" "Access-Reject + sync log line" fail \
          "eapol_test: $EAP, TLS '${EAP_TLS:-none}', see $EAP_LOG"
      fi
    done
  fi
fi
docker network connect --ip "$RLMH_WEB_IP" "$NET" "$PROJECT-web"
# A failed CA fetch is cached for 60 s (src/sync/cafetch.rs DEFAULT_NEGATIVE_TTL, no option), so
# recovery takes up to that plus one refresh.
if took=$(wait_published "$CAR56" yes 90); then
  expect "CA server back: car56 accepted (${took}s)" car56 "$CAR56" "$CARS" accept "$(accept_line "$CAR56" "$CARS" "$W/pki/car56.pem")"
else
  record "CA server back: car56 accepted" "published within 90 s, accept" fail "car56 not published after ${took}s"
fi
timing "scenario CA server cut" "$(since "$t")"

# DNS down: radiusd keeps serving the last good map.
t=$(now)
mark=$(rmark)
docker stop -t 5 "$PROJECT-dns" >/dev/null
sleep $((TTL + SLACK + 1))
if wait_log "$mark" "lookup failed, keeping last good" 10; then
  expect "DNS down: car54 still accepted" car54 "$CAR54" "$CARS" accept "$(accept_line "$CAR54" "$CARS" "$W/pki/car54.pem")"
else
  record "DNS down: car54 still accepted" "sync logs 'keeping last good', accept" fail "no 'lookup failed, keeping last good' in the log"
fi

# radiusd restarted while DNS is down: the persisted snapshot is served.
mark=$(rmark)
docker restart -t 5 "$PROJECT-radiusd" >/dev/null
if wait_log "$mark" "Ready to process requests" 30 && wait_log "$mark" "serving persisted trust map" 2; then
  expect "radiusd restart, DNS down: car54 accepted" car54 "$CAR54" "$CARS" accept "$(accept_line "$CAR54" "$CARS" "$W/pki/car54.pem")"
else
  record "radiusd restart, DNS down: car54 accepted" "persisted snapshot served, accept" fail \
    "no 'Ready'/'serving persisted trust map' after restart"
fi
timing "scenarios DNS down + restart" "$(since "$t")"

# DNS back: the sync recovers; a device published now is accepted.
t=$(now)
docker start "$PROJECT-dns" >/dev/null
for _ in $(seq 1 150); do docker exec "$PROJECT-dns" test -e /run/knot-ready 2>/dev/null && break; sleep 0.2; done
if publish cars.example car55._device "$W/pki/car55.pem" && took=$(wait_published "$CAR55" yes 60); then
  expect "DNS back: new car55 accepted (${took}s)" car55 "$CAR55" "$CARS" accept "$(accept_line "$CAR55" "$CARS" "$W/pki/car55.pem")"
  expect "DNS back: car54 still accepted" car54 "$CAR54" "$CARS" accept "$(accept_line "$CAR54" "$CARS" "$W/pki/car54.pem")"
else
  record "DNS back: new car55 accepted" "published within 60 s, accept" fail "car55 not published (took ${took:-?}s)"
fi
timing "scenario DNS back" "$(since "$t")"

# Upgrade from a pin-era rlm_rust: a version 1 persisted trust map is refused whole (never
# half-read), the sync rebuilds the map from DNS (version 2), and the device is admitted.
t=$(now)
docker exec "$PROJECT-radiusd" cat /var/lib/rlm_rust/trustmap.json 2>/dev/null | python3 -c '
import json, sys
doc = json.load(sys.stdin)
doc["version"] = 1
doc["names"] = {n: {"pins": [{"serial": "01"}]} for n in doc.get("names", {})}
doc.pop("cas", None)
json.dump(doc, sys.stdout)' >"$W/trustmap-v1.json" && chmod 0644 "$W/trustmap-v1.json"
v2_with() { # v2_with NAME: the persisted map is version 2 and lists NAME
  docker exec "$PROJECT-radiusd" cat /var/lib/rlm_rust/trustmap.json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d.get("version") == 2 and sys.argv[1] in d.get("names", {}) else 1)' "$1" 2>/dev/null
}
mark=$(rmark)
docker stop -t 5 "$PROJECT-radiusd" >/dev/null
if [ -s "$W/trustmap-v1.json" ] && docker cp "$W/trustmap-v1.json" "$PROJECT-radiusd:/var/lib/rlm_rust/trustmap.json" \
  && docker start "$PROJECT-radiusd" >/dev/null && wait_log "$mark" "Ready to process requests" 30; then
  if ! wait_log "$mark" "ignoring persisted trust map" 5 || ! wait_log "$mark" "version 1 matched printable certificate fields" 1; then
    record "upgrade: version 1 trust map persisted" "refused at start, rebuilt from DNS, accept" fail \
      "no 'ignoring persisted trust map ... version 1' in the log"
  else
    t1=$(now)
    while ! v2_with "$CAR54" && awk -v a="$t1" -v b="$(now)" 'BEGIN { exit !(b - a < 30) }'; do sleep 0.2; done
    if v2_with "$CAR54"; then
      expect "upgrade: v1 map refused, rebuilt in $(since "$t1")s" car54 "$CAR54" "$CARS" accept \
        "$(accept_line "$CAR54" "$CARS" "$W/pki/car54.pem")"
    else
      record "upgrade: version 1 trust map persisted" "refused at start, rebuilt from DNS, accept" fail \
        "no version 2 map with $CAR54 within 30 s"
    fi
  fi
else
  record "upgrade: version 1 trust map persisted" "refused at start, rebuilt from DNS, accept" fail \
    "could not install the v1 file / restart radiusd"
fi
timing "scenario v1 trust map" "$(since "$t")"

table
say "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
