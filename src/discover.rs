//! Discovery of one name: TLSA records -> certificates -> authenticated chains -> pins.
//!
//! Per record (ARCHITECTURE.md "Trust sync"): usage 4 selector 0 matching 0 is
//! authenticated by its CA chain fetched over HTTPS; usage 3 counts only in a
//! DNSSEC-secure answer; hash records cannot yield a pin. Every skipped record is reported
//! with its reason, which is what the operator CLI prints.

use std::fmt;
use std::time::Duration;

use openssl::x509::X509;

use crate::cafetch::{CaFetcher, FetchError};
use crate::chain::{self, ChainError, ChainLimits};
use crate::dane::{classify, RecordUse, TlsaAnswer, TlsaRecord, TlsaResolver};
use crate::pki::Pin;
use crate::registry::{Registry, RegistryVerdict};
use crate::schedule::{Discovered, Outcome};

/// What happened to one TLSA record.
#[derive(Debug, Clone)]
pub struct RecordReport {
    /// `4 0 0 (412 bytes)`.
    pub record: String,
    /// Ok: the pinned certificate (subject, serial, chain); Err: why it was skipped.
    pub result: Result<String, String>,
}

/// What discovery found for a name: for logs and for `rlm-rust sync`.
#[derive(Debug, Clone)]
pub struct NameReport {
    pub name: String,
    /// secure / insecure / bogus / no-records / failed.
    pub dns: &'static str,
    pub records: Vec<RecordReport>,
}

impl fmt::Display for NameReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: DNS {}", self.name, self.dns)?;
        for r in &self.records {
            match &r.result {
                Ok(pin) => writeln!(f, "  TLSA {}: pinned {pin}", r.record)?,
                Err(why) => writeln!(f, "  TLSA {}: skipped: {why}", r.record)?,
            }
        }
        Ok(())
    }
}

/// The parts discovery needs, shared by all names of a sync round.
pub struct Discoverer {
    pub resolver: TlsaResolver,
    pub fetcher: CaFetcher,
    pub registry: Registry,
    pub limits: ChainLimits,
}

/// A record's failure, and whether asking again later could change it.
struct Skip {
    reason: String,
    transient: bool,
}

impl Discoverer {
    /// Discovers `name` at wall-clock time `now` (Unix seconds).
    pub async fn discover(&self, name: &str, now: i64) -> (Outcome, NameReport) {
        let answer = self.resolver.lookup(name).await;
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

        let mut pins: Vec<Pin> = Vec::new();
        let mut cas: Vec<X509> = Vec::new();
        let mut transient = None;
        for record in &records {
            let label =
                format!("{} {} {} ({} bytes)", record.usage, record.selector, record.matching, record.data.len());
            match self.pin_record(name, record, secure, now).await {
                Ok((pin, chain_cas, summary)) => {
                    if !pins.contains(&pin) {
                        pins.push(pin);
                    }
                    for ca in chain_cas {
                        if !cas.iter().any(|c| same_cert(c, &ca)) {
                            cas.push(ca);
                        }
                    }
                    report.records.push(RecordReport { record: label, result: Ok(summary) });
                }
                Err(skip) => {
                    if skip.transient {
                        transient.get_or_insert_with(|| skip.reason.clone());
                    }
                    report.records.push(RecordReport { record: label, result: Err(skip.reason) });
                }
            }
        }
        let outcome = if !pins.is_empty() {
            Outcome::Published(Discovered { pins, cas, ttl })
        } else if let Some(reason) = transient {
            Outcome::Failed { reason }
        } else {
            let reasons: Vec<&str> =
                report.records.iter().filter_map(|r| r.result.as_ref().err().map(String::as_str)).collect();
            Outcome::Withdrawn { reason: format!("no usable TLSA record: {}", reasons.join("; ")), ttl }
        };
        (outcome, report)
    }

    async fn pin_record(
        &self,
        name: &str,
        record: &TlsaRecord,
        secure: bool,
        now: i64,
    ) -> Result<(Pin, Vec<X509>, String), Skip> {
        let definitive = |reason: String| Skip { reason, transient: false };
        match classify(record) {
            RecordUse::Unusable { reason } => return Err(definitive(reason)),
            RecordUse::DaneEe if !secure => {
                return Err(definitive("DANE-EE (usage 3) needs a DNSSEC-secure answer; this one is insecure".into()))
            }
            RecordUse::DaneEe | RecordUse::PkixCd => {}
        }
        let leaf = X509::from_der(&record.data).map_err(|e| definitive(format!("certificate does not parse: {e}")))?;
        // The chain is needed for both usages: PKIX-CD is authenticated by it, and DANE-EE
        // certificates still reach us through a TLS handshake that needs their CAs.
        let chain = chain::authenticate(&leaf, name, &self.fetcher, self.limits, now)
            .await
            .map_err(|e| Skip { transient: chain_error_is_transient(&e), reason: format!("chain: {e}") })?;
        match self.registry.check(&self.resolver, &leaf).await {
            RegistryVerdict::NotApplicable | RegistryVerdict::Listed => {}
            RegistryVerdict::Refused(why) => return Err(definitive(format!("IoT Registry: {why}"))),
            RegistryVerdict::Unknown(why) => {
                return Err(Skip { reason: format!("IoT Registry: {why}"), transient: true })
            }
        }
        let pin = Pin::new(&leaf, chain.issuer()).map_err(|e| definitive(format!("pin: {e}")))?;
        let summary = format!(
            "{} serial {} via {}",
            pin.subject,
            hex::encode(&pin.serial),
            chain.cas().iter().map(|c| crate::pki::oneline(c.subject_name())).collect::<Vec<_>>().join(" <- ")
        );
        Ok((pin, chain.cas().to_vec(), summary))
    }
}

fn same_cert(a: &X509, b: &X509) -> bool {
    matches!((a.to_der(), b.to_der()), (Ok(x), Ok(y)) if x == y)
}

/// Network trouble may pass; a wrong certificate will not.
fn chain_error_is_transient(e: &ChainError) -> bool {
    match e {
        ChainError::Fetch { error, .. } => match error {
            FetchError::Timeout { .. } | FetchError::Transport { .. } => true,
            FetchError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        },
        _ => false,
    }
}

/// The TTL used when a withdrawn name has no TTL of its own.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(60);
