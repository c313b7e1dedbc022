//! The CA set radiusd trusts for EAP-TLS, and its on-disk form (`ca_path` + bundle).
//!
//! No two certificates in the set share both a subject DN and a key identifier unless they
//! share the public key: OpenSSL finds a certificate's issuer by DN and tells candidates
//! apart by key id, so only that pair must name one key. The set decides which chains TLS
//! completes, not who is admitted (the check binds to the presented certificate itself), so
//! this protects availability: a CA published by one participant must not make OpenSSL pick
//! it as the issuer of another's devices. A certificate that would break the rule is
//! refused, and the caller logs it as a probable attack.
//!
//! On disk the set is an OpenSSL hashed directory (`<subject hash>.N`, as `c_rehash` /
//! `openssl rehash` make), which a running radiusd consults lazily by subject hash, so new
//! CAs are found without a restart. See [`CaSet::write_ca_path`] for how the directory is
//! updated without ever showing radiusd a half-written file or hiding a CA that stays.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use openssl::x509::{X509Ref, X509};

use crate::model::pki::{self, oneline};
use crate::stores::files;

/// Mode of the certificate files: radiusd runs as `freerad` and must read them.
pub const FILE_MODE: u32 = 0o644;
/// Mode of the `ca_path` directory.
pub const DIR_MODE: u32 = 0o755;
/// Why a CA was refused or the set could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CaSetError {
    /// Neither basicConstraints CA:TRUE nor self-signed (a DANE-EE device certificate
    /// that is its own anchor): it could issue nothing a handshake needs.
    #[error("{subject} is neither a CA certificate nor a self-signed device certificate")]
    NotCa {
        /// The certificate's subject, printed as radiusd prints it.
        subject: String,
    },
    /// No Subject Key Identifier: the set (and the AKI walk) needs one.
    #[error("CA {subject} has no subject key identifier")]
    NoKeyId {
        /// The certificate's subject, printed as radiusd prints it.
        subject: String,
    },
    /// Probable attack: a certificate with this subject DN and key id but a different
    /// public key is in the set. OpenSSL could not tell them apart when it looks for the
    /// issuer of a certificate naming that DN and key id.
    #[error(
        "CA {subject} (key id {key_id}) refused: a CA with that subject DN and key id \
         but a different key is already in the set"
    )]
    IdentityCollision {
        /// The refused certificate's subject, printed as radiusd prints it.
        subject: String,
        /// The contested key id, dashed hex.
        key_id: String,
    },
    /// Reading or writing `ca_path`, a file in it or the bundle failed; the set radiusd
    /// reads may be behind until the next write.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A `<hash>.N` file in `ca_path` holds no PEM certificate, or one that does not parse.
    #[error("{path}: not a certificate file: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// OpenSSL's reason, or what is missing.
        message: String,
    },
    /// A certificate loaded from `path` was refused.
    #[error("{path}: {error}")]
    InFile {
        /// The `<hash>.N` file it was read from.
        path: PathBuf,
        /// Why the certificate was refused.
        #[source]
        error: Box<CaSetError>,
    },
    /// An OpenSSL call failed (reading a key, encoding): no verdict on the certificate.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

impl CaSetError {
    /// A collision: the caller should log it as a probable attack, not a mere error.
    pub fn is_collision(&self) -> bool {
        match self {
            CaSetError::IdentityCollision { .. } => true,
            CaSetError::InFile { error, .. } => error.is_collision(),
            _ => false,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaSetError + '_ {
    move |source| CaSetError::Io { path: path.to_path_buf(), source }
}

/// What [`CaSet::write_ca_path`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaPathReport {
    /// `<hash>.N` files written (new or changed content).
    pub written: usize,
    /// Files already holding the right certificate.
    pub unchanged: usize,
    /// Stale `<hash>.N` files removed.
    pub removed: usize,
}

/// CA certificates keyed by Subject Key Identifier. One key id may hold several
/// certificates only if they share the public key (a CA re-issued with new dates).
#[derive(Debug, Clone, Default)]
pub struct CaSet {
    by_key_id: BTreeMap<Vec<u8>, Vec<X509>>,
}

impl CaSet {
    /// An empty set.
    pub fn new() -> CaSet {
        CaSet::default()
    }

    /// Adds a CA. Refuses one whose key id and subject DN together (the DN compared as
    /// OpenSSL compares names, so case or string-type variants do not slip through) already
    /// belong to a different public key. The same key re-issued is accepted; the same certificate
    /// twice is a no-op.
    pub fn insert(&mut self, cert: X509) -> Result<(), CaSetError> {
        if let Some(key_id) = self.check(&cert)? {
            let entry = self.by_key_id.entry(key_id).or_default();
            entry.push(cert);
            entry.sort_by_cached_key(|c| c.to_der().unwrap_or_default());
        }
        Ok(())
    }

    /// Adds every CA of `cas` (e.g. a chain's CAs) or none: a chain is only useful whole
    /// (ARCHITECTURE.md, invariant 5), so a refused CA must not leave its siblings behind.
    pub fn insert_all(&mut self, cas: &[X509]) -> Result<(), CaSetError> {
        let mut next = self.clone();
        for ca in cas {
            next.insert(ca.clone())?;
        }
        *self = next;
        Ok(())
    }

    /// Would `cert` be accepted? Ok(Some(key id)) if new, Ok(None) if already present.
    fn check(&self, cert: &X509Ref) -> Result<Option<Vec<u8>>, CaSetError> {
        let subject = || oneline(cert.subject_name());
        // A self-signed device certificate (DANE-EE with no CA at all) is its own trust
        // anchor: OpenSSL accepts it from ca_path, and it can issue nothing (CA:FALSE).
        if !pki::is_ca(cert) && !pki::is_self_signed_root(cert) {
            return Err(CaSetError::NotCa { subject: subject() });
        }
        let key_id = cert
            .subject_key_id()
            .map(|k| k.as_slice().to_vec())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| CaSetError::NoKeyId { subject: subject() })?;
        let key = cert.public_key()?;
        let der = cert.to_der()?;
        for existing in self.by_key_id.get(&key_id).into_iter().flatten() {
            // Same key id, another DN: OpenSSL looks issuers up by DN, no confusion.
            if existing.subject_name().try_cmp(cert.subject_name())? != Ordering::Equal {
                continue;
            }
            if !existing.public_key()?.public_eq(&key) {
                return Err(CaSetError::IdentityCollision {
                    subject: subject(),
                    key_id: crate::model::pki::dashed_hex(&key_id),
                });
            }
            if existing.to_der()? == der {
                return Ok(None);
            }
        }
        Ok(Some(key_id))
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.by_key_id.values().map(Vec::len).sum()
    }

    /// No certificate: written out, it lets no client chain verify through `ca_path`.
    pub fn is_empty(&self) -> bool {
        self.by_key_id.is_empty()
    }

    /// The certificates filed under `key_id` (several only for a re-issued key).
    pub fn get(&self, key_id: &[u8]) -> &[X509] {
        self.by_key_id.get(key_id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether this exact certificate is in the set.
    pub fn contains(&self, cert: &X509Ref) -> bool {
        let (Some(ski), Ok(der)) = (cert.subject_key_id(), cert.to_der()) else {
            return false;
        };
        self.get(ski.as_slice()).iter().any(|c| c.to_der().map(|d| d == der).unwrap_or(false))
    }

    /// Every certificate, ordered by key id.
    pub fn iter(&self) -> impl Iterator<Item = &X509> {
        self.by_key_id.values().flatten()
    }

    /// Writes the set into `dir` as an OpenSSL hashed directory, updating it in place.
    ///
    /// radiusd (OpenSSL `by_dir`) looks a CA up by scanning `<hash>.0`, `<hash>.1`, ...
    /// one file at a time until a number is missing; a file it opens must be complete.
    /// The scan is not atomic, so the update must be safe for a scan interleaved with it:
    /// - every file is written to a hidden temp name, fsynced, and renamed over its final
    ///   name: a reader sees the old or the new content, never a partial one;
    /// - a certificate that stays never moves: it keeps its position in its hash bucket.
    ///   A position freed by a removed certificate is taken by a new one, or, if none is
    ///   left and a staying one sits above it, by a duplicate of a staying certificate
    ///   (OpenSSL ignores duplicates). Only positions above the last one in use are
    ///   deleted, top down. So positions below a staying certificate exist at every
    ///   instant and every scan that runs during the update still reaches it;
    /// - files already holding the right certificate are not touched.
    ///
    /// The directory itself is never renamed or replaced: radiusd keeps `ca_path` as a
    /// path and resolves it per file, so a swap of directories (rename or symlink) would
    /// let one scan straddle two generations, or find no directory at all for a moment.
    /// Single writer: one sync thread owns the directory.
    pub fn write_ca_path(&self, dir: &Path) -> Result<CaPathReport, CaSetError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(io_err(dir))?;
        remove_stale_temp_files(dir)?;
        let old = read_hashed_files(dir)?;

        let mut new: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
        for cert in self.iter() {
            new.entry(cert.subject_name_hash()).or_default().push(cert.to_pem()?);
        }
        let hashes: BTreeSet<u32> = old.keys().chain(new.keys()).copied().collect();
        let empty_old = BTreeMap::new();
        let mut report = CaPathReport::default();
        for hash in hashes {
            let old_bucket = old.get(&hash).unwrap_or(&empty_old);
            let new_bucket = new.get(&hash).map(Vec::as_slice).unwrap_or(&[]);
            for step in plan_bucket(old_bucket, new_bucket) {
                match step {
                    Step::Keep(n) => {
                        let path = dir.join(hashed_name(hash, n));
                        fs::set_permissions(&path, fs::Permissions::from_mode(FILE_MODE)).map_err(io_err(&path))?;
                        report.unchanged += 1;
                    }
                    Step::Write(n, content) => {
                        write_atomic(&dir.join(hashed_name(hash, n)), content)?;
                        report.written += 1;
                    }
                    Step::Remove(n) => {
                        let path = dir.join(hashed_name(hash, n));
                        fs::remove_file(&path).map_err(io_err(&path))?;
                        report.removed += 1;
                    }
                }
            }
        }
        sync_dir(dir)?;
        Ok(report)
    }

    /// Writes every certificate into one PEM file (for tools and `ca_file`), atomically:
    /// temp file in the same directory, fsync, rename.
    pub fn write_bundle(&self, path: &Path) -> Result<(), CaSetError> {
        let mut certs: Vec<&X509> = self.iter().collect();
        certs.sort_by_cached_key(|c| (oneline(c.subject_name()), c.to_der().unwrap_or_default()));
        let mut out = Vec::new();
        for c in certs {
            // Text before a PEM block is ignored by OpenSSL; it helps a human reading it.
            out.extend_from_slice(format!("# {}\n", oneline(c.subject_name())).as_bytes());
            out.extend_from_slice(&c.to_pem()?);
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        write_atomic(path, &out)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// Loads the set last written to `dir` (at startup, before DNS answers). Every
    /// `<hash>.N` file is read and every certificate goes through [`CaSet::insert`], so
    /// a tampered directory with colliding CAs is refused, naming the file.
    pub fn from_ca_path(dir: &Path) -> Result<CaSet, CaSetError> {
        let mut set = CaSet::new();
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            if let Some(name) = entry.file_name().to_str() {
                if parse_hashed_name(name).is_some() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let pem = fs::read(&path).map_err(io_err(&path))?;
            let certs = X509::stack_from_pem(&pem)
                .map_err(|e| CaSetError::Parse { path: path.clone(), message: e.to_string() })?;
            if certs.is_empty() {
                return Err(CaSetError::Parse { path, message: "no PEM certificate".into() });
            }
            for cert in certs {
                set.insert(cert).map_err(|e| CaSetError::InFile { path: path.clone(), error: Box::new(e) })?;
            }
        }
        Ok(set)
    }
}

/// `<hash as 8 lower-case hex digits>.<n>`, OpenSSL's by_dir name for certificates.
pub fn hashed_name(hash: u32, n: u32) -> String {
    format!("{hash:08x}.{n}")
}

/// The (hash, n) of a `<8 hex>.<decimal>` certificate file name (CRLs' `.rN` excluded).
pub fn parse_hashed_name(name: &str) -> Option<(u32, u32)> {
    let (h, n) = name.split_once('.')?;
    if h.len() != 8 || !h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((u32::from_str_radix(h, 16).ok()?, n.parse().ok()?))
}

/// One step of updating a hash bucket, in execution order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step<'a> {
    /// Position n already holds the right content.
    Keep(u32),
    Write(u32, &'a [u8]),
    Remove(u32),
}

/// The steps turning `old` (position -> file content) into a bucket holding exactly the
/// contents of `new` (plus filler duplicates), such that a scan from position 0 up to the
/// first gap, interleaved in any way with the steps, finds every content that is both in
/// `new` and visible in `old` (see [`CaSet::write_ca_path`]).
fn plan_bucket<'a>(old: &BTreeMap<u32, Vec<u8>>, new: &'a [Vec<u8>]) -> Vec<Step<'a>> {
    // What OpenSSL currently sees: positions 0.. up to the first gap.
    let visible: Vec<&Vec<u8>> = (0u32..).map_while(|n| old.get(&n)).collect();
    // Staying certificates keep their (first) position; everything else is free.
    let mut slots: Vec<Option<&'a [u8]>> = Vec::with_capacity(visible.len() + new.len());
    for content in &visible {
        let keep = new.iter().find(|c| c == content).map(Vec::as_slice).filter(|c| !slots.contains(&Some(*c)));
        slots.push(keep);
    }
    // New certificates fill free positions from the bottom, then extend the bucket.
    let mut pending =
        new.iter().map(Vec::as_slice).filter(|c| !slots.contains(&Some(*c))).collect::<Vec<_>>().into_iter();
    for slot in slots.iter_mut().filter(|s| s.is_none()) {
        match pending.next() {
            Some(c) => *slot = Some(c),
            None => break,
        }
    }
    slots.extend(pending.map(Some));
    // Free positions above the last one in use go away; those below are filled with a
    // duplicate so the numbering has no gap under a certificate that stays.
    while slots.last() == Some(&None) {
        slots.pop();
    }
    let filler = slots.iter().flatten().next().copied();
    let mut steps = Vec::new();
    for (n, slot) in (0u32..).zip(&slots) {
        let Some(content) = slot.or(filler) else {
            continue; // unreachable: a non-empty `slots` ends with Some
        };
        if old.get(&n).map(Vec::as_slice) == Some(content) {
            steps.push(Step::Keep(n));
        } else {
            steps.push(Step::Write(n, content));
        }
    }
    let len = slots.len() as u32;
    for n in old.keys().rev().copied().filter(|n| *n >= len) {
        steps.push(Step::Remove(n));
    }
    steps
}

/// hash -> position -> content of the existing `<hash>.N` files.
fn read_hashed_files(dir: &Path) -> Result<BTreeMap<u32, BTreeMap<u32, Vec<u8>>>, CaSetError> {
    let mut out: BTreeMap<u32, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let Some((hash, n)) = entry.file_name().to_str().and_then(parse_hashed_name) else {
            continue;
        };
        let path = entry.path();
        // Unreadable (e.g. a dangling symlink left by `openssl rehash`): treat as
        // different content, so it is overwritten or removed.
        let content = fs::read(&path).unwrap_or_default();
        out.entry(hash).or_default().insert(n, content);
    }
    Ok(out)
}

fn remove_stale_temp_files(dir: &Path) -> Result<(), CaSetError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_name().to_str().is_some_and(files::is_temp_name) {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// Writes `content` to `path` atomically, mode [`FILE_MODE`] (see [`files::replace_with`]).
fn write_atomic(path: &Path, content: &[u8]) -> Result<(), CaSetError> {
    files::replace_with(path, FILE_MODE, |f| f.write_all(content)).map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), CaSetError> {
    files::sync_dir(dir).map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names() {
        assert_eq!(hashed_name(0x1a2b, 3), "00001a2b.3");
        assert_eq!(parse_hashed_name("00001a2b.3"), Some((0x1a2b, 3)));
        assert_eq!(parse_hashed_name("deadbeef.0"), Some((0xdeadbeef, 0)));
        for bad in [
            "DEADBEEF.0",
            "deadbeef.r0",
            "deadbeef",
            "deadbee.0",
            "deadbeef.",
            "deadbeef.0.pem",
            ".rlm_rust-tmp.1.2",
            "deadbeef.-1",
        ] {
            assert_eq!(parse_hashed_name(bad), None, "{bad}");
        }
    }

    /// Whether a scan (read 0, 1, ... until a position is missing), interleaved in any
    /// way with the states the update goes through, can miss `c`.
    fn scan_can_miss(states: &[BTreeMap<u32, Vec<u8>>], c: &[u8]) -> bool {
        // miss(k, t): reading position k no earlier than state t can end without `c`.
        fn miss(states: &[BTreeMap<u32, Vec<u8>>], c: &[u8], k: u32, t: usize) -> bool {
            (t..states.len()).any(|t2| match states[t2].get(&k) {
                None => true,
                Some(x) if x.as_slice() == c => false,
                Some(_) => miss(states, c, k + 1, t2),
            })
        }
        miss(states, c, 0, 0)
    }

    /// Applies the plan; checks every staying content is found by every interleaved scan
    /// and that nothing but `new` (and duplicates of it) remains.
    fn simulate(old: &BTreeMap<u32, Vec<u8>>, new: &[Vec<u8>]) -> BTreeMap<u32, Vec<u8>> {
        let visible_before: Vec<Vec<u8>> = (0u32..).map_while(|n| old.get(&n).cloned()).collect();
        let mut states = vec![old.clone()];
        for step in plan_bucket(old, new) {
            let mut next = states[states.len() - 1].clone();
            match step {
                Step::Keep(_) => continue,
                Step::Write(n, c) => {
                    next.insert(n, c.to_vec());
                }
                Step::Remove(n) => {
                    next.remove(&n);
                }
            }
            states.push(next);
        }
        for c in new.iter().filter(|c| visible_before.contains(c)) {
            assert!(!scan_can_miss(&states, c), "{c:?} can be missed: old {old:?} new {new:?} states {states:?}");
        }
        states.pop().unwrap_or_default()
    }

    fn bucket(items: &[&str]) -> BTreeMap<u32, Vec<u8>> {
        (0u32..).zip(items).map(|(n, s)| (n, s.as_bytes().to_vec())).collect()
    }

    fn contents(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn bucket_updates_never_hide_a_certificate_that_stays() {
        let pool = ["a", "b", "c", "d"];
        // Every old ordering of up to 3 of the pool against every subset as the new set.
        let mut olds: Vec<Vec<&str>> = vec![vec![]];
        for _ in 0..3 {
            let mut more = Vec::new();
            for o in &olds {
                for p in pool {
                    if !o.contains(&p) {
                        let mut x = o.clone();
                        x.push(p);
                        more.push(x);
                    }
                }
            }
            olds.extend(more);
        }
        olds.sort();
        olds.dedup();
        for old in &olds {
            for mask in 0u32..16 {
                let new: Vec<&str> = (0..4).filter(|i| mask & (1 << i) != 0).map(|i| pool[i]).collect();
                let old_b = bucket(old);
                let new_c = contents(&new);
                let end = simulate(&old_b, &new_c);
                let mut got: Vec<Vec<u8>> = end.values().cloned().collect();
                got.sort();
                got.dedup();
                let mut want = new_c.clone();
                want.sort();
                assert_eq!(got, want, "old {old:?} new {new:?}");
                let n = end.len() as u32;
                assert_eq!(
                    end.keys().copied().collect::<Vec<_>>(),
                    (0..n).collect::<Vec<_>>(),
                    "numbering not contiguous: old {old:?} new {new:?}"
                );
                // Fillers only where a removed certificate left a hole below one that stays.
                assert!(n as usize <= old.len().max(new.len()), "old {old:?} new {new:?}");
            }
        }
    }

    #[test]
    fn unchanged_files_are_not_rewritten_and_gaps_are_cleaned() {
        let old = bucket(&["a", "b"]);
        let new = contents(&["a", "b"]);
        assert_eq!(plan_bucket(&old, &new), vec![Step::Keep(0), Step::Keep(1)]);
        // A stray file beyond a gap is garbage OpenSSL never sees: removed.
        let mut old = bucket(&["a"]);
        old.insert(5, b"z".to_vec());
        let new = contents(&["a"]);
        assert_eq!(plan_bucket(&old, &new), vec![Step::Keep(0), Step::Remove(5)]);
    }

    #[test]
    fn staying_certificates_never_move() {
        // x removed below a: x's position gets a duplicate of a, a stays at 1.
        let old = bucket(&["x", "a"]);
        let new = contents(&["a"]);
        assert_eq!(plan_bucket(&old, &new), vec![Step::Write(0, b"a"), Step::Keep(1)]);
        // x removed above a: simply deleted.
        let old = bucket(&["a", "x"]);
        assert_eq!(plan_bucket(&old, &new), vec![Step::Keep(0), Step::Remove(1)]);
        // A new certificate takes the freed position.
        let old = bucket(&["a", "x", "b"]);
        let new = contents(&["b", "d", "a"]);
        assert_eq!(plan_bucket(&old, &new), vec![Step::Keep(0), Step::Write(1, b"d"), Step::Keep(2)]);
    }
}
