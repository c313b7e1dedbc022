//! Decision counters of the request path: plain atomics, so counting is one relaxed
//! increment (no lock, no allocation); the metrics listener reads them at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::request::check::{Decision, Reason};

/// Where a decision was made: an authentication usually passes both (the check-eap-tls
/// virtual server during the handshake, then post-auth), so each has its own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The check-eap-tls virtual server, during the handshake: a reject there fails
    /// EAP-TLS itself.
    TlsCheck,
    /// Post-auth of the server the NAS talks to, once EAP is done.
    PostAuth,
}

impl Stage {
    /// Every stage, in the order metrics and `/status` list them.
    pub const ALL: [Stage; 2] = [Stage::TlsCheck, Stage::PostAuth];

    /// The `stage` label of the metrics and the key in `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::TlsCheck => "tls_check",
            Stage::PostAuth => "post_auth",
        }
    }
}

#[derive(Debug, Default)]
struct StageCounters {
    accepted: AtomicU64,
    rejected: [AtomicU64; Reason::LABELS.len()],
}

/// Accepts, and rejects per reason, per stage.
#[derive(Debug, Default)]
pub struct DecisionCounters([StageCounters; 2]);

impl DecisionCounters {
    /// Counts one decision made at `stage`: one relaxed atomic increment.
    pub fn count(&self, stage: Stage, decision: &Decision<'_>) {
        let c = &self.0[stage as usize];
        match decision {
            Decision::Accept { .. } => c.accepted.fetch_add(1, Ordering::Relaxed),
            Decision::Reject(reason) => c.rejected[reason.index()].fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Accepts at `stage` since the instance started.
    pub fn accepted(&self, stage: Stage) -> u64 {
        self.0[stage as usize].accepted.load(Ordering::Relaxed)
    }

    /// (reason label, rejects) for every reason, zeros included.
    pub fn rejected(&self, stage: Stage) -> [(&'static str, u64); Reason::LABELS.len()] {
        let c = &self.0[stage as usize];
        std::array::from_fn(|i| (Reason::LABELS[i], c.rejected[i].load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::presented::CaptureError;

    #[test]
    fn each_reason_has_its_own_counter() {
        let c = DecisionCounters::default();
        c.count(Stage::PostAuth, &Decision::Accept { reply: &[] });
        c.count(Stage::PostAuth, &Decision::Reject(Reason::DiscoveryPending));
        c.count(Stage::PostAuth, &Decision::Reject(Reason::Capture(CaptureError::Malformed("x"))));
        c.count(Stage::PostAuth, &Decision::Reject(Reason::Capture(CaptureError::Malformed("y"))));
        c.count(Stage::TlsCheck, &Decision::Accept { reply: &[] });
        assert_eq!((c.accepted(Stage::PostAuth), c.accepted(Stage::TlsCheck)), (1, 1));
        assert!(c.rejected(Stage::TlsCheck).iter().all(|(_, n)| *n == 0));
        let rejected = c.rejected(Stage::PostAuth);
        assert_eq!(rejected.iter().map(|(_, n)| n).sum::<u64>(), 3);
        assert!(rejected.contains(&("discovery_pending", 1)));
        assert!(rejected.contains(&("capture_malformed", 2)));
        let labels: std::collections::HashSet<_> = rejected.iter().map(|(l, _)| l).collect();
        assert_eq!(labels.len(), Reason::LABELS.len(), "labels are distinct");
    }
}
