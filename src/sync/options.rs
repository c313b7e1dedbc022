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
    /// Where the policy (which SSIDs admit which device names and domains) comes from: a
    /// local file or an `https://` URL. Setting it is what turns the DNS sync on.
    pub policy: PolicySource,
    /// How often a policy URL is fetched again (a file is looked at every
    /// `reload_interval`).
    pub policy_refresh: Duration,
    /// Directory the sync writes the CA set to, in OpenSSL's hashed form; the eap module's
    /// `ca_path` points here, so radiusd picks up new CAs without a restart.
    pub ca_path: PathBuf,
    /// The same CA set as one PEM file (default: `<ca_path>.pem`), for consumers that
    /// want a bundle rather than a hashed directory.
    pub ca_bundle: PathBuf,
    /// Recursive resolvers asked for TLSA (port 53 unless given). Empty: the system's
    /// `/etc/resolv.conf`. DNSSEC is validated in process whatever they claim.
    pub dns_servers: Vec<SocketAddr>,
    /// File of zone-file DNSKEY lines to trust instead of the IANA root anchors (private
    /// roots, test zones). None: the built-in root KSKs.
    pub dns_trust_anchors: Option<PathBuf>,
    /// Time allowed for one DNS query to one server (default 3 s).
    pub dns_timeout: Duration,
    /// DNS over TLS: the name the resolvers' certificate must carry. Set, every query goes
    /// over TLS to `dns_servers` (which must then be explicit), never in plaintext.
    pub dns_over_tls: Option<String>,
    /// PEM file of the CAs that may issue the DNS-over-TLS server certificate (None: the
    /// system web roots).
    pub dns_tls_ca: Option<PathBuf>,
    /// PEM bundle of the web roots that authenticate `.well-known/ca` hosts and a policy
    /// URL (None: the system bundle). The only roots the HTTPS client trusts.
    pub https_roots: Option<PathBuf>,
    /// Budget of one whole HTTPS request, connect to last body byte.
    pub https_timeout: Duration,
    /// Largest HTTPS response body accepted, in bytes; a larger one is cut off unread.
    pub https_max_body: usize,
    /// Host name -> address overrides for HTTPS fetches, bypassing DNS (split horizon,
    /// tests). The certificate is still checked against the host name.
    pub https_resolve: HashMap<String, SocketAddr>,
    /// Most CA certificates above a device certificate a fetched chain may hold.
    pub chain_max_depth: usize,
    /// Refresh floor: a name is not looked up again sooner than this unless its TTL is
    /// shorter (honoured down to 1 s, the revocation bound). Also the first step of the
    /// back-off after a failed lookup, and the cap on how long a fetched CA is reused.
    pub min_interval: Duration,
    /// Longest time between two lookups of a name: a long TTL is shortened to this, so a
    /// withdrawal is seen within it.
    pub max_interval: Duration,
    /// How long a name whose lookups fail keeps its last good associations; after that
    /// it is dropped (its devices are rejected) until DNS answers again.
    pub max_stale: Duration,
    /// Most lookups of the policy's names in flight at once (at least 1).
    pub concurrency: usize,
    /// Zone of the IoT Registry, asked for `3 0 1` TLSA at the device certificate's CN.
    pub registry_domain: String,
    /// Every device certificate must be listed in the IoT Registry (its CN under
    /// `registry_domain`); a digest-only DANE-EE record, which carries no CN, then counts
    /// for nothing. Off, only certificates whose CN lies under the registry are checked.
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
