//! Certificate associations: what DNS published for a name, once the sync authenticated it,
//! kept as the digest the request check compares with the captured certificate.
//!
//! A TLSA record is `usage selector matching data` (RFC 6698). The check never needs the
//! data itself, only a digest of what it names: for a full certificate or key (matching 0)
//! the SHA-256 of it, for a digest record (matching 1 or 2) the digest as published. Which
//! certificate of the verified chain it is compared with depends on the usage:
//!
//! | usage | compared with | who authenticated the record |
//! |---|---|---|
//! | 3 DANE-EE | the presented certificate | DNSSEC (a Secure answer) |
//! | 4 PKIX-CD | the presented certificate | its CA chain, fetched over HTTPS, and the SAN |
//! | 2 DANE-TA | an issuer in the chain OpenSSL verified | DNSSEC |
//!
//! Comparisons are between fixed-size arrays: no allocation, no I/O.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::digests::CertDigests;

/// TLSA certificate usages the module acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Usage {
    /// 2: a trust anchor the presented certificate's verified chain must pass through.
    DaneTa,
    /// 3: the presented certificate (or its key) itself.
    DaneEe,
    /// 4 (PKIX-CD draft): the presented certificate, authenticated by a CA chain.
    PkixCd,
}

/// What the association data covers (TLSA selector).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// 0: the whole certificate.
    Cert,
    /// 1: its SubjectPublicKeyInfo.
    Spki,
}

/// How the data was published (TLSA matching type). Kept for reports: the digest below is
/// what counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Matching {
    /// 0: the data itself (the digest is its SHA-256).
    Full,
    /// 1: SHA2-256 of the data.
    Sha256,
    /// 2: SHA2-512 of the data.
    Sha512,
}

/// The digest the check compares.
///
/// SHA-512 digests are rare (TLSA matching type 2) and kept boxed, so every association
/// of a million-name map is 64 bytes instead of 88.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Digest {
    /// A SHA-256 digest: as published (matching type 1), or of the published data (0).
    Sha256([u8; 32]),
    /// A SHA-512 digest, as published (matching type 2).
    Sha512(Box<[u8; 64]>),
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Digest::Sha256(d) => write!(f, "sha256:{}", hex::encode(d)),
            Digest::Sha512(d) => write!(f, "sha512:{}", hex::encode(&d[..])),
        }
    }
}

/// One certificate association of a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Association {
    /// Which certificate of the verified chain the digest must name.
    pub usage: Usage,
    /// Whether the digest covers that whole certificate or only its key.
    pub selector: Selector,
    /// How DNS published the data; reports show it, the check compares the digest.
    pub matching: Matching,
    /// What the check compares with the captured digest the selector picks.
    pub digest: Digest,
    /// When the authenticated certificate expires (Unix seconds), for PKIX-CD: the
    /// association leaves the map then, even while DNS is unreachable. None for DANE
    /// usages, whose certificates carry no validity the module must enforce (RFC 7671).
    pub not_after: Option<i64>,
}

impl Usage {
    /// The TLSA certificate usage number (2, 3, 4), as records and the snapshot write it.
    pub fn code(self) -> u8 {
        match self {
            Usage::DaneTa => 2,
            Usage::DaneEe => 3,
            Usage::PkixCd => 4,
        }
    }

    fn from_code(code: u8) -> Option<Usage> {
        match code {
            2 => Some(Usage::DaneTa),
            3 => Some(Usage::DaneEe),
            4 => Some(Usage::PkixCd),
            _ => None,
        }
    }
}

impl Selector {
    /// The TLSA selector number (0, 1), as records and the snapshot write it.
    pub fn code(self) -> u8 {
        match self {
            Selector::Cert => 0,
            Selector::Spki => 1,
        }
    }

    /// The selector a record's number stands for; None for any other number (private use
    /// or unassigned), which makes the record unusable here.
    pub fn from_code(code: u8) -> Option<Selector> {
        match code {
            0 => Some(Selector::Cert),
            1 => Some(Selector::Spki),
            _ => None,
        }
    }
}

impl Matching {
    /// The TLSA matching type number (0, 1, 2), as records and the snapshot write it.
    pub fn code(self) -> u8 {
        match self {
            Matching::Full => 0,
            Matching::Sha256 => 1,
            Matching::Sha512 => 2,
        }
    }

    /// The matching type a record's number stands for; None for any other number (private
    /// use or unassigned), which makes the record unusable here.
    pub fn from_code(code: u8) -> Option<Matching> {
        match code {
            0 => Some(Matching::Full),
            1 => Some(Matching::Sha256),
            2 => Some(Matching::Sha512),
            _ => None,
        }
    }
}

/// A published digest whose length is not its algorithm's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestLengthError {
    /// A matching type 1 record whose data is not 32 bytes (its length given): the record
    /// can name no certificate and is not used.
    #[error("a SHA2-256 digest is 32 bytes, this one has {0}")]
    Sha256(usize),
    /// A matching type 2 record whose data is not 64 bytes (its length given): the record
    /// can name no certificate and is not used.
    #[error("a SHA2-512 digest is 64 bytes, this one has {0}")]
    Sha512(usize),
}

impl Association {
    /// The association of a record's data. For matching type 0 the data is hashed here
    /// (SHA-256); digests are taken as published and must have their algorithm's length.
    pub fn from_data(
        usage: Usage,
        selector: Selector,
        matching: Matching,
        data: &[u8],
        not_after: Option<i64>,
    ) -> Result<Association, DigestLengthError> {
        let digest = match matching {
            Matching::Full => Digest::Sha256(openssl::sha::sha256(data)),
            Matching::Sha256 => Digest::Sha256(data.try_into().map_err(|_| DigestLengthError::Sha256(data.len()))?),
            Matching::Sha512 => {
                Digest::Sha512(Box::new(data.try_into().map_err(|_| DigestLengthError::Sha512(data.len()))?))
            }
        };
        Ok(Association { usage, selector, matching, digest, not_after })
    }

    /// Whether the presented certificate (or, for DANE-TA, an issuer of its verified
    /// chain) is the one this association names, for a device claiming `name`.
    pub fn matches(&self, cert: &impl VerifiedChain, name: &str) -> bool {
        match self.usage {
            // The TLSA owner name is the binding (RFC 7671); for PKIX-CD the sync checked
            // the SAN of the very certificate this digest names.
            Usage::DaneEe | Usage::PkixCd => self.names(&cert.leaf()),
            // The trust anchor must be a certificate OpenSSL verified the chain through,
            // never the presented certificate itself; and a TA vouches for every
            // certificate under it, so the presented one must carry the name (RFC 7671 5.2).
            Usage::DaneTa => {
                cert.issuers().any(|issuer| self.names(&issuer)) && cert.san_dns().iter().any(|san| san_is(san, name))
            }
        }
    }

    fn names(&self, d: &CertDigests<'_>) -> bool {
        match (self.selector, &self.digest) {
            (Selector::Cert, Digest::Sha256(x)) => x == d.cert_sha256,
            (Selector::Cert, Digest::Sha512(x)) => **x == *d.cert_sha512,
            (Selector::Spki, Digest::Sha256(x)) => x == d.spki_sha256,
            (Selector::Spki, Digest::Sha512(x)) => **x == *d.spki_sha512,
        }
    }
}

/// A chain OpenSSL verified, as an association is compared with it: the presented
/// certificate, the certificates above it (issuer first, trust anchor last), and the
/// presented certificate's SAN dNSNames byte for byte.
pub trait VerifiedChain {
    /// The presented certificate's digests: the certificate whose key the client used in
    /// the handshake.
    fn leaf(&self) -> CertDigests<'_>;
    /// The digests of the certificates above the leaf, issuer first, trust anchor last;
    /// the leaf itself is never among them.
    fn issuers(&self) -> impl Iterator<Item = CertDigests<'_>>;
    /// The presented certificate's SAN dNSName entries, raw bytes as captured (not
    /// validated as names).
    fn san_dns(&self) -> &[&[u8]];
}

/// A captured SAN dNSName equals `name` (normalised): ASCII, case-blind, one trailing dot
/// allowed. An entry with a NUL or any non-ASCII byte never equals a name.
fn san_is(san: &[u8], name: &str) -> bool {
    let san = san.strip_suffix(b".").unwrap_or(san);
    san.is_ascii() && !san.contains(&0) && san.eq_ignore_ascii_case(name.as_bytes())
}

impl fmt::Display for Association {
    /// `4 0 0 sha256:ab12...`: the record form and the digest compared.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} {}", self.usage.code(), self.selector.code(), self.matching.code(), self.digest)
    }
}

/// The JSON form in the trust map: `{"usage":4,"selector":0,"matching":0,"sha256":"..."}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssociationFile {
    usage: u8,
    selector: u8,
    matching: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha512: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_after: Option<i64>,
}

impl Serialize for Association {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (sha256, sha512) = match &self.digest {
            Digest::Sha256(d) => (Some(hex::encode(d)), None),
            Digest::Sha512(d) => (None, Some(hex::encode(&d[..]))),
        };
        AssociationFile {
            usage: self.usage.code(),
            selector: self.selector.code(),
            matching: self.matching.code(),
            sha256,
            sha512,
            not_after: self.not_after,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Association {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Association, D::Error> {
        use serde::de::Error;
        let f: AssociationFile = crate::model::strict_json::object(d)?;
        let usage =
            Usage::from_code(f.usage).ok_or_else(|| D::Error::custom(format!("usage {} is not 2, 3 or 4", f.usage)))?;
        let selector = Selector::from_code(f.selector)
            .ok_or_else(|| D::Error::custom(format!("selector {} is not 0 or 1", f.selector)))?;
        let matching = Matching::from_code(f.matching)
            .ok_or_else(|| D::Error::custom(format!("matching type {} is not 0, 1 or 2", f.matching)))?;
        let bytes = |h: &str| hex::decode(h).map_err(|e| D::Error::custom(format!("digest: {e}")));
        let digest = match (f.sha256, f.sha512) {
            (Some(h), None) => {
                Digest::Sha256(bytes(&h)?.try_into().map_err(|_| D::Error::custom("sha256 digest is not 32 bytes"))?)
            }
            (None, Some(h)) => Digest::Sha512(Box::new(
                bytes(&h)?.try_into().map_err(|_| D::Error::custom("sha512 digest is not 64 bytes"))?,
            )),
            _ => return Err(D::Error::custom("exactly one of sha256 and sha512 is needed")),
        };
        let consistent = matches!(
            (matching, &digest),
            (Matching::Sha512, Digest::Sha512(_)) | (Matching::Full | Matching::Sha256, Digest::Sha256(_))
        );
        if !consistent {
            return Err(D::Error::custom(format!("matching type {} does not go with that digest", f.matching)));
        }
        Ok(Association { usage, selector, matching, digest, not_after: f.not_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::digests::OwnedDigests;

    /// A presented leaf (certificate digests of 1s, key digests of 11s) under an issuer
    /// (2s, 12s) under an anchor (3s, 13s).
    const NAME: &str = "car54._device.cars.example";

    struct Chain<'s> {
        certs: Vec<OwnedDigests>,
        sans: &'s [&'s [u8]],
    }

    impl VerifiedChain for Chain<'_> {
        fn leaf(&self) -> CertDigests<'_> {
            borrowed(&self.certs[0])
        }
        fn issuers(&self) -> impl Iterator<Item = CertDigests<'_>> {
            self.certs[1..].iter().map(borrowed)
        }
        fn san_dns(&self) -> &[&[u8]] {
            self.sans
        }
    }

    fn borrowed(d: &OwnedDigests) -> CertDigests<'_> {
        CertDigests {
            cert_sha256: &d.cert_sha256,
            cert_sha512: &d.cert_sha512,
            spki_sha256: &d.spki_sha256,
            spki_sha512: &d.spki_sha512,
        }
    }

    fn with_chain<R>(f: impl FnOnce(&Chain<'_>) -> R) -> R {
        with_chain_sans(&[NAME.as_bytes()], f)
    }

    fn with_chain_sans<R>(sans: &[&[u8]], f: impl FnOnce(&Chain<'_>) -> R) -> R {
        let certs = [(1, 11), (2, 12), (3, 13)]
            .map(|(c, k)| OwnedDigests {
                cert_sha256: [c; 32],
                cert_sha512: [c; 64],
                spki_sha256: [k; 32],
                spki_sha512: [k; 64],
            })
            .to_vec();
        f(&Chain { certs, sans })
    }

    fn assoc(usage: Usage, selector: Selector, digest: Digest) -> Association {
        let matching = if matches!(digest, Digest::Sha512(_)) { Matching::Sha512 } else { Matching::Sha256 };
        Association { usage, selector, matching, digest, not_after: None }
    }

    #[test]
    fn end_entity_usages_compare_with_the_presented_certificate_only() {
        with_chain(|p| {
            for usage in [Usage::DaneEe, Usage::PkixCd] {
                assert!(assoc(usage, Selector::Cert, Digest::Sha256([1; 32])).matches(p, NAME));
                assert!(assoc(usage, Selector::Cert, Digest::Sha512(Box::new([1; 64]))).matches(p, NAME));
                assert!(assoc(usage, Selector::Spki, Digest::Sha256([11; 32])).matches(p, NAME));
                assert!(assoc(usage, Selector::Spki, Digest::Sha512(Box::new([11; 64]))).matches(p, NAME));
                // The leaf's key is not its certificate, and the issuer is not the leaf.
                assert!(!assoc(usage, Selector::Cert, Digest::Sha256([11; 32])).matches(p, NAME));
                assert!(!assoc(usage, Selector::Cert, Digest::Sha256([2; 32])).matches(p, NAME));
            }
        });
    }

    #[test]
    fn a_trust_anchor_must_be_an_issuer_of_the_verified_chain() {
        with_chain(|p| {
            assert!(assoc(Usage::DaneTa, Selector::Cert, Digest::Sha256([2; 32])).matches(p, NAME));
            assert!(assoc(Usage::DaneTa, Selector::Spki, Digest::Sha512(Box::new([13; 64]))).matches(p, NAME));
            assert!(
                !assoc(Usage::DaneTa, Selector::Cert, Digest::Sha256([1; 32])).matches(p, NAME),
                "the leaf is no TA"
            );
            assert!(!assoc(Usage::DaneTa, Selector::Cert, Digest::Sha256([9; 32])).matches(p, NAME));
        });
    }

    #[test]
    fn a_trust_anchor_vouches_only_for_the_names_in_the_presented_certificate() {
        let ta = assoc(Usage::DaneTa, Selector::Cert, Digest::Sha256([2; 32]));
        with_chain(|p| {
            assert!(ta.matches(p, NAME));
            assert!(!ta.matches(p, "car55._device.cars.example"), "another device of the same CA");
        });
        with_chain_sans(&[b"CAR54._device.cars.example."], |p| assert!(ta.matches(p, NAME)));
        with_chain_sans(&[b"car54._device.cars.example\0.evil"], |p| assert!(!ta.matches(p, NAME)));
        with_chain_sans(&[b"car54._device.cars.example\0"], |p| assert!(!ta.matches(p, NAME)));
        with_chain_sans(&[], |p| assert!(!ta.matches(p, NAME)));
        // End-entity usages do not look at the SAN: the digest names the certificate.
        let ee = assoc(Usage::DaneEe, Selector::Cert, Digest::Sha256([1; 32]));
        with_chain_sans(&[], |p| assert!(ee.matches(p, NAME)));
    }

    #[test]
    fn full_data_is_hashed_and_digests_are_length_checked() {
        let a = Association::from_data(Usage::PkixCd, Selector::Cert, Matching::Full, b"der", Some(5)).unwrap();
        assert_eq!(a.digest, Digest::Sha256(openssl::sha::sha256(b"der")));
        assert!(Association::from_data(Usage::DaneEe, Selector::Spki, Matching::Sha256, &[0; 31], None)
            .unwrap_err()
            .to_string()
            .contains("32 bytes"));
        assert!(Association::from_data(Usage::DaneEe, Selector::Spki, Matching::Sha512, &[0; 32], None)
            .unwrap_err()
            .to_string()
            .contains("64 bytes"));
    }

    #[test]
    fn json_round_trip_and_refusals() {
        let a = Association::from_data(Usage::DaneEe, Selector::Spki, Matching::Sha512, &[7; 64], None).unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Association>(&json).unwrap(), a);
        assert_eq!(a.to_string(), format!("3 1 2 sha512:{}", "07".repeat(64)));
        for bad in [
            r#"{"usage":1,"selector":0,"matching":1,"sha256":"00"}"#,
            r#"{"usage":3,"selector":0,"matching":1}"#,
            r#"{"usage":3,"selector":0,"matching":2,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}"#,
            r#"{"usage":3,"selector":0,"matching":1,"sha256":"00"}"#,
            r#"{"usage":3,"selector":0,"matching":1,"sha256":"0000000000000000000000000000000000000000000000000000000000000000","x":1}"#,
        ] {
            assert!(serde_json::from_str::<Association>(bad).is_err(), "{bad}");
        }
    }
}
