//! The CAs the published names need, and which of them go into the CA set.
//!
//! The sync learns CA certificates from every name's chain (PKIX-CD, CA-issued DANE-EE,
//! DANE-TA anchors, self-signed DANE-EE certificates). The book counts, per distinct
//! certificate, the names that need it and the authority hosts they come from, and decides
//! the CA set from that.
//!
//! Who keeps a contested identity: OpenSSL finds a certificate's issuer by subject DN and
//! tells candidates apart by key id, so two CAs with the same DN *and* key id but different
//! keys cannot both work; one participant could use that to break another's handshakes.
//! The content of two such claims is symmetric (either side can publish devices under
//! its CA), so the book decides by history: a CA that was in the last written CA set
//! (persisted with the trust map, so a restart does not reset it) keeps its place, the
//! newcomer is refused; when none was, all claimants are refused (order of discovery must
//! not pick a winner). A refusal is logged as a probable attack naming the authority hosts
//! of both sides, and is not forever: every recount decides again, so once the kept CA is
//! no longer needed by any published name, a remaining claimant enters.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use openssl::x509::X509;

use crate::model::pki;

/// SHA-256 of a certificate's DER: how the book (and the snapshot's `cas`) names it.
pub type CaDigest = [u8; 32];

/// The book's name for `cert`; None only when OpenSSL cannot encode it to DER.
pub fn digest_of(cert: &X509) -> Option<CaDigest> {
    cert.to_der().ok().map(|der| openssl::sha::sha256(&der))
}

/// One distinct CA certificate.
#[derive(Debug, Clone)]
pub struct CaSlot {
    /// The CA certificate itself.
    pub cert: X509,
    /// Its SubjectPublicKeyInfo: what identifies the key.
    pub spki: Vec<u8>,
    /// Its Subject Key Identifier (empty when it has none): with the subject DN, what
    /// OpenSSL picks an issuer by, hence what two CAs can contest.
    pub key_id: Vec<u8>,
    /// Hex of the digest: its name in the snapshot's `cas`.
    pub id: Arc<str>,
    /// Its PEM text, as written into the CA set and the snapshot's `cas`.
    pub pem: Arc<str>,
    /// Published names that need it (as of the last recount).
    pub users: usize,
    /// Authority hosts of those names.
    pub hosts: BTreeSet<String>,
}

impl CaSlot {
    fn new(cert: &X509, digest: &CaDigest) -> Option<CaSlot> {
        Some(CaSlot {
            cert: cert.clone(),
            spki: pki::spki_der(cert).ok()?,
            key_id: cert.subject_key_id().map(|k| k.as_slice().to_vec()).unwrap_or_default(),
            id: Arc::from(hex::encode(digest)),
            pem: Arc::from(String::from_utf8_lossy(&cert.to_pem().ok()?).into_owned()),
            users: 0,
            hosts: BTreeSet::new(),
        })
    }
}

/// A contested identity: the CAs claiming one (DN, key id) with different keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contest {
    /// The contested subject DN, one-line form.
    pub subject: String,
    /// The contested key id, dashed hex.
    pub key_id: String,
    /// Authority hosts of the claimant kept (the one in the last written CA set); empty
    /// when none was established and every claimant is refused.
    pub kept_hosts: BTreeSet<String>,
    /// Authority hosts of the refused claimants: where the probable attack comes from.
    /// When no claimant was established, every claimant's hosts, the genuine one's too.
    pub refused_hosts: BTreeSet<String>,
}

/// Every CA known to the sync.
#[derive(Debug, Default)]
pub struct CaBook {
    slots: HashMap<CaDigest, CaSlot>,
}

impl CaBook {
    /// The slot of `cert`, created on first sight.
    pub fn learn(&mut self, cert: &X509) -> Option<CaDigest> {
        let digest = digest_of(cert)?;
        if let std::collections::hash_map::Entry::Vacant(e) = self.slots.entry(digest) {
            e.insert(CaSlot::new(cert, &digest)?);
        }
        Some(digest)
    }

    /// Whether a slot for `digest` exists (learnt and not dropped by a recount).
    pub fn knows(&self, digest: &CaDigest) -> bool {
        self.slots.contains_key(digest)
    }

    /// The slot of `digest`, if the book holds it.
    pub fn get(&self, digest: &CaDigest) -> Option<&CaSlot> {
        self.slots.get(digest)
    }

    /// Recounts the users from scratch: `uses` yields, per published name, its authority
    /// host and the digests of the CAs it needs. Slots nobody uses any more are dropped.
    pub fn recount<'a>(&mut self, uses: impl Iterator<Item = (Option<String>, &'a [CaDigest])>) {
        for slot in self.slots.values_mut() {
            slot.users = 0;
            slot.hosts.clear();
        }
        for (host, digests) in uses {
            for d in digests {
                if let Some(slot) = self.slots.get_mut(d) {
                    slot.users += 1;
                    if let Some(h) = &host {
                        if !slot.hosts.contains(h) {
                            slot.hosts.insert(h.clone());
                        }
                    }
                }
            }
        }
        self.slots.retain(|_, s| s.users > 0);
    }

    /// Splits the used CAs into the accepted set and the refused (contested) ones, by the
    /// rule at the top of this file. `established`: keys (SPKI) of the last written set.
    pub fn decide(&self, established: &HashSet<Vec<u8>>) -> (HashSet<CaDigest>, Vec<Contest>, HashSet<CaDigest>) {
        // Group by (key id, DN as OpenSSL compares names): per key id, the groups of
        // slots whose DNs compare equal.
        type SameIdentity<'b> = Vec<(&'b CaDigest, &'b CaSlot)>;
        let mut groups: HashMap<&[u8], Vec<SameIdentity<'_>>> = HashMap::new();
        for (d, slot) in &self.slots {
            let by_name = groups.entry(slot.key_id.as_slice()).or_default();
            let same = by_name
                .iter_mut()
                .find(|g| matches!(g[0].1.cert.subject_name().try_cmp(slot.cert.subject_name()), Ok(Ordering::Equal)));
            match same {
                Some(g) => g.push((d, slot)),
                None => by_name.push(vec![(d, slot)]),
            }
        }
        let mut refused = HashSet::new();
        let mut contests = Vec::new();
        for group in groups.values().flatten() {
            let keys: BTreeSet<&[u8]> = group.iter().map(|(_, s)| s.spki.as_slice()).collect();
            if keys.len() < 2 {
                continue;
            }
            let mut contest = Contest {
                subject: pki::oneline(group[0].1.cert.subject_name()),
                key_id: crate::model::pki::dashed_hex(&group[0].1.key_id),
                kept_hosts: BTreeSet::new(),
                refused_hosts: BTreeSet::new(),
            };
            for (d, slot) in group {
                if established.contains(&slot.spki) {
                    contest.kept_hosts.extend(slot.hosts.iter().cloned());
                } else {
                    refused.insert(**d);
                    contest.refused_hosts.extend(slot.hosts.iter().cloned());
                }
            }
            contests.push(contest);
        }
        let accepted = self.slots.keys().filter(|d| !refused.contains(*d)).copied().collect();
        contests.sort_by(|a, b| (&a.subject, &a.key_id).cmp(&(&b.subject, &b.key_id)));
        (accepted, contests, refused)
    }

    /// Distinct CA certificates held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the book holds no CA.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use testkit::capki::{issue, Spec};

    /// A self-signed CA named `cn` with key id `key_id` (a fresh key each call).
    pub(crate) fn ca(cn: &str, key_id: &[u8]) -> X509 {
        issue(&Spec { ski: Some(key_id.to_vec()), ..Spec::ca("Test Org", cn).subject(&[("CN", cn)]) }, None).cert
    }

    fn book(cas: &[(&X509, &str)]) -> (CaBook, Vec<CaDigest>) {
        let mut b = CaBook::default();
        let digests: Vec<CaDigest> = cas.iter().map(|(c, _)| b.learn(c).unwrap()).collect();
        let uses: Vec<(Option<String>, Vec<CaDigest>)> =
            cas.iter().zip(&digests).map(|((_, host), d)| (Some(host.to_string()), vec![*d])).collect();
        b.recount(uses.iter().map(|(h, d)| (h.clone(), d.as_slice())));
        (b, digests)
    }

    #[test]
    fn the_established_claimant_keeps_a_contested_identity_in_either_order() {
        let real = ca("Cars Device CA", &[1; 20]);
        let copy = ca("Cars Device CA", &[1; 20]);
        for (first, second) in [(&real, &copy), (&copy, &real)] {
            let (b, d) = book(&[(first, "device.cars.example"), (second, "device.meters.example")]);
            let established: HashSet<Vec<u8>> = [b.get(&d[0]).unwrap().spki.clone()].into();
            let (accepted, contests, refused) = b.decide(&established);
            assert_eq!(accepted, [d[0]].into());
            assert_eq!(refused, [d[1]].into());
            assert_eq!(contests.len(), 1);
            assert_eq!(contests[0].kept_hosts, ["device.cars.example".to_string()].into());
            assert_eq!(contests[0].refused_hosts, ["device.meters.example".to_string()].into());
        }
    }

    #[test]
    fn newcomers_claiming_one_identity_are_all_refused_and_a_claim_alone_enters() {
        let a = ca("Cars Device CA", &[1; 20]);
        let b2 = ca("Cars Device CA", &[1; 20]);
        let (b, d) = book(&[(&a, "h1.example"), (&b2, "h2.example")]);
        let (accepted, _, refused) = b.decide(&HashSet::new());
        assert!(accepted.is_empty());
        assert_eq!(refused.len(), 2);
        // Once one claimant is no longer needed, the other enters at the next recount.
        let mut b = b;
        b.recount([(Some("h2.example".to_string()), &[d[1]][..])].into_iter());
        let (accepted, contests, _) = b.decide(&HashSet::new());
        assert_eq!(accepted, [d[1]].into());
        assert!(contests.is_empty());
    }

    #[test]
    fn a_shared_dn_or_a_shared_key_id_alone_is_no_contest() {
        let a = ca("Cars Device CA", &[1; 20]);
        let same_dn = ca("Cars Device CA", &[2; 20]);
        let same_id = ca("Meters Device CA", &[1; 20]);
        let (b, _) = book(&[(&a, "h1.example"), (&same_dn, "h2.example"), (&same_id, "h3.example")]);
        let (accepted, contests, _) = b.decide(&HashSet::new());
        assert_eq!(accepted.len(), 3);
        assert!(contests.is_empty());
    }
}
