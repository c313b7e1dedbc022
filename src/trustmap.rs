//! The trust map: one immutable snapshot of "which names may join which SSID, and which
//! certificate associations DNS publishes for each name".
//!
//! Built off the request path (by the sync, the file watcher or the operator CLI), then
//! shared read-only behind an `Arc`. Persisted as versioned JSON, always written to a
//! temporary name and renamed, so a reader never sees half a file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::association::Association;
use crate::name;
use crate::policy::{Policy, ReplyAttr};

/// Written in every snapshot; a file with another format string is not ours.
pub const FORMAT: &str = "rlm_rust-trustmap";
/// The snapshot layout version this build reads and writes.
pub const VERSION: u32 = 2;

/// What is known about one name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameEntry {
    /// What DNS published for the name, after the sync authenticated it.
    pub associations: Vec<Association>,
    /// Key ids (hex) of the CAs, in the snapshot's `cas`, that the name's handshake needs
    /// in the CA set. Empty for hand-made maps, whose CAs the operator installs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// When DNS last confirmed the entry (Unix seconds); 0 for hand-made maps.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub verified_at: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The on-disk form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotFile {
    format: String,
    version: u32,
    generation: u64,
    generated_at: i64,
    policy: Policy,
    names: BTreeMap<String, NameEntry>,
    /// CA certificates (PEM) by key id (hex): what the sync installed in the CA set, so a
    /// restart can serve and re-verify the last good state while DNS is down.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    cas: BTreeMap<String, String>,
}

/// A role as the request path needs it: O(1) membership.
#[derive(Debug, Clone, Default)]
pub struct RoleView {
    members: HashSet<String>,
    pub reply: Vec<ReplyAttr>,
}

impl RoleView {
    pub fn allows(&self, name: &str) -> bool {
        self.members.contains(name)
    }
}

/// An immutable snapshot.
#[derive(Debug, Clone, Default)]
pub struct TrustMap {
    pub generation: u64,
    pub generated_at: i64,
    ssids: HashMap<String, RoleView>,
    names: HashMap<String, NameEntry>,
    // Kept for re-serialisation and reports (the sync rewrites the file from it).
    policy: Policy,
    cas: BTreeMap<String, String>,
}

/// Why a snapshot file was refused.
#[derive(Debug)]
pub struct LoadError {
    pub file: String,
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.reason)
    }
}

impl std::error::Error for LoadError {}

impl TrustMap {
    /// Builds a snapshot from a policy and the associations found for its names. Entries
    /// of names the policy does not list are dropped: only allowed names are ever trusted.
    pub fn new(policy: Policy, mut names: BTreeMap<String, NameEntry>, generation: u64, generated_at: i64) -> TrustMap {
        let allowed = policy.names().into_iter().map(str::to_owned).collect::<HashSet<_>>();
        names.retain(|n, e| allowed.contains(n) && !e.associations.is_empty());
        let ssids = policy
            .ssids
            .iter()
            .map(|(ssid, role)| {
                (ssid.clone(), RoleView { members: role.members.iter().cloned().collect(), reply: role.reply.clone() })
            })
            .collect();
        TrustMap { generation, generated_at, ssids, names: names.into_iter().collect(), policy, cas: BTreeMap::new() }
    }

    /// Attaches the CA certificates (PEM by key id) the entries' `chain`s refer to.
    pub fn with_cas(mut self, cas: BTreeMap<String, String>) -> TrustMap {
        self.cas = cas;
        self
    }

    pub fn cas(&self) -> &BTreeMap<String, String> {
        &self.cas
    }

    pub fn role(&self, ssid: &str) -> Option<&RoleView> {
        self.ssids.get(ssid)
    }

    /// The certificate associations published for `name` (empty: nothing usable).
    pub fn associations(&self, name: &str) -> &[Association] {
        self.names.get(name).map(|e| e.associations.as_slice()).unwrap_or(&[])
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    pub fn association_count(&self) -> usize {
        self.names.values().map(|e| e.associations.len()).sum()
    }

    pub fn entries(&self) -> impl Iterator<Item = (&String, &NameEntry)> {
        self.names.iter()
    }

    pub fn to_json(&self) -> String {
        let file = SnapshotFile {
            format: FORMAT.into(),
            version: VERSION,
            generation: self.generation,
            generated_at: self.generated_at,
            policy: self.policy.clone(),
            names: self.names.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            cas: self.cas.clone(),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
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
        let doc: SnapshotFile =
            serde_json::from_str(text).map_err(|e| err(format!("line {} column {}: {e}", e.line(), e.column())))?;
        if doc.format != FORMAT {
            return Err(err(format!("format is {:?}, expected {FORMAT:?}", doc.format)));
        }
        if doc.version != VERSION {
            return Err(err(format!("version {} is not supported (this build reads {VERSION})", doc.version)));
        }
        for (ssid, role) in &doc.policy.ssids {
            for m in &role.members {
                check_normalised(m).map_err(|e| err(format!("policy SSID {ssid:?}: member {m:?}: {e}")))?;
            }
        }
        for (n, entry) in &doc.names {
            check_normalised(n).map_err(|e| err(format!("names: {n:?}: {e}")))?;
            // The CAs a name's handshake needs travel in the same snapshot.
            if let Some(k) = entry.chain.iter().find(|k| !doc.cas.contains_key(*k)) {
                return Err(err(format!("names: {n}: chain CA {k} is not in cas")));
            }
        }
        Ok(TrustMap::new(doc.policy, doc.names, doc.generation, doc.generated_at).with_cas(doc.cas))
    }

    pub fn load(path: &Path) -> Result<TrustMap, LoadError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| LoadError { file: file.clone(), reason: format!("cannot read: {e}") })?;
        TrustMap::from_json(&text, &file)
    }

    /// Writes the snapshot atomically: temp file in the same directory, fsync, rename.
    pub fn write_atomic(&self, path: &Path) -> std::io::Result<()> {
        write_file_atomic(path, self.to_json().as_bytes())
    }
}

fn check_normalised(n: &str) -> Result<(), String> {
    match name::normalize(n) {
        Ok(norm) if norm == n => Ok(()),
        Ok(norm) => Err(format!("not in normal form (expected {norm:?})")),
        Err(e) => Err(e.to_string()),
    }
}

/// Atomic replace of `path` with `bytes` (temp name in the same directory + rename).
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let base = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "trustmap".into());
    let tmp = dir.join(format!(".{base}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::association::{Matching, Selector, Usage};
    use crate::policy::Role;

    fn sample() -> Association {
        Association::from_data(Usage::PkixCd, Selector::Cert, Matching::Full, b"certificate", Some(1_800_000_000))
            .unwrap()
    }

    fn sample_policy() -> Policy {
        let mut p = Policy::default();
        p.ssids
            .insert("SSID1".into(), Role { members: ["car54._device.cars.example".to_string()].into(), reply: vec![] });
        p
    }

    fn entry() -> NameEntry {
        NameEntry { associations: vec![sample()], ..Default::default() }
    }

    #[test]
    fn round_trips_through_json() {
        let mut names = BTreeMap::new();
        names.insert("car54._device.cars.example".to_string(), entry());
        names.insert("stranger._device.x.example".to_string(), entry());
        let map = TrustMap::new(sample_policy(), names, 7, 1_750_000_000);
        assert_eq!(map.name_count(), 1, "names outside the policy are dropped");
        let back = TrustMap::from_json(&map.to_json(), "t.json").unwrap();
        assert_eq!(back.generation, 7);
        assert_eq!(back.associations("car54._device.cars.example"), &[sample()]);
        assert!(back.role("SSID1").unwrap().allows("car54._device.cars.example"));
        assert!(back.associations("stranger._device.x.example").is_empty());
    }

    #[test]
    fn refuses_bad_files_with_a_reason() {
        let good = TrustMap::new(sample_policy(), BTreeMap::new(), 1, 0).to_json();
        let e = TrustMap::from_json("{ not json", "m.json").unwrap_err();
        assert!(e.to_string().starts_with("m.json: line 1 column"), "{e}");
        let e = TrustMap::from_json(&good.replace("rlm_rust-trustmap", "other"), "m.json").unwrap_err();
        assert!(e.reason.contains("format"), "{e}");
        let e = TrustMap::from_json(&good.replace("\"version\": 2", "\"version\": 9"), "m.json").unwrap_err();
        assert!(e.reason.contains("version 9"), "{e}");
        let e = TrustMap::from_json(&good.replace("car54._device", "CAR54._device"), "m.json").unwrap_err();
        assert!(e.reason.contains("normal form"), "{e}");
    }

    #[test]
    fn a_version_1_file_is_refused_whole_with_what_to_do() {
        // The v1 layout: printable-field entries under "pins". Never half-read.
        let v1 = r#"{"format":"rlm_rust-trustmap","version":1,"generation":3,"generated_at":0,
            "policy":{"name":"t","ssids":{}},"names":{"car54._device.cars.example":{"pins":[{"serial":"01"}]}}}"#;
        let e = TrustMap::from_json(v1, "old.json").unwrap_err();
        assert!(e.reason.starts_with("version 1 matched printable certificate fields"), "{e}");
        assert!(e.reason.contains("rlm-rust map"), "{e}");
    }

    #[test]
    fn refuses_malformed_associations() {
        let mut names = BTreeMap::new();
        names.insert("car54._device.cars.example".to_string(), entry());
        let json = TrustMap::new(sample_policy(), names, 1, 0).to_json();
        let bad = json.replace("\"usage\": 4", "\"usage\": 1");
        let e = TrustMap::from_json(&bad, "m.json").unwrap_err();
        assert!(e.reason.contains("usage 1 is not 2, 3 or 4"), "{e}");
    }

    #[test]
    fn refuses_a_chain_reference_outside_the_snapshot() {
        let mut names = BTreeMap::new();
        let entry = NameEntry { associations: vec![sample()], chain: vec!["8538".into()], verified_at: 5 };
        names.insert("car54._device.cars.example".to_string(), entry);
        let map = TrustMap::new(sample_policy(), names.clone(), 1, 0);
        let e = TrustMap::from_json(&map.to_json(), "m.json").unwrap_err();
        assert!(e.reason.contains("chain CA 8538 is not in cas"), "{e}");
        let cas = BTreeMap::from([("8538".to_string(), "PEM".to_string())]);
        let back = TrustMap::from_json(&TrustMap::new(sample_policy(), names, 1, 0).with_cas(cas).to_json(), "m.json")
            .unwrap();
        assert_eq!(back.cas().len(), 1);
        assert_eq!(back.entries().next().unwrap().1.verified_at, 5);
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.json");
        std::fs::write(&path, "old").unwrap();
        TrustMap::new(sample_policy(), BTreeMap::new(), 3, 0).write_atomic(&path).unwrap();
        assert_eq!(TrustMap::load(&path).unwrap().generation, 3);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
    }
}
