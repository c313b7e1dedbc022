//! The sync's options, as the `rust { }` section sets them (parsed in [`crate::config`]),
//! and how they become the schedule's timing and pool sizes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::sync::policyfeed::PolicySource;
use crate::sync::schedule::{Limits, Timing};

/// DNS trust sync settings (enabled by `policy`).
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub policy: PolicySource,
    /// How often a policy URL is fetched again (a file is looked at every
    /// `reload_interval`).
    pub policy_refresh: Duration,
    pub ca_path: PathBuf,
    pub ca_bundle: PathBuf,
    pub dns_servers: Vec<SocketAddr>,
    pub dns_trust_anchors: Option<PathBuf>,
    pub dns_timeout: Duration,
    pub dns_over_tls: Option<String>,
    pub dns_tls_ca: Option<PathBuf>,
    pub https_roots: Option<PathBuf>,
    pub https_timeout: Duration,
    pub https_max_body: usize,
    pub https_resolve: HashMap<String, SocketAddr>,
    pub chain_max_depth: usize,
    pub min_interval: Duration,
    pub max_interval: Duration,
    pub max_stale: Duration,
    pub concurrency: usize,
    pub registry_domain: String,
    pub require_registry: bool,
    /// Time one name's whole discovery may take (DNS, chain, registry) before it counts
    /// as failed: one slow zone cannot hold a refresh slot longer.
    pub name_timeout: Duration,
    /// Most TLSA records looked at per name.
    pub max_records: usize,
    /// Most CA fetches sent per second.
    pub ca_fetch_rate: u32,
    /// Most refreshes in flight for names under one domain (of `concurrency`).
    pub concurrency_per_domain: usize,
    /// Most lookups in flight for names discovered on demand (a pool of its own, so a
    /// flood of new names never takes slots from the policy's names).
    pub discovery_concurrency: usize,
    /// New names discovered on demand per domain per second (a burst of as many).
    pub discovery_rate: f64,
    /// How long a name discovered on demand is kept without being seen again.
    pub discovery_idle: Duration,
    /// Most names discovered on demand tracked at once.
    pub discovery_max_names: usize,
    /// When the trust map file gets large, how often at most it is rewritten (a small one
    /// is written before every swap).
    pub persist_interval: Duration,
}

impl SyncConfig {
    /// The schedule's timing from these options.
    pub fn timing(&self) -> Timing {
        Timing {
            min_interval: self.min_interval,
            max_interval: self.max_interval,
            max_stale: self.max_stale,
            discovery_idle: self.discovery_idle,
        }
    }

    /// The schedule's pool sizes from these options.
    pub fn limits(&self) -> Limits {
        Limits {
            refresh: self.concurrency,
            discovery: self.discovery_concurrency,
            per_domain: self.concurrency_per_domain,
        }
    }
}
