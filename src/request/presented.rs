//! The certificate the client presented, as the TLS verification hook captured it.
//!
//! The C shim's hook records, once OpenSSL has verified the client's chain, the SHA-256 and
//! SHA-512 of every certificate of that verified chain and of its SubjectPublicKeyInfo
//! (the presented certificate first), and the presented certificate's SAN dNSNames. Those
//! digests are what the check compares: the client signed the handshake with the key of
//! the depth-0 certificate, so they name the certificate whose key it holds. Nothing that
//! FreeRADIUS *prints* about a certificate is read here.
//!
//! [`PresentedCert::from_capture`] validates the raw attribute values (lengths, counts)
//! without allocating: it runs on every request. [`CapturedChain`] computes the same
//! digests from certificates, for the operator CLI, tests and benches.

use openssl::x509::X509;

use crate::model::association::VerifiedChain;
use crate::model::digests::{CertDigests, OwnedDigests};
use crate::model::pki;

/// Most certificates of one verified chain (the hook records none of a longer one).
pub const MAX_CHAIN: usize = crate::contract::RLM_RUST_MAX_CHAIN as usize;
/// Most SAN dNSNames of the presented certificate the hook records.
pub const MAX_SAN_DNS: usize = crate::contract::RLM_RUST_MAX_SAN_DNS as usize;

/// Where the capture came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// This conversation's full handshake.
    #[default]
    Handshake,
    /// A TLS session resumed from FreeRADIUS' session cache: what the full handshake that
    /// created the session captured.
    Resumed,
}

/// The presented certificate and its verified chain, borrowed from the request: the
/// captured lists themselves, checked once (lengths, counts) and never copied.
#[derive(Debug, Clone, Copy)]
pub struct PresentedCert<'a> {
    /// cert SHA-256, cert SHA-512, SPKI SHA-256, SPKI SHA-512: one value per certificate
    /// of the chain each, the digest sizes checked.
    lists: [&'a [&'a [u8]]; 4],
    san_dns: &'a [&'a [u8]],
    /// Whether this conversation's handshake captured it or a resumed session restored
    /// it; the decision log line shows it, the check does not depend on it.
    pub source: Source,
}

/// Why a capture cannot be used. A malformed capture is never "partly" trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// No captured attribute at all: the hook did not run for this session.
    #[error("no certificate captured from the TLS handshake")]
    Absent,
    /// Present but inconsistent; the text says what.
    #[error("captured certificate malformed ({0})")]
    Malformed(&'static str),
}

/// The raw values of the captured attributes, in list order.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCapture<'a> {
    /// Where the shim found the attributes; None when nowhere (or a source this build
    /// does not know), which makes the capture absent.
    pub source: Option<Source>,
    /// `Rlm-Rust-Cert-SHA256`: per certificate of the verified chain, presented first.
    pub cert_sha256: &'a [&'a [u8]],
    /// `Rlm-Rust-Cert-SHA512`: per certificate, in the same order.
    pub cert_sha512: &'a [&'a [u8]],
    /// `Rlm-Rust-SPKI-SHA256`: per certificate, of its SubjectPublicKeyInfo.
    pub spki_sha256: &'a [&'a [u8]],
    /// `Rlm-Rust-SPKI-SHA512`: per certificate, of its SubjectPublicKeyInfo.
    pub spki_sha512: &'a [&'a [u8]],
    /// `Rlm-Rust-Cert-SAN-DNS`: the presented certificate's dNSNames, byte for byte.
    pub san_dns: &'a [&'a [u8]],
    /// `Rlm-Rust-Chain-Length`: how many certificates the hook recorded; None when the
    /// attribute is absent.
    pub chain_length: Option<i64>,
}

impl<'a> PresentedCert<'a> {
    /// Validates a capture: every digest list as long as the recorded chain length, every
    /// digest of its algorithm's size, at least the presented certificate.
    pub fn from_capture(raw: &RawCapture<'a>) -> Result<PresentedCert<'a>, CaptureError> {
        let Some(source) = raw.source else {
            return Err(CaptureError::Absent);
        };
        let len = match raw.chain_length {
            None => return Err(CaptureError::Malformed("no chain length")),
            Some(n) if n < 1 || n > MAX_CHAIN as i64 => {
                return Err(CaptureError::Malformed("chain length out of range"))
            }
            Some(n) => n as usize,
        };
        let lists = [raw.cert_sha256, raw.cert_sha512, raw.spki_sha256, raw.spki_sha512];
        if lists.iter().any(|l| l.len() != len) {
            return Err(CaptureError::Malformed("digest count differs from the chain length"));
        }
        if raw.san_dns.len() > MAX_SAN_DNS {
            return Err(CaptureError::Malformed("too many SAN dNSNames"));
        }
        let sizes = [32, 64, 32, 64];
        if lists.iter().zip(sizes).any(|(l, size)| l.iter().any(|d| d.len() != size)) {
            return Err(CaptureError::Malformed("a digest has the wrong length"));
        }
        Ok(PresentedCert { lists, san_dns: raw.san_dns, source })
    }

    /// The digests of certificate `i` of the chain (0: the presented one).
    fn at(&self, i: usize) -> CertDigests<'a> {
        CertDigests {
            cert_sha256: fixed(self.lists[0][i]),
            cert_sha512: fixed(self.lists[1][i]),
            spki_sha256: fixed(self.lists[2][i]),
            spki_sha512: fixed(self.lists[3][i]),
        }
    }

    /// The certificate the client presented (and proved the key of).
    pub fn leaf(&self) -> CertDigests<'a> {
        self.at(0)
    }

    /// The certificates above the leaf in the chain OpenSSL verified, issuer first, trust
    /// anchor last.
    pub fn issuers(&self) -> impl Iterator<Item = CertDigests<'a>> + '_ {
        (1..self.chain_len()).map(|i| self.at(i))
    }

    /// Certificates in the verified chain, the leaf included.
    pub fn chain_len(&self) -> usize {
        self.lists[0].len()
    }

    /// The presented certificate's SAN dNSNames, byte for byte.
    pub fn san_dns(&self) -> &[&'a [u8]] {
        self.san_dns
    }
}

impl VerifiedChain for PresentedCert<'_> {
    fn leaf(&self) -> CertDigests<'_> {
        PresentedCert::leaf(self)
    }
    fn issuers(&self) -> impl Iterator<Item = CertDigests<'_>> {
        PresentedCert::issuers(self)
    }
    fn san_dns(&self) -> &[&[u8]] {
        PresentedCert::san_dns(self)
    }
}

/// A digest whose size `from_capture` checked.
fn fixed<const N: usize>(value: &[u8]) -> &[u8; N] {
    value.try_into().unwrap_or(&[0; N])
}

/// What the hook would capture for a verified chain (leaf first): for the operator CLI's
/// `explain`, tests and benches, which then borrow a [`PresentedCert`] from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedChain {
    /// Each certificate's digests, leaf first, trust anchor last.
    pub chain: Vec<OwnedDigests>,
    /// The leaf's SAN dNSNames, as bytes.
    pub san_dns: Vec<Vec<u8>>,
    /// Where the capture claims to come from ([`CapturedChain::of`] says a handshake).
    pub source: Source,
}

impl CapturedChain {
    /// Digests of `verified` (leaf first, trust anchor last) and the leaf's dNSNames.
    pub fn of(verified: &[X509]) -> Result<CapturedChain, openssl::error::ErrorStack> {
        let chain = verified.iter().map(|c| OwnedDigests::of(c)).collect::<Result<Vec<_>, _>>()?;
        let san_dns = verified.first().map(|leaf| pki::san_dns_names(leaf)).unwrap_or_default();
        Ok(CapturedChain {
            chain,
            san_dns: san_dns.into_iter().map(String::into_bytes).collect(),
            source: Source::Handshake,
        })
    }

    /// Borrows the capture as the check sees it; calls `f` with it (the borrowed lists live
    /// on this stack frame). Errors as the request path would.
    pub fn with_presented<R>(&self, f: impl FnOnce(Result<PresentedCert<'_>, CaptureError>) -> R) -> R {
        let c256: Vec<&[u8]> = self.chain.iter().map(|d| &d.cert_sha256[..]).collect();
        let c512: Vec<&[u8]> = self.chain.iter().map(|d| &d.cert_sha512[..]).collect();
        let s256: Vec<&[u8]> = self.chain.iter().map(|d| &d.spki_sha256[..]).collect();
        let s512: Vec<&[u8]> = self.chain.iter().map(|d| &d.spki_sha512[..]).collect();
        let sans: Vec<&[u8]> = self.san_dns.iter().map(Vec::as_slice).collect();
        let raw = RawCapture {
            source: Some(self.source),
            cert_sha256: &c256,
            cert_sha512: &c512,
            spki_sha256: &s256,
            spki_sha512: &s512,
            san_dns: &sans,
            chain_length: Some(self.chain.len() as i64),
        };
        f(PresentedCert::from_capture(&raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(n: usize) -> (Vec<[u8; 32]>, Vec<[u8; 64]>) {
        ((0..n).map(|i| [i as u8; 32]).collect(), (0..n).map(|i| [i as u8; 64]).collect())
    }

    #[test]
    fn a_consistent_capture_is_read_in_chain_order() {
        let (a, b) = lists(3);
        let a: Vec<&[u8]> = a.iter().map(|x| &x[..]).collect();
        let b: Vec<&[u8]> = b.iter().map(|x| &x[..]).collect();
        let san: [&[u8]; 1] = [b"car54._device.cars.example"];
        let raw = RawCapture {
            source: Some(Source::Resumed),
            cert_sha256: &a,
            cert_sha512: &b,
            spki_sha256: &a,
            spki_sha512: &b,
            san_dns: &san,
            chain_length: Some(3),
        };
        let p = PresentedCert::from_capture(&raw).unwrap();
        assert_eq!(p.leaf().cert_sha256, &[0; 32]);
        assert_eq!(p.issuers().map(|d| d.cert_sha256[0]).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(p.chain_len(), 3);
        assert_eq!(p.source, Source::Resumed);
        assert_eq!(p.san_dns(), &san);
    }

    #[test]
    fn absent_or_inconsistent_captures_are_refused() {
        let (a, b) = lists(2);
        let a: Vec<&[u8]> = a.iter().map(|x| &x[..]).collect();
        let b: Vec<&[u8]> = b.iter().map(|x| &x[..]).collect();
        let good = RawCapture {
            source: Some(Source::Handshake),
            cert_sha256: &a,
            cert_sha512: &b,
            spki_sha256: &a,
            spki_sha512: &b,
            san_dns: &[],
            chain_length: Some(2),
        };
        assert!(PresentedCert::from_capture(&good).is_ok());
        assert_eq!(PresentedCert::from_capture(&RawCapture::default()).unwrap_err(), CaptureError::Absent);
        let err = |raw: RawCapture<'_>| match PresentedCert::from_capture(&raw) {
            Err(CaptureError::Malformed(m)) => m,
            other => panic!("expected malformed, got {other:?}"),
        };
        assert_eq!(err(RawCapture { chain_length: None, ..good }), "no chain length");
        assert_eq!(err(RawCapture { chain_length: Some(0), ..good }), "chain length out of range");
        assert_eq!(err(RawCapture { chain_length: Some(17), ..good }), "chain length out of range");
        assert_eq!(err(RawCapture { chain_length: Some(3), ..good }), "digest count differs from the chain length");
        assert_eq!(err(RawCapture { spki_sha512: &a[..1], ..good }), "digest count differs from the chain length");
        // A SHA-512 where a SHA-256 belongs.
        assert_eq!(err(RawCapture { cert_sha256: &b, ..good }), "a digest has the wrong length");
    }
}
