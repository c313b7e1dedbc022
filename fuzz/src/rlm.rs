//! Invariants over the module's parsers (rlm_rust), one `pub fn(&[u8])` per fuzz target.
//!
//! Each function panics when an invariant fails; a panic is what libFuzzer reports as a
//! crash and what `tests/fuzz_regressions.rs` turns into a failed test. References used
//! for differential checks are written here, independently of the code under test: the
//! capture rules of the TLS hook's contract, the request check's steps, certificate
//! associations compared byte for byte with the captured digests, the TLSA rules, and
//! OpenSSL (DER certificates and keys, SHA-2) for what a record holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private};
use openssl::sha::{sha256, sha512};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use rlm_rust::association::{Association, Digest, Matching, Selector, Usage};
use rlm_rust::cafetch::{certificate_from_body, dashed_hex, FetchError};
use rlm_rust::check::{check as check_request, ssid_of, Decision, Reason, Request};
use rlm_rust::config::{debian_vars, from_pairs, parse_duration, parse_section};
use rlm_rust::dane::{classify, registry_sha256, RecordUse, TlsaRecord};
use rlm_rust::name::{self, normalize, normalize_into, MAX_NAME_LEN};
use rlm_rust::pki::dns_eq;
use rlm_rust::policy::{parse_json, parse_lines, Policy, ReplyAttr, Role};
use rlm_rust::presented::{
    CaptureError, CapturedChain, CertDigests, OwnedDigests, PresentedCert, RawCapture, Source, MAX_CHAIN, MAX_SAN_DNS,
};
use rlm_rust::trustmap::{NameEntry, TrustMap};

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// Reads a fuzz input front to back. Past the end it yields zero bytes and short slices,
/// so every input decodes to something.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    /// Up to `n` bytes (fewer at the end of the input).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// Exactly `n` bytes, zero-padded at the end of the input.
    fn padded(&mut self, n: usize) -> Vec<u8> {
        let mut v = self.take(n).to_vec();
        v.resize(n, 0);
        v
    }

    /// A length byte and that many bytes.
    fn chunk(&mut self) -> &'a [u8] {
        let n = self.byte();
        self.take(n.into())
    }
}

// ---------------------------------------------------------------------------------------
// Policy

/// Every name a loaded policy holds is normalised; every SSID is one `check_ssid` allows.
fn assert_policy_well_formed(p: &Policy) {
    for (ssid, role) in &p.ssids {
        assert!(!ssid.is_empty() && ssid.len() <= 32, "SSID {ssid:?} out of 1..=32 bytes");
        assert!(!ssid.chars().any(|c| c.is_control() || c == '|'), "SSID {ssid:?} has a control char or '|'");
        for m in &role.members {
            assert_eq!(normalize(m).as_deref(), Ok(m.as_str()), "member {m:?} of {ssid:?} is not normalised");
        }
    }
}

/// The JSON policy text that loads back to exactly `p` (one role per reply attribute keeps
/// their order and repeats).
fn policy_to_json(p: &Policy) -> String {
    let mut roles = Vec::new();
    for (ssid, role) in &p.ssids {
        roles.push(serde_json::json!({ "name": ssid, "members": role.members }));
        for r in &role.reply {
            roles.push(serde_json::json!({ "name": ssid, "reply": { r.attribute.clone(): r.value.clone() } }));
        }
    }
    serde_json::json!({ "name": "fuzz", "roles": roles }).to_string()
}

fn assert_json_round_trip(p: &Policy) {
    let back = parse_json(&policy_to_json(p), "rt.json").expect("re-serialised policy must parse");
    assert!(back.diagnostics.is_empty(), "re-serialised policy has diagnostics: {:?}", back.diagnostics);
    assert_eq!(&back.policy, p, "JSON round trip changed the policy");
}

/// `SSID|name` lines: what loads re-serialises and loads to the same policy, also as JSON.
pub fn policy_lines(data: &[u8]) {
    let text = text(data);
    let loaded = parse_lines(&text, "fuzz.txt");
    let lines = text.lines().count();
    for d in &loaded.diagnostics {
        assert!(d.line >= 1 && d.line <= lines, "diagnostic line {} of {lines}", d.line);
        assert_eq!(d.file, "fuzz.txt");
    }
    let p = &loaded.policy;
    assert_policy_well_formed(p);
    let mut again = String::new();
    for (ssid, role) in &p.ssids {
        assert!(!role.members.is_empty(), "the line format cannot make an empty role");
        assert!(role.reply.is_empty(), "the line format has no reply attributes");
        for m in &role.members {
            again.push_str(&format!("{ssid}|{m}\n"));
        }
    }
    let back = parse_lines(&again, "rt.txt");
    assert!(back.diagnostics.is_empty(), "re-serialised lines have diagnostics: {:?}", back.diagnostics);
    assert_eq!(&back.policy, p, "line round trip changed the policy");
    assert_json_round_trip(p);
}

/// JSON policies: a loaded policy is well formed and round-trips.
pub fn policy_json(data: &[u8]) {
    let text = text(data);
    let Ok(loaded) = parse_json(&text, "fuzz.json") else {
        return;
    };
    assert_policy_well_formed(&loaded.policy);
    assert_json_round_trip(&loaded.policy);
}

// ---------------------------------------------------------------------------------------
// Trust map snapshot

/// A snapshot that loads re-serialises to a fixed point and loads to the same generation,
/// policy, CAs, names and associations; every kept entry has associations, its name is
/// normalised and allowed by the policy, its chain CAs travel in the snapshot; and every
/// association is well formed and matches exactly where its usage points.
pub fn trustmap(data: &[u8]) {
    let Ok(map) = TrustMap::from_json(&text(data), "fuzz.json") else {
        return;
    };
    let json = map.to_json();
    let back = TrustMap::from_json(&json, "rt.json").unwrap_or_else(|e| panic!("re-serialised map refused: {e}"));
    assert_eq!(back.to_json(), json, "to_json is not a fixed point");
    assert_eq!((back.generation, back.generated_at), (map.generation, map.generated_at));
    assert_eq!(back.policy(), map.policy());
    assert_eq!(back.cas(), map.cas());
    assert_eq!(back.name_count(), map.name_count());
    assert_eq!(back.association_count(), map.association_count());
    let entries: BTreeMap<&String, &NameEntry> = map.entries().collect();
    let back_entries: BTreeMap<&String, &NameEntry> = back.entries().collect();
    assert_eq!(back_entries, entries, "entries changed in the round trip");
    assert_eq!(entries.len(), map.name_count());
    assert_eq!(entries.values().map(|e| e.associations.len()).sum::<usize>(), map.association_count());

    let allowed = map.policy().names();
    for (n, entry) in &entries {
        assert!(!entry.associations.is_empty(), "{n}: entry without associations kept");
        assert!(allowed.contains(n.as_str()), "{n}: associations kept for a name no SSID allows");
        assert_eq!(normalize(n).as_deref(), Ok(n.as_str()), "{n}: kept name is not normalised");
        assert_eq!(map.associations(n), entry.associations.as_slice(), "{n}: associations() differs from the entry");
        for k in &entry.chain {
            assert!(map.cas().contains_key(k), "{n}: chain CA {k} is not in the snapshot");
        }
        for a in &entry.associations {
            assert_association_well_formed(a);
        }
    }
    for n in allowed {
        if !entries.contains_key(&n.to_owned()) {
            assert!(map.associations(n).is_empty(), "{n}: associations without an entry");
        }
    }
}

/// The association's matching type goes with its digest, its JSON form round-trips on its
/// own, its text names the record form, and it matches a two-certificate capture holding
/// its digest exactly when that position is the one its usage compares with (the leaf for
/// DANE-EE and PKIX-CD, an issuer for DANE-TA).
fn assert_association_well_formed(a: &Association) {
    match (a.matching, &a.digest) {
        (Matching::Full | Matching::Sha256, Digest::Sha256(_)) | (Matching::Sha512, Digest::Sha512(_)) => {}
        (m, d) => panic!("matching type {m:?} loaded with digest {d}"),
    }
    let json = serde_json::to_string(a).expect("an association serialises");
    let again: Association = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json} does not load back: {e}"));
    assert_eq!(&again, a, "association JSON round trip");
    let form = format!("{} {} {} ", a.usage.code(), a.selector.code(), a.matching.code());
    assert!(a.to_string().starts_with(&form), "{a} does not start with {form:?}");
    for pos in [0, 1] {
        let capture = Capture::holding(a, pos);
        let want = if a.usage == Usage::DaneTa { pos >= 1 } else { pos == 0 };
        capture.with_presented(|p| {
            let p = p.expect("a consistent capture");
            assert_eq!(a.matches(&p, HOLDER), want, "{a} with its digest at chain position {pos}");
            assert!(
                !a.matches(&p, "other._device.cars.example") || a.usage != Usage::DaneTa,
                "{a}: a TA for another name"
            );
        });
    }
}

// ---------------------------------------------------------------------------------------
// Captured certificates (the TLS hook's attributes)

/// The four digest lists of a capture, in [`Capture::lists`] order, and the size each of
/// their values must have.
const LISTS: [(&str, usize); 4] = [("cert_sha256", 32), ("cert_sha512", 64), ("spki_sha256", 32), ("spki_sha512", 64)];

/// A capture as the hook's attributes carry it, owned; consistent or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    pub source: Option<Source>,
    pub chain_length: Option<i64>,
    /// The values of cert_sha256, cert_sha512, spki_sha256 and spki_sha512, in list order
    /// (position 0: the presented certificate).
    pub lists: [Vec<Vec<u8>>; 4],
    pub san_dns: Vec<Vec<u8>>,
}

impl Capture {
    /// Decodes a capture:
    ///
    /// - a flags byte: bits 0-1 the source (0 none, 1 handshake, 2 resumed, 3 handshake);
    ///   bit 2 no chain length; bit 3 the chain length is 8 bytes (little-endian i64), else
    ///   one signed byte; bit 4 digests have their algorithm's size (no length byte);
    /// - the chain length (unless bit 2);
    /// - five counts, one byte each: the four digest lists (modulo `MAX_CHAIN + 3`) and the
    ///   SAN dNSNames (modulo `MAX_SAN_DNS + 3`);
    /// - the values, list after list: each a length byte and that many bytes (digests under
    ///   bit 4: exactly 32 or 64 bytes, zero-padded at the end of the input).
    fn decode(input: &mut Input<'_>) -> Capture {
        let flags = input.byte();
        let source = match flags & 3 {
            0 => None,
            2 => Some(Source::Resumed),
            _ => Some(Source::Handshake),
        };
        let chain_length = if flags & 4 != 0 {
            None
        } else if flags & 8 != 0 {
            Some(i64::from_le_bytes(input.padded(8).try_into().expect("8 bytes")))
        } else {
            Some(i64::from(input.byte() as i8))
        };
        let counts: [usize; 4] = std::array::from_fn(|_| usize::from(input.byte()) % (MAX_CHAIN + 3));
        let san_count = usize::from(input.byte()) % (MAX_SAN_DNS + 3);
        let fixed = flags & 0x10 != 0;
        let lists = std::array::from_fn(|i| {
            (0..counts[i]).map(|_| if fixed { input.padded(LISTS[i].1) } else { input.chunk().to_vec() }).collect()
        });
        let san_dns = (0..san_count).map(|_| input.chunk().to_vec()).collect();
        Capture { source, chain_length, lists, san_dns }
    }

    /// What the hook records for a verified chain of known certificates (leaf first).
    fn of_chain(chain: &[&Known], source: Source) -> Capture {
        Capture {
            source: Some(source),
            chain_length: Some(chain.len() as i64),
            lists: std::array::from_fn(|i| chain.iter().map(|k| k.digests[i].clone()).collect()),
            san_dns: chain.first().map(|k| k.san_dns.clone()).unwrap_or_default(),
        }
    }

    /// A consistent two-certificate capture whose only value equal to `a`'s digest is at
    /// chain position `pos` of the list `a` compares with; every other value of that size
    /// is the digest's complement.
    /// A two-certificate capture holding `a`'s digest at chain position `pos`, its
    /// presented certificate naming [`HOLDER`] in its SAN.
    fn holding(a: &Association, pos: usize) -> Capture {
        let (list, digest) = association_list(a);
        let other: Vec<u8> = digest.iter().map(|b| !b).collect();
        let mut lists: [Vec<Vec<u8>>; 4] = std::array::from_fn(|i| {
            (0..2).map(|_| if LISTS[i].1 == digest.len() { other.clone() } else { vec![0; LISTS[i].1] }).collect()
        });
        lists[list][pos] = digest.to_vec();
        Capture {
            source: Some(Source::Handshake),
            chain_length: Some(2),
            lists,
            san_dns: vec![HOLDER.as_bytes().to_vec()],
        }
    }

    /// The reference for `PresentedCert::from_capture`, restated from the hook's contract:
    /// a source, a chain length of 1..=MAX_CHAIN, each digest list exactly that long with
    /// values of its algorithm's size, at most MAX_SAN_DNS dNSNames.
    pub fn consistent(&self) -> bool {
        let Some(n) = self.chain_length else {
            return false;
        };
        self.source.is_some()
            && (1..=MAX_CHAIN as i64).contains(&n)
            && self
                .lists
                .iter()
                .zip(LISTS)
                .all(|(l, (_, size))| l.len() as i64 == n && l.iter().all(|v| v.len() == size))
            && self.san_dns.len() <= MAX_SAN_DNS
    }

    /// Hands the capture to `from_capture` the way the request path does (borrowed lists)
    /// and calls `f` with the result.
    pub fn with_presented<R>(&self, f: impl FnOnce(Result<PresentedCert<'_>, CaptureError>) -> R) -> R {
        let lists: [Vec<&[u8]>; 4] = std::array::from_fn(|i| self.lists[i].iter().map(Vec::as_slice).collect());
        let sans: Vec<&[u8]> = self.san_dns.iter().map(Vec::as_slice).collect();
        let raw = RawCapture {
            source: self.source,
            cert_sha256: &lists[0],
            cert_sha512: &lists[1],
            spki_sha256: &lists[2],
            spki_sha512: &lists[3],
            san_dns: &sans,
            chain_length: self.chain_length,
        };
        f(PresentedCert::from_capture(&raw))
    }
}

/// Which capture list an association is compared with, and its digest bytes.
fn association_list(a: &Association) -> (usize, &[u8]) {
    let (digest, sha512): (&[u8], bool) = match &a.digest {
        Digest::Sha256(d) => (d, false),
        Digest::Sha512(d) => (d, true),
    };
    let first = match a.selector {
        Selector::Cert => 0,
        Selector::Spki => 2,
    };
    (first + usize::from(sha512), digest)
}

/// The name the presented certificate of [`Capture::holding`] carries.
const HOLDER: &str = "holder._device.cars.example";

/// The reference for `Association::matches` on a consistent capture, for a device
/// claiming `name` (normalised): the association's digest equals, byte for byte, the
/// captured digest of its kind at the presented certificate (DANE-EE, PKIX-CD) or at any
/// chain position from 1 on (DANE-TA); for DANE-TA the presented certificate must also
/// name `name` in a SAN dNSName (ASCII, any case, one trailing dot allowed, no NUL).
fn reference_matches(a: &Association, c: &Capture, name: &str) -> bool {
    let (list, digest) = association_list(a);
    let digest_ok = c.lists[list].iter().enumerate().any(|(pos, v)| {
        let position_ok = if a.usage == Usage::DaneTa { pos >= 1 } else { pos == 0 };
        position_ok && v.as_slice() == digest
    });
    let san_ok = || {
        c.san_dns.iter().any(|e| {
            let e = if e.last() == Some(&b'.') { &e[..e.len() - 1] } else { &e[..] };
            e.iter().all(|b| b.is_ascii() && *b != 0) && e.to_ascii_lowercase() == name.as_bytes()
        })
    };
    digest_ok && (a.usage != Usage::DaneTa || san_ok())
}

/// The digests of `d` in [`Capture::lists`] order.
fn digest_values<'a>(d: &CertDigests<'a>) -> [&'a [u8]; 4] {
    [&d.cert_sha256[..], &d.cert_sha512[..], &d.spki_sha256[..], &d.spki_sha512[..]]
}

/// Whether `from_capture` accepts the decoded input (for the seed test).
pub fn presented_accepts(data: &[u8]) -> bool {
    let capture = Capture::decode(&mut Input(data));
    capture.with_presented(|p| p.is_ok())
}

/// `PresentedCert::from_capture` accepts exactly the captures the reference calls
/// consistent; refuses a capture without source as absent and any other as malformed; and
/// what it accepts reads back exactly (leaf, issuers in order, chain length, dNSNames,
/// source), also when the same digests come through `CapturedChain`.
pub fn presented(data: &[u8]) {
    let capture = Capture::decode(&mut Input(data));
    let consistent = capture.consistent();
    capture.with_presented(|result| match result {
        Ok(p) => {
            assert!(consistent, "accepted an inconsistent capture {capture:?}");
            assert_reads_back(&capture, &p);
        }
        Err(e) => {
            assert!(!consistent, "refused a consistent capture: {e}");
            assert_eq!(e == CaptureError::Absent, capture.source.is_none(), "{e:?} for source {:?}", capture.source);
            assert!(!e.to_string().is_empty());
        }
    });
    if consistent {
        let owned = CapturedChain {
            chain: (0..capture.lists[0].len())
                .map(|i| OwnedDigests {
                    cert_sha256: capture.lists[0][i].as_slice().try_into().expect("32 bytes"),
                    cert_sha512: capture.lists[1][i].as_slice().try_into().expect("64 bytes"),
                    spki_sha256: capture.lists[2][i].as_slice().try_into().expect("32 bytes"),
                    spki_sha512: capture.lists[3][i].as_slice().try_into().expect("64 bytes"),
                })
                .collect(),
            san_dns: capture.san_dns.clone(),
            source: capture.source.expect("consistent"),
        };
        owned.with_presented(|p| assert_reads_back(&capture, &p.expect("CapturedChain refused a consistent capture")));
    }
}

fn assert_reads_back(c: &Capture, p: &PresentedCert<'_>) {
    let n = c.lists[0].len();
    assert_eq!(Some(p.source), c.source, "source");
    assert_eq!(p.chain_len(), n, "chain_len");
    let chain: Vec<&CertDigests<'_>> = std::iter::once(p.leaf()).chain(p.issuers()).collect();
    assert_eq!(chain.len(), n, "leaf and issuers are not the whole chain");
    for (pos, d) in chain.iter().enumerate() {
        for (list, value) in digest_values(d).into_iter().enumerate() {
            assert_eq!(value, c.lists[list][pos].as_slice(), "{} at chain position {pos}", LISTS[list].0);
        }
    }
    let sans: Vec<&[u8]> = c.san_dns.iter().map(Vec::as_slice).collect();
    assert_eq!(p.san_dns(), sans.as_slice(), "san_dns");
}

// ---------------------------------------------------------------------------------------
// Whole request check

/// One certificate of the check target's fixture, with the digests the hook would capture
/// for it, computed here from its DER and its key's SubjectPublicKeyInfo DER.
pub struct Known {
    pub label: &'static str,
    pub cert: X509,
    pub san_dns: Vec<Vec<u8>>,
    /// cert_sha256, cert_sha512, spki_sha256, spki_sha512 ([`Capture::lists`] order).
    pub digests: [Vec<u8>; 4],
}

/// The check target's world: certificates, the policy and the associations the trust map
/// was built from (the reference reads these, never the loaded map), and the map loaded
/// back through its own JSON as radiusd loads it.
pub struct Fixture {
    pub known: Vec<Known>,
    pub policy: Policy,
    /// What the trust map must publish: the associations of allowed names, non-empty.
    pub published: BTreeMap<String, Vec<Association>>,
    pub map: TrustMap,
}

/// How one fixture certificate is made: an Ed25519 key from `key_seed`, signed by the
/// certificate at index `issuer` (itself when None: a CA), with a SAN dNSName for devices.
struct Spec {
    label: &'static str,
    issuer: Option<usize>,
    key_seed: u8,
    serial: u32,
    san: Option<&'static str>,
}

const fn spec(
    label: &'static str,
    issuer: Option<usize>,
    key_seed: u8,
    serial: u32,
    san: Option<&'static str>,
) -> Spec {
    Spec { label, issuer, key_seed, serial, san }
}

/// The certificates, by index as check inputs name them (`make-seeds.py` uses the same
/// indices). Ed25519 signatures are deterministic, so every run builds the same bytes.
const CERTS: [Spec; 10] = [
    spec("cars-ca", None, 1, 1, None),
    spec("meters-ca", None, 2, 2, None),
    spec("car54", Some(0), 10, 54, Some("car54._device.cars.example")),
    spec("car55", Some(0), 11, 55, Some("car55._device.cars.example")),
    spec("car56-cars", Some(0), 12, 56, Some("car56._device.cars.example")),
    // The Meters organisation's CA issuing for a Cars name: the cross-domain certificate.
    spec("car56-meters", Some(1), 13, 5656, Some("car56._device.cars.example")),
    spec("car57", Some(0), 14, 57, Some("car57._device.cars.example")),
    spec("meter7", Some(1), 20, 7, Some("meter7._device.meters.example")),
    // car55 re-issued for the same key: matches `3 1 x`, not `3 0 x`.
    spec("car55-reissued", Some(0), 11, 5555, Some("car55._device.cars.example")),
    spec("car58", Some(1), 15, 58, Some("car58._device.cars.example")),
];

/// Names check inputs pick by index (`make-seeds.py` uses the same indices).
pub const NAMES: [&str; 8] = [
    "car54._device.cars.example",
    "car55._device.cars.example",
    "car56._device.cars.example",
    "car57._device.cars.example",
    "car58._device.cars.example",
    "car99._device.cars.example",
    "meter7._device.meters.example",
    "ghost._device.cars.example",
];

/// Called-Station-Ids check inputs pick by index.
pub const STATIONS: [&str; 5] = [
    "00-11-22-33-44-55:Cars-WiFi",
    "001122334455:Meters",
    "00:11:22:33:44:55:Lobby",
    "00-11-22-33-44-55:Guests",
    "00-11-22-33-44-55",
];

const NOT_AFTER: i64 = 2_000_000_000;

fn ed25519(seed: u8) -> PKey<Private> {
    PKey::private_key_from_raw_bytes(&[seed; 32], Id::ED25519).expect("Ed25519 key")
}

fn make_cert(
    cn: &str,
    san: Option<&str>,
    key: &PKey<Private>,
    serial: u32,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> X509 {
    let mut b = X509Builder::new().expect("builder");
    b.set_version(2).expect("version");
    b.set_serial_number(&BigNum::from_u32(serial).and_then(|n| n.to_asn1_integer()).expect("serial")).expect("serial");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", cn).expect("CN");
    let name = name.build();
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(issuer.map_or(&*name, |(c, _)| c.subject_name())).expect("issuer");
    b.set_pubkey(key).expect("key");
    b.set_not_before(&Asn1Time::from_unix(1_700_000_000).expect("time")).expect("not before");
    b.set_not_after(&Asn1Time::from_unix(NOT_AFTER).expect("time")).expect("not after");
    match san {
        None => b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc")).expect("bc"),
        Some(san) => {
            let ext = SubjectAlternativeName::new()
                .dns(san)
                .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
                .expect("SAN");
            b.append_extension(ext).expect("SAN");
        }
    }
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::null()).expect("sign");
    b.build()
}

/// The digests of `cert` computed here: SHA-2 of its DER and of its key's DER.
fn reference_digests(cert: &X509) -> [Vec<u8>; 4] {
    let der = cert.to_der().expect("DER");
    let spki = cert.public_key().and_then(|k| k.public_key_to_der()).expect("SPKI");
    [sha256(&der).to_vec(), sha512(&der).to_vec(), sha256(&spki).to_vec(), sha512(&spki).to_vec()]
}

fn assoc(usage: Usage, selector: Selector, matching: Matching, digest: &[u8], not_after: Option<i64>) -> Association {
    let digest = match matching {
        Matching::Sha512 => Digest::Sha512(digest.try_into().expect("64 bytes")),
        _ => Digest::Sha256(digest.try_into().expect("32 bytes")),
    };
    Association { usage, selector, matching, digest, not_after }
}

/// The certificates of [`CERTS`], their digests checked against `OwnedDigests::of` and
/// their dNSNames against `CapturedChain::of`.
pub fn build_known() -> Vec<Known> {
    let mut known: Vec<Known> = Vec::new();
    let mut keys: Vec<PKey<Private>> = Vec::new();
    for Spec { label, issuer, key_seed, serial, san } in CERTS {
        let key = ed25519(key_seed);
        let cert = make_cert(label, san, &key, serial, issuer.map(|i| (&known[i].cert, &keys[i])));
        let owned = OwnedDigests::of(&cert).expect("OwnedDigests::of");
        let digests = reference_digests(&cert);
        let theirs = [&owned.cert_sha256[..], &owned.cert_sha512[..], &owned.spki_sha256[..], &owned.spki_sha512[..]];
        assert_eq!(theirs, [&digests[0][..], &digests[1][..], &digests[2][..], &digests[3][..]], "{label}: digests");
        let san_dns: Vec<Vec<u8>> = san.map(|s| s.as_bytes().to_vec()).into_iter().collect();
        assert_eq!(CapturedChain::of(std::slice::from_ref(&cert)).expect("CapturedChain").san_dns, san_dns);
        known.push(Known { label, cert, san_dns, digests });
        keys.push(key);
    }
    known
}

/// The fixture, built once: every association form the map can hold (`4 0 0`, `3 0 0`,
/// `3 1 1`, `3 0 1`, `3 0 2`, `3 1 2`, `3 1 0`, DANE-TA `2 0 1` and `2 1 2`), a name
/// allowed but unpublished (car99), a name published but allowed nowhere (ghost), and the
/// Meters CA's certificate for car56, a Cars name (the cross-domain case must fail).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let known = build_known();
        let d = |i: usize, list: usize| known[i].digests[list].clone();
        let (c256, c512, s256, s512) = (0, 1, 2, 3);
        let spki_der = known[7].cert.public_key().and_then(|k| k.public_key_to_der()).expect("SPKI");
        let (ee, ta) = (Usage::DaneEe, Usage::DaneTa);
        let entries: Vec<(&str, Vec<Association>)> = vec![
            (NAMES[0], vec![assoc(Usage::PkixCd, Selector::Cert, Matching::Full, &d(2, c256), Some(NOT_AFTER))]),
            (
                NAMES[1],
                vec![
                    assoc(ee, Selector::Cert, Matching::Full, &d(3, c256), None),
                    assoc(ee, Selector::Spki, Matching::Sha256, &d(3, s256), None),
                ],
            ),
            (NAMES[2], vec![assoc(ee, Selector::Cert, Matching::Sha256, &d(4, c256), None)]),
            (NAMES[3], vec![assoc(ta, Selector::Cert, Matching::Sha256, &d(0, c256), None)]),
            (NAMES[4], vec![assoc(ta, Selector::Spki, Matching::Sha512, &d(1, s512), None)]),
            (NAMES[5], vec![]),
            (
                NAMES[6],
                vec![
                    assoc(ee, Selector::Cert, Matching::Sha512, &d(7, c512), None),
                    assoc(ee, Selector::Spki, Matching::Sha512, &d(7, s512), None),
                    assoc(ee, Selector::Spki, Matching::Full, &sha256(&spki_der), None),
                ],
            ),
            (NAMES[7], vec![assoc(ee, Selector::Cert, Matching::Sha256, &d(2, c256), None)]),
        ];
        let reply = |v: &str| vec![ReplyAttr { attribute: "Tunnel-Private-Group-Id".into(), value: v.into() }];
        let role = |members: &[&str], reply: Vec<ReplyAttr>| Role {
            members: members.iter().map(|m| m.to_string()).collect::<BTreeSet<_>>(),
            reply,
        };
        let mut policy = Policy::default();
        policy.ssids.insert("Cars-WiFi".into(), role(&NAMES[..6], reply("10")));
        policy.ssids.insert("Meters".into(), role(&[NAMES[6], NAMES[0]], reply("20")));
        policy.ssids.insert("Lobby".into(), role(&[NAMES[6]], vec![]));
        // Restated: the map keeps the non-empty association lists of allowed names.
        let allowed: BTreeSet<&str> =
            policy.ssids.values().flat_map(|r| r.members.iter().map(String::as_str)).collect();
        let published: BTreeMap<String, Vec<Association>> = entries
            .iter()
            .filter(|(n, a)| allowed.contains(n) && !a.is_empty())
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect();
        let names: BTreeMap<String, NameEntry> = entries
            .into_iter()
            .map(|(n, associations)| {
                (n.to_string(), NameEntry { associations, chain: vec![], verified_at: 1_750_000_000 })
            })
            .collect();
        let json = TrustMap::new(policy.clone(), names, 7, 1_750_000_000).to_json();
        let map = TrustMap::from_json(&json, "check-fixture.json").expect("the fixture trust map loads");
        for n in NAMES {
            let want = published.get(n).map_or(&[][..], Vec::as_slice);
            assert_eq!(map.associations(n), want, "{n}: the loaded map publishes other associations");
        }
        assert_eq!(map.policy(), &policy, "the loaded map has another policy");
        Fixture { known, policy, published, map }
    })
}

/// A name or Called-Station-Id: a tag byte, then (tag % 4) 0: absent; 1: a length byte and
/// that text; 2: `table[((tag >> 2) & 31) % len]`; 3: the same upper-cased, with a
/// trailing dot when bit 7 is set.
fn choose(input: &mut Input<'_>, table: &[&str]) -> Option<String> {
    let tag = input.byte();
    let pick = table[usize::from((tag >> 2) & 0x1f) % table.len()];
    match tag % 4 {
        0 => None,
        1 => Some(text(input.chunk())),
        2 => Some(pick.to_owned()),
        _ if tag & 0x80 != 0 => Some(format!("{}.", pick.to_ascii_uppercase())),
        _ => Some(pick.to_ascii_uppercase()),
    }
}

/// A check input: User-Name and Called-Station-Id (see [`choose`]), then a mode byte:
/// (mode & 3) 1 or 2: a chain of known certificates (a count byte, 1 + count % 4
/// certificates, then one index byte each, leaf first; bit 4 of the mode: resumed); with
/// 2, one byte of one digest then altered (position, list, offset, xor bytes); 0 or 3:
/// a capture of fuzz-chosen values ([`Capture::decode`]).
fn decode_check(data: &[u8], known: &[Known]) -> (Option<String>, Option<String>, Capture) {
    let mut input = Input(data);
    let user = choose(&mut input, &NAMES);
    let station = choose(&mut input, &STATIONS);
    let mode = input.byte();
    let capture = match mode & 3 {
        m @ (1 | 2) => {
            let count = 1 + usize::from(input.byte()) % 4;
            let chain: Vec<&Known> = (0..count).map(|_| &known[usize::from(input.byte()) % known.len()]).collect();
            let source = if mode & 0x10 != 0 { Source::Resumed } else { Source::Handshake };
            let mut c = Capture::of_chain(&chain, source);
            if m == 2 {
                let (pos, list, at, x) = (input.byte(), input.byte(), input.byte(), input.byte().max(1));
                let value = &mut c.lists[usize::from(list) % 4][usize::from(pos) % count];
                let at = usize::from(at) % value.len();
                value[at] ^= x;
            }
            c
        }
        _ => Capture::decode(&mut input),
    };
    (user, station, capture)
}

/// The request check restated, step by step, on the policy and associations the map was
/// built from: the first step that fails names the reason; on accept, the role's reply.
/// `capture_error` is what `from_capture` said of an inconsistent capture.
fn reference_decision<'p>(
    policy: &'p Policy,
    published: &BTreeMap<String, Vec<Association>>,
    user: Option<&str>,
    station: Option<&str>,
    capture: &Capture,
    capture_error: Option<CaptureError>,
) -> Result<&'p [ReplyAttr], Reason> {
    let name = user.and_then(|u| normalize(u).ok()).ok_or(Reason::InvalidName)?;
    let ssid = station.and_then(ssid_of).ok_or(Reason::NoSsid)?;
    let role = policy.ssids.get(ssid).ok_or(Reason::UnknownSsid)?;
    if !role.members.contains(&name) {
        return Err(Reason::NameNotAllowed);
    }
    if !capture.consistent() {
        return Err(Reason::Capture(capture_error.expect("an inconsistent capture was accepted")));
    }
    let associations = published.get(&name).map_or(&[][..], Vec::as_slice);
    if associations.is_empty() {
        return Err(Reason::NotPublished);
    }
    if associations.iter().any(|a| reference_matches(a, capture, &name)) {
        Ok(&role.reply)
    } else {
        Err(Reason::NoAssociationMatch)
    }
}

fn outcome<'m>(d: &Decision<'m>) -> Result<&'m [ReplyAttr], Reason> {
    match d {
        Decision::Accept { reply } => Ok(reply),
        Decision::Reject(r) => Err(*r),
    }
}

/// The decision's name, as the check seeds' file names carry it (`<outcome>.<what>`).
pub fn outcome_label(d: &Decision<'_>) -> &'static str {
    match d {
        Decision::Accept { .. } => "Accept",
        Decision::Reject(Reason::NoTrustMap) => "NoTrustMap",
        Decision::Reject(Reason::InvalidName) => "InvalidName",
        Decision::Reject(Reason::NoSsid) => "NoSsid",
        Decision::Reject(Reason::UnknownSsid) => "UnknownSsid",
        Decision::Reject(Reason::NameNotAllowed) => "NameNotAllowed",
        Decision::Reject(Reason::Capture(_)) => "Capture",
        Decision::Reject(Reason::NotPublished) => "NotPublished",
        Decision::Reject(Reason::NoAssociationMatch) => "NoAssociationMatch",
    }
}

/// The whole request check on a decoded request; returns the fixture map's decision label.
///
/// Without a trust map: NoTrustMap. On the empty map and on the fixture map: the decision
/// (reason, or accept with the role's reply) is the reference's, whose steps are restated
/// above; so a reject names the first failing step, and an accept means a valid name, an
/// SSID whose role allows it, a consistent capture and an association whose digest equals
/// the captured one at a position its usage allows. And `Association::matches` agrees with
/// the reference on every association of the map.
pub fn check_outcome(data: &[u8]) -> &'static str {
    let fx = fixture();
    let (user, station, capture) = decode_check(data, &fx.known);
    capture.with_presented(|cert| {
        let capture_error = cert.as_ref().err().copied();
        let req = Request { user_name: user.as_deref(), called_station_id: station.as_deref(), cert };
        assert_eq!(check_request(None, &req), Decision::Reject(Reason::NoTrustMap), "decided without a trust map");

        let empty = TrustMap::default();
        let (no_policy, none) = (Policy::default(), BTreeMap::new());
        let on_empty = check_request(Some(&empty), &req);
        assert!(!matches!(on_empty, Decision::Accept { .. }), "accepted on an empty trust map");
        let want = reference_decision(&no_policy, &none, req.user_name, req.called_station_id, &capture, capture_error);
        assert_eq!(outcome(&on_empty), want, "empty map: check and the reference disagree on {req:?}");

        if let Ok(cert) = &req.cert {
            for (n, entry) in fx.map.entries() {
                for a in &entry.associations {
                    assert_eq!(
                        a.matches(cert, n),
                        reference_matches(a, &capture, n),
                        "{n}: {a}: matches() != the reference"
                    );
                }
            }
        }
        let decision = check_request(Some(&fx.map), &req);
        let want = reference_decision(
            &fx.policy,
            &fx.published,
            req.user_name,
            req.called_station_id,
            &capture,
            capture_error,
        );
        assert_eq!(outcome(&decision), want, "check and the reference disagree on {req:?}");
        outcome_label(&decision)
    })
}

/// The check fuzz target: [`check_outcome`]'s invariants.
pub fn check(data: &[u8]) {
    check_outcome(data);
}

// ---------------------------------------------------------------------------------------
// Names

/// The rules of `name::normalize`, restated: one trailing dot, 1..=253 bytes, >=2 labels
/// of 1..=63 `[A-Za-z0-9_-]` without a hyphen at either end, not all-numeric.
fn reference_name_ok(input: &str) -> bool {
    let t = input.strip_suffix('.').unwrap_or(input);
    let labels: Vec<&str> = t.split('.').collect();
    !t.is_empty()
        && t.len() <= MAX_NAME_LEN
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && !labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// Normalisation is idempotent, case-blind, re-validates, and accepts what the rules say.
pub fn name(data: &[u8]) {
    let input = text(data);
    let result = normalize(&input);
    let mut buf = [0u8; MAX_NAME_LEN];
    assert_eq!(normalize_into(&input, &mut buf).map(str::to_owned), result, "normalize_into != normalize");
    assert_eq!(result.is_ok(), reference_name_ok(&input), "normalize({input:?}) = {result:?} breaks the rules");
    let upper = normalize(&input.to_ascii_uppercase());
    assert_eq!(upper.is_ok(), result.is_ok(), "case changes the verdict on {input:?}");
    let Ok(n) = result else {
        return;
    };
    assert_eq!(upper.as_deref(), Ok(n.as_str()));
    assert_eq!(n, input.strip_suffix('.').unwrap_or(&input).to_ascii_lowercase());
    assert!(!n.ends_with('.') && n.len() <= MAX_NAME_LEN);
    assert!(!n.bytes().any(|b| b.is_ascii_uppercase()));
    assert_eq!(normalize(&n).as_deref(), Ok(n.as_str()), "not idempotent");
    assert_eq!(normalize(&format!("{n}.")).as_deref(), Ok(n.as_str()), "trailing dot not dropped");
    assert!(dns_eq(&n, &input));
    if let Some(host) = name::authority_host(&n) {
        assert!(n.ends_with(&format!("_{host}")), "authority host {host:?} is not the tail of {n:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Configuration

/// The `rust { ... }` section reader and the option parser never panic; what they accept
/// is consistent.
pub fn config(data: &[u8]) {
    let text = text(data);
    let vars = debian_vars("/etc/freeradius/3.0");
    for instance in [None, Some("guests")] {
        if let Ok(pairs) = parse_section(&text, instance, &vars) {
            for (k, _) in &pairs {
                assert_eq!(k.trim(), k, "untrimmed key");
            }
            check_config(&pairs);
        }
    }
    // The same text as bare `key = value` pairs, to reach from_pairs directly.
    let pairs: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    check_config(&pairs);
    for line in text.lines() {
        if let Ok(d) = parse_duration(line) {
            let _ = d.as_secs_f64();
        }
    }
}

fn check_config(pairs: &[(String, String)]) {
    let Ok(c) = from_pairs("rust", pairs) else {
        return;
    };
    assert!(!c.trust_map.as_os_str().is_empty(), "accepted an empty trust_map");
    if let Some(s) = &c.sync {
        assert!(s.min_interval <= s.max_interval);
        assert!(s.concurrency >= 1);
        assert!(!s.policy.as_os_str().is_empty() && !s.ca_path.as_os_str().is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// TLSA rdata

/// What a record can be used for, by the rules restated: `(usage, selector, matching)`
/// codes of a usable record, None for an unusable one.
fn reference_tlsa_use(r: &TlsaRecord) -> Option<(u8, u8, u8)> {
    let digest_size_ok = match r.matching {
        1 => r.data.len() == 32,
        2 => r.data.len() == 64,
        _ => true,
    };
    if r.data.is_empty() || !digest_size_ok {
        return None;
    }
    let usable = match (r.usage, r.selector, r.matching) {
        (4, 0, 0) | (3, 0, 0) => one_der_certificate(&r.data),
        (3, 1, 0) => one_der_spki(&r.data),
        (3, 0..=1, 1..=2) => true,
        _ => false,
    };
    usable.then_some((r.usage, r.selector, r.matching))
}

/// Exactly one certificate in DER form: OpenSSL parses it and re-encodes it to the same
/// bytes (the TLS hook digests that encoding, so anything else could never match).
fn one_der_certificate(der: &[u8]) -> bool {
    X509::from_der(der).ok().and_then(|c| c.to_der().ok()).is_some_and(|again| again == der)
}

/// Exactly one DER SubjectPublicKeyInfo, the same way.
fn one_der_spki(der: &[u8]) -> bool {
    PKey::public_key_from_der(der).ok().and_then(|k| k.public_key_to_der().ok()).is_some_and(|again| again == der)
}

/// `usage selector matching data...`: `classify` agrees with the restated rules (usage 4
/// only as `4 0 0` holding one DER certificate; usage 3 with selector 0/1 and matching
/// 0/1/2, `3 0 0` one DER certificate, `3 1 0` one DER SubjectPublicKeyInfo, digests of 32
/// or 64 bytes; an unusable record's reason names it); a usable record yields the
/// association of its data, which for an `x 0 0` certificate (always DER) is the digest
/// `OwnedDigests::of` (the hook's) computes of it; the registry digest comes exactly from
/// a 32-byte `3 0 1`, as published.
pub fn tlsa(data: &[u8]) {
    let [usage, selector, matching, rest @ ..] = data else {
        return;
    };
    let r = TlsaRecord { usage: *usage, selector: *selector, matching: *matching, data: rest.to_vec() };
    let want = reference_tlsa_use(&r);
    let got = match classify(&r) {
        RecordUse::PkixCd => Some((4, 0, 0)),
        RecordUse::DaneEe { selector, matching } => Some((3, selector.code(), matching.code())),
        RecordUse::Unusable { reason } => {
            let what = format!("TLSA {} {} {}", r.usage, r.selector, r.matching);
            assert!(reason.starts_with(&what), "reason {reason:?} does not name the record");
            None
        }
    };
    assert_eq!(got, want, "classify disagrees with the rules on {r:?}");
    if let Some((u, s, m)) = got {
        let usage = if u == 4 { Usage::PkixCd } else { Usage::DaneEe };
        let selector = Selector::from_code(s).expect("selector");
        let matching = Matching::from_code(m).expect("matching");
        let a = Association::from_data(usage, selector, matching, &r.data, None)
            .unwrap_or_else(|e| panic!("a usable record yields no association: {e}"));
        let want = match m {
            0 => Digest::Sha256(sha256(&r.data)),
            1 => Digest::Sha256(r.data.as_slice().try_into().expect("32 bytes")),
            _ => Digest::Sha512(r.data.as_slice().try_into().expect("64 bytes")),
        };
        assert_eq!((a.usage, a.selector, a.matching, a.digest), (usage, selector, matching, want));
        if (s, m) == (0, 0) {
            let cert = X509::from_der(&r.data).expect("usable record is a certificate");
            assert_eq!(cert.to_der().expect("re-encodes"), r.data, "a usable record is DER");
            let captured = OwnedDigests::of(&cert).expect("digests");
            assert_eq!(a.digest, Digest::Sha256(captured.cert_sha256), "the hook's digest of the record's certificate");
        }
    }
    match registry_sha256(&r) {
        Some(d) => {
            assert_eq!((r.usage, r.selector, r.matching), (3, 0, 1));
            assert_eq!(d.as_slice(), r.data.as_slice());
        }
        None => assert!((r.usage, r.selector, r.matching) != (3, 0, 1) || r.data.len() != 32),
    }
}

// ---------------------------------------------------------------------------------------
// .well-known/ca/ bodies

const URL: &str = "https://device.cars.example/.well-known/ca/00.pem";

/// `n key_id[n] body...`: a returned certificate carries the key id asked for; a wrong
/// certificate's reported key id fetches that same certificate.
pub fn cafetch(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n).min(rest.len());
    let (key_id, body) = rest.split_at(n);
    match certificate_from_body(URL, body, key_id) {
        Ok(cert) => assert_ok_cert(&cert, body, key_id),
        Err(FetchError::WrongCertificate { url, wanted, found }) => {
            assert_eq!(url, URL);
            assert_eq!(wanted, dashed_hex(key_id));
            if let Some(found) = found {
                let other: Vec<u8> = found
                    .split('-')
                    .filter(|s| !s.is_empty())
                    .map(|h| u8::from_str_radix(h, 16).expect("dashed hex"))
                    .collect();
                assert_ne!(other, key_id);
                match certificate_from_body(URL, body, &other) {
                    Ok(cert) => assert_ok_cert(&cert, body, &other),
                    Err(e) => panic!("the reported key id {found} does not fetch the same body: {e}"),
                }
            }
        }
        Err(FetchError::Parse { url, message }) => {
            assert_eq!(url, URL);
            assert!(!message.is_empty());
        }
        Err(e) => panic!("unexpected error kind from a body: {e}"),
    }
}

fn assert_ok_cert(cert: &X509, body: &[u8], key_id: &[u8]) {
    assert_eq!(cert.subject_key_id().map(|k| k.as_slice().to_vec()).as_deref(), Some(key_id));
    if !body.windows(11).any(|w| w == b"-----BEGIN ") {
        assert_one_certificate(cert, body);
    }
}

/// `der` holds one certificate and nothing after it. Not byte-equal to the re-encoding:
/// OpenSSL accepts some non-canonical BER (e.g. set padding bits in the signature BIT
/// STRING, fuzz/regressions/tlsa/ and cafetch/) and re-encodes it canonically at the same
/// length; the chain and digest checks after intake see the canonical form.
fn assert_one_certificate(cert: &X509, der: &[u8]) {
    let again = cert.to_der().expect("re-encodes");
    assert_eq!(again.len(), der.len(), "bytes after the certificate were accepted");
    let twice = X509::from_der(&again).expect("re-encoding parses").to_der().expect("re-encodes");
    assert_eq!(twice, again, "re-encoding is not stable");
}
