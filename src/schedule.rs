//! The sync's memory: per name, the last good discovery and when to look again.
//!
//! Pure state, no I/O, so every rule below is unit-tested without DNS:
//! - a name is refreshed at min(TTL, max_interval), never sooner than min_interval, with
//!   jitter so 10k names with one TTL do not all fire in the same second;
//! - a withdrawn (no TLSA, nothing usable) or Bogus name loses its associations at once:
//!   that is revocation at the speed of the TTL;
//! - a failed lookup (timeout, SERVFAIL, HTTPS down) keeps the last good entry and backs
//!   off, until the entry is older than max_stale: then it is dropped (fail closed);
//! - an association whose authenticated certificate has expired is dropped even while DNS
//!   is unreachable.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use openssl::x509::X509;

use crate::association::Association;

/// Timing rules, from the instance configuration.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub min_interval: Duration,
    pub max_interval: Duration,
    pub max_stale: Duration,
}

/// A successful discovery of one name.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub associations: Vec<Association>,
    /// The certificates the handshake of these associations needs in the CA set.
    pub cas: Vec<X509>,
    pub ttl: Duration,
}

/// What one lookup of a name concluded.
#[derive(Debug, Clone)]
pub enum Outcome {
    Published(Discovered),
    /// Definitive: DNS says there is nothing (usable) for this name.
    Withdrawn {
        reason: String,
        ttl: Duration,
    },
    /// DNSSEC validation failed: the answer is forged or broken. Drop the name now.
    Bogus {
        reason: String,
    },
    /// Could not find out (timeouts, server failures). Keep the last good entry.
    Failed {
        reason: String,
    },
}

/// The last good state of a name.
#[derive(Debug, Clone)]
pub struct Good {
    pub associations: Vec<Association>,
    pub cas: Vec<X509>,
    /// When DNS last confirmed it (Unix seconds).
    pub verified_at: i64,
}

#[derive(Debug, Clone)]
struct NameState {
    good: Option<Good>,
    due: Instant,
    failures: u32,
}

/// All names of the policy and their state.
#[derive(Debug)]
pub struct Schedule {
    timing: Timing,
    names: BTreeMap<String, NameState>,
    seed: std::collections::hash_map::RandomState,
}

impl Schedule {
    pub fn new(timing: Timing) -> Schedule {
        Schedule { timing, names: BTreeMap::new(), seed: Default::default() }
    }

    /// Makes the tracked names equal to `names`: new ones are due now, removed ones are
    /// forgotten (with their associations). Returns true when a published name was removed.
    pub fn set_names<'a>(&mut self, names: impl IntoIterator<Item = &'a str>, now: Instant) -> bool {
        let wanted: std::collections::BTreeSet<&str> = names.into_iter().collect();
        let mut dropped_published = false;
        self.names.retain(|n, s| {
            let keep = wanted.contains(n.as_str());
            dropped_published |= !keep && s.good.is_some();
            keep
        });
        for n in wanted {
            self.names.entry(n.to_owned()).or_insert(NameState { good: None, due: now, failures: 0 });
        }
        dropped_published
    }

    /// Restores a name's last good state (from the persisted snapshot at start-up). The
    /// name stays due now, so it is re-verified as soon as DNS answers.
    pub fn restore(&mut self, name: &str, good: Good) {
        if let Some(s) = self.names.get_mut(name) {
            s.good = Some(good);
        }
    }

    /// Names whose refresh is due, in name order.
    pub fn due(&self, now: Instant) -> Vec<String> {
        self.names.iter().filter(|(_, s)| s.due <= now).map(|(n, _)| n.clone()).collect()
    }

    /// When the next name falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.names.values().map(|s| s.due).min()
    }

    /// Records a lookup result. Returns true when the name's associations changed.
    pub fn record(&mut self, name: &str, outcome: Outcome, now: Instant, wall: i64) -> bool {
        let timing = self.timing;
        let jitter = self.jitter(name);
        let Some(state) = self.names.get_mut(name) else { return false };
        match outcome {
            Outcome::Published(d) => {
                let changed = state.good.as_ref().is_none_or(|g| g.associations != d.associations);
                state.due = now + refresh_after(d.ttl, timing, jitter);
                state.failures = 0;
                state.good = Some(Good { associations: d.associations, cas: d.cas, verified_at: wall });
                changed
            }
            Outcome::Withdrawn { ttl, .. } => {
                state.due = now + refresh_after(ttl, timing, jitter);
                state.failures = 0;
                state.good.take().is_some()
            }
            Outcome::Bogus { .. } => {
                state.failures = state.failures.saturating_add(1);
                state.due = now + backoff(state.failures, timing);
                state.good.take().is_some()
            }
            Outcome::Failed { .. } => {
                state.failures = state.failures.saturating_add(1);
                state.due = now + backoff(state.failures, timing);
                false
            }
        }
    }

    /// Drops entries DNS has not confirmed for max_stale, and associations whose
    /// certificate has expired. Returns the names that lost associations.
    pub fn expire(&mut self, wall: i64) -> Vec<String> {
        let max_stale = i64::try_from(self.timing.max_stale.as_secs()).unwrap_or(i64::MAX);
        let mut lost = Vec::new();
        for (name, state) in &mut self.names {
            let Some(good) = &mut state.good else { continue };
            let before = good.associations.len();
            good.associations.retain(|a| a.not_after.is_none_or(|t| t >= wall));
            if good.associations.len() != before || wall.saturating_sub(good.verified_at) > max_stale {
                lost.push(name.clone());
            }
            if good.associations.is_empty() || wall.saturating_sub(good.verified_at) > max_stale {
                state.good = None;
            }
        }
        lost
    }

    /// Every published name, in name order.
    pub fn published(&self) -> impl Iterator<Item = (&str, &Good)> {
        self.names.iter().filter_map(|(n, s)| s.good.as_ref().map(|g| (n.as_str(), g)))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// A per-name factor in [0.9, 1.0]: spreads refreshes without a random source.
    fn jitter(&self, name: &str) -> f64 {
        let mut h = self.seed.build_hasher();
        h.write(name.as_bytes());
        0.9 + (h.finish() % 1000) as f64 / 10_000.0
    }
}

/// Refresh just before the TTL runs out (jitter <= 1), within [min_interval, max_interval].
/// A TTL below min_interval is honoured down to one second: that is the revocation bound.
fn refresh_after(ttl: Duration, t: Timing, jitter: f64) -> Duration {
    let floor = t.min_interval.min(ttl).max(Duration::from_secs(1));
    ttl.min(t.max_interval).mul_f64(jitter).max(floor)
}

fn backoff(failures: u32, t: Timing) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    t.min_interval.saturating_mul(1 << exp).min(t.max_interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::association::{Matching, Selector, Usage};

    fn timing() -> Timing {
        Timing {
            min_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(3600),
            max_stale: Duration::from_secs(600),
        }
    }

    fn assoc(cert: u8, not_after: i64) -> Association {
        Association::from_data(Usage::PkixCd, Selector::Cert, Matching::Full, &[cert], Some(not_after)).unwrap()
    }

    fn published(cert: u8, ttl: u64) -> Outcome {
        Outcome::Published(Discovered {
            associations: vec![assoc(cert, 10_000)],
            cas: vec![],
            ttl: Duration::from_secs(ttl),
        })
    }

    #[test]
    fn new_names_are_due_at_once_and_refresh_at_ttl() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing());
        s.set_names(["a.example", "b.example"], t0);
        assert_eq!(s.due(t0), vec!["a.example", "b.example"]);
        assert!(s.record("a.example", published(1, 60), t0, 100));
        assert!(!s.due(t0).contains(&"a.example".to_string()));
        let next = s.names["a.example"].due - t0;
        assert!(next >= Duration::from_secs(54) && next <= Duration::from_secs(60), "{next:?}");
        // The same associations again are no change.
        assert!(!s.record("a.example", published(1, 60), t0, 160));
        assert!(s.record("a.example", published(2, 60), t0, 220));
    }

    #[test]
    fn ttl_is_clamped_between_min_and_max_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing());
        s.set_names(["a.example", "b.example"], t0);
        s.record("a.example", published(1, 1), t0, 0);
        s.record("b.example", published(1, 86_400), t0, 0);
        assert!(s.names["a.example"].due - t0 >= Duration::from_secs(1));
        assert!(s.names["a.example"].due - t0 <= Duration::from_secs(5));
        assert!(s.names["b.example"].due - t0 <= Duration::from_secs(3600));
        assert!(s.names["b.example"].due - t0 >= Duration::from_secs(3240));
    }

    #[test]
    fn withdrawn_and_bogus_revoke_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing());
        s.set_names(["a.example", "b.example"], t0);
        s.record("a.example", published(1, 60), t0, 0);
        s.record("b.example", published(1, 60), t0, 0);
        assert!(s.record(
            "a.example",
            Outcome::Withdrawn { reason: "NXDOMAIN".into(), ttl: Duration::from_secs(60) },
            t0,
            1
        ));
        assert!(s.record("b.example", Outcome::Bogus { reason: "bad RRSIG".into() }, t0, 1));
        assert_eq!(s.published().count(), 0);
    }

    #[test]
    fn failures_keep_the_last_good_entry_until_max_stale_with_backoff() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing());
        s.set_names(["a.example"], t0);
        s.record("a.example", published(1, 60), t0, 1000);
        let mut dues = vec![];
        for i in 0..4 {
            assert!(!s.record("a.example", Outcome::Failed { reason: "timeout".into() }, t0, 1000 + i));
            dues.push(s.names["a.example"].due - t0);
        }
        assert_eq!(dues, [5, 10, 20, 40].map(Duration::from_secs));
        assert_eq!(s.published().count(), 1, "kept while fresh enough");
        assert!(s.expire(1000 + 600).is_empty());
        assert_eq!(s.expire(1000 + 601), vec!["a.example"]);
        assert_eq!(s.published().count(), 0, "dropped after max_stale: fail closed");
    }

    #[test]
    fn expired_certificates_leave_even_without_dns() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing());
        s.set_names(["a.example"], t0);
        s.record(
            "a.example",
            Outcome::Published(Discovered {
                associations: vec![assoc(1, 500), assoc(2, 900)],
                cas: vec![],
                ttl: Duration::from_secs(60),
            }),
            t0,
            400,
        );
        assert_eq!(s.expire(501), vec!["a.example"]);
        assert_eq!(s.published().next().unwrap().1.associations.len(), 1);
        s.expire(901);
        assert_eq!(s.published().count(), 0);
    }

    #[test]
    fn names_leaving_the_policy_lose_their_associations() {
        let t0 = Instant::now();
        let mut s = Schedule::new(timing());
        s.set_names(["a.example", "b.example"], t0);
        s.record("a.example", published(1, 60), t0, 0);
        assert!(!s.set_names(["a.example"], t0), "b was not published");
        assert!(s.set_names(["c.example"], t0), "a was");
        assert_eq!(s.due(t0), vec!["c.example"]);
        assert_eq!(s.published().count(), 0);
    }
}
