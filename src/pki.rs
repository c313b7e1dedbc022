//! X.509 facts the module relies on: pins, and the exact strings FreeRADIUS derives.
//!
//! FreeRADIUS 3.2 never hands post-auth the client certificate, only attributes it
//! extracted (research/freeradius.md). A [`Pin`] is those same fields computed from the full
//! certificate we got from DNS, plus the issuing CA's fields as FreeRADIUS reports them at
//! depth 1 (ARCHITECTURE.md invariant 1). Every field lives in the signed part of a
//! certificate, and TLS has verified the presented chain against our CA set, so equality
//! of all fields means "the certificate DNS publishes for this name, from the CA that
//! issued it".

use std::ffi::CStr;
use std::fmt;

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::x509::{X509NameRef, X509Ref, X509};
use serde::{Deserialize, Serialize};

extern "C" {
    // Not wrapped by openssl-sys; FreeRADIUS builds TLS-*-Subject/-Issuer with it, so we
    // must too (same function, same libcrypto) to compare byte for byte.
    fn X509_NAME_oneline(
        name: *const openssl_sys::X509_NAME,
        buf: *mut libc::c_char,
        size: libc::c_int,
    ) -> *mut libc::c_char;
}

/// FreeRADIUS' buffer for subject/issuer strings (tls.c: `char subject[1024]`).
const ONELINE_BUF: usize = 1024;

/// Errors turning certificates into pins.
#[derive(Debug)]
pub enum PkiError {
    Parse(String),
    NoIssuer(String),
    BadSignature(String),
    NameNotInSan { name: String, sans: Vec<String> },
    OpenSsl(openssl::error::ErrorStack),
}

impl fmt::Display for PkiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkiError::Parse(m) => write!(f, "cannot parse certificate: {m}"),
            PkiError::NoIssuer(s) => write!(f, "no issuing CA certificate found for issuer {s}"),
            PkiError::BadSignature(s) => write!(f, "certificate {s} is not signed by the CA offered as its issuer"),
            PkiError::NameNotInSan { name, sans } => {
                write!(f, "name {name} is not among the certificate's SAN dNSNames {sans:?}")
            }
            PkiError::OpenSsl(e) => write!(f, "OpenSSL: {e}"),
        }
    }
}

impl std::error::Error for PkiError {}

impl From<openssl::error::ErrorStack> for PkiError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        PkiError::OpenSsl(e)
    }
}

/// The issuing CA's fields, as FreeRADIUS reports them in `TLS-Cert-*` (depth 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaPin {
    #[serde(with = "hex_bytes")]
    pub serial: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    pub not_before: i64,
    pub not_after: i64,
}

/// What must be true of a presented client certificate for it to be one DNS published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// Serial magnitude, big-endian, no leading zero bytes.
    #[serde(with = "hex_bytes")]
    pub serial: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    /// keyIdentifier of the Authority Key Identifier extension (empty: no extension).
    #[serde(with = "hex_bytes")]
    pub authority_key_id: Vec<u8>,
    /// Validity as Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub ca: CaPin,
    /// SHA-256 of the certificate DER: for reports and logs, not matched on the request path.
    #[serde(with = "hex_bytes")]
    pub sha256: Vec<u8>,
}

impl Pin {
    /// Builds the pin of `cert`, issued by `issuer`. The caller has verified the chain.
    pub fn new(cert: &X509Ref, issuer: &X509Ref) -> Result<Pin, PkiError> {
        Ok(Pin {
            serial: serial_bytes(cert)?,
            subject: oneline(cert.subject_name()),
            issuer: oneline(cert.issuer_name()),
            authority_key_id: cert.authority_key_id().map(|k| k.as_slice().to_vec()).unwrap_or_default(),
            not_before: unix_time(cert.not_before())?,
            not_after: unix_time(cert.not_after())?,
            ca: CaPin {
                serial: serial_bytes(issuer)?,
                subject: oneline(issuer.subject_name()),
                issuer: oneline(issuer.issuer_name()),
                not_before: unix_time(issuer.not_before())?,
                not_after: unix_time(issuer.not_after())?,
            },
            sha256: cert.digest(MessageDigest::sha256())?.to_vec(),
        })
    }
}

/// Serial number as FreeRADIUS prints it, decoded: the magnitude bytes without leading zeros.
pub fn serial_bytes(cert: &X509Ref) -> Result<Vec<u8>, PkiError> {
    let bn = cert.serial_number().to_bn()?;
    Ok(strip_leading_zeros(&bn.to_vec()).to_vec())
}

pub fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// `X509_NAME_oneline`, exactly as FreeRADIUS calls it (`/C=CA/O=Example/CN=...`).
pub fn oneline(name: &X509NameRef) -> String {
    let mut buf = [0 as libc::c_char; ONELINE_BUF];
    // SAFETY: `name` is a valid X509_NAME for the borrow; OpenSSL writes at most `size`
    // bytes including the terminating NUL into `buf` and returns `buf` or NULL.
    let p = unsafe {
        X509_NAME_oneline(foreign_types::ForeignTypeRef::as_ptr(name), buf.as_mut_ptr(), ONELINE_BUF as libc::c_int)
    };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: on success OpenSSL NUL-terminated the string inside `buf`.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// Unix seconds of an ASN.1 time (compared as values, not as strings).
pub fn unix_time(t: &Asn1TimeRef) -> Result<i64, PkiError> {
    let epoch = Asn1Time::from_unix(0)?;
    let d = epoch.diff(t)?;
    Ok(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

/// The raw ASN.1 time text (`YYMMDDHHMMSSZ`), as FreeRADIUS copies it into attributes.
pub fn raw_time(t: &Asn1TimeRef) -> String {
    // SAFETY: an ASN1_TIME is an ASN1_STRING; data/length describe its bytes for the borrow.
    unsafe {
        let s = foreign_types::ForeignTypeRef::as_ptr(t) as *const openssl_sys::ASN1_STRING;
        let data = openssl_sys::ASN1_STRING_get0_data(s);
        let len = openssl_sys::ASN1_STRING_length(s);
        if data.is_null() || len <= 0 {
            return String::new();
        }
        String::from_utf8_lossy(std::slice::from_raw_parts(data, len as usize)).into_owned()
    }
}

/// Every SAN dNSName of the certificate, as written in it.
pub fn san_dns_names(cert: &X509Ref) -> Vec<String> {
    cert.subject_alt_names()
        .map(|names| names.iter().filter_map(|g| g.dnsname().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The name binding: the identity name must be one of the certificate's SAN dNSNames
/// (compared case-insensitively, trailing dots ignored).
pub fn check_name_binding(cert: &X509Ref, name: &str) -> Result<(), PkiError> {
    let sans = san_dns_names(cert);
    if sans.iter().any(|s| dns_eq(s, name)) {
        Ok(())
    } else {
        Err(PkiError::NameNotInSan { name: name.to_owned(), sans })
    }
}

pub fn dns_eq(a: &str, b: &str) -> bool {
    a.strip_suffix('.').unwrap_or(a).eq_ignore_ascii_case(b.strip_suffix('.').unwrap_or(b))
}

/// Common name of the subject, if any.
pub fn common_name(cert: &X509Ref) -> Option<String> {
    cert.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
}

/// Parses every certificate in a PEM blob (a chain file: leaf first).
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<X509>, PkiError> {
    let certs = X509::stack_from_pem(pem).map_err(|e| PkiError::Parse(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::Parse("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// Finds the issuer of `cert` among `candidates` by subject name *and* signature: a
/// candidate that merely copies the issuer DN is not accepted.
pub fn find_issuer<'a>(cert: &X509Ref, candidates: &'a [X509]) -> Result<&'a X509, PkiError> {
    let wanted = oneline(cert.issuer_name());
    let mut name_matched = false;
    for c in candidates {
        if oneline(c.subject_name()) != wanted {
            continue;
        }
        name_matched = true;
        let key = c.public_key()?;
        if cert.verify(&key).unwrap_or(false) {
            return Ok(c);
        }
    }
    if name_matched {
        Err(PkiError::BadSignature(oneline(cert.subject_name())))
    } else {
        Err(PkiError::NoIssuer(wanted))
    }
}

/// The attribute strings FreeRADIUS 3.2 produces for a certificate, used by the operator
/// CLI's `explain` and by tests to feed the check exactly what radiusd would.
#[derive(Debug, Clone, Default)]
pub struct FreeradiusAttrs {
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    pub valid_since: String,
    pub expiration: String,
    pub authority_key_id: String,
    pub san_dns: Vec<String>,
}

impl FreeradiusAttrs {
    pub fn of(cert: &X509Ref) -> Result<Self, PkiError> {
        Ok(FreeradiusAttrs {
            serial: hex::encode(serial_bytes(cert)?),
            subject: oneline(cert.subject_name()),
            issuer: oneline(cert.issuer_name()),
            valid_since: raw_time(cert.not_before()),
            expiration: raw_time(cert.not_after()),
            authority_key_id: cert
                .authority_key_id()
                .map(|k| k.as_slice().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
                .unwrap_or_default(),
            san_dns: san_dns_names(cert),
        })
    }
}

/// Serde adapter: bytes as lower-case hex strings in JSON.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s.replace(':', "")).map_err(serde::de::Error::custom)
    }
}
