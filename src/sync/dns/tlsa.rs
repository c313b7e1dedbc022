//! TLSA records and what one can be used for: the protocol half of the DNS layer, pure.
//!
//! A [`TlsaAnswer`] is what DNS proved about the RRset at one name (Secure, Insecure,
//! Bogus, no records, or no answer at all); [`classify`] says which records can yield a
//! certificate association (usages 2 and 3 in any form, usage 4 as a full certificate)
//! and why the others cannot; [`registry_sha256`] reads the IoT Registry's `3 0 1` form.

use std::time::Duration;

use crate::model::association::{Matching, Selector};

/// Length of a SHA2-256 / SHA2-512 association (matching types 1 and 2).
const SHA256_LEN: usize = 32;
const SHA512_LEN: usize = 64;
/// One TLSA record as published (RFC 6698 §2.1), numbers as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsaRecord {
    /// Certificate usage: 2 DANE-TA, 3 DANE-EE and 4 PKIX-CD are used; 0, 1 and others
    /// are reported as unusable.
    pub usage: u8,
    /// What the data covers: 0 the whole certificate, 1 its SubjectPublicKeyInfo.
    pub selector: u8,
    /// How the data is given: 0 in full, 1 SHA2-256, 2 SHA2-512.
    pub matching: u8,
    /// Certificate association data (a DER certificate for x 0 0).
    pub data: Vec<u8>,
}

/// What DNS said about the TLSA RRset at one name.
///
/// `ttl` is the smallest remaining TTL of the answer's records (already capped by the
/// RRSIG original TTL and signature expiry when validated): when the sync asks again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsaAnswer {
    /// Every record of the answer validated up to a trust anchor.
    Secure {
        /// The TLSA records at the name (or at the end of its CNAME chain).
        records: Vec<TlsaRecord>,
        /// When the sync should ask again (see the type's note on `ttl`).
        ttl: Duration,
    },
    /// The name is provably in an unsigned zone (a signed parent proves "no DS"). Also the
    /// verdict for an answer mixing secure and insecure records (weakest proof wins).
    Insecure {
        /// The records as served; only usage 4 may be used from an insecure answer.
        records: Vec<TlsaRecord>,
        /// When the sync should ask again.
        ttl: Duration,
    },
    /// Validation failed: signatures wrong/missing/expired, DS not matching, wrong anchor.
    Bogus {
        /// The validator's account of the failure, for the operator's error log.
        reason: String,
    },
    /// NXDOMAIN or NODATA. `secure`: the denial itself is proven by NSEC/NSEC3 records
    /// that validated; false when the zone is provably unsigned.
    NoRecords {
        /// Whether the denial validated (NSEC/NSEC3); false for an unsigned zone.
        secure: bool,
        /// Negative TTL (from the SOA, else 60 s): how long the absence holds.
        ttl: Duration,
    },
    /// No usable answer: timeout, SERVFAIL/REFUSED, transport or protocol error, invalid
    /// name. Says nothing about the name; keep what was known and retry.
    Failed {
        /// What went wrong (timeout, rcode, transport error), for the warning log.
        reason: String,
    },
}

impl TlsaAnswer {
    /// Short word for logs: "secure", "insecure", "bogus", "no-records", "failed".
    pub fn kind(&self) -> &'static str {
        match self {
            TlsaAnswer::Secure { .. } => "secure",
            TlsaAnswer::Insecure { .. } => "insecure",
            TlsaAnswer::Bogus { .. } => "bogus",
            TlsaAnswer::NoRecords { .. } => "no-records",
            TlsaAnswer::Failed { .. } => "failed",
        }
    }
}

/// What one TLSA record can be used for by the trust sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordUse {
    /// Usage 4 (PKIX-CD draft), selector 0, matching 0: a full certificate that must be
    /// authenticated through its CA chain.
    PkixCd,
    /// Usage 3 (DANE-EE), any selector and matching type: trusted by DNSSEC alone (the
    /// caller must require a Secure answer). The data has been checked for its form: one
    /// DER certificate (`3 0 0`), one SubjectPublicKeyInfo (`3 1 0`), or a digest of the
    /// right length.
    DaneEe {
        /// Whether the data covers the certificate or only its key.
        selector: Selector,
        /// Whether the data is given in full or as a digest.
        matching: Matching,
    },
    /// Usage 2 (DANE-TA), any selector and matching type: a trust anchor the presented
    /// certificate's verified chain must pass through; DNSSEC alone authenticates it (the
    /// caller must require a Secure answer). The data's form is checked as for DANE-EE.
    DaneTa {
        /// Whether the data covers the anchor's certificate or only its key.
        selector: Selector,
        /// Whether the data is given in full or as a digest.
        matching: Matching,
    },
    /// Cannot yield a certificate association.
    Unusable {
        /// Why, naming the record's numbers (unsupported usage, malformed data), as the
        /// operator tool prints it.
        reason: String,
    },
}

/// Decides what a TLSA record can be used for. Pure; checks the form of the data.
pub fn classify(record: &TlsaRecord) -> RecordUse {
    match classify_inner(record) {
        Ok(usable) => usable,
        Err(reason) => RecordUse::Unusable { reason },
    }
}

fn classify_inner(r: &TlsaRecord) -> Result<RecordUse, String> {
    let what = format!("TLSA {} {} {}", r.usage, r.selector, r.matching);
    if r.data.is_empty() {
        return Err(format!("{what}: malformed, empty association data"));
    }
    // Malformed hashes are reported as malformed before anything else: it points at a
    // publishing error, not merely at an unsupported record type.
    for (matching, len, alg) in [(1, SHA256_LEN, "SHA2-256"), (2, SHA512_LEN, "SHA2-512")] {
        if r.matching == matching && r.data.len() != len {
            return Err(format!("{what}: malformed, a {alg} digest is {len} bytes, this one has {}", r.data.len()));
        }
    }
    match r.usage {
        2..=4 => {}
        0 => return Err(format!("{what}: usage 0 (PKIX-TA) is not supported, use 2, 3 or 4")),
        1 => return Err(format!("{what}: usage 1 (PKIX-EE) is not supported, use 3 or 4")),
        255 => return Err(format!("{what}: usage 255 (PrivCert) has no defined meaning")),
        u => return Err(format!("{what}: usage {u} is unassigned")),
    }
    let selector =
        Selector::from_code(r.selector).ok_or_else(|| format!("{what}: selector {} is not defined", r.selector))?;
    let matching = Matching::from_code(r.matching)
        .ok_or_else(|| format!("{what}: matching type {} is not defined", r.matching))?;
    if r.usage == 4 {
        if (selector, matching) != (Selector::Cert, Matching::Full) {
            return Err(format!(
                "{what}: PKIX-CD (usage 4) authenticates a full certificate by its CA chain: it must be 4 0 0"
            ));
        }
        check_single_der_certificate(&r.data).map_err(|e| format!("{what}: malformed, {e}"))?;
        return Ok(RecordUse::PkixCd);
    }
    match (selector, matching) {
        (Selector::Cert, Matching::Full) => {
            check_single_der_certificate(&r.data).map_err(|e| format!("{what}: malformed, {e}"))?
        }
        (Selector::Spki, Matching::Full) => check_spki(&r.data).map_err(|e| format!("{what}: malformed, {e}"))?,
        _ => {}
    }
    Ok(if r.usage == 2 { RecordUse::DaneTa { selector, matching } } else { RecordUse::DaneEe { selector, matching } })
}

/// The data of a `3 1 0` record must be one DER SubjectPublicKeyInfo, as OpenSSL encodes
/// it, and nothing after it.
fn check_spki(data: &[u8]) -> Result<(), String> {
    let key = openssl::pkey::PKey::public_key_from_der(data).map_err(|e| {
        let why = e.errors().first().and_then(|e| e.reason()).unwrap_or("unparsable");
        format!("not a DER SubjectPublicKeyInfo ({why})")
    })?;
    let der = key.public_key_to_der().map_err(|e| format!("key does not re-encode ({e})"))?;
    if der.len() != data.len() {
        return Err(format!("{} bytes after the {}-byte key", data.len().saturating_sub(der.len()), der.len()));
    }
    if der != data {
        return Err("the key is not in the DER form OpenSSL encodes it in, so no handshake can match it".into());
    }
    Ok(())
}

/// The data must be one X.509 certificate in DER form and nothing after it.
fn check_single_der_certificate(data: &[u8]) -> Result<(), String> {
    crate::model::pki::der_certificate(data).map(drop).map_err(|e| e.to_string())
}

/// The SHA2-256 digest of a `3 0 1` record (the IoT Registry form: DANE-EE, full
/// certificate, SHA2-256), or None for any other record or a digest of the wrong length.
pub fn registry_sha256(record: &TlsaRecord) -> Option<[u8; SHA256_LEN]> {
    if (record.usage, record.selector, record.matching) != (3, 0, 1) {
        return None;
    }
    record.data.as_slice().try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> TlsaRecord {
        TlsaRecord { usage, selector, matching, data }
    }

    /// A small self-signed device certificate.
    fn cert_der() -> Vec<u8> {
        let spec = testkit::capki::Spec::leaf("Cars", "car54._device.cars.example");
        testkit::capki::issue(&spec, None).cert.to_der().unwrap()
    }

    fn unusable(r: &TlsaRecord) -> String {
        match classify(r) {
            RecordUse::Unusable { reason } => reason,
            other => panic!("{r:?} should be unusable, got {other:?}"),
        }
    }

    fn spki_der() -> Vec<u8> {
        let cert = openssl::x509::X509::from_der(&cert_der()).unwrap();
        cert.public_key().unwrap().public_key_to_der().unwrap()
    }

    fn ee(selector: Selector, matching: Matching) -> RecordUse {
        RecordUse::DaneEe { selector, matching }
    }

    #[test]
    fn usable_forms() {
        let der = cert_der();
        assert_eq!(classify(&rec(4, 0, 0, der.clone())), RecordUse::PkixCd);
        assert_eq!(classify(&rec(3, 0, 0, der)), ee(Selector::Cert, Matching::Full));
        assert_eq!(classify(&rec(3, 1, 0, spki_der())), ee(Selector::Spki, Matching::Full));
        assert_eq!(classify(&rec(3, 0, 1, vec![1; 32])), ee(Selector::Cert, Matching::Sha256));
        assert_eq!(classify(&rec(3, 1, 2, vec![1; 64])), ee(Selector::Spki, Matching::Sha512));
        assert_eq!(
            classify(&rec(2, 0, 1, vec![1; 32])),
            RecordUse::DaneTa { selector: Selector::Cert, matching: Matching::Sha256 }
        );
    }

    #[test]
    fn every_other_parameter_combination_is_unusable() {
        let der = cert_der();
        let spki = spki_der();
        for usage in 0..=255u8 {
            for selector in [0u8, 1, 2, 254, 255] {
                for matching in [0u8, 1, 2, 3, 254, 255] {
                    let data = match (selector, matching) {
                        (_, 1) => vec![7; SHA256_LEN],
                        (_, 2) => vec![7; SHA512_LEN],
                        (1, _) => spki.clone(),
                        _ => der.clone(),
                    };
                    let r = rec(usage, selector, matching, data);
                    let got = classify(&r);
                    match (usage, selector, matching) {
                        (4, 0, 0) => assert_eq!(got, RecordUse::PkixCd),
                        (3, 0 | 1, 0..=2) => assert!(matches!(got, RecordUse::DaneEe { .. }), "{r:?} -> {got:?}"),
                        (2, 0 | 1, 0..=2) => assert!(matches!(got, RecordUse::DaneTa { .. }), "{r:?} -> {got:?}"),
                        _ => assert!(matches!(got, RecordUse::Unusable { .. }), "{r:?} -> {got:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn reasons_name_the_problem() {
        let der = cert_der();
        assert!(unusable(&rec(4, 0, 1, vec![1; 32])).contains("must be 4 0 0"));
        assert!(unusable(&rec(4, 1, 0, spki_der())).contains("must be 4 0 0"));
        assert!(unusable(&rec(3, 2, 0, der.clone())).contains("selector 2"));
        assert!(unusable(&rec(3, 0, 3, der.clone())).contains("matching type 3"));
        assert!(unusable(&rec(0, 0, 0, der.clone())).contains("PKIX-TA"));
        assert!(unusable(&rec(1, 0, 0, der.clone())).contains("PKIX-EE"));
        assert!(unusable(&rec(255, 0, 0, der.clone())).contains("PrivCert"));
        assert!(unusable(&rec(5, 0, 0, der)).contains("unassigned"));
    }

    #[test]
    fn malformed_data_is_unusable() {
        let der = cert_der();
        // Hash of the wrong length (a 31-byte "SHA-256", a 32-byte "SHA-512").
        assert!(unusable(&rec(3, 0, 1, vec![1; 31])).contains("malformed"));
        assert!(unusable(&rec(3, 0, 2, vec![1; 32])).contains("malformed"));
        // Empty data.
        assert!(unusable(&rec(3, 0, 0, vec![])).contains("empty"));
        // Garbage instead of a certificate.
        assert!(unusable(&rec(4, 0, 0, b"not a certificate".to_vec())).contains("DER"));
        assert!(unusable(&rec(3, 0, 0, vec![0x30, 0x82, 0xff, 0xff, 0x01])).contains("DER"));
        // Truncated certificate; a certificate where a key belongs; a truncated key.
        assert!(unusable(&rec(4, 0, 0, der[..der.len() - 1].to_vec())).contains("DER"));
        assert!(unusable(&rec(3, 1, 0, der.clone())).contains("SubjectPublicKeyInfo"));
        let spki = spki_der();
        assert!(unusable(&rec(3, 1, 0, spki[..spki.len() - 2].to_vec())).contains("SubjectPublicKeyInfo"));
        // Trailing bytes after a valid certificate.
        let mut trailing = der.clone();
        trailing.extend_from_slice(&[0, 0, 0]);
        assert!(unusable(&rec(3, 0, 0, trailing)).contains("3 bytes after"));
        // One flipped byte inside the signature still parses and is still DER: the chain
        // check catches it later, classify only checks the form.
        let mut flipped = der;
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        assert_eq!(classify(&rec(4, 0, 0, flipped)), RecordUse::PkixCd);
    }

    #[test]
    fn registry_digest_only_from_3_0_1() {
        assert_eq!(registry_sha256(&rec(3, 0, 1, vec![9; 32])), Some([9; 32]));
        assert_eq!(registry_sha256(&rec(3, 0, 1, vec![9; 31])), None);
        assert_eq!(registry_sha256(&rec(3, 0, 2, vec![9; 64])), None);
        assert_eq!(registry_sha256(&rec(4, 0, 1, vec![9; 32])), None);
        assert_eq!(registry_sha256(&rec(3, 1, 1, vec![9; 32])), None);
    }
}
