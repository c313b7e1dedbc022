//! X.509 facts the sync and the operator tool rely on: certificate encodings, names,
//! validity, and the one chain verification the TLS layer also does.
//!
//! Decisions use certificates themselves (DER, keys, signatures) and the SAN dNSNames
//! compared as names. Distinguished names appear only in messages, printed the way
//! FreeRADIUS prints them so an operator can match our logs with radiusd's.
#![allow(unsafe_code)] // OpenSSL's extension flags have no safe binding

use std::cmp::Ordering;
use std::ffi::CStr;

use foreign_types::ForeignTypeRef;
use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::nid::Nid;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509NameRef, X509Ref, X509StoreContext, X509};

extern "C" {
    // Not wrapped by openssl-sys. FreeRADIUS logs certificate names with it; we print ours
    // the same way so the two logs read alike.
    fn X509_NAME_oneline(
        name: *const openssl_sys::X509_NAME,
        buf: *mut libc::c_char,
        size: libc::c_int,
    ) -> *mut libc::c_char;
    // Not wrapped by openssl-sys either: the certificate's own SubjectPublicKeyInfo, which
    // is what TLSA selector 1 and the TLS hook digest (re-encoding the key could differ).
    fn X509_get_X509_PUBKEY(x: *const openssl_sys::X509) -> *mut libc::c_void;
    fn i2d_X509_PUBKEY(key: *const libc::c_void, out: *mut *mut u8) -> libc::c_int;
}

/// FreeRADIUS' buffer for subject/issuer strings (tls.c: `char subject[1024]`).
const ONELINE_BUF: usize = 1024;

/// Errors reading certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A PEM blob holds no certificate or does not parse (the text says why).
    #[error("cannot parse certificate: {0}")]
    Parse(String),
    /// The certificate does not carry the claimed name among its SAN dNSNames, so it
    /// cannot vouch for that name (the name binding fails).
    #[error("name {name} is not among the certificate's SAN dNSNames {sans:?}")]
    NameNotInSan {
        /// The name claimed.
        name: String,
        /// The dNSNames the certificate does carry, as written in it.
        sans: Vec<String>,
    },
    /// OpenSSL's verification refused the chain (the reason as OpenSSL words it).
    #[error("the chain does not verify: {0}")]
    Unverified(String),
    /// An OpenSSL call failed outright (memory, store set-up): no verdict on the chain.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

/// The certificate's SubjectPublicKeyInfo, DER, as encoded in the certificate.
pub fn spki_der(cert: &X509Ref) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let x = foreign_types::ForeignTypeRef::as_ptr(cert);
    // SAFETY: `x` is a valid X509 for the borrow. X509_get_X509_PUBKEY returns a pointer
    // into it (not owned, never NULL for a parsed certificate); i2d with a NULL output
    // pointer only measures.
    let len = unsafe { i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), std::ptr::null_mut()) };
    let Ok(n) = usize::try_from(len) else {
        return Err(openssl::error::ErrorStack::get());
    };
    let mut buf = vec![0u8; n];
    let mut p = buf.as_mut_ptr();
    // SAFETY: `buf` has exactly the `n` bytes i2d measured; it advances `p` past them.
    let written = unsafe { i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &mut p) };
    if written != len {
        return Err(openssl::error::ErrorStack::get());
    }
    Ok(buf)
}

/// The key identifier OpenSSL gives a certificate of this SubjectPublicKeyInfo (RFC 5280
/// method 1: SHA-1 of the subjectPublicKey BIT STRING's bits): how a CA named only by
/// its key (`2 1 0`) is found under `.well-known/ca/`. None if `spki` is not a DER
/// SEQUENCE of an AlgorithmIdentifier and a BIT STRING.
pub fn spki_key_id(spki: &[u8]) -> Option<[u8; 20]> {
    // (tag, content, rest) of one DER TLV.
    fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, d) = d.split_first()?;
        let (&first, mut d) = d.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || d.len() < n {
                return None;
            }
            let len = d[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            d = &d[n..];
            len
        };
        (d.len() >= len).then(|| (tag, &d[..len], &d[len..]))
    }
    let (0x30, body, []) = tlv(spki)? else { return None };
    let (0x30, _algorithm, rest) = tlv(body)? else { return None };
    let (0x03, bits, []) = tlv(rest)? else { return None };
    let (_unused, key) = bits.split_first()?;
    Some(openssl::sha::sha1(key))
}

/// `X509_NAME_oneline`, as FreeRADIUS prints names (`/C=CA/O=Example/CN=...`). For
/// messages only: different names can print alike.
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

/// Whether two DNS names are the same name: ASCII case ignored, one trailing dot on either
/// side ignored.
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

/// Verifies `leaf` the way the TLS layer does (OpenSSL, trust anchors `anchors`, the
/// client-sent `untrusted` certificates as candidate intermediates) and returns the
/// verified chain, leaf first: what the TLS hook captures after a handshake.
pub fn verify_chain(leaf: &X509Ref, untrusted: &[X509], anchors: &[X509]) -> Result<Vec<X509>, PkiError> {
    let mut store = X509StoreBuilder::new()?;
    for a in anchors {
        store.add_cert(a.clone())?;
    }
    let store = store.build();
    let mut sent = Stack::new()?;
    for c in untrusted {
        sent.push(c.clone())?;
    }
    let mut ctx = X509StoreContext::new()?;
    ctx.init(&store, leaf, &sent, |c| {
        if c.verify_cert()? {
            Ok(Ok(c.chain().map(|s| s.iter().map(X509Ref::to_owned).collect()).unwrap_or_default()))
        } else {
            Ok(Err(PkiError::Unverified(c.error().error_string().to_owned())))
        }
    })?
}

/// Why data is not exactly one DER certificate.
#[derive(Debug, thiserror::Error)]
pub enum DerError {
    /// OpenSSL's first reason ("too long", "wrong tag"); the stack is noise.
    #[error("not a DER certificate ({0})")]
    NotDer(String),
    /// It parsed, but OpenSSL cannot write it back as DER to compare with the data.
    #[error("certificate does not re-encode ({0})")]
    Reencode(#[source] openssl::error::ErrorStack),
    /// A certificate followed by more bytes: the data is not one certificate alone.
    #[error("{} bytes after the {}-byte certificate", .data_len.saturating_sub(*.der_len), .der_len)]
    TrailingBytes {
        /// Bytes in the data as received.
        data_len: usize,
        /// Bytes of the certificate at its start.
        der_len: usize,
    },
    /// OpenSSL accepts some BER (padding bits in a BIT STRING) and re-encodes it as DER at
    /// the same length.
    #[error("the certificate is not in DER form (OpenSSL re-encodes it differently), so no handshake can match it")]
    NotDerForm,
}

/// Exactly one X.509 certificate in DER form and nothing after it: what a TLSA record or
/// a `.well-known/ca/` DER body must be. The TLS hook digests the DER, so a certificate
/// that is not exactly it could never match a handshake.
pub fn der_certificate(data: &[u8]) -> Result<X509, DerError> {
    let cert = X509::from_der(data).map_err(|e| {
        // OpenSSL's first reason ("too long", "wrong tag") is enough; the stack is noise.
        let why = e.errors().first().and_then(|e| e.reason()).unwrap_or("unparsable");
        DerError::NotDer(why.to_owned())
    })?;
    let der = cert.to_der().map_err(DerError::Reencode)?;
    if der.len() != data.len() {
        return Err(DerError::TrailingBytes { data_len: data.len(), der_len: der.len() });
    }
    // OpenSSL accepts some BER (padding bits in a BIT STRING) and re-encodes it as DER at
    // the same length.
    if der != data {
        return Err(DerError::NotDerForm);
    }
    Ok(cert)
}

/// A root ends the walk: self-issued (subject == issuer, compared as OpenSSL does),
/// self-signed (its own key verifies its signature) and, if it has an AKI, AKI == SKI.
/// A self-issued certificate signed by another key (key rollover) is not a root; the
/// walk goes on by its AKI.
pub fn is_self_signed_root(cert: &X509Ref) -> bool {
    let self_issued = matches!(cert.subject_name().try_cmp(cert.issuer_name()), Ok(Ordering::Equal));
    if !self_issued {
        return false;
    }
    if let Some(aki) = cert.authority_key_id() {
        match cert.subject_key_id() {
            Some(ski) if ski.as_slice() == aki.as_slice() => {}
            _ => return false,
        }
    }
    match cert.public_key() {
        Ok(key) => cert.verify(&key).unwrap_or(false),
        Err(_) => false,
    }
}

/// Whether `cert` has basicConstraints CA:TRUE (what the CA set admits).
pub fn is_ca(cert: &X509Ref) -> bool {
    Extensions::of(cert).is_ca()
}

/// OpenSSL's cached view of a certificate's extensions (the same flags its verifier uses).
pub(crate) struct Extensions {
    flags: u32,
    pub(crate) key_usage: u32,
    pub(crate) ext_key_usage: u32,
}

impl Extensions {
    pub(crate) fn of(cert: &X509Ref) -> Extensions {
        let p = cert.as_ptr();
        // SAFETY: `p` is a valid X509 for the borrow. These getters parse and cache the
        // extensions inside the X509 (thread-safe in OpenSSL >= 1.1) and return plain
        // integers; no pointer escapes.
        unsafe {
            Extensions {
                flags: openssl_sys::X509_get_extension_flags(p),
                key_usage: openssl_sys::X509_get_key_usage(p),
                ext_key_usage: openssl_sys::X509_get_extended_key_usage(p),
            }
        }
    }

    pub(crate) fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// basicConstraints present with CA:TRUE. X509v1 certificates (no extensions) do not
    /// count: OpenSSL tolerates them as roots, we do not need to.
    pub(crate) fn is_ca(&self) -> bool {
        self.has(openssl_sys::EXFLAG_BCONS) && self.has(openssl_sys::EXFLAG_CA)
    }
}

/// A key id (SKI, AKI) as everything prints it: lower-case hex bytes joined by '-'
/// (`64-65-1a-...`), which is also the file name under `/.well-known/ca/`.
pub fn dashed_hex(key_id: &[u8]) -> String {
    key_id.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_key_id_is_the_key_id_openssl_gives_a_certificate() {
        // Built here, not by the test kit: the point is OpenSSL's own SKI method.
        use openssl::ec::{EcGroup, EcKey};
        use openssl::x509::extension::SubjectKeyIdentifier;
        let key = openssl::pkey::PKey::from_ec_key(
            EcKey::generate(&EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
        )
        .unwrap();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_pubkey(&key).unwrap();
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None)).unwrap();
        b.append_extension(ski).unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let id = spki_key_id(&spki_der(&cert).unwrap()).unwrap();
        assert_eq!(&id[..], cert.subject_key_id().unwrap().as_slice());
        assert_eq!(spki_key_id(b"\x30\x02\x05\x00"), None);
        assert_eq!(spki_key_id(&[]), None);
    }

    #[test]
    fn dns_names_compare_without_case_or_trailing_dot() {
        assert!(dns_eq("Car54._device.cars.example.", "car54._device.cars.example"));
        assert!(!dns_eq("car54._device.cars.example", "car54._device.cars.example.evil"));
    }
}
