//! Authenticating a PKIX-CD certificate (TLSA `4 0 0`) by its CA chain.
//!
//! DNS gives us the device's full certificate; by itself it proves nothing about who
//! issued it. We walk its Authority Key Identifier to the CA certificates its
//! organisation publishes ([`crate::sync::cafetch`]), check every link the way OpenSSL will
//! check it in radiusd's TLS handshake (signature, CA flags, key usage, path length,
//! validity, unknown critical extensions), and stop at a self-signed root. Only a chain
//! that passes can put the device's certificate association in the trust map and its CAs
//! in the CA set.
//!
//! [`verify_links`] is the whole check on a finished chain, without I/O; [`authenticate`]
//! builds the chain over HTTPS and ends with it.

use std::cmp::Ordering;

use openssl::x509::{X509Ref, X509};

use crate::model::name;
use crate::model::pki::dashed_hex;
use crate::model::pki::{self, is_self_signed_root, oneline, Extensions, PkiError};
use crate::sync::cafetch::{CaFetcher, FetchError};

/// Bounds on a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLimits {
    /// Most CA certificates above the leaf, root included (the leaf itself not counted).
    pub max_depth: usize,
}

impl Default for ChainLimits {
    fn default() -> Self {
        ChainLimits { max_depth: 5 }
    }
}

/// An authenticated chain: the leaf first, then each issuer, ending at a self-signed root.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Leaf first, root last; always at least two certificates (a device certificate
    /// is never its own root), which [`Chain::issuer`] and [`Chain::root`] rely on.
    pub certs: Vec<X509>,
}

impl Chain {
    /// The device certificate, as published in DNS.
    pub fn leaf(&self) -> &X509 {
        &self.certs[0]
    }

    /// The CA that signed the leaf (FreeRADIUS' depth 1, `TLS-Cert-*`).
    pub fn issuer(&self) -> &X509 {
        &self.certs[1]
    }

    /// The self-signed root that ends the chain.
    pub fn root(&self) -> &X509 {
        &self.certs[self.certs.len() - 1]
    }

    /// Every CA of the chain (what goes into the CA set).
    pub fn cas(&self) -> &[X509] {
        &self.certs[1..]
    }
}

/// Why a certificate is not authenticated. Certificates are named by their subject
/// (`X509_NAME_oneline`, as FreeRADIUS logs them).
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// [`verify_links`] was given no certificate at all: a caller's mistake, not
    /// something a zone or authority host can cause.
    #[error("empty chain")]
    Empty,
    /// The identity name has no `_label`, so there is no authority host to ask.
    #[error("{0}: no _label, so no authority host for its CA certificates")]
    NoAuthorityHost(String),
    /// A certificate that is not a root has no AKI key id: its issuer cannot be looked up.
    #[error("{subject}: no authority key identifier, cannot look up its issuer")]
    NoAuthorityKeyId {
        /// The certificate without an AKI key id.
        subject: String,
    },
    /// Fetching the issuer of `subject` failed.
    #[error("issuer of {subject}: {error}")]
    Fetch {
        /// The certificate whose issuer was being fetched.
        subject: String,
        /// Why the fetch failed. Network trouble, the rate limit and 5xx/429 are transient
        /// (the name keeps its last good entry); anything else is definitive.
        #[source]
        error: FetchError,
    },
    /// `subject`'s signature does not verify with the public key of the certificate
    /// offered as its issuer (e.g. a forged CA copying the real one's DN and key id).
    #[error(
        "{subject}: signature does not verify with the key of the CA {issuer} served \
         for its key id (forged or unrelated CA)"
    )]
    BadSignature {
        /// The certificate whose signature failed.
        subject: String,
        /// The CA the authority host served for its key id.
        issuer: String,
    },
    /// `subject`'s issuer DN is not the offered issuer's subject DN.
    #[error("{subject}: issuer DN differs from the subject of the CA served for it ({issuer})")]
    IssuerNameMismatch {
        /// The child certificate.
        subject: String,
        /// The CA served for its key id, whose subject DN does not match.
        issuer: String,
    },
    /// `subject`'s AKI is not the offered issuer's SKI.
    #[error("{subject}: authority key id differs from the subject key id of {issuer}")]
    KeyIdMismatch {
        /// The child certificate.
        subject: String,
        /// The CA served for its key id, whose SKI is another.
        issuer: String,
    },
    /// An issuer without basicConstraints CA:TRUE.
    #[error("{subject}: issuer is not a CA (basicConstraints CA:TRUE missing)")]
    NotCa {
        /// The certificate offered as an issuer.
        subject: String,
    },
    /// An issuer whose keyUsage lacks keyCertSign.
    #[error("{subject}: issuer's keyUsage does not allow keyCertSign")]
    NoCertSign {
        /// The certificate offered as an issuer.
        subject: String,
    },
    /// An issuer's pathLenConstraint allows fewer CAs below it than the chain has.
    #[error("{subject}: pathLenConstraint {path_len} but {below} CA(s) below it")]
    PathLen {
        /// The CA whose constraint is violated.
        subject: String,
        /// Its pathLenConstraint: most CAs allowed between it and the leaf.
        path_len: u32,
        /// CAs actually between it and the leaf.
        below: usize,
    },
    /// The walk came back to a key id (or certificate) it had already seen.
    #[error("{subject}: chain loops (key id {key_id} seen twice)")]
    Loop {
        /// The certificate at which the repetition was noticed.
        subject: String,
        /// The repeated key id, dashed hex (empty when a repeated certificate has no SKI).
        key_id: String,
    },
    /// More CAs than `max_depth` before reaching a root.
    #[error("no root within {max_depth} CA certificates")]
    TooDeep {
        /// The limit in force (`chain_max_depth`).
        max_depth: usize,
    },
    /// A certificate outside its validity period.
    #[error("{subject}: expired (valid from {not_before} until {not_after})")]
    Expired {
        /// The expired certificate.
        subject: String,
        /// Start of its validity, as OpenSSL prints ASN.1 times (GMT).
        not_before: String,
        /// End of its validity, as OpenSSL prints ASN.1 times (GMT).
        not_after: String,
    },
    /// A certificate whose validity has not begun (often a clock off on one side).
    #[error("{subject}: not yet valid (valid from {not_before} until {not_after})")]
    NotYetValid {
        /// The certificate not valid yet.
        subject: String,
        /// Start of its validity, as OpenSSL prints ASN.1 times (GMT).
        not_before: String,
        /// End of its validity, as OpenSSL prints ASN.1 times (GMT).
        not_after: String,
    },
    /// Extensions OpenSSL could not parse (OpenSSL would refuse the certificate).
    #[error("{subject}: malformed extensions")]
    InvalidExtensions {
        /// The certificate with unparsable extensions.
        subject: String,
    },
    /// A critical extension OpenSSL does not handle (OpenSSL would refuse it).
    #[error("{subject}: unhandled critical extension")]
    UnhandledCriticalExtension {
        /// The certificate carrying the extension.
        subject: String,
    },
    /// The device certificate is a CA.
    #[error("{subject}: a device certificate must not be a CA")]
    LeafIsCa {
        /// The device certificate.
        subject: String,
    },
    /// The device certificate's extendedKeyUsage lacks clientAuth.
    #[error("{subject}: extendedKeyUsage does not include clientAuth")]
    LeafNotClientAuth {
        /// The device certificate.
        subject: String,
    },
    /// The device certificate's keyUsage allows neither digitalSignature nor keyAgreement.
    #[error("{subject}: keyUsage allows neither digitalSignature nor keyAgreement")]
    LeafKeyUsage {
        /// The device certificate.
        subject: String,
    },
    /// The chain does not end at a self-signed root.
    #[error("chain ends at {subject}, which is not a self-signed root")]
    NoRoot {
        /// The last certificate reached, which is not a valid self-signed root.
        subject: String,
    },
    /// A self-signed root in the middle of the chain.
    #[error("self-signed {subject} is not the last certificate of the chain")]
    RootNotLast {
        /// The self-signed certificate found mid-chain.
        subject: String,
    },
    /// The identity name is not in the leaf's SAN dNSNames.
    #[error("name binding: {0}")]
    NameBinding(#[source] PkiError),
    /// A certificate's validity dates could not be read.
    #[error("OpenSSL: {0}")]
    Validity(#[source] PkiError),
    /// OpenSSL failed while comparing names, encoding a certificate or reading its key
    /// (a malformed certificate, or OpenSSL itself out of memory).
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

/// Builds and checks the chain of the PKIX-CD certificate `leaf` published at `name`.
///
/// Cheap local checks (name binding, leaf profile, leaf validity) come first so a bad
/// record costs no HTTPS request. Each fetched CA is checked against its child before the
/// walk continues, so a forged CA stops the walk at once; the finished chain then goes
/// through [`verify_links`].
pub async fn authenticate(
    leaf: &X509,
    name: &str,
    fetcher: &CaFetcher,
    limits: ChainLimits,
    now: i64,
) -> Result<Chain, ChainError> {
    pki::check_name_binding(leaf, name).map_err(ChainError::NameBinding)?;
    build(leaf, name, fetcher, limits, now).await
}

/// Builds and checks the CA chain of `leaf` from the authority host of `name`, without
/// the name binding: for a DANE-EE certificate, which DNSSEC authenticates by itself but
/// whose TLS handshake still needs its CAs in the CA set.
pub async fn build(
    leaf: &X509,
    name: &str,
    fetcher: &CaFetcher,
    limits: ChainLimits,
    now: i64,
) -> Result<Chain, ChainError> {
    let host = name::authority_host(name).ok_or_else(|| ChainError::NoAuthorityHost(name.to_owned()))?;
    check_leaf(leaf)?;
    check_validity(leaf, now)?;
    let certs = walk(leaf.clone(), true, &host, fetcher, limits).await?;
    verify_links(&certs, now)?;
    Ok(Chain { certs })
}

/// The trust anchor `ta` (a CA named by a DANE-TA record) and the CAs above it up to a
/// self-signed root, fetched from `host` like a PKIX-CD chain: what the CA set needs so a
/// handshake through `ta` completes. Just `[ta]` when it is a root itself.
pub async fn anchor_chain(
    ta: &X509,
    host: &str,
    fetcher: &CaFetcher,
    limits: ChainLimits,
    now: i64,
) -> Result<Vec<X509>, ChainError> {
    check_ca(ta, 0)?;
    let certs = walk(ta.clone(), false, host, fetcher, limits).await?;
    verify_path(&certs, now, false)?;
    Ok(certs)
}

/// Follows Authority Key Identifiers from `start` to a self-signed root, each issuer
/// fetched from `host` and checked against its child before the walk goes on.
async fn walk(
    start: X509,
    start_is_leaf: bool,
    host: &str,
    fetcher: &CaFetcher,
    limits: ChainLimits,
) -> Result<Vec<X509>, ChainError> {
    let mut certs = vec![start];
    let mut requested: Vec<Vec<u8>> = Vec::new();
    loop {
        let child = &certs[certs.len() - 1];
        // A self-signed device certificate is no root to stop at; a self-signed CA is.
        if (certs.len() > 1 || !start_is_leaf) && is_self_signed_root(child) {
            return Ok(certs);
        }
        if certs.len() > limits.max_depth {
            return Err(ChainError::TooDeep { max_depth: limits.max_depth });
        }
        let subject = oneline(child.subject_name());
        let aki = child
            .authority_key_id()
            .map(|k| k.as_slice().to_vec())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ChainError::NoAuthorityKeyId { subject: subject.clone() })?;
        // A CA naming itself as its issuer but failing the root test (bad
        // self-signature, or subject != issuer) cannot be completed.
        if (certs.len() > 1 || !start_is_leaf) && child.subject_key_id().map(|k| k.as_slice()) == Some(&aki[..]) {
            return Err(ChainError::NoRoot { subject });
        }
        if requested.contains(&aki) {
            return Err(ChainError::Loop { subject, key_id: dashed_hex(&aki) });
        }
        let fetch_error = |error| ChainError::Fetch { subject: subject.clone(), error };
        let mut ca = fetcher.fetch(host, &aki).await.map_err(fetch_error)?;
        if check_link(child, &ca).is_err() {
            // The cached copy may be stale: the authority host can have replaced the CA
            // under its key id since (a re-issue, or the identity reused for a new key).
            // Ask once more before refusing.
            fetcher.forget(host, &aki);
            ca = fetcher.fetch(host, &aki).await.map_err(fetch_error)?;
        }
        requested.push(aki);
        check_link(child, &ca)?;
        let below = if start_is_leaf { certs.len() - 1 } else { certs.len() };
        check_ca(&ca, below)?;
        certs.push(ca);
    }
}

/// Checks a finished chain (leaf first, root last) without any I/O: leaf profile, every
/// certificate's validity at `now` and extensions, every link (issuer DN, key ids,
/// signature), every issuer's CA flags and path length, no repeated key id or
/// certificate, and a self-signed root at the end (and only there).
pub fn verify_links(certs: &[X509], now: i64) -> Result<(), ChainError> {
    verify_path(certs, now, true)
}

/// [`verify_links`] for a chain that starts at a device certificate (`first_is_leaf`) or
/// at a CA (a trust anchor's own chain; it may be a lone root).
fn verify_path(certs: &[X509], now: i64, first_is_leaf: bool) -> Result<(), ChainError> {
    let leaf = certs.first().ok_or(ChainError::Empty)?;
    if first_is_leaf {
        check_leaf(leaf)?;
    }
    for cert in certs {
        check_validity(cert, now)?;
    }
    let mut seen_ids: Vec<&[u8]> = Vec::new();
    let mut seen_der: Vec<Vec<u8>> = vec![leaf.to_der()?];
    for (i, pair) in certs.windows(2).enumerate() {
        let (child, issuer) = (&pair[0], &pair[1]);
        let subject = || oneline(issuer.subject_name());
        let der = issuer.to_der()?;
        if seen_der.contains(&der) {
            return Err(ChainError::Loop {
                subject: subject(),
                key_id: issuer.subject_key_id().map(|k| dashed_hex(k.as_slice())).unwrap_or_default(),
            });
        }
        seen_der.push(der);
        if let Some(ski) = issuer.subject_key_id().map(|k| k.as_slice()) {
            if seen_ids.contains(&ski) {
                return Err(ChainError::Loop { subject: subject(), key_id: dashed_hex(ski) });
            }
            seen_ids.push(ski);
        }
        check_link(child, issuer)?;
        check_ca(issuer, if first_is_leaf { i } else { i + 1 })?;
        // A root may only end the chain: i + 1 is the issuer's index.
        if i + 2 < certs.len() && is_self_signed_root(issuer) {
            return Err(ChainError::RootNotLast { subject: subject() });
        }
    }
    let last = &certs[certs.len() - 1];
    if (first_is_leaf && certs.len() < 2) || !is_self_signed_root(last) {
        return Err(ChainError::NoRoot { subject: oneline(last.subject_name()) });
    }
    Ok(())
}

/// `issuer` is the issuer of `child`: names chain, key ids chain (when both present),
/// and `child`'s signature verifies with `issuer`'s public key. The signature is what
/// counts; the name and key id checks give clearer errors and match OpenSSL's matching.
fn check_link(child: &X509Ref, issuer: &X509Ref) -> Result<(), ChainError> {
    let subject = || oneline(child.subject_name());
    let issuer_name = || oneline(issuer.subject_name());
    if child.issuer_name().try_cmp(issuer.subject_name())? != Ordering::Equal {
        return Err(ChainError::IssuerNameMismatch { subject: subject(), issuer: issuer_name() });
    }
    if let (Some(aki), Some(ski)) = (child.authority_key_id(), issuer.subject_key_id()) {
        if aki.as_slice() != ski.as_slice() {
            return Err(ChainError::KeyIdMismatch { subject: subject(), issuer: issuer_name() });
        }
    }
    let key = issuer.public_key()?;
    // An error (unsupported algorithm, malformed signature) is a failure, not a pass.
    if !child.verify(&key).unwrap_or(false) {
        return Err(ChainError::BadSignature { subject: subject(), issuer: issuer_name() });
    }
    Ok(())
}

/// `ca` may issue certificates with `below` CAs between it and the leaf.
fn check_ca(ca: &X509Ref, below: usize) -> Result<(), ChainError> {
    let subject = || oneline(ca.subject_name());
    let x = Extensions::of(ca);
    check_well_formed(&x, ca)?;
    if !x.is_ca() {
        return Err(ChainError::NotCa { subject: subject() });
    }
    if x.has(openssl_sys::EXFLAG_KUSAGE) && x.key_usage & openssl_sys::X509v3_KU_KEY_CERT_SIGN == 0 {
        return Err(ChainError::NoCertSign { subject: subject() });
    }
    if let Some(path_len) = ca.pathlen() {
        if below > path_len as usize {
            return Err(ChainError::PathLen { subject: subject(), path_len, below });
        }
    }
    Ok(())
}

/// The device certificate's profile, as OpenSSL's "SSL client" purpose check sees it.
fn check_leaf(leaf: &X509Ref) -> Result<(), ChainError> {
    let subject = || oneline(leaf.subject_name());
    let x = Extensions::of(leaf);
    check_well_formed(&x, leaf)?;
    if x.is_ca() {
        return Err(ChainError::LeafIsCa { subject: subject() });
    }
    // anyExtendedKeyUsage alone is not enough: OpenSSL's SSL-client purpose requires the
    // clientAuth bit whenever the extension is present.
    if x.has(openssl_sys::EXFLAG_XKUSAGE) && x.ext_key_usage & openssl_sys::XKU_SSL_CLIENT == 0 {
        return Err(ChainError::LeafNotClientAuth { subject: subject() });
    }
    let signing = openssl_sys::X509v3_KU_DIGITAL_SIGNATURE | openssl_sys::X509v3_KU_KEY_AGREEMENT;
    if x.has(openssl_sys::EXFLAG_KUSAGE) && x.key_usage & signing == 0 {
        return Err(ChainError::LeafKeyUsage { subject: subject() });
    }
    Ok(())
}

fn check_validity(cert: &X509Ref, now: i64) -> Result<(), ChainError> {
    let not_before = pki::unix_time(cert.not_before()).map_err(ChainError::Validity)?;
    let not_after = pki::unix_time(cert.not_after()).map_err(ChainError::Validity)?;
    let dates = || (oneline(cert.subject_name()), cert.not_before().to_string(), cert.not_after().to_string());
    if now < not_before {
        let (subject, not_before, not_after) = dates();
        return Err(ChainError::NotYetValid { subject, not_before, not_after });
    }
    if now > not_after {
        let (subject, not_before, not_after) = dates();
        return Err(ChainError::Expired { subject, not_before, not_after });
    }
    Ok(())
}

/// OpenSSL would refuse a certificate with extensions it cannot parse or a critical
/// one it does not handle; so does the walk.
fn check_well_formed(x: &Extensions, cert: &X509Ref) -> Result<(), ChainError> {
    if x.has(openssl_sys::EXFLAG_INVALID) {
        return Err(ChainError::InvalidExtensions { subject: oneline(cert.subject_name()) });
    }
    if x.has(openssl_sys::EXFLAG_CRITICAL) {
        return Err(ChainError::UnhandledCriticalExtension { subject: oneline(cert.subject_name()) });
    }
    Ok(())
}
