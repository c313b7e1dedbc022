#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ from the project's real inputs.

Sources: the captured FreeRADIUS attributes and chains in tests/fixtures/freeradius-attrs/,
raddb/mods-available/rust, a trust map written by `rlm-rust pin` from those chains, the
policies of the unit tests, and the IoT SAFE exchanges of shared/research/iotsafe.md.
Re-run after the fixtures change: python3 fuzz/make-seeds.py (needs openssl and cargo).
"""
import hashlib
import json
import os
import subprocess
import tempfile

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
fix = os.path.join(top, "tests/fixtures/freeradius-attrs")
out = os.path.join(top, "fuzz/corpus")
cases = sorted(d for d in os.listdir(fix) if os.path.exists(os.path.join(fix, d, "chain.pem")))


def seed(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def pem_blocks(path):
    text = open(path).read()
    parts = text.split("-----END CERTIFICATE-----")
    return [p[p.index("-----BEGIN"):] + "-----END CERTIFICATE-----\n" for p in parts if "-----BEGIN" in p]


def der(pem):
    return subprocess.run(["openssl", "x509", "-outform", "DER"], input=pem.encode(), capture_output=True,
                          check=True).stdout


def ski(pem):
    txt = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectKeyIdentifier"], input=pem.encode(),
                         capture_output=True, check=True).stdout.decode()
    return bytes.fromhex(txt.strip().splitlines()[-1].strip().replace(":", ""))


attrs = {c: json.load(open(os.path.join(fix, c, "attributes.json"))) for c in cases}

# check: the captured attribute files as they are.
for c in cases:
    seed("check", c, open(os.path.join(fix, c, "attributes.txt"), "rb").read())

# presented: every attribute value the pins are compared with.
for c in cases:
    for e in attrs[c]:
        a = e["attr"]
        if any(k in a for k in ("Serial", "Valid-Since", "Expiration", "Key-Identifier")):
            seed("presented", f"{c}-{a}", e["value"])
seed("presented", "generalized-time", "20261123082143Z")
seed("presented", "utc-1950", "500101000000Z")

# name: the captured names, plus edge forms.
for c in cases:
    for e in attrs[c]:
        if e["attr"] in ("User-Name", "TLS-Client-Cert-Subject-Alt-Name-Dns"):
            seed("name", f"{c}-{e['attr']}", e["value"])
for i, n in enumerate(["Car54._Device.Cars.Example.", "192.168.1.10", "a..b", "-a.example", "x._y", "a" * 63 + ".b"]):
    seed("name", f"edge-{i}", n)

# policy_lines / policy_json: the unit tests' samples and one over the fixture names.
names = sorted({e["value"] for c in cases for e in attrs[c] if e["attr"] == "User-Name"})
seed("policy_lines", "fixtures", "# fixtures\n" + "".join(f"Cars-WiFi|{n}\n" for n in names))
seed("policy_lines", "unit-test", "# cars\nSSID1|car54._device.cars.example\n\nSSID1|CAR55._device.cars.example.\n"
     "SSID2|car54._device.cars.example\nSSID1|10.0.0.1\nSSID1|\nnopipe\nSSID1|a b.example\n"
     "SSID1|car54._device.cars.example\n|x.example\n")
policy = {"name": "fleet", "roles": [
    {"name": "Cars-WiFi", "members": names, "reply": {"Tunnel-Private-Group-Id": "10"}},
    {"name": "Meters", "members": ["meter7._device.meters.example", "bad name"]},
    {"name": "", "members": ["x._device.cars.example"]},
    {"name": "SSID2", "members": [], "colour": "red"}]}
seed("policy_json", "fleet", json.dumps(policy, indent=1))
seed("policy_json", "syntax-error", "{\n \"roles\": [,]}")

# trustmap: written by the real CLI from the fixture chains (and the JSON policy).
with tempfile.TemporaryDirectory() as tmp:
    pol = os.path.join(tmp, "policy.json")
    json.dump({"name": "fuzz", "roles": [policy["roles"][0], {"name": "Meters", "members": names}]}, open(pol, "w"))
    chains = [os.path.join(fix, c, "chain.pem") for c in cases if c != "car54-meters"]
    mp = os.path.join(tmp, "map.json")
    subprocess.run(["cargo", "run", "-q", "--bin", "rlm-rust", "--", "pin", "--policy", pol, "--out", mp] + chains,
                   cwd=top, check=True, stdout=subprocess.DEVNULL)
    tm = open(mp).read()
    seed("trustmap", "pinned-fixtures", tm)
    m = json.loads(tm)
    first = next(iter(m["names"]))
    m["names"][first]["chain"] = ["aabb"]
    m["cas"] = {"aabb": pem_blocks(os.path.join(fix, cases[0], "chain.pem"))[1]}
    m["names"][first]["verified_at"] = 1750000000
    seed("trustmap", "with-cas", json.dumps(m, indent=2))

# tlsa / cafetch: the fixture certificates as DNS and .well-known would carry them.
for c in cases:
    leaf, ca = pem_blocks(os.path.join(fix, c, "chain.pem"))
    d = der(leaf)
    seed("tlsa", f"{c}-4-0-0", bytes([4, 0, 0]) + d)
    seed("tlsa", f"{c}-3-0-0", bytes([3, 0, 0]) + d)
    seed("tlsa", f"{c}-3-0-1", bytes([3, 0, 1]) + hashlib.sha256(d).digest())
    seed("tlsa", f"{c}-3-1-1", bytes([3, 1, 1]) + hashlib.sha256(d).digest())
    k = ski(ca)
    seed("cafetch", f"{c}-ca-pem", bytes([len(k)]) + k + ca.encode())
    seed("cafetch", f"{c}-ca-der", bytes([len(k)]) + k + der(ca))
    seed("cafetch", f"{c}-ca-text-pem", bytes([len(k)]) + k + b"Certificate:\n  (text)\n" + ca.encode())
seed("cafetch", "html", b"\x02\xab\xcd<html><body>404</body></html>")

# config: the shipped module configuration and the unit test's section.
seed("config", "mods-available-rust", open(os.path.join(top, "raddb/mods-available/rust"), "rb").read())
seed("config", "sync", "rust {\n\ttrust_map = ${localstatedir}/lib/rlm_rust/map.json\n\tpolicy = \"${confdir}/p\"\n"
     "\tca_path = /ca\n\tdns_servers = 127.0.0.1:5353, ::1\n\tdns_timeout = 1.5\n\tmax_stale = 2h\n"
     "\tmin_interval = 250ms\n\thttps_resolve = device.example.net=127.0.0.1:8443\n\trequire_registry = yes\n}\n"
     "rust guests {\n\ttrust_map = /g.json\n}\n")

# IoT SAFE: the verified exchanges of the research brief (responses without SW where the
# parser sees them without it).
H = bytes.fromhex
rec_key = H("C129740B494F54534146455F4B4559840101600101" "4A01014B01134E0102610107920104910200016F0101")
rec_pub = H("C229750B494F54534146455F4B4559850101600101" "4A01014B01134E0102610107920104910200016F0101")
rec_f2 = H("C31D730B434C49454E545F43455254830102600101" "4A01012101022002013D")
rec_f3 = H("C319730743415F43455254830103600101" "4A01012101022002013B")
objlist = rec_key + rec_pub + rec_f2 + rec_f3
pubkey = H("344549438641") + b"\x04" + bytes(range(64))
sig = H("330040" "43A278259B5D784F91EF6EAC151402B08706CF0444E5B423FDACADD7E123DFC7"
        "EF7DD92C7E9E5AB0F37FE85DBE99AB5127829AF678A9D896067E7E472EA6C36F")
appinfo = H("10020100" "1107494F5453414645" "B10108B20104B30104B40104B70102" "90010791020001920104930101940101")
for t in ("iotsafe_tlv", "iotsafe_objects"):
    seed(t, "object-list", objlist)
    seed(t, "object-list-sw", objlist + H("9000"))
    seed(t, "file-record", rec_f2)
    seed(t, "file-record-bare", rec_f2[2:])
    seed(t, "public-key", pubkey)
    seed(t, "signature-16bit", sig)
    seed(t, "signature-8bit", H("3340") + sig[3:])
    seed(t, "applet-info", appinfo)
    seed(t, "long-length", H("C38190") + bytes(0x90) + H("20820002013D"))
    seed(t, "chunked-mid-tlv", objlist[:100])
