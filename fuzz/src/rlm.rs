//! Invariants over the module's parsers (rlm_rust), one `pub fn(&[u8])` per fuzz target.
//!
//! Each function panics when an invariant fails; a panic is what libFuzzer reports as a
//! crash and what `tests/fuzz_regressions.rs` turns into a failed test. References used
//! for differential checks are independent of the code under test: OpenSSL's
//! `ASN1_TIME_set_string_X509` for times, the `hex` crate for hex text.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use openssl::asn1::Asn1Time;
use openssl::x509::X509;
use rlm_rust::cafetch::{certificate_from_body, dashed_hex, FetchError};
use rlm_rust::check::{check as check_request, ssid_of, Decision, Reason, Request};
use rlm_rust::config::{debian_vars, from_pairs, parse_duration, parse_section};
use rlm_rust::dane::{classify, registry_sha256, RecordUse, TlsaRecord};
use rlm_rust::name::{self, normalize, normalize_into, MAX_NAME_LEN};
use rlm_rust::pki::{dns_eq, strip_leading_zeros, Pin};
use rlm_rust::policy::{parse_json, parse_lines, Policy, ReplyAttr, Role};
use rlm_rust::presented::{hex_eq, key_id_eq, parse_asn1_time, PresentedCert};
use rlm_rust::trustmap::{NameEntry, TrustMap};

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
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

/// A snapshot that loads re-serialises and loads to the same pins, policy and CAs, and its
/// own pins match attribute strings rendered from them the way FreeRADIUS renders them.
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
    assert_eq!(back.pin_count(), map.pin_count());
    let allowed = map.policy().names();
    for (n, entry) in map.entries() {
        assert!(!entry.pins.is_empty(), "{n}: entry without pins kept");
        assert!(allowed.contains(n.as_str()), "{n}: pins kept for a name no SSID allows");
        assert_eq!(back.pins(n), entry.pins.as_slice(), "{n}: pins changed in the round trip");
        for pin in &entry.pins {
            assert_rendered_pin_matches(pin);
        }
    }
}

/// Renders `pin` as FreeRADIUS would print the certificate (hex serials, colon AKI, raw
/// ASN.1 times) and requires `PresentedCert::matches`; skips times ASN.1 cannot carry.
fn assert_rendered_pin_matches(pin: &Pin) {
    let (Some(nb), Some(na), Some(cnb), Some(cna)) = (
        asn1_text(pin.not_before),
        asn1_text(pin.not_after),
        asn1_text(pin.ca.not_before),
        asn1_text(pin.ca.not_after),
    ) else {
        return;
    };
    let aki = (!pin.authority_key_id.is_empty()).then(|| colon_hex(&pin.authority_key_id));
    let (serial, ca_serial) = (hex::encode(&pin.serial), hex::encode_upper(&pin.ca.serial));
    let cert = PresentedCert {
        serial: Some(&serial),
        subject: Some(&pin.subject),
        issuer: Some(&pin.issuer),
        valid_since: Some(&nb),
        expiration: Some(&na),
        authority_key_id: aki.as_deref(),
        san_dns: &[],
        ca_serial: Some(&ca_serial),
        ca_subject: Some(&pin.ca.subject),
        ca_issuer: Some(&pin.ca.issuer),
        ca_valid_since: Some(&cnb),
        ca_expiration: Some(&cna),
    };
    assert!(cert.matches(pin), "a pin does not match its own rendering {cert:?}");
    assert!(reference_matches(&cert, pin), "reference disagrees on the rendering of a pin");
}

fn colon_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect::<Vec<_>>().join(":")
}

/// Unix seconds -> UTCTime (1950..=2049) or GeneralizedTime (0000..=9999), like OpenSSL
/// writes a certificate's validity. Civil-from-days is computed here independently of
/// the parser's days-from-civil.
fn asn1_text(t: i64) -> Option<String> {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    match y {
        1950..=2049 => Some(format!("{:02}{m:02}{d:02}{hh:02}{mm:02}{ss:02}Z", y % 100)),
        0..=9999 => Some(format!("{y:04}{m:02}{d:02}{hh:02}{mm:02}{ss:02}Z")),
        _ => None,
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01, by walking
/// 400-year cycles, years and months (slow, obvious, and not the code under test).
fn civil_from_days(mut days: i64) -> (i64, i64, i64) {
    let mut year = 1970 + 400 * days.div_euclid(146_097);
    days = days.rem_euclid(146_097);
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let months = [31, if leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for len in months {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    (year, month, days + 1)
}

// ---------------------------------------------------------------------------------------
// References for the attribute parsers

/// OpenSSL's reading of an RFC 5280 time string, as Unix seconds.
pub fn reference_asn1_time(text: &str) -> Option<i64> {
    // openssl 0.10's from_str_x509 unwraps CString::new: it panics on an interior NUL
    // (fuzz/regressions/presented/). No valid time has one.
    if text.contains('\0') {
        return None;
    }
    let t = Asn1Time::from_str_x509(text).ok()?;
    let diff = Asn1Time::from_unix(0).ok()?.diff(&t).ok()?;
    Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

/// Strict hex (optional ':' separators) with the `hex` crate.
fn reference_hex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text.replace(':', "")).ok()
}

/// The key id FreeRADIUS' AKI text carries: first non-blank line, `keyid:` dropped.
fn reference_key_id(text: &str) -> Option<Vec<u8>> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    reference_hex(first.strip_prefix("keyid:").unwrap_or(first))
}

/// `PresentedCert::matches` written out with the references.
fn reference_matches(c: &PresentedCert<'_>, pin: &Pin) -> bool {
    let serial_eq = |text: Option<&str>, want: &[u8]| {
        text.and_then(reference_hex).is_some_and(|v| strip_leading_zeros(&v) == strip_leading_zeros(want))
    };
    let time_eq = |text: Option<&str>, want: i64| text.and_then(reference_asn1_time) == Some(want);
    let aki_ok = match c.authority_key_id {
        None => pin.authority_key_id.is_empty(),
        Some(t) if pin.authority_key_id.is_empty() => {
            let first = t.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
            first.strip_prefix("keyid:").unwrap_or(first).is_empty()
        }
        Some(t) => reference_key_id(t).as_deref() == Some(pin.authority_key_id.as_slice()),
    };
    aki_ok
        && c.subject == Some(pin.subject.as_str())
        && c.issuer == Some(pin.issuer.as_str())
        && serial_eq(c.serial, &pin.serial)
        && time_eq(c.valid_since, pin.not_before)
        && time_eq(c.expiration, pin.not_after)
        && c.ca_subject == Some(pin.ca.subject.as_str())
        && c.ca_issuer == Some(pin.ca.issuer.as_str())
        && serial_eq(c.ca_serial, &pin.ca.serial)
        && time_eq(c.ca_valid_since, pin.ca.not_before)
        && time_eq(c.ca_expiration, pin.ca.not_after)
}

/// Hex pairs decoded up to the first bad digit (what a lenient parser would take).
fn lenient_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    digits
        .chunks_exact(2)
        .map_while(|p| std::str::from_utf8(p).ok().and_then(|s| u8::from_str_radix(s, 16).ok()))
        .collect()
}

/// Attribute-to-pin parsing: hex serials, key ids and ASN.1 times against references.
pub fn presented(data: &[u8]) {
    // Encodings of arbitrary bytes must compare equal to them.
    let b = data;
    assert!(hex_eq(&hex::encode(b), b), "hex_eq(hex(b), b)");
    assert!(hex_eq(&hex::encode_upper(b), b), "hex_eq(HEX(b), b)");
    assert!(hex_eq(&colon_hex(b), b), "hex_eq(colon hex(b), b)");
    assert!(hex_eq(&format!("00{}", hex::encode(b)), b), "a leading zero byte must not matter");
    assert!(!hex_eq(&format!("{}0", hex::encode(b)), b), "an odd digit count must never match");
    if !strip_leading_zeros(b).is_empty() {
        assert!(!hex_eq(&format!("{}00", hex::encode(b)), b), "a trailing zero byte must matter");
        assert!(!hex_eq("", b));
    }
    if !b.is_empty() {
        let c = colon_hex(b);
        assert!(key_id_eq(&c, b), "key_id_eq(colon hex(b), b)");
        assert!(key_id_eq(&format!("keyid:{c}\nDirName:/CN=Root\nserial:01\n"), b), "old OpenSSL AKI rendering");
        assert!(!key_id_eq(&format!("00:{c}"), b), "key ids keep leading zeros");
        assert!(!key_id_eq("", b));
    }

    let t = text(data);
    // Hex text against the hex crate.
    match reference_hex(&t) {
        Some(v) => {
            assert!(hex_eq(&t, &v), "hex_eq({t:?}, {v:02x?}) is false");
            assert!(hex_eq(&t, strip_leading_zeros(&v)));
            let mut longer = v.clone();
            longer.push(1);
            assert!(!hex_eq(&t, &longer), "hex_eq({t:?}) matches a longer value");
            if !strip_leading_zeros(&v).is_empty() {
                assert!(!hex_eq(&t, &[]), "hex_eq({t:?}) matches nothing");
            }
        }
        None => {
            let lenient = lenient_hex(&t);
            assert!(!hex_eq(&t, &lenient), "invalid hex {t:?} matched its valid prefix");
            assert!(!hex_eq(&t, &[]), "invalid hex {t:?} matched nothing");
        }
    }
    // AKI text against the reference reading.
    match reference_key_id(&t) {
        Some(v) if !v.is_empty() => {
            assert!(key_id_eq(&t, &v), "key_id_eq({t:?}, {v:02x?}) is false");
            assert!(!key_id_eq(&t, &v[1..]), "key_id_eq({t:?}) matched a shorter id");
        }
        Some(_) => {}
        None => {
            let lenient = lenient_hex(&t);
            if !lenient.is_empty() {
                assert!(!key_id_eq(&t, &lenient), "invalid key id {t:?} matched its valid prefix");
            }
        }
    }
    // Times against OpenSSL, both ways.
    let ours = parse_asn1_time(&t);
    let reference = reference_asn1_time(&t);
    assert_eq!(ours, reference, "parse_asn1_time({t:?}) disagrees with OpenSSL");
    // And every instant in 0000..=9999 renders to a text that parses back to it.
    if data.len() >= 8 {
        let raw = i64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        let instant = raw.rem_euclid(253_402_300_800 + 62_167_219_200) - 62_167_219_200;
        let rendered = asn1_text(instant).expect("years 0000..=9999 render");
        assert_eq!(parse_asn1_time(&rendered), Some(instant), "{rendered} does not parse back to {instant}");
    }
}

// ---------------------------------------------------------------------------------------
// Whole request check

/// FreeRADIUS attribute text as in `tests/fixtures/freeradius-attrs/*/attributes.txt`:
/// `Attr = "value"` lines with `\\ \" \n \r \t \xNN` escapes, `#` comments.
pub fn parse_attributes(data: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in data.split(|b| *b == b'\n') {
        if line.first() == Some(&b'#') {
            continue;
        }
        let Some(eq) = line.windows(3).position(|w| w == b" = ") else {
            continue;
        };
        let (attr, raw) = (&line[..eq], &line[eq + 3..]);
        let raw = raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")).unwrap_or(raw);
        let mut value = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let c = raw[i];
            i += 1;
            if c != b'\\' || i == raw.len() {
                value.push(c);
                continue;
            }
            let e = raw[i];
            i += 1;
            match e {
                b'n' => value.push(b'\n'),
                b'r' => value.push(b'\r'),
                b't' => value.push(b'\t'),
                b'x' => match raw.get(i..i + 2).and_then(|h| hex::decode(h).ok()) {
                    Some(h) => {
                        value.extend_from_slice(&h);
                        i += 2;
                    }
                    None => value.extend_from_slice(b"\\x"),
                },
                other => value.push(other),
            }
        }
        out.push((text(attr).trim().to_owned(), text(&value)));
    }
    out
}

/// The fixtures' captured authentications: (directory, attributes.txt, chain.pem).
pub const FIXTURES: [(&str, &[u8], &[u8]); 5] = [
    (
        "car54-cars",
        include_bytes!("../../tests/fixtures/freeradius-attrs/car54-cars/attributes.txt"),
        include_bytes!("../../tests/fixtures/freeradius-attrs/car54-cars/chain.pem"),
    ),
    (
        "car54-meters",
        include_bytes!("../../tests/fixtures/freeradius-attrs/car54-meters/attributes.txt"),
        include_bytes!("../../tests/fixtures/freeradius-attrs/car54-meters/chain.pem"),
    ),
    (
        "car55-akiissuer",
        include_bytes!("../../tests/fixtures/freeradius-attrs/car55-akiissuer/attributes.txt"),
        include_bytes!("../../tests/fixtures/freeradius-attrs/car55-akiissuer/chain.pem"),
    ),
    (
        "car56-multi",
        include_bytes!("../../tests/fixtures/freeradius-attrs/car56-multi/attributes.txt"),
        include_bytes!("../../tests/fixtures/freeradius-attrs/car56-multi/chain.pem"),
    ),
    (
        "meter7-utf8",
        include_bytes!("../../tests/fixtures/freeradius-attrs/meter7-utf8/attributes.txt"),
        include_bytes!("../../tests/fixtures/freeradius-attrs/meter7-utf8/chain.pem"),
    ),
];

/// A trust map built like `rlm-rust pin` builds one from the fixtures: every captured
/// name allowed on its SSID, pinned to its own certificate, except `car54-meters` (the
/// Meters org's certificate for the Cars org's name: the cross-domain case must fail).
/// Loaded through its own JSON, as radiusd loads it.
pub fn fixture_trust_map() -> &'static TrustMap {
    static MAP: OnceLock<TrustMap> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut policy = Policy::default();
        let mut names: BTreeMap<String, NameEntry> = BTreeMap::new();
        for (dir, attrs, chain) in FIXTURES {
            let attrs = parse_attributes(attrs);
            let get = |a: &str| attrs.iter().find(|(k, _)| k == a).map(|(_, v)| v.as_str()).expect(a);
            let name = normalize(get("User-Name")).expect("fixture name");
            let ssid = ssid_of(get("Called-Station-Id")).expect("fixture SSID").to_owned();
            let role = policy.ssids.entry(ssid).or_insert_with(|| Role { members: BTreeSet::new(), reply: vec![] });
            role.members.insert(name.clone());
            if role.reply.is_empty() {
                role.reply.push(ReplyAttr { attribute: "Tunnel-Private-Group-Id".into(), value: dir.into() });
            }
            if dir == "car54-meters" {
                continue;
            }
            let certs = X509::stack_from_pem(chain).expect("fixture chain");
            let pin = Pin::new(&certs[0], &certs[1]).expect("fixture pin");
            names.entry(name).or_default().pins.push(pin);
        }
        let json = TrustMap::new(policy, names, 1, 0).to_json();
        TrustMap::from_json(&json, "fixtures.json").expect("fixture trust map loads")
    })
}

/// The whole request check on arbitrary attributes: never accepts without a trust map,
/// every reject names the first failing step, and an accept is backed by a pin that the
/// reference comparison also matches.
pub fn check(data: &[u8]) {
    let attrs = parse_attributes(data);
    let one = |a: &str| attrs.iter().rev().find(|(k, _)| k == a).map(|(_, v)| v.as_str());
    let sans: Vec<&str> =
        attrs.iter().filter(|(k, _)| k == "TLS-Client-Cert-Subject-Alt-Name-Dns").map(|(_, v)| v.as_str()).collect();
    let cert = PresentedCert::from_attributes(one, &sans);
    let req = Request { user_name: one("User-Name"), called_station_id: one("Called-Station-Id"), cert };

    assert_eq!(check_request(None, &req), Decision::Reject(Reason::NoTrustMap), "decided without a trust map");
    let empty = TrustMap::default();
    assert!(!matches!(check_request(Some(&empty), &req), Decision::Accept { .. }), "accepted on an empty trust map");

    let map = fixture_trust_map();
    // Whatever the decision, matches() and the reference agree on every pin in the map.
    for (_, entry) in map.entries() {
        for pin in &entry.pins {
            assert_eq!(cert.matches(pin), reference_matches(&cert, pin), "matches() disagrees with the reference");
        }
    }
    let name = req.user_name.and_then(|u| normalize(u).ok());
    let ssid = req.called_station_id.and_then(ssid_of);
    match check_request(Some(map), &req) {
        Decision::Reject(Reason::NoTrustMap) => panic!("NoTrustMap with a trust map"),
        Decision::Reject(Reason::InvalidName) => assert!(name.is_none(), "valid name {name:?} called invalid"),
        Decision::Reject(Reason::NoSsid) => assert!(name.is_some() && ssid.is_none()),
        Decision::Reject(Reason::UnknownSsid) => assert!(ssid.is_some_and(|s| map.role(s).is_none())),
        Decision::Reject(Reason::NameNotAllowed) => {
            let (n, s) = (name.expect("name"), ssid.expect("ssid"));
            assert!(!map.role(s).expect("role").allows(&n));
        }
        Decision::Reject(Reason::MissingCertAttributes(a)) => {
            assert!(one(a).is_none_or(str::is_empty), "{a} is present but reported missing")
        }
        Decision::Reject(Reason::SanMismatch) => {
            let n = name.expect("name");
            assert!(!sans.iter().any(|s| dns_eq(s, &n)));
        }
        Decision::Reject(Reason::NotPublished) => assert!(map.pins(&name.expect("name")).is_empty()),
        Decision::Reject(Reason::NoPinMatch) => {
            let n = name.expect("name");
            assert!(!map.pins(&n).iter().any(|p| reference_matches(&cert, p)), "a pin matches but NoPinMatch");
        }
        Decision::Accept { reply } => {
            let n = name.expect("accepted an invalid name");
            let s = ssid.expect("accepted without an SSID");
            let role = map.role(s).expect("accepted on an unknown SSID");
            assert!(role.allows(&n), "accepted {n} on {s}, which does not allow it");
            assert_eq!(reply, role.reply.as_slice());
            assert!(cert.first_missing().is_none());
            assert!(sans.iter().any(|san| dns_eq(san, &n)), "accepted {n} without it in the SAN");
            assert!(map.pins(&n).iter().any(|p| reference_matches(&cert, p)), "accepted {n}: no pin really matches");
        }
    }
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

/// `usage selector matching data...`: a usable record is exactly one DER certificate of a
/// full-certificate type; the registry digest only comes from a 32-byte `3 0 1`.
pub fn tlsa(data: &[u8]) {
    let [usage, selector, matching, rest @ ..] = data else {
        return;
    };
    let r = TlsaRecord { usage: *usage, selector: *selector, matching: *matching, data: rest.to_vec() };
    match classify(&r) {
        RecordUse::DaneEe | RecordUse::PkixCd => {
            assert!(matches!(r.usage, 3 | 4) && r.selector == 0 && r.matching == 0, "usable {r:?}");
            let cert = X509::from_der(&r.data).expect("usable record is a certificate");
            assert_one_certificate(&cert, &r.data);
            assert_eq!(classify(&r) == RecordUse::DaneEe, r.usage == 3);
        }
        RecordUse::Unusable { reason } => {
            let what = format!("TLSA {} {} {}", r.usage, r.selector, r.matching);
            assert!(reason.starts_with(&what), "reason {reason:?} does not name the record");
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
