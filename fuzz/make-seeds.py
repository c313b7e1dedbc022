#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ from generated certificates and the project's inputs.

    python3 fuzz/make-seeds.py [target ...]      (default: every target)

Each selected target's directory is emptied and rewritten. Sources: a small PKI made here with
the `openssl` command line (Cars CA Ed25519, Meters CA P-256; device certificates Ed25519,
P-256 and RSA, one of them the Meters CA's certificate for a Cars name), trust maps written by
`rlm-rust map` from it, raddb/mods-available/rust, the policies of the unit tests, and the IoT
SAFE applet exchanges the simulator (iotsafe/iotsafe-sim) answers. Needs openssl and cargo.

The binary seeds follow the decodings of fuzz/src/rlm.rs: `Capture::decode` (presented, and
check mode 0), `decode_check` (check: NAMES, STATIONS and the fixture certificates by index,
CERTS). The presented seeds are named `ok.*` / `refused.*` and the check seeds
`<decision>.*`: tests/fuzz_regressions.rs requires each to be decided as named.
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = os.path.join(top, "fuzz/corpus")
TARGETS = ["presented", "check", "trustmap", "tlsa", "cafetch", "name", "policy_lines", "policy_json", "config",
           "iotsafe_tlv", "iotsafe_objects"]
selected = sys.argv[1:] or TARGETS
for t in selected:
    if t not in TARGETS:
        sys.exit(f"make-seeds: unknown target {t} (one of {' '.join(TARGETS)})")
    shutil.rmtree(os.path.join(out, t), ignore_errors=True)


def seed(target, name, data):
    if target not in selected:
        return
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def run(*args, stdin=None, env=None):
    p = subprocess.run(args, input=stdin, capture_output=True, env=env)
    if p.returncode != 0:
        sys.exit(f"make-seeds: {' '.join(args)}: {p.stderr.decode(errors='replace')}")
    return p.stdout


# ---------------------------------------------------------------------------------------------
# A small PKI

tmp = tempfile.mkdtemp(prefix="rlm-seeds-")
CNF = os.path.join(tmp, "openssl.cnf")
with open(CNF, "w") as f:
    f.write("[req]\ndistinguished_name = dn\n[dn]\n"
            "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier = hash\n"
            "[leaf]\nbasicConstraints = CA:FALSE\nsubjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid\nsubjectAltName = DNS:${ENV::SAN}\n")
# Every openssl command sees SAN (the [leaf] section refers to it; the parser wants a value).
os.environ.setdefault("SAN", "unused.example")
NEWKEY = {"ed25519": ["-newkey", "ed25519"], "p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
          "rsa": ["-newkey", "rsa:2048"]}


def make_ca(label, cn, alg):
    key, pem = os.path.join(tmp, label + ".key"), os.path.join(tmp, label + ".pem")
    run("openssl", "req", "-x509", *NEWKEY[alg], "-nodes", "-keyout", key, "-subj", "/CN=" + cn, "-days", "3650",
        "-config", CNF, "-extensions", "ca", "-out", pem)
    return {"label": label, "key": key, "pem": pem}


def make_leaf(label, san, alg, ca, serial):
    key, csr, pem = (os.path.join(tmp, label + ext) for ext in (".key", ".csr", ".pem"))
    run("openssl", "req", "-new", *NEWKEY[alg], "-nodes", "-keyout", key, "-subj", "/CN=" + san, "-config", CNF,
        "-out", csr)
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca["pem"], "-CAkey", ca["key"], "-set_serial", str(serial),
        "-days", "825", "-extfile", CNF, "-extensions", "leaf", "-out", pem, env=dict(os.environ, SAN=san))
    chain = os.path.join(tmp, label + "-chain.pem")
    with open(chain, "w") as f:
        f.write(open(pem).read() + open(ca["pem"]).read())
    return {"label": label, "san": san, "key": key, "pem": pem, "chain": chain, "ca": ca}


def der(c):
    return run("openssl", "x509", "-in", c["pem"], "-outform", "DER")


def spki(c):
    pub = run("openssl", "x509", "-in", c["pem"], "-noout", "-pubkey")
    return run("openssl", "pkey", "-pubin", "-outform", "DER", stdin=pub)


def ski(c):
    txt = run("openssl", "x509", "-in", c["pem"], "-noout", "-ext", "subjectKeyIdentifier").decode()
    return bytes.fromhex(txt.strip().splitlines()[-1].strip().replace(":", ""))


def digests(c):
    d, k = der(c), spki(c)
    return [hashlib.sha256(d).digest(), hashlib.sha512(d).digest(), hashlib.sha256(k).digest(),
            hashlib.sha512(k).digest()]


cars_ca = make_ca("cars-ca", "Cars Device CA", "ed25519")
meters_ca = make_ca("meters-ca", "Meters Device CA", "p256")
car54 = make_leaf("car54", "car54._device.cars.example", "ed25519", cars_ca, 54)
car55 = make_leaf("car55", "car55._device.cars.example", "p256", cars_ca, 55)
meter7 = make_leaf("meter7", "meter7._device.meters.example", "rsa", meters_ca, 7)
# The Meters CA's certificate for a Cars name: cross-domain signing.
car54_meters = make_leaf("car54-meters", "car54._device.cars.example", "p256", meters_ca, 5454)
leaves = [car54, car55, meter7, car54_meters]
names = sorted({c["san"] for c in leaves})

# ---------------------------------------------------------------------------------------------
# presented: captures (Capture::decode)


def capture(lists, sans=(), source=1, chain_length=None, fixed=False, wide=False, no_length=False):
    """flags, chain length, 4 digest counts + SAN count, then the values (length-prefixed unless fixed)."""
    flags = source | (4 if no_length else 0) | (8 if wide else 0) | (0x10 if fixed else 0)
    n = len(lists[0]) if chain_length is None else chain_length
    b = bytes([flags])
    if not no_length:
        b += struct.pack("<q", n) if wide else struct.pack("b", n)
    assert all(len(l) < 19 for l in lists) and len(sans) < 35
    b += bytes(len(l) for l in lists) + bytes([len(sans)])
    for l in lists:
        for v in l:
            b += v if fixed else bytes([len(v)]) + v
    for s in sans:
        s = s.encode() if isinstance(s, str) else s
        b += bytes([len(s)]) + s
    return b


def chain_lists(certs):
    ds = [digests(c) for c in certs]
    return [[d[i] for d in ds] for i in range(4)]


def filler(n):
    return [[bytes([i + 16 * k]) * size for i in range(n)] for k, size in enumerate((32, 64, 32, 64))]


c54 = chain_lists([car54, cars_ca])
seed("presented", "ok.car54-chain-fixed", capture(c54, [car54["san"]], fixed=True))
seed("presented", "ok.car54-chain-length-prefixed", capture(c54, [car54["san"]]))
seed("presented", "ok.meter7-resumed", capture(chain_lists([meter7, meters_ca]), [meter7["san"]], source=2))
seed("presented", "ok.leaf-only-no-san", capture(chain_lists([car55])))
seed("presented", "ok.wide-chain-length", capture(c54, wide=True))
seed("presented", "ok.max-chain-16", capture(filler(16), fixed=True))
seed("presented", "ok.max-sans-32", capture(c54, [f"n{i}.example" for i in range(32)]))
seed("presented", "refused.absent", capture([[], [], [], []], source=0, chain_length=0))
seed("presented", "refused.absent-with-digests", capture(c54, source=0))
seed("presented", "refused.no-chain-length", capture(c54, no_length=True))
seed("presented", "refused.chain-length-0", capture([[], [], [], []]))
seed("presented", "refused.chain-length-17", capture(filler(17), fixed=True))
seed("presented", "refused.chain-length-negative", capture(c54, chain_length=-1))
seed("presented", "refused.chain-length-huge", capture(c54, chain_length=1 << 40, wide=True))
seed("presented", "refused.chain-length-mismatch", capture(c54, chain_length=3))
seed("presented", "refused.count-mismatch", capture([c54[0], c54[1], c54[2], c54[3][:1]]))
seed("presented", "refused.sha512-as-sha256", capture([c54[1], c54[1], c54[2], c54[3]]))
seed("presented", "refused.short-digest", capture([[c54[0][0][:31], c54[0][1]], c54[1], c54[2], c54[3]]))
seed("presented", "refused.too-many-sans", capture(c54, [f"n{i}.example" for i in range(33)]))

# ---------------------------------------------------------------------------------------------
# check: requests (decode_check). Indices as in fuzz/src/rlm.rs NAMES, STATIONS and CERTS.
N = {n: i for i, n in enumerate(["car54", "car55", "car56", "car57", "car58", "car99", "meter7", "ghost", "bus1", "bus2",
                                 "bus3", "bus4", "bus5", "a.bus3", "evil"])}
S = {s: i for i, s in enumerate(["Cars-WiFi", "Meters", "Lobby", "Guests", "mac-only"])}
K = {k: i for i, k in enumerate(["cars-ca", "meters-ca", "car54", "car55", "car56-cars", "car56-meters", "car57",
                                 "meter7", "car55-reissued", "car58", "bus1", "bus4"])}


def pick(index, upper=False, dot=False):
    return bytes([(index << 2) | (3 if upper else 2) | (0x80 if dot else 0)])


def raw_text(t):
    return bytes([1, len(t)]) + t.encode()


def known(*certs, resumed=False, alter=None):
    b = bytes([(2 if alter else 1) | (0x10 if resumed else 0), len(certs) - 1] + [K[c] for c in certs])
    return b + (bytes(alter) if alter else b"")


def req(name, station, cert):
    return name + station + cert


cars, meters = pick(S["Cars-WiFi"]), pick(S["Meters"])
check_seeds = {
    "Accept.car54-pkix-cd-4-0-0": req(pick(N["car54"]), cars, known("car54", "cars-ca")),
    "Accept.car54-on-meters-resumed": req(pick(N["car54"]), meters, known("car54", "cars-ca", resumed=True)),
    "Accept.car55-dane-ee-3-0-0": req(pick(N["car55"]), cars, known("car55", "cars-ca")),
    "Accept.car55-reissued-same-key-3-1-1": req(pick(N["car55"]), cars, known("car55-reissued", "cars-ca")),
    "Accept.car56-3-0-1": req(pick(N["car56"]), cars, known("car56-cars", "cars-ca")),
    "Accept.car57-dane-ta-2-0-1": req(pick(N["car57"]), cars, known("car57", "cars-ca")),
    "Accept.car58-dane-ta-key-2-1-2": req(pick(N["car58"]), cars, known("car58", "meters-ca")),
    "Accept.meter7-3-0-2": req(pick(N["meter7"]), meters, known("meter7", "meters-ca")),
    "Accept.meter7-upper-dot-colon-mac": req(pick(N["meter7"], True, True), pick(S["Lobby"]), known("meter7")),
    "NoAssociationMatch.car56-meters-ca-cross-domain": req(pick(N["car56"]), cars, known("car56-meters", "meters-ca")),
    "NoAssociationMatch.car54-cert-claimed-as-car55": req(pick(N["car55"]), cars, known("car54", "cars-ca")),
    "NoAssociationMatch.car57-ca-as-leaf": req(pick(N["car57"]), cars, known("cars-ca")),
    "NoAssociationMatch.car58-wrong-ca": req(pick(N["car58"]), cars, known("car58", "cars-ca")),
    "NoAssociationMatch.car54-one-bit-off": req(pick(N["car54"]), cars, known("car54", "cars-ca", alter=(0, 0, 5, 1))),
    "NoAssociationMatch.car55-key-one-bit-off": req(pick(N["car55"]), cars,
                                                    known("car55-reissued", "cars-ca", alter=(0, 2, 31, 0x80))),
    "NoAssociationMatch.raw-digests": req(pick(N["car54"]), cars, b"\x00" + capture(filler(2), fixed=True)),
    "NotPublished.car99": req(pick(N["car99"]), cars, known("car54", "cars-ca")),
    "NameNotAllowed.ghost": req(pick(N["ghost"]), cars, known("car54", "cars-ca")),
    "NameNotAllowed.meter7-on-cars": req(pick(N["meter7"]), cars, known("meter7", "meters-ca")),
    "UnknownSsid.guests": req(pick(N["car54"]), pick(S["Guests"]), known("car54", "cars-ca")),
    "NoSsid.mac-only": req(pick(N["car54"]), pick(S["mac-only"]), known("car54", "cars-ca")),
    "NoSsid.absent": req(pick(N["car54"]), b"\x00", known("car54", "cars-ca")),
    "NoSsid.colon-mac-only": req(pick(N["car54"]), raw_text("00:11:22:33:44:55"), known("car54", "cars-ca")),
    "InvalidName.absent": req(b"\x00", cars, known("car54", "cars-ca")),
    "InvalidName.ip": req(raw_text("192.168.1.10"), cars, known("car54", "cars-ca")),
    "Accept.raw-name-trailing-dot": req(raw_text("Car54._Device.Cars.Example."), raw_text("aa-bb-cc-dd-ee-ff:Cars-WiFi"),
                                        known("car54", "cars-ca")),
    "Capture.absent": req(pick(N["car54"]), cars, b"\x00" + capture([[], [], [], []], source=0, chain_length=0)),
    "Capture.count-mismatch": req(pick(N["car54"]), cars, b"\x00" + capture(filler(2), chain_length=1, fixed=True)),
    "Capture.no-chain-length": req(pick(N["car55"]), cars, b"\x00" + capture(filler(1), no_length=True, fixed=True)),
    # The domain entry *._device.fleet.example (Cars-WiFi and Meters) and names under it.
    "Accept.bus1-discovered-3-0-1": req(pick(N["bus1"]), cars, known("bus1", "cars-ca")),
    "Accept.bus1-on-meters-domain-reply": req(pick(N["bus1"]), meters, known("bus1", "cars-ca", resumed=True)),
    "Accept.bus1-upper-dot-leaf-only": req(pick(N["bus1"], True, True), cars, known("bus1")),
    "Accept.bus4-exact-over-domain-3-1-1": req(pick(N["bus4"]), cars, known("bus4", "cars-ca")),
    "DiscoveryPending.bus3": req(pick(N["bus3"]), cars, known("bus1", "cars-ca")),
    "DiscoveryPending.bus3-on-meters": req(pick(N["bus3"]), meters, known("bus1", "cars-ca")),
    "DiscoveryPending.bus5-exact-on-meters-only": req(pick(N["bus5"]), cars, known("bus1", "cars-ca")),
    "DiscoveryPending.raw-name": req(raw_text("Bus9._Device.Fleet.Example."), raw_text("00-11-22-33-44-55:Cars-WiFi"),
                                     known("bus1", "cars-ca")),
    "NotPublished.bus2-negative": req(pick(N["bus2"]), cars, known("bus1", "cars-ca")),
    "NotPublished.bus5-exact-on-meters": req(pick(N["bus5"]), meters, known("bus1", "cars-ca")),
    "NoAssociationMatch.bus1-car54-cert": req(pick(N["bus1"]), cars, known("car54", "cars-ca")),
    "NoAssociationMatch.bus4-key-one-bit-off": req(pick(N["bus4"]), cars, known("bus4", "cars-ca", alter=(0, 2, 7, 1))),
    "NameNotAllowed.two-labels-below-domain": req(pick(N["a.bus3"]), cars, known("car54", "cars-ca")),
    "NameNotAllowed.domain-then-attacker": req(pick(N["evil"]), cars, known("bus1", "cars-ca")),
    "NameNotAllowed.bus1-on-lobby": req(pick(N["bus1"]), pick(S["Lobby"]), known("bus1")),
    "Capture.bus3-absent": req(pick(N["bus3"]), cars, b"\x00" + capture([[], [], [], []], source=0, chain_length=0)),
}
for n, b in check_seeds.items():
    seed("check", n, b)

# ---------------------------------------------------------------------------------------------
# trustmap: written by the real CLI, one hand-extended with every association form and names
# under a domain entry, and one of names discovered on demand.
policy = {"name": "fleet", "roles": [
    {"name": "Cars-WiFi", "members": [car54["san"], car55["san"], "car99._device.cars.example"],
     "reply": {"Tunnel-Private-Group-Id": "10"}},
    {"name": "Meters", "members": [meter7["san"], "bad name"]},
    {"name": "", "members": ["x._device.cars.example"]},
    {"name": "SSID2", "members": [], "colour": "red"}]}
fleet_role = {"name": "Cars-WiFi", "members": ["*._device.fleet.example"], "reply": {"Tunnel-Private-Group-Id": "30"}}
pol = os.path.join(tmp, "policy.json")
json.dump({"name": "fuzz", "roles": policy["roles"][:2] + [fleet_role]}, open(pol, "w"))
maps = {}
for flag, label in (([], "cli-3-0-0"), (["--key"], "cli-3-1-0")):
    mp = os.path.join(tmp, label + ".json")
    subprocess.run(["cargo", "run", "-q", "--bin", "rlm-rust", "--", "map", "--policy", pol, "--out", mp, *flag,
                    car54["chain"], car55["chain"], meter7["chain"]], cwd=top, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    maps[label] = open(mp).read()
    seed("trustmap", label, maps[label])
bus1 = make_leaf("bus1", "bus1._device.fleet.example", "ed25519", cars_ca, 1001)
m = json.loads(maps["cli-3-0-0"])
d54, d55, d7, dca, dbus1 = digests(car54), digests(car55), digests(meter7), digests(cars_ca), digests(bus1)
ca_id = ski(cars_ca).hex()
m["names"][car54["san"]] = {"associations": [
    {"usage": 4, "selector": 0, "matching": 0, "sha256": d54[0].hex(), "not_after": 1900000000},
    {"usage": 3, "selector": 1, "matching": 1, "sha256": d54[2].hex()},
    {"usage": 3, "selector": 0, "matching": 2, "sha512": d54[1].hex()}],
    "chain": [ca_id], "verified_at": 1750000000}
m["names"][car55["san"]]["associations"].append({"usage": 2, "selector": 0, "matching": 1, "sha256": dca[0].hex()})
m["names"][meter7["san"]]["associations"].append({"usage": 3, "selector": 1, "matching": 2, "sha512": d7[3].hex()})
# Allowed nowhere: dropped on load (a name outside the policy, one two labels below the domain
# entry, one under the domain followed by another).
for n in ("ghost._device.cars.example", "a.bus1._device.fleet.example", "evil._device.fleet.example.attacker.example"):
    m["names"][n] = {"associations": [{"usage": 3, "selector": 0, "matching": 1, "sha256": d55[0].hex()}]}
# Discovered on demand under *._device.fleet.example: published, and DNS says nothing.
m["names"][bus1["san"]] = {"associations": [{"usage": 3, "selector": 0, "matching": 1, "sha256": dbus1[0].hex()}],
                           "chain": [ca_id], "verified_at": 1750000000}
m["names"]["bus2._device.fleet.example"] = {"associations": [], "verified_at": 1750000000}
m["cas"] = {ca_id: open(cars_ca["pem"]).read()}
seed("trustmap", "every-form", json.dumps(m, indent=2))
v1 = dict(m, version=1)
seed("trustmap", "refused-version-1", json.dumps(v1, indent=2))
bad = json.loads(json.dumps(m))
bad["names"][car54["san"]]["associations"][2] = {"usage": 3, "selector": 0, "matching": 2, "sha256": d54[0].hex()}
seed("trustmap", "refused-matching-digest", json.dumps(bad, indent=2))
bad = json.loads(json.dumps(m))
bad["names"][car54["san"]]["chain"] = ["00"]
seed("trustmap", "refused-chain-not-in-cas", json.dumps(bad, indent=2))
bad = json.loads(json.dumps(m))
bad["policy"]["roles"].append(dict(fleet_role, reply={"Tunnel-Private-Group-Id": "99"}))
seed("trustmap", "refused-policy-conflict", json.dumps(bad, indent=2))
bad = json.loads(json.dumps(m))
bad["policy"]["roles"][-1]["members"] = ["*._Device.Fleet.Example"]
seed("trustmap", "refused-policy-not-normal", json.dumps(bad, indent=2))
discovered = {
    "format": "rlm_rust-trustmap", "version": 2, "generation": 9, "generated_at": 1750000000,
    "policy": {"roles": [
        {"name": "Cars-WiFi", "members": ["bus4._device.fleet.example"], "reply": {"Tunnel-Private-Group-Id": "31"}},
        {"name": "Cars-WiFi", "members": ["*._device.fleet.example"], "reply": {"Tunnel-Private-Group-Id": "30"}},
        {"name": "Meters", "members": ["bus5._device.fleet.example", "*._device.fleet.example",
                                       "*._device.meters.example"]}]},
    "names": {
        bus1["san"]: {"associations": [{"usage": 3, "selector": 0, "matching": 1, "sha256": dbus1[0].hex()}],
                      "chain": [ca_id], "verified_at": 1750000000},
        "bus2._device.fleet.example": {"associations": [], "verified_at": 1750000000},
        "bus4._device.fleet.example": {"associations": [
            {"usage": 3, "selector": 1, "matching": 2, "sha512": dbus1[3].hex()}]},
        "meter8._device.meters.example": {"associations": [], "verified_at": 1750000001},
        "a.bus1._device.fleet.example": {"associations": []},
        "evil._device.fleet.example.attacker.example": {"associations": [
            {"usage": 3, "selector": 0, "matching": 1, "sha256": dbus1[0].hex()}]}},
    "cas": {ca_id: open(cars_ca["pem"]).read()}}
seed("trustmap", "discovered", json.dumps(discovered, indent=1))

# ---------------------------------------------------------------------------------------------
# tlsa: every usable form, and the unusable ones that look close.
for c in (car54, car55, meter7):
    d, k = der(c), spki(c)
    L = c["label"]
    for (s, m_, data) in ((0, 0, d), (0, 1, hashlib.sha256(d).digest()), (0, 2, hashlib.sha512(d).digest()),
                          (1, 0, k), (1, 1, hashlib.sha256(k).digest()), (1, 2, hashlib.sha512(k).digest())):
        seed("tlsa", f"{L}-3-{s}-{m_}", bytes([3, s, m_]) + data)
    seed("tlsa", f"{L}-4-0-0", bytes([4, 0, 0]) + d)
d, k = der(car54), spki(car54)
seed("tlsa", "unusable-2-0-1-dane-ta", bytes([2, 0, 1]) + hashlib.sha256(der(cars_ca)).digest())
seed("tlsa", "unusable-4-1-1", bytes([4, 1, 1]) + hashlib.sha256(k).digest())
seed("tlsa", "unusable-4-0-0-two-certificates", bytes([4, 0, 0]) + d + der(cars_ca))
seed("tlsa", "unusable-3-0-0-trailing-byte", bytes([3, 0, 0]) + d + b"\x00")
seed("tlsa", "unusable-3-0-0-empty", bytes([3, 0, 0]))
seed("tlsa", "unusable-3-1-0-certificate", bytes([3, 1, 0]) + d)
seed("tlsa", "unusable-3-0-0-key", bytes([3, 0, 0]) + k)
seed("tlsa", "unusable-3-0-1-short", bytes([3, 0, 1]) + hashlib.sha256(d).digest()[:31])
seed("tlsa", "unusable-3-1-2-sha256", bytes([3, 1, 2]) + hashlib.sha256(k).digest())
seed("tlsa", "unusable-3-2-0", bytes([3, 2, 0]) + d)
seed("tlsa", "unusable-3-0-3", bytes([3, 0, 3]) + hashlib.sha256(d).digest())
for u in (0, 1, 255):
    seed("tlsa", f"unusable-{u}-0-1", bytes([u, 0, 1]) + hashlib.sha256(d).digest())

# cafetch: the CAs as .well-known/ca/ would serve them.
for ca in (cars_ca, meters_ca):
    pem = open(ca["pem"]).read()
    k = ski(ca)
    seed("cafetch", f"{ca['label']}-pem", bytes([len(k)]) + k + pem.encode())
    seed("cafetch", f"{ca['label']}-der", bytes([len(k)]) + k + der(ca))
    seed("cafetch", f"{ca['label']}-text-pem", bytes([len(k)]) + k + b"Certificate:\n  (text)\n" + pem.encode())
seed("cafetch", "html", b"\x02\xab\xcd<html><body>404</body></html>")

# name: the certificates' names, plus edge forms.
for n in names:
    seed("name", n, n)
for i, n in enumerate(["Car54._Device.Cars.Example.", "192.168.1.10", "a..b", "-a.example", "x._y", "a" * 63 + ".b"]):
    seed("name", f"edge-{i}", n)

# policy_lines / policy_json: the unit tests' samples, one over the device names, and domain
# entries with exact entries deciding over them, duplicates, conflicts and malformed entries.
seed("policy_lines", "devices", "# devices\n" + "".join(f"Cars-WiFi|{n}\n" for n in names))
seed("policy_lines", "fixtures", "# fixtures\n" + "".join(
    f"Cars-WiFi|{n}._device.{d}.example\n" for n, d in (("car54", "cars"), ("car55", "cars"), ("car56", "cars"),
                                                         ("meter7", "meters"))))
seed("policy_lines", "unit-test", "# cars\nSSID1|car54._device.cars.example\n\nSSID1|CAR55._device.cars.example.\n"
     "SSID2|car54._device.cars.example\nSSID1|10.0.0.1\nSSID1|\nnopipe\nSSID1|a b.example\n"
     "SSID1|car54._device.cars.example\n|x.example\n")
seed("policy_lines", "domains", "# fleet: a domain entry, exact entries beside it\n"
     "Cars-WiFi|*._device.fleet.example\nCars-WiFi|bus4._device.fleet.example\n"
     "Cars-WiFi|*._Device.Fleet.Example.\n  Meters | *._device.fleet.example  \nMeters|*._device.meters.example\n"
     "Cars-WiFi|*._device.fleet.example.attacker.example\nLobby|meter7._device.meters.example\n"
     "Cars-WiFi|BUS4._device.fleet.example.\r\n")
seed("policy_lines", "domain-errors", "Cars|*.\nCars|*.com\nCars|a.*.example\nCars|**.example\nCars|*example.com\n"
     "Cars|*._device..example\nCars|* .example\nCars|*.10.0.0.1\nCars |*._device.cars.example\n"
     "Cars|*._device.cars.example|x\nCars|*\n\tCars|bus1._device.fleet.example\nCars|*._device.fleet.example\n"
     "#Cars|*._device.fleet.example\nCars|*._device.fleet.example\n")
seed("policy_json", "fleet", json.dumps(policy, indent=1))
seed("policy_json", "syntax-error", "{\n \"roles\": [,]}")
seed("policy_json", "exact-over-domain", """{"roles": [
    {"name": "Cars", "members": ["*._device.cars.example"], "reply": {"Tunnel-Private-Group-Id": "20"}},
    {"name": "Cars", "members": ["car54._device.cars.example"], "reply": {"Tunnel-Private-Group-Id": "10"}}
]}""")
seed("policy_json", "conflicts", """{"roles": [
{"name": "Cars", "members": ["car54._device.cars.example"], "reply": {"Tunnel-Private-Group-Id": "10"}},
{"name": "Cars",
 "members": ["car54._device.cars.example"], "reply": {"Tunnel-Private-Group-Id": "30"}},
{"name": "Cars", "members": ["bad name"]}
]}""")
seed("policy_json", "domains-conflicts", """{"name": "fleet", "roles": [
  {"name": "Cars-WiFi", "members": ["*._device.fleet.example"],
   "reply": {"Tunnel-Private-Group-Id": "30"}},
  {"name": "Cars-WiFi", "members": ["bus4._device.fleet.example", "car54._device.cars.example"],
   "reply": {"Tunnel-Private-Group-Id": "31", "Session-Timeout": "3600"}},
  {"name": "Cars-WiFi",
   "members": [
     "*._device.fleet.example",
     "BUS4._device.fleet.example."
   ],
   "reply": {"Tunnel-Private-Group-Id": "32"}},
  {"name": "Cars-WiFi", "members": ["*._Device.Fleet.Example."], "reply": {"Tunnel-Private-Group-Id": "30"}},
  {"name": "Meters", "members": ["*._device.fleet.example", "*._device.meters.example",
                                 "meter7._device.meters.example"]},
  {"name": "Meters", "members": ["*.", "a.*.example", 7, null, "*.com", "*._device.fleet.example.attacker.example"]},
  {"name": "Lobby", "members": []},
  {"name": "Lobby"},
  {"name": "Lobby", "members": ["x._device.cars.example"], "colour": "red"},
  "not a role",
  {"name": "Lobby", "members": ["x._device.cars.example"], "reply": {"Tunnel-Private-Group-Id": 1}},
  {"name": "Guests|x", "members": ["x._device.cars.example"]},
  {"name": "Caf\u00e9:Bar", "members": ["*._device.cars.example"], "reply": {}}
]}""")
seed("policy_json", "serialised", json.dumps({"roles": [
    {"name": "Cars-WiFi", "members": ["bus4._device.fleet.example", "*._device.fleet.example"],
     "reply": {"Tunnel-Private-Group-Id": "31"}},
    {"name": "Cars-WiFi", "members": ["car54._device.cars.example", "*._device.cars.example"]},
    {"name": "Meters", "members": ["*._device.meters.example"], "reply": {"Tunnel-Private-Group-Id": "20"}}]},
    separators=(",", ":")))

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

shutil.rmtree(tmp)
