#!/usr/bin/env bash
# Generates everything the container harness deploys, under DIR (openssl CLI only):
#
#   pki/        server CA + RADIUS server cert; org A "Cars Device CA", org B "Meters Device
#               CA"; devices car54, car55 (cars), car56 (second cars CA), meter7 (meters), car54-forged (meters CA,
#               SAN car54: the cross-domain attack), reg1 (cars, CN in the IoT Registry);
#               web root + the .well-known/ca server's certificate
#   dns/        knot.conf + zones/: fake signed root "." delegating cars.example,
#               meters.example, iotregistry.ca (all signed by knot, TTL $TTL), with the TLSA
#               4 0 0 records of car54, meter7 and reg1 published from the start
#   dns-out/    written by the dns container: anchors.dnskey (the root's DNSKEY)
#   web/        tls/server.{pem,key}, www/.well-known/ca/<AKI>.pem for both device CAs
#   radiusd/    rust (the shipped mods-available/rust + sync options), clients.conf,
#               server.{pem,key}, policy.txt, web-root.pem (anchors.dnskey added later)
#   eapol/      eapol_test configurations (written by the harness per run)
#
# Usage: gen.sh DIR   (environment: DNS_IP WEB_IP SUBNET TTL; see run-harness.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
W=$1
: "${DNS_IP:?}" "${WEB_IP:?}" "${SUBNET:?}" "${TTL:?}"
P=$W/pki
rm -rf "$W"
mkdir -p "$P" "$W/dns/zones" "$W/dns-out" "$W/web/tls" "$W/web/www/.well-known/ca" "$W/radiusd" "$W/eapol"
chmod 0755 "$W" "$W"/*
chmod 0777 "$W/dns-out"

cnf=$P/openssl.cnf
cat >"$cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[device]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:${ENV::SAN}
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = ${ENV::SAN}
EOF

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
serial() { echo "0x1$(openssl rand -hex 15)"; }

mkca() { # mkca STEM SUBJECT
  key "$P/$1.key"
  SAN=unused openssl req -config "$cnf" -x509 -new -key "$P/$1.key" -subj "$2" -days 3650 -sha256 \
    -extensions ca -set_serial "$(serial)" -out "$P/$1.pem"
}
issue() { # issue STEM CA-STEM SUBJECT SECTION SAN
  key "$P/$1.key"
  SAN=$5 openssl req -config "$cnf" -new -key "$P/$1.key" -subj "$3" -out "$P/$1.csr"
  SAN=$5 openssl x509 -req -in "$P/$1.csr" -CA "$P/$2.pem" -CAkey "$P/$2.key" -set_serial "$(serial)" \
    -days 825 -sha256 -extfile "$cnf" -extensions "$4" -out "$P/$1.pem" 2>/dev/null
  cat "$P/$1.pem" "$P/$2.pem" >"$P/$1.chain.pem"
  rm -f "$P/$1.csr"
}
device() { # device STEM CA-STEM NAME [CN]
  issue "$1" "$2" "/O=Test Devices/CN=${4:-$3}" device "$3"
}

mkca server-ca "/O=Test RADIUS/CN=Test RADIUS Server CA"
mkca cars-ca "/C=SE/O=Cars Org/CN=Cars Device CA"
mkca meters-ca "/C=DE/O=Meters Org/CN=Meters Device CA"
mkca web-root "/O=Test Web PKI/CN=Test Web Root"
# A second CA of org A, only ever needed by car56 (fetched when car56 is published).
mkca cars-ca2 "/C=SE/O=Cars Org/CN=Cars Device CA 2"
issue server server-ca "/O=Test RADIUS/CN=radius.test" server "DNS:radius.test"
issue web web-root "/O=Test Web PKI/CN=device.cars.example" server \
  "DNS:device.cars.example,DNS:device.meters.example"
device car54 cars-ca car54._device.cars.example
device car55 cars-ca car55._device.cars.example
device car56 cars-ca2 car56._device.cars.example
device meter7 meters-ca meter7._device.meters.example
device car54-forged meters-ca car54._device.cars.example
# IoT Registry: the certificate's CN lies under the registry domain.
device reg1 cars-ca reg1._device.cars.example reg1.cars.iotregistry.ca
chmod 0644 "$P"/*

# TLSA rdata of a certificate: 4 0 0 <DER hex> (PKIX-CD, full certificate).
der_hex() { openssl x509 -in "$1" -outform DER | od -An -v -tx1 | tr -d ' \n'; }
tlsa400() { echo "4 0 0 $(der_hex "$1")"; }
# IoT Registry entry: 3 0 1 <sha256 of the certificate>.
tlsa301() { echo "3 0 1 $(openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1)"; }
# .well-known/ca file name: the CA's key id as lower-case hex bytes joined by '-'.
well_known() { openssl x509 -in "$1" -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' ' | tr 'A-F:' 'a-f-'; }

# ---- DNS ----
zones=(cars.example meters.example iotregistry.ca)
{
  echo "\$ORIGIN ."
  echo "\$TTL 300"
  echo "@ SOA ns.root-test. hostmaster.root-test. 1 3600 600 86400 300"
  echo "@ NS ns.root-test."
  echo "ns.root-test. A $DNS_IP"
  for z in "${zones[@]}"; do
    echo "$z. NS ns1.$z."
    echo "ns1.$z. A $DNS_IP"
  done
} >"$W/dns/zones/root.zone"
zone_head() {
  printf '$ORIGIN %s.\n$TTL %s\n@ SOA ns1.%s. hostmaster.%s. 1 3600 600 86400 %s\n@ NS ns1\nns1 A %s\n' \
    "$1" "$TTL" "$1" "$1" "$TTL" "$DNS_IP"
}
{
  zone_head cars.example
  echo "car54._device $TTL TLSA $(tlsa400 "$P/car54.pem")"
  echo "reg1._device $TTL TLSA $(tlsa400 "$P/reg1.pem")"
} >"$W/dns/zones/cars.example.zone"
{
  zone_head meters.example
  echo "meter7._device $TTL TLSA $(tlsa400 "$P/meter7.pem")"
} >"$W/dns/zones/meters.example.zone"
{
  zone_head iotregistry.ca
  echo "reg1.cars $TTL TLSA $(tlsa301 "$P/reg1.pem")"
} >"$W/dns/zones/iotregistry.ca.zone"
{
  cat <<EOF
server:
    rundir: "/run/knot"
    user: knot:knot
    listen: [ 0.0.0.0@53 ]
log:
  - target: stderr
    any: info
database:
    storage: "/var/lib/knot"
control:
    listen: "/run/knot/knot.sock"
policy:
  - id: csk
    algorithm: ecdsap256sha256
    single-type-signing: on
    nsec3: off
    rrsig-lifetime: 14d
    rrsig-refresh: 7d
template:
  - id: default
    storage: "/var/lib/knot/zones"
    dnssec-signing: on
    dnssec-policy: csk
    zonefile-sync: 0
    zonefile-load: difference-no-serial
    journal-content: all
    semantic-checks: on
zone:
  - domain: .
    file: root.zone
EOF
  for z in "${zones[@]}"; do printf '  - domain: %s.\n    file: %s.zone\n' "$z" "$z"; done
} >"$W/dns/knot.conf"
chmod 0644 "$W/dns/knot.conf" "$W/dns/zones"/*

# ---- web ----
cp "$P/web.pem" "$W/web/tls/server.pem"
cat "$P/web-root.pem" >>"$W/web/tls/server.pem"
cp "$P/web.key" "$W/web/tls/server.key"
for ca in cars-ca cars-ca2 meters-ca; do
  cp "$P/$ca.pem" "$W/web/www/.well-known/ca/$(well_known "$P/$ca.pem").pem"
done
chmod -R a+rX "$W/web"

# ---- radiusd ----
R=$W/radiusd
cp "$P/server.chain.pem" "$R/server.pem"
cp "$P/server.key" "$R/server.key"
cp "$P/web-root.pem" "$R/web-root.pem"
cat >"$R/clients.conf" <<EOF
# The access points: every address of the harness network.
client harness-lab {
	ipaddr = $SUBNET
	secret = testing123
	shortname = harness-lab
}
EOF
: >"$R/policy.txt"
# The shipped module configuration with the sync options put in, as an operator would
# edit mods-available/rust.
opts=$(cat <<EOF
	policy = /deploy/policy.txt
	ca_path = \${certdir}/dane-ca
	ca_bundle = /var/lib/rlm_rust/dane-ca.pem
	dns_servers = $DNS_IP
	dns_trust_anchors = /deploy/anchors.dnskey
	dns_timeout = 1
	https_roots = /deploy/web-root.pem
	https_resolve = "device.cars.example=$WEB_IP:443 device.meters.example=$WEB_IP:443"
	https_timeout = 2
	min_interval = 1
	max_interval = 10
	max_stale = 1h
	registry_domain = iotregistry.ca
EOF
)
python3 - "$top/raddb/mods-available/rust" "$R/rust" "$opts" <<'EOF'
import sys
src, dst, opts = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(src).read()
for old, new in [("\n\treload_interval = 1.0\n", "\n\treload_interval = 0.2\n"),
                 ("\n\teap_failure_on_reject = ", "\n" + opts + "\n\teap_failure_on_reject = ")]:
    assert text.count(old) == 1, f"shipped mods-available/rust changed: {old!r}"
    text = text.replace(old, new)
open(dst, "w").write(text)
EOF
chmod -R a+rX "$R"
echo "gen: $W"
