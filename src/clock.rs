//! Wall-clock time as the trust map records it: whole seconds since the Unix epoch.
//!
//! Deadlines and intervals use `Instant`; only what is persisted or shown (when a name was
//! verified, when a certificate expires) uses this clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 if the clock is before it.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
