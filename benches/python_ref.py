"""The Python reference (dane-discovery 0.22) doing the trust sync's work, for the
side-by-side figure in `cargo bench --bench sync`.

Per name, what the reference does: `Identity(name, resolver_override=ip)` (TLSA lookup),
`get_all_certificates()` (PKIX-CD: CA chain fetched over HTTPS and verified) and
`get_pkix_cd_trust_chain(cert)` (the chain again: the reference caches nothing).
Sequential, as the reference is.

The reference has no DNS or HTTPS port parameter (DoT 853 then 53; HTTPS 443), so:
- `dns.query.tls` raises ConnectionRefusedError at once (what a resolver without DoT
  answers on 853; the reference then falls back to UDP/TCP), and dnspython's UDP/TCP and
  `Resolver` go to --dns's port;
- TCP connections to port 443 (the reference first resolves the authority host's A
  record through the same server, then connects to that address) go to --https.
REQUESTS_CA_BUNDLE is set to --web-root; TLS verification and the host name check stay on.

Writes one JSON object to --out (and stdout). Never raises for a name: errors are counted.
usage: python_ref.py --dns IP:PORT --https IP:PORT --web-root PEM --names FILE --out FILE
"""
import argparse
import collections
import functools
import json
import os
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--dns", required=True, help="IP:PORT of the DNS server (knotd)")
ap.add_argument("--https", required=True, help="IP:PORT of the HTTPS server serving .well-known/ca")
ap.add_argument("--web-root", required=True, help="PEM of the web root that issued the HTTPS certificate")
ap.add_argument("--names", required=True, help="file with one device name per line")
ap.add_argument("--out", required=True, help="where to write the JSON result")
ap.add_argument("--dns-timeout", type=int, default=3)
ap.add_argument("--deadline", type=float, default=600.0, help="stop starting names after this many seconds")
args = ap.parse_args()

dns_ip, dns_port = args.dns.rsplit(":", 1)
https_ip, https_port = args.https.rsplit(":", 1)
dns_port, https_port = int(dns_port), int(https_port)
os.environ["REQUESTS_CA_BUNDLE"] = os.path.abspath(args.web_root)

import dns.query  # noqa: E402
import dns.resolver  # noqa: E402
import urllib3.util.connection  # noqa: E402


def _no_dot(*_a, **_k):
    raise ConnectionRefusedError("no DNS over TLS on this server (bench)")


dns.query.tls = _no_dot
dns.query.udp_with_fallback = functools.partial(dns.query.udp_with_fallback, port=dns_port)
_orig_resolver_init = dns.resolver.Resolver.__init__


def _resolver_init(self, *a, **k):
    _orig_resolver_init(self, *a, **k)
    self.port = dns_port


dns.resolver.Resolver.__init__ = _resolver_init
_orig_create_connection = urllib3.util.connection.create_connection


def _create_connection(address, *a, **k):
    host, port = address
    if port == 443:
        address = (https_ip, https_port)
    return _orig_create_connection(address, *a, **k)


urllib3.util.connection.create_connection = _create_connection

import dane_discovery  # noqa: E402
from dane_discovery.dane import DANE  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from dane_discovery.identity import Identity  # noqa: E402

try:
    from importlib.metadata import version

    ref_version = version("dane-discovery")
except Exception:  # pragma: no cover
    ref_version = getattr(dane_discovery, "__version__", "?")

fetch = {"count": 0, "s": 0.0}
_orig_wrap_requests = DANE.wrap_requests.__func__


def _timed_wrap_requests(cls, *a, **k):
    """Times the reference's CA fetch (A lookup of the authority host + HTTPS GET)."""
    t = time.monotonic()
    try:
        return _orig_wrap_requests(cls, *a, **k)
    finally:
        fetch["count"] += 1
        fetch["s"] += time.monotonic() - t


DANE.wrap_requests = classmethod(_timed_wrap_requests)

names = [n.strip() for n in open(args.names) if n.strip()]
errors = collections.Counter()
phase = collections.defaultdict(float)
ok = dnssec_true = done = 0
t_start = time.monotonic()
for name in names:
    if time.monotonic() - t_start > args.deadline:
        errors["bench deadline reached before this name"] += 1
        continue
    done += 1
    try:
        t0 = time.monotonic()
        ident = Identity(name, resolver_override=dns_ip, dns_timeout=args.dns_timeout)
        t1 = time.monotonic()
        phase["Identity() (TLSA lookup)"] += t1 - t0
        dnssec_true += bool(ident.dnssec)
        certs = ident.get_all_certificates()
        t2 = time.monotonic()
        phase["get_all_certificates()"] += t2 - t1
        # The chain of the published certificate (the credential's, so the chain call runs
        # even when get_all_certificates refused it).
        cred = ident.dane_credentials[0]["certificate_object"]
        try:
            chain = ident.get_pkix_cd_trust_chain(cred.public_bytes(serialization.Encoding.PEM))
        finally:
            phase["get_pkix_cd_trust_chain()"] += time.monotonic() - t2
        if len(certs) == 1 and "root" in chain:
            ok += 1
        else:
            errors[f"certificates={len(certs)} chain_keys={sorted(map(str, chain))}"] += 1
    except Exception as e:  # one name's failure must not stop the run
        errors[f"{type(e).__name__}: {str(e).strip()[:200]}"] += 1
wall = time.monotonic() - t_start
result = {
    "implementation": f"dane-discovery {ref_version} (Python {sys.version.split()[0]})",
    "names": len(names),
    "attempted": done,
    "succeeded": ok,
    "dnssec_true": dnssec_true,
    "wall_s": wall,
    "phases_s": dict(phase),
    "ca_fetches": fetch["count"],
    "ca_fetch_s": fetch["s"],
    "errors": dict(errors.most_common(5)),
}
text = json.dumps(result)
with open(args.out, "w") as f:
    f.write(text + "\n")
print(text)
