//! Which names may join which SSID, and what a device admitted there gets on accept.
//!
//! An entry is an exact device name (`car54._device.cars.example`) or a whole device domain
//! (`*._device.cars.example`: every name one label below `_device.cars.example`). Two input
//! formats, both reported line by line so an operator can fix a file:
//! - lines: `SSID|device-name` or `SSID|*.domain`, `#` comments and blank lines ignored;
//! - JSON: `{"name": ..., "roles": [{"name": SSID, "members": [...], "reply": {attr: value}}]}`,
//!   members being names or `*.domain` entries.
//!
//! On one SSID, an exact entry decides over a domain entry that also covers the name: the
//! device gets the exact entry's reply attributes (one device of a fleet can be given its
//! own VLAN). The same entry listed twice on one SSID with different reply attributes is a
//! conflict: reported with both places, and the first one applies. A bad entry is reported
//! (file, line, reason) and skipped; the rest still loads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::name::{self, NameError};
use crate::model::strict_json::{object, Object};

/// A reply attribute added on accept (e.g. `Tunnel-Private-Group-Id = 10` for a VLAN).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplyAttr {
    /// A RADIUS attribute name of radiusd's dictionary; radiusd reports an unknown one
    /// when the accept adds it.
    pub attribute: String,
    /// Its value as text, which radiusd parses by the attribute's type.
    pub value: String,
}

/// Why a text is not a policy entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// A `*.domain` entry whose domain is not a valid name.
    #[error("domain entry {text:?}: {source}")]
    Domain {
        /// The entry as written, blanks trimmed.
        text: String,
        /// Why the domain is not a name.
        source: NameError,
    },
    /// A `*` other than a leading `*.` label (`car*.example`, `a.*.example`): a domain
    /// entry covers exactly one label below the domain, nothing finer.
    #[error("entry {0:?}: a wildcard is only allowed as the whole first label (*.domain)")]
    Wildcard(String),
    /// An exact entry that is not a valid device name.
    #[error("device name {text:?}: {source}")]
    Name {
        /// The entry as written, blanks trimmed.
        text: String,
        /// Why it is not a device name.
        source: NameError,
    },
}

/// Why a policy file or document could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file cannot be read; the caller keeps the policy it had.
    #[error("{path}: cannot read policy: {source}")]
    Read {
        /// The policy file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Syntax errors fail the whole document (with line and column).
    #[error("{file}:{}:{}: invalid policy JSON: {source}", .source.line(), .source.column())]
    Json {
        /// Where the document came from (a path or URL), as messages name it.
        file: String,
        /// The parser's error; it carries the line and column.
        source: serde_json::Error,
    },
}

/// One entry of a policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entry {
    /// An exact, normalised device name.
    Name(String),
    /// Every name one label below this normalised domain (`*.<domain>` in the files).
    Domain(String),
}

impl Entry {
    /// Parses a policy entry: a device name, or `*.` and a domain of at least two labels.
    pub fn parse(text: &str) -> Result<Entry, EntryError> {
        let text = text.trim();
        match text.strip_prefix("*.") {
            Some(domain) => name::normalize(domain)
                .map(Entry::Domain)
                .map_err(|source| EntryError::Domain { text: text.to_owned(), source }),
            None if text.contains('*') => Err(EntryError::Wildcard(text.to_owned())),
            None => name::normalize(text)
                .map(Entry::Name)
                .map_err(|source| EntryError::Name { text: text.to_owned(), source }),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Name(n) => f.write_str(n),
            Entry::Domain(d) => write!(f, "*.{d}"),
        }
    }
}

/// The hasher of the tables the request path looks names up in: fast, and keyed per
/// process so names published by a hostile zone cannot be made to collide.
pub type NameHasher = foldhash::fast::RandomState;

/// The entries of one SSID and the reply attributes each gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SsidRules {
    /// Distinct reply attribute sets, referred to by index.
    replies: Vec<Vec<ReplyAttr>>,
    /// Exact names. The names are shared (`Arc`) with the trust map built on this policy.
    names: HashMap<Arc<str>, u32, NameHasher>,
    /// Domains (without the `*.`).
    domains: HashMap<Box<str>, u32, NameHasher>,
}

impl SsidRules {
    /// The reply attributes `name` (normalised) gets here, if it is allowed: its exact
    /// entry's, else its parent domain's.
    pub fn lookup(&self, name: &str) -> Option<&[ReplyAttr]> {
        let index = self.names.get(name).or_else(|| parent(name).and_then(|d| self.domains.get(d)))?;
        self.replies.get(*index as usize).map(Vec::as_slice)
    }

    /// Exact-name entries on this SSID.
    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    /// Domain (`*.domain`) entries on this SSID.
    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    fn reply_index(&mut self, reply: &[ReplyAttr]) -> u32 {
        match self.replies.iter().position(|r| r.as_slice() == reply) {
            Some(i) => i as u32,
            None => {
                self.replies.push(reply.to_vec());
                (self.replies.len() - 1) as u32
            }
        }
    }
}

/// The domain a name is directly under (`car54._device.cars.example` -> `_device.cars.example`).
pub fn parent(name: &str) -> Option<&str> {
    name.split_once('.').map(|(_, rest)| rest).filter(|rest| rest.contains('.'))
}

/// SSID -> its entries. Ordered by SSID so written snapshots are stable and diffable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    ssids: BTreeMap<String, SsidRules>,
}

/// Why an entry was not added as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The same entry, same reply: nothing to do.
    Duplicate,
    /// The same entry on the SSID already has other reply attributes; those stay.
    Conflict,
}

/// What the policy says about a name on an SSID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'p> {
    /// No entry at all on this SSID: not a network this policy serves.
    UnknownSsid,
    /// The SSID has entries, but neither the name's own nor its parent domain's.
    NotAllowed,
    /// Allowed, with these reply attributes; `exact`: by its own entry, not a domain's.
    Allowed {
        /// The reply attributes of the entry that allows the name.
        reply: &'p [ReplyAttr],
        /// True for the name's own entry; false when only its parent domain's allows it,
        /// so its DNS answer may still be on its way (discovery on demand).
        exact: bool,
    },
}

impl Policy {
    /// Adds `entry` on `ssid` with `reply`. The first entry wins a conflict.
    pub fn allow(&mut self, ssid: &str, entry: Entry, reply: &[ReplyAttr]) -> Result<(), Refused> {
        let rules = self.ssids.entry(ssid.to_owned()).or_default();
        let existing = match &entry {
            Entry::Name(n) => rules.names.get(n.as_str()),
            Entry::Domain(d) => rules.domains.get(d.as_str()),
        };
        if let Some(&index) = existing {
            return Err(if rules.replies[index as usize] == reply { Refused::Duplicate } else { Refused::Conflict });
        }
        let index = rules.reply_index(reply);
        match entry {
            Entry::Name(n) => rules.names.insert(Arc::from(n), index),
            Entry::Domain(d) => rules.domains.insert(d.into_boxed_str(), index),
        };
        Ok(())
    }

    /// What the policy says about `name` (normalised) on `ssid`.
    pub fn verdict(&self, ssid: &str, name: &str) -> Verdict<'_> {
        let Some(rules) = self.ssids.get(ssid) else {
            return Verdict::UnknownSsid;
        };
        if let Some(index) = rules.names.get(name) {
            return Verdict::Allowed { reply: &rules.replies[*index as usize], exact: true };
        }
        match parent(name).and_then(|d| rules.domains.get(d)) {
            Some(index) => Verdict::Allowed { reply: &rules.replies[*index as usize], exact: false },
            None => Verdict::NotAllowed,
        }
    }

    /// The rules of `ssid`, if any entry names it.
    pub fn ssid(&self, ssid: &str) -> Option<&SsidRules> {
        self.ssids.get(ssid)
    }

    /// Every SSID with an entry, and its rules, in SSID order.
    pub fn ssids(&self) -> impl Iterator<Item = (&str, &SsidRules)> {
        self.ssids.iter().map(|(s, r)| (s.as_str(), r))
    }

    /// Every exact name allowed on at least one SSID.
    pub fn names(&self) -> BTreeSet<&str> {
        self.ssids.values().flat_map(|r| r.names.keys().map(|n| &**n)).collect()
    }

    /// The shared copy of an exact name of the policy.
    pub fn interned(&self, name: &str) -> Option<Arc<str>> {
        self.ssids.values().find_map(|r| r.names.get_key_value(name).map(|(k, _)| k.clone()))
    }

    /// Every domain of a domain entry, on any SSID.
    pub fn domains(&self) -> BTreeSet<&str> {
        self.ssids.values().flat_map(|r| r.domains.keys().map(|d| &**d)).collect()
    }

    /// Whether `name` (normalised) is directly under a domain entry of some SSID: the only
    /// names that may be looked up on demand (never arbitrary input).
    pub fn covers(&self, name: &str) -> bool {
        parent(name).is_some_and(|d| self.ssids.values().any(|r| r.domains.contains_key(d)))
    }

    /// No entry on any SSID: such a policy admits nobody.
    pub fn is_empty(&self) -> bool {
        self.ssids.is_empty()
    }

    /// The policy as JSON roles (one role per SSID and reply set), the format `parse_json`
    /// reads: what the trust map snapshot embeds.
    fn roles(&self) -> Vec<RoleDoc> {
        let mut roles = Vec::new();
        for (ssid, rules) in &self.ssids {
            for (index, reply) in rules.replies.iter().enumerate() {
                let of_this = |i: &u32| *i as usize == index;
                let mut members: Vec<String> =
                    rules.names.iter().filter(|(_, i)| of_this(i)).map(|(n, _)| n.to_string()).collect();
                members.sort();
                let mut domains: Vec<String> =
                    rules.domains.iter().filter(|(_, i)| of_this(i)).map(|(d, _)| format!("*.{d}")).collect();
                domains.sort();
                members.extend(domains);
                if !members.is_empty() {
                    let reply = reply.iter().map(|r| (r.attribute.clone(), r.value.clone())).collect();
                    roles.push(RoleDoc { name: ssid.clone(), members, reply });
                }
            }
        }
        roles
    }
}

/// A role as the trust map snapshot stores it (the JSON policy format, owned).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleDoc {
    name: String,
    members: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    reply: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(deserialize_with = "objects")]
    roles: Vec<RoleDoc>,
}

/// A list of objects, each read as [`Object`].
fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Vec::<Object<T>>::deserialize(d)?.into_iter().map(|o| o.0).collect())
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PolicyDoc { name: None, roles: self.roles() }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Policy {
    /// A snapshot's embedded policy, which must load without a single complaint (we wrote
    /// it): entries normalised, SSIDs valid, no duplicate or conflict.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
        use serde::de::Error;
        let doc: PolicyDoc = object(d)?;
        let mut policy = Policy::default();
        for role in doc.roles {
            check_ssid(&role.name).map_err(D::Error::custom)?;
            let reply: Vec<ReplyAttr> =
                role.reply.into_iter().map(|(attribute, value)| ReplyAttr { attribute, value }).collect();
            for member in role.members {
                let entry = Entry::parse(&member).map_err(D::Error::custom)?;
                if entry.to_string() != member {
                    return Err(D::Error::custom(format!("member {member:?} is not in normal form")));
                }
                policy
                    .allow(&role.name, entry, &reply)
                    .map_err(|e| D::Error::custom(format!("member {member:?} of SSID {:?}: {e:?}", role.name)))?;
            }
        }
        Ok(policy)
    }
}

/// One problem found in a policy source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The source (a path or URL) as messages name it.
    pub file: String,
    /// 1-based line of the entry; in JSON, of the member or, for a role-wide problem, of
    /// the role.
    pub line: usize,
    /// What is wrong, worded for the operator who fixes the file.
    pub reason: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// A loaded policy with the entries that were skipped.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Every entry that loaded.
    pub policy: Policy,
    /// One per entry or line skipped (or duplicated), in the order found.
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads a policy file, choosing the format from its first non-blank character.
/// An unreadable file is an error (the caller keeps its previous policy).
pub fn load(path: &Path) -> Result<Loaded, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read { path: path.to_owned(), source })?;
    let file = path.display().to_string();
    if text.trim_start().starts_with('{') {
        parse_json(&text, &file)
    } else {
        Ok(parse_lines(&text, &file))
    }
}

/// SSIDs are 1..=32 octets (IEEE 802.11); we also refuse control characters and `|`.
fn check_ssid(ssid: &str) -> Result<(), String> {
    if ssid.is_empty() {
        return Err("empty SSID".into());
    }
    if ssid.len() > 32 {
        return Err(format!("SSID {ssid:?} is longer than 32 bytes"));
    }
    if ssid.chars().any(|c| c.is_control() || c == '|') {
        return Err(format!("SSID {ssid:?} contains a control character or '|'"));
    }
    Ok(())
}

/// Where each (SSID, entry) was first seen, to name both places of a conflict.
#[derive(Default)]
struct Seen(HashMap<(String, Entry), usize>);

impl Seen {
    /// Adds the entry; returns the diagnostic for a duplicate or a conflict.
    fn add(
        &mut self,
        policy: &mut Policy,
        ssid: &str,
        entry: Entry,
        reply: &[ReplyAttr],
        line: usize,
    ) -> Option<String> {
        let key = (ssid.to_owned(), entry.clone());
        match policy.allow(ssid, entry.clone(), reply) {
            Ok(()) => {
                self.0.insert(key, line);
                None
            }
            Err(Refused::Duplicate) => Some(format!("duplicate entry {entry} on SSID {ssid} (ignored)")),
            Err(Refused::Conflict) => {
                let first = self.0.get(&key).copied().unwrap_or(0);
                Some(format!(
                    "{entry} on SSID {ssid} is also listed at line {first} with other reply attributes; \
                     the entry at line {first} applies"
                ))
            }
        }
    }
}

/// Parses the `SSID|entry` line format.
pub fn parse_lines(text: &str, file: &str) -> Loaded {
    let mut out = Loaded::default();
    let mut seen = Seen::default();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let problem = (|| {
            let Some((ssid, entry)) = line.split_once('|') else {
                return Some(format!("expected SSID|device-name or SSID|*.domain, got {line:?}"));
            };
            if entry.contains('|') {
                return Some(format!("more than one '|' in {line:?}"));
            }
            if let Err(e) = check_ssid(ssid) {
                return Some(e);
            }
            match Entry::parse(entry) {
                Ok(entry) => seen.add(&mut out.policy, ssid, entry, &[], line_no),
                Err(e) => Some(e.to_string()),
            }
        })();
        if let Some(reason) = problem {
            out.diagnostics.push(Diagnostic { file: file.into(), line: line_no, reason });
        }
    }
    out
}

#[derive(Deserialize)]
struct JsonPolicy<'a> {
    /// The policy's own name: informational, but it must be a string if present.
    #[serde(default, rename = "name")]
    _name: Option<String>,
    #[serde(borrow)]
    roles: Vec<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRole<'a> {
    name: String,
    #[serde(default, borrow)]
    members: Vec<&'a serde_json::value::RawValue>,
    #[serde(default)]
    reply: BTreeMap<String, String>,
}

/// The 1-based line of `part`, a slice of `text`.
fn line_of(text: &str, part: &str) -> usize {
    let offset = (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize).min(text.len());
    text.as_bytes()[..offset].iter().filter(|b| **b == b'\n').count() + 1
}

/// Parses the JSON format. Syntax errors fail the whole file (with line and column);
/// a bad role or member is reported with its line and skipped.
pub fn parse_json(text: &str, file: &str) -> Result<Loaded, PolicyError> {
    let Object(doc): Object<JsonPolicy<'_>> =
        serde_json::from_str(text).map_err(|source| PolicyError::Json { file: file.to_owned(), source })?;
    let mut out = Loaded::default();
    let mut seen = Seen::default();
    for raw in doc.roles {
        let role_line = line_of(text, raw.get());
        let mut bad =
            |line: usize, reason: String| out.diagnostics.push(Diagnostic { file: file.into(), line, reason });
        let role: JsonRole<'_> = match serde_json::from_str::<Object<JsonRole<'_>>>(raw.get()) {
            Ok(Object(r)) => r,
            Err(e) => {
                bad(role_line, format!("role: {e}"));
                continue;
            }
        };
        if let Err(e) = check_ssid(&role.name) {
            bad(role_line, e);
            continue;
        }
        let reply: Vec<ReplyAttr> =
            role.reply.into_iter().map(|(attribute, value)| ReplyAttr { attribute, value }).collect();
        if role.members.is_empty() {
            bad(role_line, format!("role for SSID {} has no members", role.name));
            continue;
        }
        for member in role.members {
            let line = line_of(text, member.get());
            let entry = match serde_json::from_str::<String>(member.get()) {
                Ok(m) => Entry::parse(&m).map_err(|e| e.to_string()),
                Err(_) => Err(format!("member {} is not a string", member.get())),
            };
            match entry {
                Ok(entry) => {
                    if let Some(reason) = seen.add(&mut out.policy, &role.name, entry, &reply, line) {
                        bad(line, reason);
                    }
                }
                Err(e) => bad(line, e),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vlan(v: &str) -> Vec<ReplyAttr> {
        vec![ReplyAttr { attribute: "Tunnel-Private-Group-Id".into(), value: v.into() }]
    }

    #[test]
    fn line_format_loads_good_lines_and_reports_bad_ones() {
        let text = "# cars\nSSID1|car54._device.cars.example\n\nSSID1|CAR55._device.cars.example.\n\
                    SSID2|car54._device.cars.example\nSSID1|10.0.0.1\nSSID1|\nnopipe\nSSID1|a b.example\n\
                    SSID1|car54._device.cars.example\n|x.example\n";
        let l = parse_lines(text, "allowed.txt");
        assert_eq!(l.policy.ssids().count(), 2);
        let s1 = l.policy.ssid("SSID1").unwrap();
        assert!(s1.lookup("car54._device.cars.example").is_some());
        assert!(s1.lookup("car55._device.cars.example").is_some());
        assert_eq!(s1.name_count(), 2);
        assert!(l.policy.ssid("SSID2").unwrap().lookup("car54._device.cars.example").is_some());
        let lines: Vec<usize> = l.diagnostics.iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![6, 7, 8, 9, 10, 11]);
        assert!(l.diagnostics[0].reason.contains("IP address"), "{}", l.diagnostics[0]);
        assert!(l.diagnostics[1].reason.contains("empty name"));
        assert!(l.diagnostics[2].reason.contains("expected SSID|device-name"));
        assert!(l.diagnostics[3].reason.contains("' '"));
        assert!(l.diagnostics[4].reason.contains("duplicate"));
        assert!(l.diagnostics[5].reason.contains("empty SSID"));
        assert_eq!(l.diagnostics[0].to_string(), format!("allowed.txt:6: {}", l.diagnostics[0].reason));
    }

    #[test]
    fn domain_entries_admit_one_label_below_the_domain_only() {
        let l = parse_lines("Cars|*._device.cars.example\nCars|*.\nCars|a.*.example\nCars|*.com\n", "p.txt");
        assert_eq!(l.diagnostics.len(), 3, "{:?}", l.diagnostics);
        assert!(l.diagnostics[0].reason.contains("domain entry"));
        assert!(l.diagnostics[1].reason.contains("whole first label"));
        assert!(l.diagnostics[2].reason.contains("two labels"), "{}", l.diagnostics[2]);
        let p = &l.policy;
        assert!(matches!(p.verdict("Cars", "car54._device.cars.example"), Verdict::Allowed { exact: false, .. }));
        for no in [
            "_device.cars.example",
            "a.b._device.cars.example",
            "evil._device.cars.example.attacker.example",
            "car54._device.cars.example.com",
            "car54.x_device.cars.example",
        ] {
            assert_eq!(p.verdict("Cars", no), Verdict::NotAllowed, "{no}");
        }
        assert!(p.covers("car54._device.cars.example"));
        assert!(!p.covers("evil._device.cars.example.attacker.example"));
        assert_eq!(p.domains().into_iter().collect::<Vec<_>>(), vec!["_device.cars.example"]);
        assert!(p.names().is_empty(), "domain entries are not names to look up ahead");
    }

    #[test]
    fn an_exact_entry_decides_over_a_domain_entry_on_the_same_ssid() {
        let text = r#"{"roles": [
            {"name": "Cars", "members": ["*._device.cars.example"], "reply": {"Tunnel-Private-Group-Id": "20"}},
            {"name": "Cars", "members": ["car54._device.cars.example"], "reply": {"Tunnel-Private-Group-Id": "10"}}
        ]}"#;
        let l = parse_json(text, "p.json").unwrap();
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let v = |n: &str| match l.policy.verdict("Cars", n) {
            Verdict::Allowed { reply, exact } => (reply.to_vec(), exact),
            other => panic!("{n}: {other:?}"),
        };
        assert_eq!(v("car54._device.cars.example"), (vlan("10"), true));
        assert_eq!(v("car55._device.cars.example"), (vlan("20"), false));
    }

    #[test]
    fn conflicts_are_reported_with_both_lines_in_both_formats() {
        let text = "{\"roles\": [\n\
            {\"name\": \"Cars\", \"members\": [\"car54._device.cars.example\"], \"reply\": {\"Tunnel-Private-Group-Id\": \"10\"}},\n\
            {\"name\": \"Cars\",\n \"members\": [\"car54._device.cars.example\"], \"reply\": {\"Tunnel-Private-Group-Id\": \"30\"}},\n\
            {\"name\": \"Cars\", \"members\": [\"bad name\"]}\n]}";
        let l = parse_json(text, "p.json").unwrap();
        assert_eq!(l.diagnostics.len(), 2, "{:?}", l.diagnostics);
        assert_eq!(l.diagnostics[0].to_string(), "p.json:4: car54._device.cars.example on SSID Cars is also listed at line 2 with other reply attributes; the entry at line 2 applies");
        assert_eq!(l.diagnostics[1].line, 5);
        assert!(matches!(
            l.policy.verdict("Cars", "car54._device.cars.example"),
            Verdict::Allowed { reply, .. } if reply == vlan("10").as_slice()
        ));
        let l = parse_lines("Cars|*._device.cars.example\n\nCars|*._device.cars.example\n", "p.txt");
        assert_eq!(
            l.diagnostics[0].to_string(),
            "p.txt:3: duplicate entry *._device.cars.example on SSID Cars (ignored)"
        );
    }

    #[test]
    fn json_format_with_reply_attributes() {
        let text = r#"{"name": "fleet", "roles": [
            {"name": "SSID1", "members": ["car54._device.cars.example", "bad name"],
             "reply": {"Tunnel-Private-Group-Id": "10"}},
            {"name": "", "members": ["x._device.cars.example"]},
            {"name": "SSID2", "members": ["meter1._device.meters.example"], "colour": "red"}
        ]}"#;
        let l = parse_json(text, "policy.json").unwrap();
        let r = l.policy.ssid("SSID1").unwrap();
        assert_eq!(r.name_count(), 1);
        assert_eq!(r.lookup("car54._device.cars.example"), Some(vlan("10").as_slice()));
        assert!(l.policy.ssid("SSID2").is_none(), "a role with unknown fields is skipped");
        assert_eq!(l.diagnostics.len(), 3, "{:?}", l.diagnostics);
        assert_eq!(l.diagnostics[0].line, 2);
        assert!(l.diagnostics[0].reason.starts_with("device name \"bad name\""), "{}", l.diagnostics[0]);
        assert_eq!(l.diagnostics[1].line, 4);
        assert!(l.diagnostics[1].reason.contains("empty SSID"));
        assert_eq!(l.diagnostics[2].line, 5);
        assert!(l.diagnostics[2].reason.contains("unknown field"));
    }

    #[test]
    fn serialises_to_the_json_format_and_back() {
        let text = "Cars|car54._device.cars.example\nCars|*._device.cars.example\nMeters|m1._device.meters.example\n";
        let p = parse_lines(text, "p.txt").policy;
        let json = serde_json::to_string(&p).unwrap();
        let back: Policy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.interned("car54._device.cars.example").as_deref(), Some("car54._device.cars.example"));
    }

    #[test]
    fn json_syntax_error_names_file_and_position() {
        let e = parse_json("{\n \"roles\": [,]}", "p.json").unwrap_err().to_string();
        assert!(e.starts_with("p.json:2:"), "{e}");
    }
}
