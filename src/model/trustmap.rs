//! The trust map: one immutable snapshot of "which names may join which SSID, and which
//! certificate associations DNS publishes for each name".
//!
//! Built off the request path (by the sync, the file watcher or the operator CLI), then
//! shared read-only behind an `Arc`. The names live in shards, each behind its own `Arc`:
//! the sync publishes a change to a few names by copying only their shards, so a map of a
//! million names can change many times a second. Names, and each entry's associations and
//! CA list, are shared `Arc`s: a copied shard copies pointers, never certificate data, and
//! the sync's record of a name holds the very associations the map does.
//!
//! Persisted as versioned JSON, always written to a temporary name and renamed, so a reader
//! never sees half a file.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::association::Association;
use crate::model::name;
use crate::model::policy::NameHasher;
use crate::model::policy::Policy;
use crate::model::strict_json::Object;

/// Written in every snapshot; a file with another format string is not ours.
pub const FORMAT: &str = "rlm_rust-trustmap";
/// The snapshot layout version this build reads and writes.
pub const VERSION: u32 = 2;

/// Shards of the name table (a power of two).
const SHARDS: usize = 256;

/// The CAs (key ids, hex, in the snapshot's `cas`) one or more names' handshakes need.
/// Shared between all names with the same chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CaKeyIds(Arc<[Arc<str>]>);

impl CaKeyIds {
    /// A list of the key ids given, in their order.
    pub fn new(ids: impl IntoIterator<Item = Arc<str>>) -> CaKeyIds {
        CaKeyIds(ids.into_iter().collect())
    }

    /// The key ids, each a key of the snapshot's `cas`.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| &**s)
    }

    /// No CA listed, as in hand-made maps and in "nothing published" entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for CaKeyIds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|id| &**id))
    }
}

impl<'de> Deserialize<'de> for CaKeyIds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CaKeyIds, D::Error> {
        let ids = Vec::<String>::deserialize(d)?;
        Ok(CaKeyIds::new(ids.into_iter().map(Arc::from)))
    }
}

/// What is known about one name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameEntry {
    /// What DNS published for the name, after the sync authenticated it. Empty: DNS says
    /// there is nothing (a name discovered on demand, remembered for its negative TTL).
    /// Shared with the sync's record of the name: one copy per name in memory.
    pub associations: Arc<[Association]>,
    /// The CAs the name's handshake needs in the CA set. Empty for hand-made maps, whose
    /// CAs the operator installs.
    #[serde(default, skip_serializing_if = "CaKeyIds::is_empty")]
    pub chain: CaKeyIds,
    /// When DNS last confirmed the entry (Unix seconds); 0 for hand-made maps.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub verified_at: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Entries sit in the table itself (their parts are shared `Arc`s): one memory read fewer
/// per check, and copying a shard copies no certificate data.
type Shard = HashMap<Arc<str>, NameEntry, NameHasher>;

/// Picks a name's shard (keys random per process, like the shards' own tables): the
/// choice spreads the work of an update over the shards.
fn shard_of(name: &str) -> usize {
    static SEED: once_cell::sync::Lazy<foldhash::fast::RandomState> = once_cell::sync::Lazy::new(Default::default);
    (SEED.hash_one(name.as_bytes()) as usize) & (SHARDS - 1)
}

/// An immutable snapshot.
#[derive(Debug, Clone)]
pub struct TrustMap {
    /// Which publication this is: the sync numbers each map one above the last,
    /// continuing from the restored file after a restart; a hand-made map carries what its
    /// file says. The metrics show it.
    pub generation: u64,
    /// When the map was built (Unix seconds); the metrics' trust map age counts from it.
    pub generated_at: i64,
    policy: Arc<Policy>,
    shards: Arc<[Arc<Shard>]>,
    /// CA certificates (PEM) by key id (hex): what the sync installed in the CA set, so a
    /// restart can serve and re-verify the last good state while DNS is down.
    cas: Arc<BTreeMap<String, String>>,
}

impl Default for TrustMap {
    fn default() -> TrustMap {
        TrustMap::new(Policy::default(), BTreeMap::new(), 0, 0)
    }
}

/// Why a snapshot file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct LoadError {
    /// The file, as given.
    pub file: String,
    /// Why it was refused: unreadable, not JSON, another format or version, or
    /// inconsistent (a name not normalised, a chain CA missing from `cas`).
    pub reason: String,
}

/// Whether a snapshot under `policy` keeps `entry` for `name`: the name is allowed (an
/// exact entry, or under a domain entry), and an entry saying "nothing published" is kept
/// only for a name under a domain entry, where it tells "looked up, nothing there" from
/// "not looked up yet" (a name listed exactly is always looked up).
fn keeps(policy: &Policy, name: &str, entry: &NameEntry) -> bool {
    if entry.associations.is_empty() {
        policy.covers(name)
    } else {
        policy.interned(name).is_some() || policy.covers(name)
    }
}

impl TrustMap {
    /// Builds a snapshot from a policy and the entries found for its names. Entries of
    /// names the policy does not allow are dropped: only allowed names are ever trusted.
    pub fn new(policy: Policy, names: BTreeMap<String, NameEntry>, generation: u64, generated_at: i64) -> TrustMap {
        let policy = Arc::new(policy);
        let entries = names.into_iter().map(|(n, e)| (Arc::<str>::from(n), e));
        TrustMap::from_entries(policy, entries, generation, generated_at)
    }

    /// Builds a snapshot sharing `policy` and the entries (no copies).
    pub fn from_entries(
        policy: Arc<Policy>,
        entries: impl IntoIterator<Item = (Arc<str>, NameEntry)>,
        generation: u64,
        generated_at: i64,
    ) -> TrustMap {
        let mut shards: Vec<Shard> = (0..SHARDS).map(|_| Shard::default()).collect();
        for (name, entry) in entries {
            if !keeps(&policy, &name, &entry) {
                // A name listed again replaces what came before, here by nothing.
                shards[shard_of(&name)].remove(&*name);
                continue;
            }
            // One allocation per name, shared with the policy's entry for it.
            let name = policy.interned(&name).unwrap_or(name);
            shards[shard_of(&name)].insert(name, entry);
        }
        TrustMap {
            generation,
            generated_at,
            policy,
            shards: shards.into_iter().map(Arc::new).collect(),
            cas: Arc::default(),
        }
    }

    /// The next generation: `changes` applied (None removes the name), every untouched
    /// shard shared with this one. Names the policy does not allow are ignored.
    pub fn with_changes(
        &self,
        changes: impl IntoIterator<Item = (Arc<str>, Option<NameEntry>)>,
        generation: u64,
        generated_at: i64,
    ) -> TrustMap {
        let mut shards: Vec<Arc<Shard>> = self.shards.to_vec();
        for (name, entry) in changes {
            let shard = Arc::make_mut(&mut shards[shard_of(&name)]);
            match entry {
                Some(e) if keeps(&self.policy, &name, &e) => {
                    let name = self.policy.interned(&name).unwrap_or(name);
                    shard.insert(name, e);
                }
                _ => {
                    shard.remove(&*name);
                }
            }
        }
        TrustMap { generation, generated_at, policy: self.policy.clone(), shards: shards.into(), cas: self.cas.clone() }
    }

    /// The same names under another policy (entries it no longer allows are dropped).
    pub fn with_policy(&self, policy: Arc<Policy>, generation: u64, generated_at: i64) -> TrustMap {
        let entries: Vec<(Arc<str>, NameEntry)> =
            self.shards.iter().flat_map(|s| s.iter().map(|(n, e)| (n.clone(), e.clone()))).collect();
        TrustMap::from_entries(policy, entries, generation, generated_at).with_cas_shared(self.cas.clone())
    }

    /// Attaches the CA certificates (PEM by key id) the entries' chains refer to.
    pub fn with_cas(self, cas: BTreeMap<String, String>) -> TrustMap {
        self.with_cas_shared(Arc::new(cas))
    }

    /// Like [`TrustMap::with_cas`], sharing a CA table another map holds instead of a copy.
    pub fn with_cas_shared(mut self, cas: Arc<BTreeMap<String, String>>) -> TrustMap {
        self.cas = cas;
        self
    }

    /// The CA certificates (PEM by key id, hex) the entries' chains refer to, persisted
    /// with the map so a restart can install them again before DNS answers.
    pub fn cas(&self) -> &BTreeMap<String, String> {
        &self.cas
    }

    /// The CA table itself, for a later map to share without copying it.
    pub fn shared_cas(&self) -> Arc<BTreeMap<String, String>> {
        self.cas.clone()
    }

    /// The entry of `name` (normalised), if the map has one.
    pub fn entry(&self, name: &str) -> Option<&NameEntry> {
        self.shards[shard_of(name)].get(name)
    }

    /// The certificate associations published for `name` (empty: nothing usable).
    pub fn associations(&self, name: &str) -> &[Association] {
        self.entry(name).map(|e| &e.associations[..]).unwrap_or(&[])
    }

    /// The policy the map was built under: which names may join which SSID.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The policy itself, for another map built on it to share without copying it.
    pub fn shared_policy(&self) -> Arc<Policy> {
        self.policy.clone()
    }

    /// Names with an entry (negative ones included).
    pub fn name_count(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// Certificate associations over all names (for status and metrics; walks every entry).
    pub fn association_count(&self) -> usize {
        self.entries().map(|(_, e)| e.associations.len()).sum()
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (&Arc<str>, &NameEntry)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// The snapshot file's content, as [`TrustMap::write_json`] writes it.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        // Writing into memory cannot fail.
        let _ = self.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes the snapshot, names in order (stable, diffable files).
    /// Streams the on-disk form into `out` (what [`TrustMap::to_json`] returns).
    pub fn write_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut names: Vec<(&Arc<str>, &NameEntry)> = self.entries().collect();
        names.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let file = SnapshotOut {
            format: FORMAT,
            version: VERSION,
            generation: self.generation,
            generated_at: self.generated_at,
            policy: &self.policy,
            names: SortedNames(&names),
            cas: &self.cas,
        };
        serde_json::to_writer(&mut *out, &file).map_err(std::io::Error::other)
    }

    /// Parses and validates a snapshot. `file` names the source in errors.
    pub fn from_json(text: &str, file: &str) -> Result<TrustMap, LoadError> {
        let err = |reason: String| LoadError { file: file.into(), reason };
        // The version decides how the rest reads, so it is looked at first, on its own.
        #[derive(Deserialize)]
        struct Header {
            format: Option<String>,
            version: Option<u32>,
        }
        if let Ok(Header { format: Some(f), version: Some(v) }) = serde_json::from_str::<Header>(text) {
            if f == FORMAT && v == 1 {
                return Err(err("version 1 matched printable certificate fields, which this build no longer trusts; \
                     the DNS sync rebuilds the map, and `rlm-rust map` writes a hand-made one"
                    .into()));
            }
        }
        let Object(doc): Object<SnapshotIn> =
            serde_json::from_str(text).map_err(|e| err(format!("line {} column {}: {e}", e.line(), e.column())))?;
        if doc.format != FORMAT {
            return Err(err(format!("format is {:?}, expected {FORMAT:?}", doc.format)));
        }
        if doc.version != VERSION {
            return Err(err(format!("version {} is not supported (this build reads {VERSION})", doc.version)));
        }
        // One shared chain per distinct list of CAs, as the sync builds them.
        let mut chains: HashMap<CaKeyIds, CaKeyIds> = HashMap::new();
        let mut entries = Vec::with_capacity(doc.names.0.len());
        for (n, mut entry) in doc.names.0 {
            check_normalised(&n).map_err(|e| err(format!("names: {n:?}: {e}")))?;
            // The CAs a name's handshake needs travel in the same snapshot.
            if let Some(k) = entry.chain.ids().find(|k| !doc.cas.contains_key(*k)) {
                return Err(err(format!("names: {n}: chain CA {k} is not in cas")));
            }
            entry.chain = chains.entry(entry.chain.clone()).or_insert_with(|| entry.chain.clone()).clone();
            entries.push((Arc::<str>::from(n), entry));
        }
        Ok(TrustMap::from_entries(Arc::new(doc.policy), entries, doc.generation, doc.generated_at).with_cas(doc.cas))
    }
}

/// The on-disk form, as written (borrowing the map).
#[derive(Serialize)]
struct SnapshotOut<'a> {
    format: &'a str,
    version: u32,
    generation: u64,
    generated_at: i64,
    policy: &'a Policy,
    names: SortedNames<'a>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    cas: &'a BTreeMap<String, String>,
}

struct SortedNames<'a>(&'a [(&'a Arc<str>, &'a NameEntry)]);

impl Serialize for SortedNames<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(n, e)| (&***n, *e)))
    }
}

/// The on-disk form, as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotIn {
    format: String,
    version: u32,
    generation: u64,
    generated_at: i64,
    policy: Policy,
    names: NamesIn,
    #[serde(default)]
    cas: BTreeMap<String, String>,
}

/// The `names` object, read in file order without building a map first.
struct NamesIn(Vec<(String, NameEntry)>);

impl<'de> Deserialize<'de> for NamesIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NamesIn, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = NamesIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of names")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<NamesIn, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((name, Object(entry))) = map.next_entry::<String, Object<NameEntry>>()? {
                    out.push((name, entry));
                }
                Ok(NamesIn(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

fn check_normalised(n: &str) -> Result<(), String> {
    match name::normalize(n) {
        Ok(norm) if norm == n => Ok(()),
        Ok(norm) => Err(format!("not in normal form (expected {norm:?})")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::association::{Matching, Selector, Usage};
    use crate::model::policy::Entry;

    const CAR: &str = "car54._device.cars.example";

    fn sample() -> Association {
        Association::from_data(Usage::PkixCd, Selector::Cert, Matching::Full, b"certificate", Some(1_800_000_000))
            .unwrap()
    }

    fn sample_policy() -> Policy {
        let mut p = Policy::default();
        p.allow("SSID1", Entry::Name(CAR.into()), &[]).unwrap();
        p.allow("SSID1", Entry::Domain("_device.fleet.example".into()), &[]).unwrap();
        p
    }

    fn entry() -> NameEntry {
        NameEntry { associations: vec![sample()].into(), ..Default::default() }
    }

    #[test]
    fn round_trips_through_json() {
        let mut names = BTreeMap::new();
        names.insert(CAR.to_string(), entry());
        names.insert("stranger._device.x.example".to_string(), entry());
        names.insert("bus1._device.fleet.example".to_string(), NameEntry::default());
        let map = TrustMap::new(sample_policy(), names, 7, 1_750_000_000);
        assert_eq!(map.name_count(), 2, "names outside the policy are dropped, discovered ones kept");
        let back = TrustMap::from_json(&map.to_json(), "t.json").unwrap();
        assert_eq!(back.generation, 7);
        assert_eq!(back.associations(CAR), &[sample()]);
        assert!(back.policy().ssid("SSID1").unwrap().lookup(CAR).is_some());
        assert!(back.associations("stranger._device.x.example").is_empty());
        assert!(back.entry("bus1._device.fleet.example").is_some_and(|e| e.associations.is_empty()));
        assert_eq!(back.to_json(), map.to_json(), "the written form is a fixed point");
    }

    #[test]
    fn a_change_copies_only_the_shards_it_touches() {
        let names: BTreeMap<String, NameEntry> = (0..1000)
            .map(|i| (format!("bus{i}._device.fleet.example"), entry()))
            .chain([(CAR.to_string(), entry())])
            .collect();
        let map = TrustMap::new(sample_policy(), names, 1, 0);
        let next = map.with_changes(
            [(Arc::from(CAR), None), (Arc::from("bus1000._device.fleet.example"), Some(entry()))],
            2,
            0,
        );
        assert!(next.associations(CAR).is_empty() && !map.associations(CAR).is_empty());
        assert_eq!(next.name_count(), map.name_count());
        let shared = map.shards.iter().zip(next.shards.iter()).filter(|(a, b)| Arc::ptr_eq(a, b)).count();
        assert!(shared >= SHARDS - 2, "only {shared} of {SHARDS} shards shared");
        // A change for a name the policy does not allow is ignored.
        let next = next.with_changes([(Arc::from("x._device.other.example"), Some(entry()))], 3, 0);
        assert!(next.entry("x._device.other.example").is_none());
    }

    #[test]
    fn refuses_bad_files_with_a_reason() {
        let good = TrustMap::new(sample_policy(), BTreeMap::new(), 1, 0).to_json();
        let e = TrustMap::from_json("{ not json", "m.json").unwrap_err();
        assert!(e.to_string().starts_with("m.json: line 1 column"), "{e}");
        let e = TrustMap::from_json(&good.replace("rlm_rust-trustmap", "other"), "m.json").unwrap_err();
        assert!(e.reason.contains("format"), "{e}");
        let e = TrustMap::from_json(&good.replace("\"version\":2", "\"version\":9"), "m.json").unwrap_err();
        assert!(e.reason.contains("version 9"), "{e}");
        let e = TrustMap::from_json(&good.replace("car54._device", "CAR54._device"), "m.json").unwrap_err();
        assert!(e.reason.contains("normal form"), "{e}");
    }

    #[test]
    fn a_version_1_file_is_refused_whole_with_what_to_do() {
        // The v1 layout: printable-field entries under "pins". Never half-read.
        let v1 = r#"{"format":"rlm_rust-trustmap","version":1,"generation":3,"generated_at":0,
            "policy":{"ssids":{}},"names":{"car54._device.cars.example":{"pins":[{"serial":"01"}]}}}"#;
        let e = TrustMap::from_json(v1, "old.json").unwrap_err();
        assert!(e.reason.starts_with("version 1 matched printable certificate fields"), "{e}");
        assert!(e.reason.contains("rlm-rust map"), "{e}");
    }

    #[test]
    fn refuses_malformed_associations() {
        let mut names = BTreeMap::new();
        names.insert(CAR.to_string(), entry());
        let json = TrustMap::new(sample_policy(), names, 1, 0).to_json();
        let bad = json.replace("\"usage\":4", "\"usage\":1");
        let e = TrustMap::from_json(&bad, "m.json").unwrap_err();
        assert!(e.reason.contains("usage 1 is not 2, 3 or 4"), "{e}");
    }

    #[test]
    fn refuses_a_chain_reference_outside_the_snapshot() {
        let mut names = BTreeMap::new();
        let chain = CaKeyIds::new([Arc::from("8538")]);
        let entry = NameEntry { associations: vec![sample()].into(), chain, verified_at: 5 };
        names.insert(CAR.to_string(), entry);
        let map = TrustMap::new(sample_policy(), names.clone(), 1, 0);
        let e = TrustMap::from_json(&map.to_json(), "m.json").unwrap_err();
        assert!(e.reason.contains("chain CA 8538 is not in cas"), "{e}");
        let cas = BTreeMap::from([("8538".to_string(), "PEM".to_string())]);
        let back = TrustMap::from_json(&TrustMap::new(sample_policy(), names, 1, 0).with_cas(cas).to_json(), "m.json")
            .unwrap();
        assert_eq!(back.cas().len(), 1);
        assert_eq!(back.entry(CAR).unwrap().verified_at, 5);
    }
}
