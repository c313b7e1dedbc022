//! Invariants over the module's parsers (rlm_rust), one `pub fn(&[u8])` per fuzz target.
//!
//! Each function panics when an invariant fails; a panic is what libFuzzer reports as a
//! crash and what `tests/fuzz_regressions.rs` turns into a failed test. References used
//! for differential checks are written here, independently of the code under test: the
//! capture rules of the TLS hook's contract, the request check's steps, certificate
//! associations compared byte for byte with the captured digests, the TLSA rules, and
//! OpenSSL (DER certificates and keys, SHA-2) for what a record holds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private};
use openssl::sha::{sha256, sha512};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use rlm_rust::config::{debian_vars, from_pairs, parse_duration, parse_section};
use rlm_rust::model::association::{Association, Digest, Matching, Selector, Usage};
use rlm_rust::model::digests::{CertDigests, OwnedDigests};
use rlm_rust::model::name::{self, normalize, normalize_into, MAX_NAME_LEN};
use rlm_rust::model::pki::dashed_hex;
use rlm_rust::model::pki::dns_eq;
use rlm_rust::model::policy::{parse_json, parse_lines, Diagnostic, Entry, Policy, ReplyAttr, Verdict};
use rlm_rust::model::trustmap::{NameEntry, TrustMap};
use rlm_rust::request::check::{check as check_request, ssid_of, Decision, Reason, Request};
use rlm_rust::request::presented::{
    CaptureError, CapturedChain, PresentedCert, RawCapture, Source, MAX_CHAIN, MAX_SAN_DNS,
};
use rlm_rust::sync::cafetch::{certificate_from_body, FetchError};
use rlm_rust::sync::dns::tlsa::{classify, registry_sha256, RecordUse, TlsaRecord};
use rlm_rust::sync::policyfeed::PolicySource;
use serde_json::{json, Value};

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

/// A policy as the references see it: SSID -> entry -> the reply attributes the entry
/// gives (in attribute order, as a JSON object holds them).
pub type Model = BTreeMap<String, BTreeMap<Entry, Vec<ReplyAttr>>>;

/// `name::normalize` restated ([`reference_name_ok`]; lower case, no trailing dot).
fn ref_normalize(s: &str) -> Option<String> {
    reference_name_ok(s).then(|| s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase())
}

/// A policy entry, restated: trimmed, `*.` and a valid domain, or a valid name with no
/// `*` anywhere; both normalised.
fn ref_entry(text: &str) -> Option<Entry> {
    let t = text.trim();
    match t.strip_prefix("*.") {
        Some(domain) => ref_normalize(domain).map(Entry::Domain),
        None if t.contains('*') => None,
        None => ref_normalize(t).map(Entry::Name),
    }
}

/// How both formats write an entry: the name, or `*.` and the domain.
fn entry_text(e: &Entry) -> String {
    match e {
        Entry::Name(n) => n.clone(),
        Entry::Domain(d) => format!("*.{d}"),
    }
}

/// The domain whose entry admits `name`: `name` without its first label (so a domain
/// entry admits names exactly one label below it, and nothing with more after it).
fn ref_parent(name: &str) -> Option<&str> {
    name.split_once('.').map(|(_, rest)| rest)
}

/// SSIDs, restated: 1..=32 bytes, no control character, no `|`.
fn ref_ssid_ok(ssid: &str) -> bool {
    (1..=32).contains(&ssid.len()) && !ssid.chars().any(|c| c.is_control() || c == '|')
}

/// What a policy says of a name on an SSID.
#[derive(Debug, PartialEq, Eq)]
enum RefVerdict<'m> {
    UnknownSsid,
    NotAllowed,
    Allowed { reply: &'m [ReplyAttr], exact: bool },
}

/// The verdict restated on a model: the name's own entry on the SSID decides, else the
/// entry of its parent domain, else the name is not allowed.
fn ref_verdict<'m>(model: &'m Model, ssid: &str, name: &str) -> RefVerdict<'m> {
    let Some(rules) = model.get(ssid) else {
        return RefVerdict::UnknownSsid;
    };
    if let Some(reply) = rules.get(&Entry::Name(name.to_owned())) {
        return RefVerdict::Allowed { reply, exact: true };
    }
    match ref_parent(name).and_then(|d| rules.get(&Entry::Domain(d.to_owned()))) {
        Some(reply) => RefVerdict::Allowed { reply, exact: false },
        None => RefVerdict::NotAllowed,
    }
}

fn verdict_of(v: Verdict<'_>) -> RefVerdict<'_> {
    match v {
        Verdict::UnknownSsid => RefVerdict::UnknownSsid,
        Verdict::NotAllowed => RefVerdict::NotAllowed,
        Verdict::Allowed { reply, exact } => RefVerdict::Allowed { reply, exact },
    }
}

/// The exact names and the domains of a model's entries, over all SSIDs.
fn model_names(model: &Model) -> (BTreeSet<&str>, BTreeSet<&str>) {
    let (mut names, mut domains) = (BTreeSet::new(), BTreeSet::new());
    for e in model.values().flat_map(BTreeMap::keys) {
        match e {
            Entry::Name(n) => names.insert(n.as_str()),
            Entry::Domain(d) => domains.insert(d.as_str()),
        };
    }
    (names, domains)
}

/// Whether `name` is directly under a domain of a domain entry.
fn ref_covered(domains: &BTreeSet<&str>, name: &str) -> bool {
    ref_parent(name).is_some_and(|d| domains.contains(d))
}

/// Whether some entry lets `name` in: its own, or its parent domain's.
fn ref_allowed(names: &BTreeSet<&str>, domains: &BTreeSet<&str>, name: &str) -> bool {
    names.contains(name) || ref_covered(domains, name)
}

/// A name directly under `domain` that is no exact name.
fn probe_under(domain: &str, names: &BTreeSet<&str>) -> String {
    (0u32..).map(|i| format!("zz-probe{i}.{domain}")).find(|p| !names.contains(p.as_str())).expect("a free name")
}

/// Reads a policy back through its queries alone: per SSID, the exact names (`verdict`
/// says exact) and the domains (`verdict` of a name directly under each domain that is no
/// exact name), checked against `lookup` and the SSID's counts so that no entry goes unseen.
pub fn model_of(p: &Policy) -> Model {
    let (names, domains) = (p.names(), p.domains());
    let mut model = Model::new();
    for (ssid, rules) in p.ssids() {
        assert_eq!(p.ssid(ssid), Some(rules), "ssid({ssid:?}) is not what ssids() gives");
        let mut entries = BTreeMap::new();
        for &n in &names {
            if let Verdict::Allowed { reply, exact: true } = p.verdict(ssid, n) {
                assert_eq!(rules.lookup(n), Some(reply), "{ssid:?}: lookup({n}) is not the verdict's reply");
                entries.insert(Entry::Name(n.to_owned()), reply.to_vec());
            }
        }
        let named = entries.len();
        for &d in &domains {
            let probe = probe_under(d, &names);
            match p.verdict(ssid, &probe) {
                Verdict::Allowed { reply, exact: false } => {
                    assert_eq!(
                        rules.lookup(&probe),
                        Some(reply),
                        "{ssid:?}: lookup({probe}) is not the verdict's reply"
                    );
                    entries.insert(Entry::Domain(d.to_owned()), reply.to_vec());
                }
                Verdict::NotAllowed => assert_eq!(rules.lookup(&probe), None, "{ssid:?}: lookup({probe})"),
                v => panic!("{ssid:?}: {probe}, no exact name, gets {v:?}"),
            }
        }
        assert_eq!(rules.name_count(), named, "{ssid:?}: name_count()");
        assert_eq!(rules.domain_count(), entries.len() - named, "{ssid:?}: domain_count()");
        assert!(!entries.is_empty(), "SSID {ssid:?} is listed without an entry");
        assert!(model.insert(ssid.to_owned(), entries).is_none(), "ssids() gives {ssid:?} twice");
    }
    model
}

/// Everything a policy answers agrees with its model: SSIDs valid, entries normalised and
/// written (`Display`) and parsed back (`Entry::parse`) as themselves; `names`, `domains`;
/// and `covers`, `interned` and `verdict` on every SSID (and an unknown one) for each exact
/// name, each domain, a name directly under it, one two labels under it, and one under the
/// domain followed by another domain (`x.<domain>.attacker.example`).
fn assert_policy_semantics(p: &Policy, model: &Model) {
    let (names, domains) = model_names(model);
    assert_eq!(p.names(), names, "names()");
    assert_eq!(p.domains(), domains, "domains()");
    for (ssid, entries) in model {
        assert!(ref_ssid_ok(ssid), "SSID {ssid:?} breaks the SSID rules");
        for e in entries.keys() {
            let text = entry_text(e);
            assert_eq!(ref_entry(&text).as_ref(), Some(e), "{ssid:?}: {e:?} is not normalised");
            assert_eq!(e.to_string(), text, "Display of {e:?}");
            assert_eq!(Entry::parse(&text).as_ref(), Ok(e), "Entry::parse({text:?})");
        }
    }
    let mut probes: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    for &d in &domains {
        let probe = probe_under(d, &names);
        probes.insert(format!("a.{probe}"));
        probes.insert(format!("{probe}.attacker.example"));
        probes.insert(d.to_owned());
        probes.insert(probe);
    }
    for n in &probes {
        assert_eq!(p.covers(n), ref_covered(&domains, n), "covers({n})");
        assert_eq!(p.interned(n).as_deref(), names.contains(n.as_str()).then_some(n.as_str()), "interned({n})");
        for ssid in model.keys().map(String::as_str).chain([""]) {
            assert_eq!(verdict_of(p.verdict(ssid, n)), ref_verdict(model, ssid, n), "verdict({ssid:?}, {n})");
        }
    }
}

/// A diagnostic a reference expects at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// A malformed line, role or member.
    Bad,
    /// An entry listed again with the same reply attributes.
    Duplicate,
    /// An entry listed again with other reply attributes; `first` is where it applies from.
    Conflict { first: usize },
}

/// A policy source as a reference loads it.
#[derive(Default)]
struct RefLoad {
    model: Model,
    first_line: BTreeMap<(String, Entry), usize>,
    diagnostics: Vec<(usize, Expect)>,
}

impl RefLoad {
    /// The first listing of an entry on an SSID applies; a later one is a duplicate (same
    /// reply attributes) or a conflict (others), reported at its own line.
    fn add(&mut self, ssid: &str, entry: Entry, reply: &[ReplyAttr], line: usize) {
        let rules = self.model.entry(ssid.to_owned()).or_default();
        match rules.get(&entry) {
            None => {
                rules.insert(entry.clone(), reply.to_vec());
                self.first_line.insert((ssid.to_owned(), entry), line);
            }
            Some(r) if r.as_slice() == reply => self.diagnostics.push((line, Expect::Duplicate)),
            Some(_) => {
                let first = self.first_line[&(ssid.to_owned(), entry)];
                self.diagnostics.push((line, Expect::Conflict { first }));
            }
        }
    }

    fn bad(&mut self, line: usize) {
        self.diagnostics.push((line, Expect::Bad));
    }
}

/// `parse_lines` restated: each line trimmed, blank and `#` lines skipped, the others
/// `SSID|entry` with one `|`, a valid SSID and a valid entry, or reported.
fn reference_lines(text: &str) -> RefLoad {
    let mut r = RefLoad::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .split_once('|')
            .filter(|(ssid, entry)| !entry.contains('|') && ref_ssid_ok(ssid))
            .and_then(|(ssid, entry)| Some((ssid, ref_entry(entry)?)));
        match parsed {
            Some((ssid, entry)) => r.add(ssid, entry, &[], i + 1),
            None => r.bad(i + 1),
        }
    }
    r
}

/// The numbers that follow "line " in a text.
fn lines_named(text: &str) -> Vec<usize> {
    text.match_indices("line ")
        .filter_map(|(i, m)| {
            let digits: String = text[i + m.len()..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Each diagnostic names `file`, a line of it (1..=`lines`) and a reason.
fn assert_diagnostics_in(got: &[Diagnostic], file: &str, lines: usize) {
    for d in got {
        assert_eq!(d.file, file, "{d}");
        assert!((1..=lines).contains(&d.line), "{d}: line {} of a {lines}-line file", d.line);
        assert!(!d.reason.is_empty(), "{d}: no reason");
    }
}

/// The diagnostics are in `file`, on lines 1..=`lines`, and are the expected ones: the
/// same lines in the same order, a duplicate saying so, a conflict naming the line of the
/// entry that applies.
fn assert_diagnostics(got: &[Diagnostic], want: &[(usize, Expect)], file: &str, lines: usize) {
    assert_diagnostics_in(got, file, lines);
    let got_lines: Vec<usize> = got.iter().map(|d| d.line).collect();
    let want_lines: Vec<usize> = want.iter().map(|(l, _)| *l).collect();
    assert_eq!(got_lines, want_lines, "diagnostic lines (want {want:?}): {got:#?}");
    for (d, (_, kind)) in got.iter().zip(want) {
        match kind {
            Expect::Bad => {}
            Expect::Duplicate => assert!(d.reason.contains("duplicate"), "{d}: not reported as a duplicate"),
            Expect::Conflict { first } => {
                assert!(lines_named(&d.reason).contains(first), "{d}: does not name line {first}, where it applies")
            }
        }
    }
}

/// `roles[0]` and its first member of a serialised policy.
fn first_member(doc: &Value) -> Option<(String, String, usize)> {
    let role = doc["roles"].get(0)?;
    let members = role["members"].as_array()?;
    Some((role["name"].as_str()?.to_owned(), members.first()?.as_str()?.to_owned(), members.len()))
}

/// A policy serialises to the JSON policy format holding exactly its model (see
/// [`assert_serialised_form`]); that text loads back to the same policy through
/// `parse_json` (no diagnostics) and the strict reader (`Deserialize`). The strict reader
/// refuses the text with a member not in normal form, a role listed twice or an entry
/// given other reply attributes, which `parse_json` loads to the same policy with the
/// expected diagnostics. A policy without reply attributes round-trips through the line
/// format too.
fn assert_round_trips(p: &Policy, model: &Model) {
    let json = serde_json::to_string(p).expect("a policy serialises");
    let doc: Value = serde_json::from_str(&json).expect("the serialised policy is JSON");
    assert_serialised_form(&doc, model, &json);
    let back = parse_json(&json, "rt.json").unwrap_or_else(|e| panic!("the serialised policy is refused: {e}"));
    assert!(back.diagnostics.is_empty(), "the serialised policy has diagnostics: {:?}", back.diagnostics);
    assert_eq!(&back.policy, p, "JSON round trip changed the policy: {json}");
    let strict: Policy =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("the strict reader refuses {json}: {e}"));
    assert_eq!(&strict, p, "strict round trip changed the policy: {json}");

    if let Some((ssid, member, count)) = first_member(&doc) {
        let edit = |f: &dyn Fn(&mut Vec<Value>)| {
            let mut d = doc.clone();
            f(d["roles"].as_array_mut().expect("roles"));
            d.to_string()
        };
        let dotted = edit(&|roles| roles[0]["members"][0] = Value::from(format!("{member}.")));
        let repeated = edit(&|roles| roles.push(roles[0].clone()));
        let conflicting = edit(&|roles| {
            let mut reply = roles[0].get("reply").cloned().unwrap_or_else(|| json!({}));
            let key = (0u32..).map(|i| format!("Fuzz-{i}")).find(|k| reply.get(k).is_none()).expect("a free key");
            reply[key] = Value::from("1");
            roles.push(json!({ "name": ssid, "members": [member], "reply": reply }));
        });
        for (text, what, want) in [
            (dotted, "a member not in normal form", vec![]),
            (repeated, "a role listed twice", vec![(1, Expect::Duplicate); count]),
            (conflicting, "an entry with other reply attributes", vec![(1, Expect::Conflict { first: 1 })]),
        ] {
            assert!(serde_json::from_str::<Policy>(&text).is_err(), "the strict reader loads {what}: {text}");
            let loaded = parse_json(&text, "edit.json").unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(&loaded.policy, p, "{what} changed the policy: {text}");
            assert_diagnostics(&loaded.diagnostics, &want, "edit.json", 1);
        }
    }

    let line_safe = |ssid: &str| ssid.trim_start() == ssid && !ssid.starts_with('#');
    if model.iter().all(|(ssid, entries)| line_safe(ssid) && entries.values().all(Vec::is_empty)) {
        let text: String = model
            .iter()
            .flat_map(|(ssid, entries)| entries.keys().map(move |e| format!("{ssid}|{}\n", entry_text(e))))
            .collect();
        let back = parse_lines(&text, "rt.txt");
        assert!(back.diagnostics.is_empty(), "re-written lines have diagnostics: {:?}", back.diagnostics);
        assert_eq!(&back.policy, p, "line round trip changed the policy: {text}");
    }
}

/// The serialised form, restated: `{"roles": [...]}`; each role `name` (the SSID),
/// `members` (non-empty: the exact names sorted, then the `*.domains` sorted, all in normal
/// form) and `reply` (left out when empty); one role per SSID and reply set, SSIDs in
/// order; together exactly the model's entries.
fn assert_serialised_form(doc: &Value, model: &Model, json: &str) {
    let top = doc.as_object().unwrap_or_else(|| panic!("not an object: {json}"));
    assert_eq!(top.keys().map(String::as_str).collect::<Vec<_>>(), ["roles"], "{json}");
    let roles = top["roles"].as_array().unwrap_or_else(|| panic!("roles is not an array: {json}"));
    let mut back = Model::new();
    let mut seen: BTreeSet<(&str, Vec<ReplyAttr>)> = BTreeSet::new();
    let mut last = "";
    for role in roles {
        let role = role.as_object().unwrap_or_else(|| panic!("a role is not an object: {json}"));
        assert!(role.keys().all(|k| matches!(k.as_str(), "name" | "members" | "reply")), "{json}");
        let ssid = role.get("name").and_then(Value::as_str).unwrap_or_else(|| panic!("a role without SSID: {json}"));
        assert!(last <= ssid, "roles out of SSID order: {json}");
        last = ssid;
        let reply: Vec<ReplyAttr> = match role.get("reply") {
            None => vec![],
            Some(r) => {
                let r = r.as_object().unwrap_or_else(|| panic!("reply is not an object: {json}"));
                assert!(!r.is_empty(), "an empty reply written: {json}");
                let mut reply: Vec<ReplyAttr> = r
                    .iter()
                    .map(|(a, v)| {
                        let value = v.as_str().unwrap_or_else(|| panic!("reply value is not a string: {json}"));
                        ReplyAttr { attribute: a.clone(), value: value.to_owned() }
                    })
                    .collect();
                reply.sort();
                reply
            }
        };
        let members: Vec<&str> = role
            .get("members")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("a role without members: {json}"))
            .iter()
            .map(|m| m.as_str().unwrap_or_else(|| panic!("a member is not a string: {json}")))
            .collect();
        assert!(!members.is_empty(), "a role with no members: {json}");
        let order = |m: &str| (m.starts_with("*."), m.to_owned());
        assert!(members.windows(2).all(|w| order(w[0]) < order(w[1])), "members not names then domains: {json}");
        assert!(seen.insert((ssid, reply.clone())), "two roles for {ssid:?} with one reply set: {json}");
        let rules = back.entry(ssid.to_owned()).or_default();
        for m in members {
            let e = ref_entry(m).unwrap_or_else(|| panic!("member {m:?} is no entry: {json}"));
            assert_eq!(entry_text(&e), m, "member {m:?} is not in normal form");
            assert!(rules.insert(e, reply.clone()).is_none(), "{m:?} written twice for {ssid:?}: {json}");
        }
    }
    assert_eq!(&back, model, "the serialised policy holds other entries: {json}");
}

/// Where a JSON value starts and what it holds, as the scanner below reads it.
struct JsonNode {
    line: usize,
    kind: JsonKind,
}

enum JsonKind {
    Object(Vec<(String, JsonNode)>),
    Array(Vec<JsonNode>),
    Scalar,
}

impl JsonNode {
    /// The value of `key` (the first, if repeated) of an object.
    fn get(&self, key: &str) -> Option<&JsonNode> {
        match &self.kind {
            JsonKind::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn items(&self) -> &[JsonNode] {
        match &self.kind {
            JsonKind::Array(items) => items,
            _ => &[],
        }
    }

    fn keys(&self) -> Vec<&str> {
        match &self.kind {
            JsonKind::Object(members) => members.iter().map(|(k, _)| k.as_str()).collect(),
            _ => vec![],
        }
    }

    fn repeats_a_key(&self) -> bool {
        match &self.kind {
            JsonKind::Object(members) => {
                let mut keys = BTreeSet::new();
                members.iter().any(|(k, v)| !keys.insert(k.as_str()) || v.repeats_a_key())
            }
            JsonKind::Array(items) => items.iter().any(JsonNode::repeats_a_key),
            JsonKind::Scalar => false,
        }
    }
}

/// A JSON scanner written here, for the lines values start on and the order of keys:
/// meant for text serde_json has read (valid JSON, nesting within its limit); None for
/// anything else it cannot read.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    newlines: Vec<usize>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.skip_ws();
        (self.peek() == Some(b)).then(|| self.pos += 1)
    }

    fn value(&mut self) -> Option<JsonNode> {
        self.skip_ws();
        let line = self.newlines.partition_point(|&n| n < self.pos) + 1;
        let kind = match self.peek()? {
            b'{' => {
                self.pos += 1;
                let mut members = Vec::new();
                if self.eat(b'}').is_none() {
                    loop {
                        self.skip_ws();
                        let key = self.string()?;
                        self.eat(b':')?;
                        members.push((key, self.value()?));
                        if self.eat(b',').is_none() {
                            self.eat(b'}')?;
                            break;
                        }
                    }
                }
                JsonKind::Object(members)
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.eat(b']').is_none() {
                    loop {
                        items.push(self.value()?);
                        if self.eat(b',').is_none() {
                            self.eat(b']')?;
                            break;
                        }
                    }
                }
                JsonKind::Array(items)
            }
            b'"' => {
                self.string()?;
                JsonKind::Scalar
            }
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|b| !b",]} \t\n\r".contains(&b)) {
                    self.pos += 1;
                }
                if self.pos == start {
                    return None;
                }
                JsonKind::Scalar
            }
        };
        Some(JsonNode { line, kind })
    }

    /// The string at the position, decoded by serde_json.
    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        if self.peek()? != b'"' {
            return None;
        }
        self.pos += 1;
        loop {
            match self.peek()? {
                b'\\' => self.pos += 2,
                b'"' => break,
                _ => self.pos += 1,
            }
        }
        self.pos += 1;
        serde_json::from_str(self.text.get(start..self.pos)?).ok()
    }
}

fn scan_json(text: &str) -> Option<JsonNode> {
    let mut s = Scanner { text, pos: 0, newlines: text.match_indices('\n').map(|(i, _)| i).collect() };
    let v = s.value()?;
    s.skip_ws();
    (s.pos == text.len()).then_some(v)
}

/// A role's SSID, members and reply attributes (sorted), if it has the shape of one: an
/// object of `name` (a string), `members` (an array, none when absent) and `reply` (an
/// object of strings, none when absent), nothing else.
fn ref_role(role: &Value) -> Option<(&str, &[Value], Vec<ReplyAttr>)> {
    let obj = role.as_object()?;
    if !obj.keys().all(|k| matches!(k.as_str(), "name" | "members" | "reply")) {
        return None;
    }
    let ssid = obj.get("name")?.as_str()?;
    let members = match obj.get("members") {
        None => &[][..],
        Some(m) => m.as_array()?.as_slice(),
    };
    let mut reply = match obj.get("reply") {
        None => Vec::new(),
        Some(r) => r
            .as_object()?
            .iter()
            .map(|(a, v)| Some(ReplyAttr { attribute: a.clone(), value: v.as_str()?.to_owned() }))
            .collect::<Option<Vec<_>>>()?,
    };
    reply.sort();
    Some((ssid, members, reply))
}

/// `parse_json` restated on serde_json's reading of the text (`Value`) and the scanner's
/// lines: the document is an object whose `roles` is an array (its `name`, if any, a
/// string or null), else it is refused; a role without the shape of one ([`ref_role`]),
/// with an invalid SSID or no members is reported at its line; a member that is no string
/// holding a valid entry is reported at its own line, as are duplicates and conflicts.
/// None where the reference does not apply: serde_json does not read the text as a
/// `Value`, or an object repeats a key (serde's derived readers refuse that, `Value`
/// keeps the last).
fn reference_json(text: &str) -> Option<Result<RefLoad, &'static str>> {
    let doc: Value = serde_json::from_str(text).ok()?;
    let node = scan_json(text).unwrap_or_else(|| panic!("the scanner does not read what serde_json read: {text:?}"));
    if node.repeats_a_key() {
        return None;
    }
    let Some(top) = doc.as_object() else {
        return Some(Err("not an object"));
    };
    if top.get("name").is_some_and(|n| !n.is_string() && !n.is_null()) {
        return Some(Err("the policy's name is not a string"));
    }
    let Some(roles) = top.get("roles").and_then(Value::as_array) else {
        return Some(Err("no roles array"));
    };
    let role_nodes = node.get("roles").map_or(&[][..], JsonNode::items);
    assert_eq!(roles.len(), role_nodes.len(), "the scanner and serde_json disagree on the roles of {text:?}");
    let mut r = RefLoad::default();
    for (role, role_node) in roles.iter().zip(role_nodes) {
        let line = role_node.line;
        let Some((ssid, members, reply)) = ref_role(role) else {
            r.bad(line);
            continue;
        };
        if !ref_ssid_ok(ssid) || members.is_empty() {
            r.bad(line);
            continue;
        }
        let member_nodes = role_node.get("members").map_or(&[][..], JsonNode::items);
        assert_eq!(members.len(), member_nodes.len(), "the scanner and serde_json disagree on members");
        for (m, node) in members.iter().zip(member_nodes) {
            match m.as_str().and_then(ref_entry) {
                Some(entry) => r.add(ssid, entry, &reply, node.line),
                None => r.bad(node.line),
            }
        }
    }
    Some(Ok(r))
}

/// `SSID|entry` lines: the loaded policy and the diagnostics are the restated reader's
/// ([`reference_lines`]); the policy answers as its entries say and round-trips.
pub fn policy_lines(data: &[u8]) {
    let text = text(data);
    let loaded = parse_lines(&text, "fuzz.txt");
    let want = reference_lines(&text);
    assert_diagnostics(&loaded.diagnostics, &want.diagnostics, "fuzz.txt", text.lines().count());
    let model = model_of(&loaded.policy);
    assert_eq!(model, want.model, "parse_lines and the reference load different entries");
    assert!(model.values().flat_map(BTreeMap::values).all(Vec::is_empty), "the line format has no reply attributes");
    assert_policy_semantics(&loaded.policy, &model);
    assert_round_trips(&loaded.policy, &model);
}

/// JSON policies: refused exactly when the restated reader ([`reference_json`]) refuses
/// the document; a loaded policy and its diagnostics (lines of the member or the role)
/// are the reference's, it answers as its entries say and round-trips.
pub fn policy_json(data: &[u8]) {
    let text = text(data);
    let result = parse_json(&text, "fuzz.json");
    let reference = reference_json(&text);
    let loaded = match (result, reference) {
        (Err(e), Some(Ok(_))) => panic!("refused a policy the reference loads: {e}"),
        (Ok(_), Some(Err(why))) => panic!("loaded a document the reference refuses ({why}): {text:?}"),
        (Err(e), _) => {
            let e = e.to_string();
            assert!(e.starts_with("fuzz.json:"), "the error does not name the file: {e}");
            return;
        }
        (Ok(loaded), reference) => {
            let lines = text.lines().count();
            match reference {
                Some(Ok(want)) => {
                    assert_diagnostics(&loaded.diagnostics, &want.diagnostics, "fuzz.json", lines);
                    assert_eq!(
                        model_of(&loaded.policy),
                        want.model,
                        "parse_json and the reference load different entries"
                    );
                }
                _ => assert_diagnostics_in(&loaded.diagnostics, "fuzz.json", lines),
            }
            loaded
        }
    };
    let model = model_of(&loaded.policy);
    assert_policy_semantics(&loaded.policy, &model);
    assert_round_trips(&loaded.policy, &model);
}

// ---------------------------------------------------------------------------------------
// Trust map snapshot

/// A snapshot that loads: it re-serialises to a fixed point (`names` an object in name
/// order) and loads to the same generation, policy, CAs, names and entries. Its policy
/// answers as its entries say and round-trips. Every kept name is normalised and let in by
/// an exact entry or a domain entry of its parent, and only a name a domain entry covers
/// keeps an entry without associations (DNS said nothing of a name discovered on demand);
/// of the names the file holds, exactly those are kept. Chain CAs travel in the snapshot
/// and every association is well formed and matches exactly where its usage points.
/// Changing one name, and the same names under the same or an empty policy, give the maps
/// they should.
pub fn trustmap(data: &[u8]) {
    let text = text(data);
    let Ok(map) = TrustMap::from_json(&text, "fuzz.json") else {
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
    let entries: BTreeMap<&str, &NameEntry> = map.entries().map(|(n, e)| (&**n, e)).collect();
    let back_entries: BTreeMap<&str, &NameEntry> = back.entries().map(|(n, e)| (&**n, e)).collect();
    assert_eq!(back_entries, entries, "entries changed in the round trip");
    assert_eq!(entries.len(), map.name_count(), "entries() does not give each name once");
    assert_eq!(entries.values().map(|e| e.associations.len()).sum::<usize>(), map.association_count());

    // The written form: the names, in order.
    let written = scan_json(&json).unwrap_or_else(|| panic!("the written map is not JSON: {json}"));
    let names_node = written.get("names").unwrap_or_else(|| panic!("no names in the written map: {json}"));
    let written_names = names_node.keys();
    assert!(matches!(names_node.kind, JsonKind::Object(_)), "names is not an object: {json}");
    assert!(written_names.windows(2).all(|w| w[0] < w[1]), "names not written in order: {json}");
    assert_eq!(written_names, entries.keys().copied().collect::<Vec<_>>(), "the written names");

    let model = model_of(map.policy());
    assert_policy_semantics(map.policy(), &model);
    assert_round_trips(map.policy(), &model);
    let (exact, domains) = model_names(&model);
    for (&n, entry) in &entries {
        assert_eq!(ref_normalize(n).as_deref(), Some(n), "{n}: kept name is not normalised");
        assert!(ref_allowed(&exact, &domains, n), "{n}: kept, but no entry of the policy lets it in");
        assert!(
            !entry.associations.is_empty() || ref_covered(&domains, n),
            "{n}: an entry without associations kept for a name no domain entry covers"
        );
        assert_eq!(map.entry(n), Some(*entry), "{n}: entry() differs from entries()");
        assert_eq!(map.associations(n), &entry.associations[..], "{n}: associations() differs from the entry");
        for k in entry.chain.ids() {
            assert!(map.cas().contains_key(k), "{n}: chain CA {k} is not in the snapshot");
        }
        for a in entry.associations.iter() {
            assert_association_well_formed(a);
        }
    }
    for &n in &exact {
        if !entries.contains_key(n) {
            assert!(map.associations(n).is_empty() && map.entry(n).is_none(), "{n}: associations without an entry");
        }
    }
    // What the file held: a name is kept exactly when the policy lets it in (the last
    // listing of a name repeated in the file is the one kept, as in a JSON object).
    if let Ok(doc) = serde_json::from_str::<Value>(&text) {
        if let Some(listed) = doc.get("names").and_then(Value::as_object) {
            for n in listed.keys() {
                let allowed = ref_allowed(&exact, &domains, n);
                let keep = allowed
                    && (listed[n]["associations"].as_array().is_some_and(|a| !a.is_empty())
                        || ref_covered(&domains, n));
                let kept = map.entry(n).is_some();
                assert_eq!(kept, keep, "{n}: kept: {kept}, want {keep} (the policy lets it in: {allowed})");
            }
            assert!(entries.keys().all(|n| listed.contains_key(*n)), "a name kept that the file does not list");
        }
    }
    assert_changes(&map, &json, &entries, &exact, &domains);
}

/// One name removed and put back gives the same map; a name the policy does not let in
/// is never added; a name directly under a domain entry is added, also with nothing
/// published; the same policy keeps every name, an empty one none.
fn assert_changes(
    map: &TrustMap,
    json: &str,
    entries: &BTreeMap<&str, &NameEntry>,
    exact: &BTreeSet<&str>,
    domains: &BTreeSet<&str>,
) {
    let (generation, at) = (map.generation, map.generated_at);
    if let Some((&n, &entry)) = entries.iter().next_back() {
        let name: Arc<str> = Arc::from(n);
        let removed = map.with_changes([(name.clone(), None)], generation, at);
        assert!(removed.entry(n).is_none(), "{n}: still there after its removal");
        let rest: BTreeMap<&str, &NameEntry> = removed.entries().map(|(n, e)| (&**n, e)).collect();
        let mut want = entries.clone();
        want.remove(n);
        assert_eq!(rest, want, "removing {n} changed other names");
        let restored = removed.with_changes([(name, Some(entry.clone()))], generation, at);
        assert_eq!(restored.to_json(), json, "{n}: removed and put back, the map differs");
    }
    let stranger = (0u32..)
        .map(|i| format!("zz-stranger{i}.zz-nowhere.example"))
        .find(|s| !ref_allowed(exact, domains, s))
        .expect("a name the policy does not let in");
    let added = map.with_changes([(Arc::from(stranger.as_str()), Some(NameEntry::default()))], generation, at);
    assert!(added.entry(&stranger).is_none(), "{stranger}: added, but the policy does not let it in");
    assert_eq!(added.to_json(), json, "a refused change changed the map");
    if let Some(&d) = domains.iter().next() {
        let probe = (0u32..)
            .map(|i| format!("zz-found{i}.{d}"))
            .find(|p| !entries.contains_key(p.as_str()) && !exact.contains(p.as_str()))
            .expect("a free name");
        let found = map.with_changes([(Arc::from(probe.as_str()), Some(NameEntry::default()))], generation, at);
        assert!(
            found.entry(&probe).is_some_and(|e| e.associations.is_empty()),
            "{probe}: a discovered name is not kept"
        );
        assert_eq!(found.name_count(), map.name_count() + 1);
    }
    assert_eq!(map.with_policy(map.shared_policy(), generation, at).to_json(), json, "the same policy dropped names");
    let none = map.with_policy(Arc::new(Policy::default()), generation, at);
    assert_eq!(none.name_count(), 0, "names kept under an empty policy");
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
        Digest::Sha512(d) => (&d[..], true),
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
    let chain: Vec<CertDigests<'_>> = std::iter::once(p.leaf()).chain(p.issuers()).collect();
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

/// The check target's world: certificates, the policy restated (the model the policy was
/// built from) and the entries the trust map must hold (the reference reads these, never
/// the loaded map), and the map loaded back through its own JSON as radiusd loads it (its
/// policy asserted equal to the one built).
pub struct Fixture {
    pub known: Vec<Known>,
    pub model: Model,
    /// What the trust map must hold: the entries of names some entry of the policy lets
    /// in, and of those without associations only the names a domain entry covers.
    pub entries: BTreeMap<String, Vec<Association>>,
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
const CERTS: [Spec; 12] = [
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
    // Devices of the fleet domain entry.
    spec("bus1", Some(0), 30, 1001, Some("bus1._device.fleet.example")),
    spec("bus4", Some(0), 31, 1004, Some("bus4._device.fleet.example")),
];

/// Names check inputs pick by index (`make-seeds.py` uses the same indices).
pub const NAMES: [&str; 15] = [
    "car54._device.cars.example",
    "car55._device.cars.example",
    "car56._device.cars.example",
    "car57._device.cars.example",
    "car58._device.cars.example",
    "car99._device.cars.example",
    "meter7._device.meters.example",
    "ghost._device.cars.example",
    // Directly under the domain entry `*._device.fleet.example`:
    // 8: discovered on demand, published; 9: discovered, DNS says nothing; 10: not
    // discovered yet; 11: also an exact entry on Cars-WiFi (its own reply); 12: an exact
    // entry on Meters only, never published.
    "bus1._device.fleet.example",
    "bus2._device.fleet.example",
    "bus3._device.fleet.example",
    "bus4._device.fleet.example",
    "bus5._device.fleet.example",
    // Two labels below the domain, and the domain followed by another: allowed nowhere
    // (the map is handed entries for both, which it must drop).
    "a.bus3._device.fleet.example",
    "evil._device.fleet.example.attacker.example",
];

/// The domain of the fixture's domain entries.
const FLEET: &str = "_device.fleet.example";

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
        Matching::Sha512 => Digest::Sha512(Box::new(digest.try_into().expect("64 bytes"))),
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
/// allowed but unpublished (car99), a name published but allowed nowhere (ghost), the
/// Meters CA's certificate for car56, a Cars name (the cross-domain case must fail), and
/// a domain entry (`*._device.fleet.example`, on Cars-WiFi and Meters with their own
/// replies) with names discovered on demand (bus1 published, bus2 negative), one not
/// discovered yet (bus3), exact entries deciding over it (bus4 on Cars-WiFi, bus5 on
/// Meters), and entries handed to the map for names it must drop (two labels below the
/// domain, the domain followed by another).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let known = build_known();
        let d = |i: usize, list: usize| known[i].digests[list].clone();
        let (c256, c512, s256, s512) = (0, 1, 2, 3);
        let spki_der = known[7].cert.public_key().and_then(|k| k.public_key_to_der()).expect("SPKI");
        let (ee, ta) = (Usage::DaneEe, Usage::DaneTa);
        let input: Vec<(&str, Vec<Association>)> = vec![
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
            (
                NAMES[6],
                vec![
                    assoc(ee, Selector::Cert, Matching::Sha512, &d(7, c512), None),
                    assoc(ee, Selector::Spki, Matching::Sha512, &d(7, s512), None),
                    assoc(ee, Selector::Spki, Matching::Full, &sha256(&spki_der), None),
                ],
            ),
            (NAMES[7], vec![assoc(ee, Selector::Cert, Matching::Sha256, &d(2, c256), None)]),
            (NAMES[8], vec![assoc(ee, Selector::Cert, Matching::Sha256, &d(10, c256), None)]),
            (NAMES[9], vec![]),
            (NAMES[11], vec![assoc(ee, Selector::Spki, Matching::Sha256, &d(11, s256), None)]),
            (NAMES[13], vec![assoc(ee, Selector::Cert, Matching::Sha256, &d(2, c256), None)]),
            (NAMES[14], vec![assoc(ee, Selector::Cert, Matching::Sha256, &d(10, c256), None)]),
        ];
        let reply = |v: &str| vec![ReplyAttr { attribute: "Tunnel-Private-Group-Id".into(), value: v.into() }];
        let name = |n: &str| Entry::Name(n.to_owned());
        let fleet = Entry::Domain(FLEET.to_owned());
        let mut model = Model::new();
        let cars = model.entry("Cars-WiFi".into()).or_default();
        cars.extend(NAMES[..6].iter().map(|n| (name(n), reply("10"))));
        cars.extend([(fleet.clone(), reply("30")), (name(NAMES[11]), reply("31"))]);
        let meters = model.entry("Meters".into()).or_default();
        meters.extend([(name(NAMES[6]), reply("20")), (name(NAMES[0]), reply("20")), (name(NAMES[12]), reply("20"))]);
        meters.insert(fleet, reply("21"));
        model.entry("Lobby".into()).or_default().insert(name(NAMES[6]), vec![]);
        let mut policy = Policy::default();
        for (ssid, rules) in &model {
            for (entry, reply) in rules {
                policy.allow(ssid, entry.clone(), reply).unwrap_or_else(|e| panic!("{ssid}: {entry}: {e:?}"));
            }
        }
        assert_eq!(model_of(&policy), model, "the fixture policy holds other entries");
        // Restated: what a trust map keeps of the entries it is handed.
        let (exact, domains) = model_names(&model);
        let entries: BTreeMap<String, Vec<Association>> = input
            .iter()
            .filter(|(n, a)| ref_allowed(&exact, &domains, n) && (!a.is_empty() || ref_covered(&domains, n)))
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect();
        let names: BTreeMap<String, NameEntry> = input
            .into_iter()
            .map(|(n, associations)| {
                (
                    n.to_string(),
                    NameEntry { associations: associations.into(), verified_at: 1_750_000_000, ..Default::default() },
                )
            })
            .collect();
        let json = TrustMap::new(policy.clone(), names, 7, 1_750_000_000).to_json();
        let map = TrustMap::from_json(&json, "check-fixture.json").expect("the fixture trust map loads");
        for n in NAMES {
            let want = entries.get(n).map(Vec::as_slice);
            assert_eq!(map.entry(n).map(|e| &e.associations[..]), want, "{n}: the loaded map holds another entry");
        }
        assert_eq!(map.name_count(), entries.len(), "the loaded map holds other names");
        assert_eq!(map.policy(), &policy, "the loaded map has another policy");
        Fixture { known, model, entries, map }
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

/// The request check restated, step by step, on the policy's model and the entries the
/// map must hold: the first step that fails names the reason; on accept, the reply of the
/// entry that lets the name in (its own on the SSID, else its domain's). A name let in only
/// by a domain entry and without an entry in the map is being discovered; an entry without
/// associations, or an exact name without entry, has nothing published.
/// `capture_error` is what `from_capture` said of an inconsistent capture.
fn reference_decision<'p>(
    model: &'p Model,
    entries: &BTreeMap<String, Vec<Association>>,
    user: Option<&str>,
    station: Option<&str>,
    capture: &Capture,
    capture_error: Option<CaptureError>,
) -> Result<&'p [ReplyAttr], Reason> {
    let name = user.and_then(ref_normalize).ok_or(Reason::InvalidName)?;
    let ssid = station.and_then(ssid_of).ok_or(Reason::NoSsid)?;
    let (reply, exact) = match ref_verdict(model, ssid, &name) {
        RefVerdict::UnknownSsid => return Err(Reason::UnknownSsid),
        RefVerdict::NotAllowed => return Err(Reason::NameNotAllowed),
        RefVerdict::Allowed { reply, exact } => (reply, exact),
    };
    if !capture.consistent() {
        return Err(Reason::Capture(capture_error.expect("an inconsistent capture was accepted")));
    }
    let associations = match entries.get(&name) {
        Some(a) => a.as_slice(),
        None if !exact => return Err(Reason::DiscoveryPending),
        None => &[],
    };
    if associations.is_empty() {
        return Err(Reason::NotPublished);
    }
    if associations.iter().any(|a| reference_matches(a, capture, &name)) {
        Ok(reply)
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
        Decision::Reject(Reason::DiscoveryPending) => "DiscoveryPending",
        Decision::Reject(Reason::NoAssociationMatch) => "NoAssociationMatch",
    }
}

/// The whole request check on a decoded request; returns the fixture map's decision label.
///
/// Without a trust map: NoTrustMap. On the empty map and on the fixture map: the decision
/// (reason, or accept with the reply of the entry that lets the name in) is the
/// reference's, whose steps are restated above; so a reject names the first failing step
/// (DiscoveryPending only for a name let in by a domain entry alone, with no entry in the
/// map), and an accept means a valid name, an entry on the SSID letting it in, a
/// consistent capture and an association whose digest equals the captured one at a
/// position its usage allows. And `Association::matches` agrees with the reference on
/// every association of the map.
pub fn check_outcome(data: &[u8]) -> &'static str {
    let fx = fixture();
    let (user, station, capture) = decode_check(data, &fx.known);
    capture.with_presented(|cert| {
        let capture_error = cert.as_ref().err().copied();
        let req = Request { user_name: user.as_deref(), called_station_id: station.as_deref(), cert };
        assert_eq!(check_request(None, &req), Decision::Reject(Reason::NoTrustMap), "decided without a trust map");

        let empty = TrustMap::default();
        let (no_policy, none) = (Model::new(), BTreeMap::new());
        let on_empty = check_request(Some(&empty), &req);
        assert!(!matches!(on_empty, Decision::Accept { .. }), "accepted on an empty trust map");
        let want = reference_decision(&no_policy, &none, req.user_name, req.called_station_id, &capture, capture_error);
        assert_eq!(outcome(&on_empty), want, "empty map: check and the reference disagree on {req:?}");

        if let Ok(cert) = &req.cert {
            for (n, entry) in fx.map.entries() {
                for a in entry.associations.iter() {
                    assert_eq!(
                        a.matches(cert, n),
                        reference_matches(a, &capture, n),
                        "{n}: {a}: matches() != the reference"
                    );
                }
            }
        }
        let decision = check_request(Some(&fx.map), &req);
        let want =
            reference_decision(&fx.model, &fx.entries, req.user_name, req.called_station_id, &capture, capture_error);
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
        assert!(s.concurrency >= 1 && s.concurrency_per_domain >= 1 && s.discovery_concurrency >= 1);
        assert!(s.max_records >= 1 && !s.name_timeout.is_zero());
        assert!(s.discovery_rate.is_finite() && s.discovery_rate > 0.0, "discovery_rate {}", s.discovery_rate);
        assert!(!s.ca_path.as_os_str().is_empty());
        // `https://` (any case) is a URL, plain `http://` is refused, anything else a file.
        match &s.policy {
            PolicySource::Url(u) => assert!(u.to_ascii_lowercase().starts_with("https://"), "policy URL {u:?}"),
            PolicySource::File(p) => {
                let lower = p.to_string_lossy().to_ascii_lowercase();
                assert!(!lower.is_empty() && !lower.starts_with("http://") && !lower.starts_with("https://"), "{p:?}");
            }
        }
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
        (4, 0, 0) | (2..=3, 0, 0) => one_der_certificate(&r.data),
        (2..=3, 1, 0) => one_der_spki(&r.data),
        (2..=3, 0..=1, 1..=2) => true,
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
/// only as `4 0 0` holding one DER certificate; usages 3 (DANE-EE) and 2 (DANE-TA) with
/// selector 0/1 and matching 0/1/2, `x 0 0` one DER certificate, `x 1 0` one DER
/// SubjectPublicKeyInfo, digests of 32 or 64 bytes; an unusable record's reason names it);
/// a usable record yields the
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
        RecordUse::DaneTa { selector, matching } => Some((2, selector.code(), matching.code())),
        RecordUse::Unusable { reason } => {
            let what = format!("TLSA {} {} {}", r.usage, r.selector, r.matching);
            assert!(reason.starts_with(&what), "reason {reason:?} does not name the record");
            None
        }
    };
    assert_eq!(got, want, "classify disagrees with the rules on {r:?}");
    if let Some((u, s, m)) = got {
        let usage = match u {
            4 => Usage::PkixCd,
            3 => Usage::DaneEe,
            _ => Usage::DaneTa,
        };
        let selector = Selector::from_code(s).expect("selector");
        let matching = Matching::from_code(m).expect("matching");
        let a = Association::from_data(usage, selector, matching, &r.data, None)
            .unwrap_or_else(|e| panic!("a usable record yields no association: {e}"));
        let want = match m {
            0 => Digest::Sha256(sha256(&r.data)),
            1 => Digest::Sha256(r.data.as_slice().try_into().expect("32 bytes")),
            _ => Digest::Sha512(Box::new(r.data.as_slice().try_into().expect("64 bytes"))),
        };
        assert_eq!((a.usage, a.selector, a.matching, &a.digest), (usage, selector, matching, &want));
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
