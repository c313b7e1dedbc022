//! Discovery of one name: TLSA records -> authenticated certificate associations, and the
//! certificates their TLS handshake needs in the CA set.
//!
//! Per record (see [`crate::model::association`] for what each usage is compared with):
//! - usage 3 (DANE-EE), any selector and matching type, counts only in a DNSSEC-secure
//!   answer, and needs nothing else: the TLSA owner name is the binding (RFC 7671). A
//!   `3 0 0` record carries the certificate, so the sync can also make its handshake work:
//!   a self-signed certificate goes into the CA set as its own anchor, a CA-issued one
//!   brings its CA chain (fetched as for PKIX-CD).
//! - usage 4 (PKIX-CD) `4 0 0` is authenticated by its CA chain fetched over HTTPS, and the
//!   name must be in its SAN; Secure or Insecure both do.
//! - usage 2 (DANE-TA), any form, counts only in a Secure answer: the presented
//!   certificate's verified chain must pass through the anchor and name the device; the
//!   anchor's certificate goes into the CA set when the sync can get it;
//! - a certificate whose CN lies under the IoT Registry domain must also be listed there.
//!
//! Every skipped record is reported with its reason, which is what the operator CLI prints.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use openssl::x509::X509;

use crate::model::association::{Association, Digest, Matching, Selector, Usage};
use crate::model::digests::OwnedDigests;
use crate::model::name;
use crate::model::pki;
use crate::sync::cafetch::{CaFetcher, FetchError};
use crate::sync::chain::{self, ChainError, ChainLimits};
use crate::sync::dns::resolver::TlsaResolver;
use crate::sync::dns::tlsa::{classify, RecordUse, TlsaAnswer, TlsaRecord};
use crate::sync::https::HttpError;
use crate::sync::registry::{Registry, RegistryVerdict};

/// A successful discovery of one name.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The authenticated associations the name now publishes (sorted, no duplicates):
    /// what the request path matches a presented certificate against.
    pub associations: Arc<[Association]>,
    /// The certificates the handshake of these associations needs in the CA set.
    pub cas: Vec<X509>,
    /// TTL of the TLSA answer: when the name should be looked at again (the schedule
    /// caps it at `max_interval`).
    pub ttl: Duration,
}

/// What one lookup of a name concluded.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// At least one record yielded an authenticated association: these replace the
    /// name's entry.
    Published(Discovered),
    /// Definitive: DNS says there is nothing (usable) for this name.
    Withdrawn {
        /// Why nothing counts (no TLSA, or each record's reason for being skipped).
        reason: String,
        /// How long the negative answer holds before the name is asked again.
        ttl: Duration,
    },
    /// DNSSEC validation failed: the answer is forged or broken. Drop the name now.
    Bogus {
        /// The validator's account of what failed, for the error log.
        reason: String,
    },
    /// Could not find out (timeouts, server failures). Keep the last good entry.
    Failed {
        /// What went wrong (DNS, a CA fetch, the registry), for the warning log.
        reason: String,
    },
}

impl Outcome {
    /// One word for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Published(_) => "published",
            Outcome::Withdrawn { .. } => "withdrawn",
            Outcome::Bogus { .. } => "bogus",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// What happened to one TLSA record.
#[derive(Debug, Clone)]
pub struct RecordReport {
    /// `4 0 0 (412 bytes)`.
    pub record: String,
    /// Ok: what was published and how it was authenticated; Err: why it was skipped.
    pub result: Result<String, String>,
}

/// What discovery found for a name: for logs and for `rlm-rust sync`.
#[derive(Debug, Clone)]
pub struct NameReport {
    /// The device name looked up, as asked.
    pub name: String,
    /// secure / insecure / bogus / no-records / failed.
    pub dns: &'static str,
    /// Per TLSA record looked at, what it yielded or why it was skipped.
    pub records: Vec<RecordReport>,
}

impl fmt::Display for NameReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: DNS {}", self.name, self.dns)?;
        for r in &self.records {
            match &r.result {
                Ok(what) => writeln!(f, "  TLSA {}: published {what}", r.record)?,
                Err(why) => writeln!(f, "  TLSA {}: skipped: {why}", r.record)?,
            }
        }
        Ok(())
    }
}

/// The parts discovery needs, shared by all names of a sync round.
pub struct Discoverer {
    /// DNS answers by what DNSSEC proved, in [`DNS_CLASSES`] order.
    pub answers: DnsAnswerCounts,
    /// The DNSSEC-validating resolver every TLSA lookup (device names, registry) goes to.
    pub resolver: TlsaResolver,
    /// Fetches issuer certificates from the authority host's `.well-known/ca/`.
    pub fetcher: CaFetcher,
    /// The IoT Registry check and its verdict cache.
    pub registry: Registry,
    /// Bounds on the CA chains built for PKIX-CD and DANE records.
    pub limits: ChainLimits,
    /// Most TLSA records of one name looked at (the rest is reported and ignored).
    pub max_records: usize,
    /// CA certificates seen so far, by digest: how a trust anchor published only as a
    /// digest (`2 x 1`, `2 x 2`) is found for the CA set.
    pub known: KnownCas,
}

/// The DNSSEC classes of TLSA answers, as the metrics name them.
pub const DNS_CLASSES: [&str; 5] = ["secure", "insecure", "bogus", "no-records", "failed"];

/// TLSA answers received, per class.
#[derive(Debug, Default)]
pub struct DnsAnswerCounts([std::sync::atomic::AtomicU64; 5]);

impl DnsAnswerCounts {
    fn count(&self, answer: &TlsaAnswer) {
        let i = DNS_CLASSES.iter().position(|c| *c == answer.kind()).unwrap_or(4);
        self.0[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// (class, answers) in [`DNS_CLASSES`] order.
    pub fn get(&self) -> [(&'static str, u64); 5] {
        std::array::from_fn(|i| (DNS_CLASSES[i], self.0[i].load(std::sync::atomic::Ordering::Relaxed)))
    }
}

/// CA certificates by (selector, digest) of their certificate and key.
#[derive(Default)]
pub struct KnownCas(std::sync::Mutex<HashMap<(Selector, Digest), X509>>);

impl KnownCas {
    fn learn(&self, cas: &[X509]) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for ca in cas {
            let Ok(d) = OwnedDigests::of(ca) else { continue };
            for key in [
                (Selector::Cert, Digest::Sha256(d.cert_sha256)),
                (Selector::Cert, Digest::Sha512(Box::new(d.cert_sha512))),
                (Selector::Spki, Digest::Sha256(d.spki_sha256)),
                (Selector::Spki, Digest::Sha512(Box::new(d.spki_sha512))),
            ] {
                map.entry(key).or_insert_with(|| ca.clone());
            }
        }
    }

    fn find(&self, selector: Selector, digest: &Digest) -> Option<X509> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&(selector, digest.clone())).cloned()
    }
}

/// A record's failure, and whether asking again later could change it.
struct Skip {
    reason: String,
    transient: bool,
}

impl Skip {
    /// A failure asking again will not change (the reason as the operator reads it).
    fn definitive(reason: impl fmt::Display) -> Skip {
        Skip { reason: reason.to_string(), transient: false }
    }
}

/// One record, authenticated.
struct Found {
    association: Association,
    /// Certificates the handshake needs in the CA set.
    ca_set: Vec<X509>,
    summary: String,
}

impl Discoverer {
    /// Discovers `name` at wall-clock time `now` (Unix seconds).
    pub async fn discover(&self, name: &str, now: i64) -> (Outcome, NameReport) {
        let answer = self.resolver.lookup(name).await;
        self.answers.count(&answer);
        let mut report = NameReport { name: name.to_owned(), dns: answer.kind(), records: Vec::new() };
        let (records, ttl, secure) = match answer {
            TlsaAnswer::Secure { records, ttl } => (records, ttl, true),
            TlsaAnswer::Insecure { records, ttl } => (records, ttl, false),
            TlsaAnswer::NoRecords { ttl, .. } => {
                return (Outcome::Withdrawn { reason: "no TLSA record".into(), ttl }, report);
            }
            TlsaAnswer::Bogus { reason } => return (Outcome::Bogus { reason }, report),
            TlsaAnswer::Failed { reason } => return (Outcome::Failed { reason }, report),
        };

        let mut associations: Vec<Association> = Vec::new();
        let mut cas: Vec<X509> = Vec::new();
        let mut transient = None;
        // A zone can publish hundreds of records at a name; a fixed order makes the ones
        // looked at the same every time.
        let mut records = records;
        records.sort_by(|a, b| {
            (a.usage, a.selector, a.matching, &a.data).cmp(&(b.usage, b.selector, b.matching, &b.data))
        });
        if records.len() > self.max_records {
            let ignored = records.len() - self.max_records;
            records.truncate(self.max_records);
            report.records.push(RecordReport {
                record: format!("{ignored} more"),
                result: Err(format!("ignored: more than {} TLSA records at the name", self.max_records)),
            });
        }
        for record in &records {
            let label =
                format!("{} {} {} ({} bytes)", record.usage, record.selector, record.matching, record.data.len());
            match self.associate(name, record, secure, now).await {
                Ok(found) => {
                    if !associations.contains(&found.association) {
                        associations.push(found.association);
                    }
                    for c in found.ca_set {
                        if !cas.iter().any(|have| same_cert(have, &c)) {
                            cas.push(c);
                        }
                    }
                    report.records.push(RecordReport { record: label, result: Ok(found.summary) });
                }
                Err(skip) => {
                    if skip.transient {
                        transient.get_or_insert_with(|| skip.reason.clone());
                    }
                    report.records.push(RecordReport { record: label, result: Err(skip.reason) });
                }
            }
        }
        let outcome = if !associations.is_empty() {
            associations.sort();
            Outcome::Published(Discovered { associations: associations.into(), cas, ttl })
        } else if let Some(reason) = transient {
            Outcome::Failed { reason }
        } else {
            let reasons: Vec<&str> =
                report.records.iter().filter_map(|r| r.result.as_ref().err().map(String::as_str)).collect();
            Outcome::Withdrawn { reason: format!("no usable TLSA record: {}", reasons.join("; ")), ttl }
        };
        (outcome, report)
    }

    async fn associate(&self, name: &str, record: &TlsaRecord, secure: bool, now: i64) -> Result<Found, Skip> {
        match classify(record) {
            RecordUse::Unusable { reason } => Err(Skip::definitive(reason)),
            RecordUse::DaneEe { .. } if !secure => {
                Err(Skip::definitive("DANE-EE (usage 3) needs a DNSSEC-secure answer; this one is insecure"))
            }
            RecordUse::DaneEe { selector: Selector::Cert, matching: Matching::Full } => {
                self.dane_ee_certificate(name, record, now).await
            }
            RecordUse::DaneEe { selector, matching } => {
                if self.registry.required() {
                    return Err(Skip::definitive(
                        "the IoT Registry is required, and this record carries no certificate whose CN names \
                         its registry entry",
                    ));
                }
                let association = Association::from_data(Usage::DaneEe, selector, matching, &record.data, None)
                    .map_err(Skip::definitive)?;
                let summary = format!("{association} (DNSSEC)");
                Ok(Found { association, ca_set: Vec::new(), summary })
            }
            RecordUse::PkixCd => self.pkix_cd(name, record, now).await,
            RecordUse::DaneTa { .. } if !secure => {
                Err(Skip::definitive("DANE-TA (usage 2) needs a DNSSEC-secure answer; this one is insecure"))
            }
            RecordUse::DaneTa { selector, matching } => self.dane_ta(name, record, selector, matching, now).await,
        }
    }

    /// `2 x y`: DNSSEC authenticated the trust anchor; the presented certificate's chain
    /// must pass through it and carry the name (checked per request). The sync gives the
    /// handshake the anchor and its CAs when it can find the anchor's certificate: in a
    /// `2 0 0` record, under `.well-known/ca/` by the key id of a `2 1 0` record's key, or
    /// among the CAs it has seen for a digest record.
    async fn dane_ta(
        &self,
        name: &str,
        record: &TlsaRecord,
        selector: Selector,
        matching: Matching,
        now: i64,
    ) -> Result<Found, Skip> {
        let association =
            Association::from_data(Usage::DaneTa, selector, matching, &record.data, None).map_err(Skip::definitive)?;
        let host = name::authority_host(name);
        let anchor = match (selector, matching) {
            (Selector::Cert, Matching::Full) => Some(certificate(record)?),
            (Selector::Spki, Matching::Full) => {
                let (Some(host), Some(key_id)) = (host.as_deref(), pki::spki_key_id(&record.data)) else {
                    return Ok(self.anchor_unknown(association, "no authority host or key id to fetch it by"));
                };
                match self.fetcher.fetch(host, &key_id).await {
                    Ok(ca) if pki::spki_der(&ca).is_ok_and(|k| k == record.data) => Some(ca),
                    Ok(_) => {
                        return Ok(self.anchor_unknown(association, "the CA served for its key id has another key"))
                    }
                    Err(e) => return Ok(self.anchor_unknown(association, &format!("fetching it: {e}"))),
                }
            }
            _ => self.known.find(selector, &association.digest),
        };
        let Some(anchor) = anchor else {
            return Ok(self.anchor_unknown(association, "no CA with that digest seen yet"));
        };
        let subject = pki::oneline(anchor.subject_name());
        let ca_set = match host.as_deref() {
            Some(host) => chain::anchor_chain(&anchor, host, &self.fetcher, self.limits, now).await,
            None if pki::is_self_signed_root(&anchor) => Ok(vec![anchor.clone()]),
            None => Err(ChainError::NoAuthorityHost(name.to_owned())),
        }
        .map_err(|e| Skip {
            transient: chain_error_is_transient(&e),
            reason: format!("trust anchor {subject}: {e}"),
        })?;
        self.known.learn(&ca_set);
        let summary = format!("{association} (DNSSEC): trust anchor {subject}");
        Ok(Found { association, ca_set, summary })
    }

    /// A trust anchor whose certificate the sync cannot get: the association still holds
    /// (it matches once the CA reaches the CA set some other way), and the report says why.
    fn anchor_unknown(&self, association: Association, why: &str) -> Found {
        let summary = format!(
            "{association} (DNSSEC): trust anchor certificate not available ({why}); its handshakes need it in \
             the CA set"
        );
        Found { association, ca_set: Vec::new(), summary }
    }

    /// `4 0 0`: the certificate, its CA chain by AKI over HTTPS, the SAN, the registry.
    async fn pkix_cd(&self, name: &str, record: &TlsaRecord, now: i64) -> Result<Found, Skip> {
        let leaf = certificate(record)?;
        let chain = chain::authenticate(&leaf, name, &self.fetcher, self.limits, now)
            .await
            .map_err(|e| Skip { transient: chain_error_is_transient(&e), reason: format!("chain: {e}") })?;
        self.check_registry(&leaf).await?;
        let not_after = pki::unix_time(leaf.not_after()).map_err(Skip::definitive)?;
        let association =
            Association::from_data(Usage::PkixCd, Selector::Cert, Matching::Full, &record.data, Some(not_after))
                .map_err(Skip::definitive)?;
        let summary = format!("{association}: {} via {}", pki::oneline(leaf.subject_name()), describe(chain.cas()));
        self.known.learn(chain.cas());
        Ok(Found { association, ca_set: chain.cas().to_vec(), summary })
    }

    /// `3 0 0`: DNSSEC authenticated it; the sync still gives the handshake what it needs.
    async fn dane_ee_certificate(&self, name: &str, record: &TlsaRecord, now: i64) -> Result<Found, Skip> {
        let leaf = certificate(record)?;
        self.check_registry(&leaf).await?;
        let association = Association::from_data(Usage::DaneEe, Selector::Cert, Matching::Full, &record.data, None)
            .map_err(Skip::definitive)?;
        let subject = pki::oneline(leaf.subject_name());
        if pki::is_self_signed_root(&leaf) {
            let summary = format!("{association} (DNSSEC): {subject}, self-signed, its own anchor in the CA set");
            return Ok(Found { association, ca_set: vec![leaf], summary });
        }
        // Not fatal: the association stands on DNSSEC. Without its CAs in the set, TLS
        // refuses the device until some other record brings them.
        let (ca_set, how) = match chain::build(&leaf, name, &self.fetcher, self.limits, now).await {
            Ok(chain) => (chain.cas().to_vec(), format!("via {}", describe(chain.cas()))),
            Err(e) => (Vec::new(), format!("no CA chain for its handshake ({e})")),
        };
        let summary = format!("{association} (DNSSEC): {subject} {how}");
        Ok(Found { association, ca_set, summary })
    }

    async fn check_registry(&self, leaf: &X509) -> Result<(), Skip> {
        match self.registry.check(&self.resolver, leaf).await {
            RegistryVerdict::NotApplicable | RegistryVerdict::Listed => Ok(()),
            RegistryVerdict::Refused(why) => Err(Skip::definitive(format!("IoT Registry: {why}"))),
            RegistryVerdict::Unknown(why) => Err(Skip { reason: format!("IoT Registry: {why}"), transient: true }),
        }
    }
}

/// The certificate of a full-certificate record (classify checked its form).
fn certificate(record: &TlsaRecord) -> Result<X509, Skip> {
    pki::der_certificate(&record.data).map_err(|e| Skip::definitive(format!("certificate: {e}")))
}

fn describe(cas: &[X509]) -> String {
    cas.iter().map(|c| pki::oneline(c.subject_name())).collect::<Vec<_>>().join(" <- ")
}

fn same_cert(a: &X509, b: &X509) -> bool {
    matches!((a.to_der(), b.to_der()), (Ok(x), Ok(y)) if x == y)
}

/// Network trouble may pass; a wrong certificate will not.
fn chain_error_is_transient(e: &ChainError) -> bool {
    match e {
        ChainError::Fetch { error, .. } => match error {
            FetchError::Http(HttpError::Timeout { .. } | HttpError::Transport { .. })
            | FetchError::RateLimited { .. } => true,
            FetchError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        },
        _ => false,
    }
}
