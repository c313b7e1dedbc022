//! The IoT Registry: a second, revocable publication of a device certificate.
//!
//! When a certificate's CN lies under the registry domain (default `iotregistry.ca`), the
//! registry must publish `TLSA 3 0 1 <sha256 of the certificate DER>` at that CN, in a
//! DNSSEC-secure answer. Removing that record revokes the device within its TTL, whatever
//! the device's own zone says. Verdicts are cached (moka) for the answer's TTL so a
//! registry shared by many names is asked once per TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;
use moka::Expiry;
use openssl::hash::MessageDigest;
use openssl::x509::X509Ref;

use crate::model::pki;
use crate::sync::dns::resolver::TlsaResolver;
use crate::sync::dns::tlsa::{registry_sha256, TlsaAnswer};

/// What the registry says about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryVerdict {
    /// The CN is not under the registry domain and the registry is optional.
    NotApplicable,
    /// Listed: a secure `3 0 1` record at the CN matches the certificate.
    Listed,
    /// Definitively not acceptable (not listed, digest differs, insecure, bogus).
    Refused(String),
    /// Could not find out (timeouts): the caller keeps what it knew.
    Unknown(String),
}

#[derive(Clone)]
struct CachedVerdict {
    digest_hex: String,
    verdict: RegistryVerdict,
    ttl: Duration,
}

struct ByAnswerTtl;

impl Expiry<String, CachedVerdict> for ByAnswerTtl {
    fn expire_after_create(&self, _key: &String, value: &CachedVerdict, _now: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Registry settings plus the verdict cache.
pub struct Registry {
    domain: String,
    require: bool,
    cache: Cache<String, CachedVerdict>,
}

/// Shortest time a verdict is cached; failures are never cached.
const MIN_CACHE: Duration = Duration::from_secs(1);

impl Registry {
    /// The registry at `domain` (any case, trailing dot ignored); `require`: every
    /// certificate must be listed (`require_registry`). Starts with an empty verdict cache.
    pub fn new(domain: &str, require: bool) -> Registry {
        let cache = Cache::builder().max_capacity(100_000).expire_after(ByAnswerTtl).build();
        Registry { domain: domain.trim_end_matches('.').to_ascii_lowercase(), require, cache }
    }

    /// Whether every certificate must be listed (`require_registry`).
    pub fn required(&self) -> bool {
        self.require
    }

    /// True when `cn` is the registry domain or a name below it (label boundary, any case).
    pub fn covers(&self, cn: &str) -> bool {
        let cn = cn.trim_end_matches('.').to_ascii_lowercase();
        cn == self.domain || cn.strip_suffix(&self.domain).is_some_and(|head| head.ends_with('.'))
    }

    /// Checks `cert` against the registry.
    pub async fn check(&self, resolver: &TlsaResolver, cert: &X509Ref) -> RegistryVerdict {
        let cn = pki::common_name(cert).unwrap_or_default();
        if !self.covers(&cn) {
            return if self.require {
                RegistryVerdict::Refused(format!("CN {cn:?} is not under the registry domain {}", self.domain))
            } else {
                RegistryVerdict::NotApplicable
            };
        }
        let digest = match cert.digest(MessageDigest::sha256()) {
            Ok(d) => d.to_vec(),
            Err(e) => return RegistryVerdict::Refused(format!("cannot hash the certificate: {e}")),
        };
        let digest_hex = hex::encode(&digest);
        let key = cn.to_ascii_lowercase();
        if let Some(hit) = self.cache.get(&key).filter(|c| c.digest_hex == digest_hex) {
            return hit.verdict;
        }
        let (verdict, ttl) = match resolver.lookup_tlsa_at(&cn).await {
            TlsaAnswer::Secure { records, ttl } => {
                if records.iter().filter_map(registry_sha256).any(|d| d[..] == digest[..]) {
                    (RegistryVerdict::Listed, ttl)
                } else {
                    (
                        RegistryVerdict::Refused(format!(
                            "registry entry {cn} does not match the certificate (3 0 1 {digest_hex} not published)"
                        )),
                        ttl,
                    )
                }
            }
            TlsaAnswer::Insecure { .. } => {
                (RegistryVerdict::Refused(format!("registry entry {cn} is not DNSSEC-signed")), MIN_CACHE)
            }
            TlsaAnswer::NoRecords { ttl, .. } => {
                (RegistryVerdict::Refused(format!("no registry entry at {cn} (revoked or never listed)")), ttl)
            }
            TlsaAnswer::Bogus { reason } => {
                (RegistryVerdict::Refused(format!("registry entry {cn}: DNSSEC bogus: {reason}")), MIN_CACHE)
            }
            TlsaAnswer::Failed { reason } => {
                return RegistryVerdict::Unknown(format!("registry lookup {cn}: {reason}"))
            }
        };
        self.cache.insert(key, CachedVerdict { digest_hex, verdict: verdict.clone(), ttl: ttl.max(MIN_CACHE) });
        verdict
    }
}

/// Shared between the sync's concurrent tasks.
pub type SharedRegistry = Arc<Registry>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_by_label_not_by_string_suffix() {
        let r = Registry::new("iotregistry.ca.", false);
        assert!(r.covers("dev3.reg._device.iotregistry.ca"));
        assert!(r.covers("DEV3.REG._DEVICE.IOTREGISTRY.CA."));
        assert!(r.covers("iotregistry.ca"));
        assert!(!r.covers("eviliotregistry.ca"));
        assert!(!r.covers("iotregistry.ca.evil.example"));
        assert!(!r.covers(""));
    }
}
