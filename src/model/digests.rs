//! The digests of a certificate that a certificate association can name: SHA-256 and
//! SHA-512 of the certificate's DER and of its SubjectPublicKeyInfo DER, exactly as the
//! TLS hook records them for every certificate of a verified chain.

use openssl::hash::{hash, MessageDigest};
use openssl::x509::X509Ref;

use crate::model::pki;

/// The digests of one certificate of the verified chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertDigests<'a> {
    /// SHA-256 of the certificate's DER: what selector 0 with matching type 0 or 1 names.
    pub cert_sha256: &'a [u8; 32],
    /// SHA-512 of the certificate's DER: what selector 0 with matching type 2 names.
    pub cert_sha512: &'a [u8; 64],
    /// SHA-256 of its SubjectPublicKeyInfo DER: what selector 1 with matching type 0 or 1
    /// names.
    pub spki_sha256: &'a [u8; 32],
    /// SHA-512 of its SubjectPublicKeyInfo DER: what selector 1 with matching type 2 names.
    pub spki_sha512: &'a [u8; 64],
}

/// The digests of one certificate, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedDigests {
    /// SHA-256 of the certificate's DER.
    pub cert_sha256: [u8; 32],
    /// SHA-512 of the certificate's DER.
    pub cert_sha512: [u8; 64],
    /// SHA-256 of its SubjectPublicKeyInfo DER, as the certificate encodes it.
    pub spki_sha256: [u8; 32],
    /// SHA-512 of its SubjectPublicKeyInfo DER, as the certificate encodes it.
    pub spki_sha512: [u8; 64],
}

impl OwnedDigests {
    /// The digests the hook records for `cert`: of its DER, and of its SubjectPublicKeyInfo
    /// DER exactly as the certificate encodes it.
    pub fn of(cert: &X509Ref) -> Result<OwnedDigests, openssl::error::ErrorStack> {
        let der = cert.to_der()?;
        let spki = pki::spki_der(cert)?;
        let copy = |d: openssl::hash::DigestBytes, out: &mut [u8]| out.copy_from_slice(&d);
        let mut d =
            OwnedDigests { cert_sha256: [0; 32], cert_sha512: [0; 64], spki_sha256: [0; 32], spki_sha512: [0; 64] };
        copy(hash(MessageDigest::sha256(), &der)?, &mut d.cert_sha256);
        copy(hash(MessageDigest::sha512(), &der)?, &mut d.cert_sha512);
        copy(hash(MessageDigest::sha256(), &spki)?, &mut d.spki_sha256);
        copy(hash(MessageDigest::sha512(), &spki)?, &mut d.spki_sha512);
        Ok(d)
    }
}
