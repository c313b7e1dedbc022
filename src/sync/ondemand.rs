//! On-demand discovery: names allowed through a domain entry are looked up when they first
//! show up in an EAP conversation, not ahead of time.
//!
//! The request path (the outer server's authorize, on the EAP-Response/Identity) hands the
//! name to the sync thread through a bounded channel and returns at once; it never waits.
//! The sync admits a new name only if it is directly under a domain entry of the policy
//! (DANCE: lookups are never triggered by arbitrary input) and within its domain's rate;
//! lookups of discovered names run in a pool of their own, so a flood of new names cannot
//! take refresh slots from the policy's names.

use std::collections::HashMap;
use std::time::Instant;

use crate::model::name::MAX_NAME_LEN;

/// A name seen on the request path, carried without allocating.
#[derive(Clone, Copy)]
pub struct Hint {
    bytes: [u8; MAX_NAME_LEN],
    len: u8,
}

impl Hint {
    /// A hint for a normalised name (longer names cannot be normalised, so never are).
    pub fn new(name: &str) -> Option<Hint> {
        let len = name.len();
        if len == 0 || len > MAX_NAME_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_NAME_LEN];
        bytes[..len].copy_from_slice(name.as_bytes());
        Some(Hint { bytes, len: len as u8 })
    }

    /// The name as handed over by the request path.
    pub fn name(&self) -> &str {
        // Built from a &str above; the slice is that same string.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Hint").field(&self.name()).finish()
    }
}

/// Per-domain token buckets for new names.
#[derive(Debug)]
pub struct DomainRates {
    rate: f64,
    buckets: HashMap<String, (f64, Instant)>,
}

impl DomainRates {
    /// `rate` new names per domain per second, a burst of as many.
    pub fn new(rate: f64) -> DomainRates {
        DomainRates { rate, buckets: HashMap::new() }
    }

    /// Takes a token of `domain`'s bucket; false when it is empty.
    pub fn admit(&mut self, domain: &str, now: Instant) -> bool {
        let burst = self.rate.max(1.0);
        let (tokens, last) = self.buckets.entry(domain.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets the buckets of domains `keep` refuses (they left the policy).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.buckets.retain(|d, _| keep(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_hint_carries_a_name_up_to_the_dns_limit() {
        assert_eq!(Hint::new("bus1._device.fleet.example").unwrap().name(), "bus1._device.fleet.example");
        assert!(Hint::new("").is_none());
        assert!(Hint::new(&"a".repeat(254)).is_none());
        assert_eq!(Hint::new(&"a".repeat(253)).unwrap().name().len(), 253);
    }

    #[test]
    fn each_domain_gets_its_rate_and_its_own_burst() {
        let t0 = Instant::now();
        let mut r = DomainRates::new(5.0);
        let admitted = (0..20).filter(|_| r.admit("_device.a.example", t0)).count();
        assert_eq!(admitted, 5, "a burst of the rate");
        assert!(r.admit("_device.b.example", t0), "another domain has its own bucket");
        assert!(!r.admit("_device.a.example", t0));
        assert!(r.admit("_device.a.example", t0 + Duration::from_millis(200)), "one token per 1/rate s");
        assert!(!r.admit("_device.a.example", t0 + Duration::from_millis(200)));
    }
}
