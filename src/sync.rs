//! The trust sync: a background thread inside radiusd that keeps the trust map and the CA
//! set equal to what DNS publishes for the policy's names.
//!
//! One thread owns one tokio runtime, one validating resolver and one HTTPS client for the
//! instance's lifetime. Each round it discovers the names that are due (bounded
//! concurrency), updates the [`Schedule`], and when anything changed publishes a new
//! generation in this order: CA set on disk, trust map file, then the in-memory swap —
//! so an association is never live before the CAs its handshake needs.
//! Requests never wait for any of this; they read whichever snapshot is current.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openssl::x509::X509;
use tokio::sync::{watch, Semaphore};

use crate::cafetch::{CaFetcher, FetchConfig};
use crate::caset::CaSet;
use crate::chain::ChainLimits;
use crate::config::SyncConfig;
use crate::dane::{DnsConfig, DotConfig, TlsaResolver};
use crate::discover::{Discoverer, NameReport};
use crate::policy::{self, Policy};
use crate::registry::Registry;
use crate::schedule::{Good, Outcome, Schedule, Timing};
use crate::trustmap::{NameEntry, TrustMap};
use crate::watch::SnapshotCell;

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Builds the discovery parts from the configuration (fails fast on bad files).
pub fn discoverer(cfg: &SyncConfig) -> Result<Discoverer, String> {
    let dns = DnsConfig {
        nameservers: cfg.dns_servers.clone(),
        trust_anchor_file: cfg.dns_trust_anchors.clone(),
        timeout: cfg.dns_timeout,
        dns_over_tls: cfg.dns_over_tls.as_ref().map(|server_name| DotConfig {
            server_name: server_name.clone(),
            ca_file: cfg.dns_tls_ca.clone().unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt")),
        }),
        ..DnsConfig::default()
    };
    let resolver = TlsaResolver::new(&dns).map_err(|e| e.to_string())?;
    let fetch = FetchConfig {
        roots: cfg.https_roots.clone(),
        timeout: cfg.https_timeout,
        max_body: cfg.https_max_body,
        host_overrides: cfg.https_resolve.clone(),
        // A failed fetch is remembered so one dead host costs one timeout per round, not
        // one per name; never longer than the retry back-off, or recovery would lag it.
        negative_ttl: cfg.min_interval.min(FetchConfig::default().negative_ttl),
        // A fetched CA serves the names refreshed within min_interval; a CA the authority
        // host withdraws stops authenticating its devices within that.
        cache_ttl: cfg.min_interval.min(FetchConfig::default().cache_ttl),
        ..FetchConfig::default()
    };
    let fetcher = CaFetcher::new(fetch).map_err(|e| e.to_string())?;
    Ok(Discoverer {
        resolver,
        fetcher,
        registry: Registry::new(&cfg.registry_domain, cfg.require_registry),
        limits: ChainLimits { max_depth: cfg.chain_max_depth },
    })
}

/// The sync's state and its two operations: a discovery round and a publication.
pub struct Engine {
    label: String,
    cfg: SyncConfig,
    trust_map_path: PathBuf,
    discoverer: Arc<Discoverer>,
    schedule: Schedule,
    policy: Policy,
    generation: u64,
    /// Public keys (SPKI DER) of the CAs published last: they keep precedence over
    /// newcomers that collide with them. Keys, not key ids: a forger copies the key id.
    established: HashSet<Vec<u8>>,
}

impl Engine {
    pub fn new(label: String, cfg: SyncConfig, trust_map_path: PathBuf) -> Result<Engine, String> {
        let discoverer = Arc::new(discoverer(&cfg)?);
        let timing =
            Timing { min_interval: cfg.min_interval, max_interval: cfg.max_interval, max_stale: cfg.max_stale };
        Ok(Engine {
            label,
            cfg,
            trust_map_path,
            discoverer,
            schedule: Schedule::new(timing),
            policy: Policy::default(),
            generation: 0,
            established: HashSet::new(),
        })
    }

    /// Restores the last good state from the persisted trust map, so a restart with DNS
    /// down serves it (and ages it towards max_stale) instead of starting empty.
    pub fn restore(&mut self, map: &TrustMap) {
        self.generation = map.generation;
        self.set_policy(map.policy().clone());
        let mut cas_by_id: BTreeMap<&str, X509> = BTreeMap::new();
        for (id, pem) in map.cas() {
            if let Ok(c) = X509::from_pem(pem.as_bytes()) {
                cas_by_id.insert(id, c);
            }
        }
        for (name, entry) in map.entries() {
            let cas: Option<Vec<X509>> = entry.chain.iter().map(|id| cas_by_id.get(id.as_str()).cloned()).collect();
            let Some(cas) = cas else { continue };
            self.schedule
                .restore(name, Good { associations: entry.associations.clone(), cas, verified_at: entry.verified_at });
        }
        self.established = cas_by_id.values().filter_map(spki).collect();
    }

    /// Installs a policy; returns true when it differs from the current one.
    pub fn set_policy(&mut self, policy: Policy) -> bool {
        if policy == self.policy {
            return false;
        }
        self.schedule.set_names(policy.names(), Instant::now());
        self.policy = policy;
        true
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Discovers `names` with bounded concurrency. Returns whether any association changed,
    /// and the reports in name order.
    pub async fn round(&mut self, names: Vec<String>) -> (bool, Vec<NameReport>) {
        let permits = Arc::new(Semaphore::new(self.cfg.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let now = unix_now();
        for name in names {
            let (d, permits) = (self.discoverer.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let (outcome, report) = d.discover(&name, now).await;
                (name, outcome, report)
            });
        }
        let mut changed = false;
        let mut reports = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((name, outcome, report)) = joined else { continue };
            self.log_outcome(&name, &outcome);
            changed |= self.schedule.record(&name, outcome, Instant::now(), unix_now());
            reports.push(report);
        }
        for name in self.schedule.expire(unix_now()) {
            log::warn!("{}: {name}: associations dropped (expired, or unconfirmed by DNS for max_stale)", self.label);
            changed = true;
        }
        reports.sort_by(|a, b| a.name.cmp(&b.name));
        (changed, reports)
    }

    fn log_outcome(&self, name: &str, outcome: &Outcome) {
        match outcome {
            Outcome::Published(d) => {
                log::debug!("{}: {name}: {} association(s), TTL {:?}", self.label, d.associations.len(), d.ttl)
            }
            Outcome::Withdrawn { reason, .. } => log::info!("{}: {name}: withdrawn: {reason}", self.label),
            Outcome::Bogus { reason } => log::error!("{}: {name}: DNSSEC bogus, name dropped: {reason}", self.label),
            Outcome::Failed { reason } => {
                log::warn!("{}: {name}: lookup failed, keeping last good: {reason}", self.label)
            }
        }
    }

    /// Builds the next generation, writes the CA set then the trust map, and returns
    /// the map for the in-memory swap. On a write failure nothing is published.
    pub fn publish(&mut self) -> Result<TrustMap, String> {
        let mut set = CaSet::new();
        let mut names = BTreeMap::new();
        let mut cas_pem = BTreeMap::new();
        // Thousands of names share a handful of CAs: decode each distinct CA once.
        let mut index: HashMap<Vec<u8>, CaInfo> = HashMap::new();
        let mut published: Vec<(&str, &Good, Vec<Vec<u8>>)> = Vec::new();
        for (name, good) in self.schedule.published() {
            let ders: Vec<Vec<u8>> = good.cas.iter().map(|c| c.to_der().unwrap_or_default()).collect();
            for (der, ca) in ders.iter().zip(&good.cas) {
                index.entry(der.clone()).or_insert_with(|| CaInfo::new(ca));
            }
            published.push((name, good, ders));
        }
        let contested = contested_cas(index.iter(), &self.established);
        // Entries whose CAs were all published before go first: with the contested
        // newcomers removed, an established CA is never displaced by name order.
        let established = |der: &Vec<u8>| index[der].spki.as_ref().is_some_and(|k| self.established.contains(k));
        published.sort_by_cached_key(|(n, _, ders)| (!ders.iter().all(established), *n));
        let mut in_set: HashSet<&[u8]> = HashSet::new();
        for (name, good, ders) in &published {
            if let Some(der) = ders.iter().find(|d| contested.contains(*d)) {
                log::error!(
                    "{}: {name}: CA {} refused, probable attack: another CA claims its subject or key id with a different key",
                    self.label,
                    crate::pki::oneline(index[der].cert.subject_name())
                );
                continue;
            }
            if !ders.iter().all(|d| in_set.contains(d.as_slice())) {
                if let Err(e) = set.insert_all(&good.cas) {
                    if e.is_collision() {
                        log::error!("{}: {name}: CA refused, probable attack: {e}", self.label);
                    } else {
                        log::warn!("{}: {name}: CA refused: {e}", self.label);
                    }
                    continue;
                }
                in_set.extend(ders.iter().map(Vec::as_slice));
            }
            let mut chain = Vec::with_capacity(ders.len());
            for der in ders {
                let info = &index[der];
                cas_pem.entry(info.id.clone()).or_insert_with(|| info.pem.clone());
                chain.push(info.id.clone());
            }
            names.insert(
                name.to_string(),
                NameEntry { associations: good.associations.clone(), chain, verified_at: good.verified_at },
            );
        }
        let map = TrustMap::new(self.policy.clone(), names, self.generation + 1, unix_now()).with_cas(cas_pem);
        set.write_ca_path(&self.cfg.ca_path).map_err(|e| format!("CA set {}: {e}", self.cfg.ca_path.display()))?;
        set.write_bundle(&self.cfg.ca_bundle)
            .map_err(|e| format!("CA bundle {}: {e}", self.cfg.ca_bundle.display()))?;
        map.write_atomic(&self.trust_map_path)
            .map_err(|e| format!("trust map {}: {e}", self.trust_map_path.display()))?;
        self.generation += 1;
        self.established = set.iter().filter_map(spki).collect();
        log::info!(
            "{}: published generation {}: {} of {} names, {} certificate associations, {} CA set entries",
            self.label,
            map.generation,
            map.name_count(),
            self.schedule.len(),
            map.association_count(),
            set.len()
        );
        Ok(map)
    }

    pub fn due(&self) -> Vec<String> {
        self.schedule.due(Instant::now())
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.schedule.next_due()
    }

    pub fn all_names(&self) -> Vec<String> {
        self.policy.names().into_iter().map(str::to_owned).collect()
    }
}

/// CAs (by DER) that must not enter the set: several different keys claim one subject
/// DN or one key id. If one of the claimants was already
/// published it keeps its place and only the newcomers are contested; if none was, all
/// are — first-come would let an attacker win by the order names happen to sort in.
fn contested_cas<'a>(
    cas: impl Iterator<Item = (&'a Vec<u8>, &'a CaInfo)>,
    established: &HashSet<Vec<u8>>,
) -> HashSet<Vec<u8>> {
    let mut by_subject: BTreeMap<String, Vec<(&Vec<u8>, &CaInfo)>> = BTreeMap::new();
    let mut by_key_id: BTreeMap<&str, Vec<(&Vec<u8>, &CaInfo)>> = BTreeMap::new();
    for (der, ca) in cas {
        by_subject.entry(crate::pki::oneline(ca.cert.subject_name())).or_default().push((der, ca));
        by_key_id.entry(&ca.id).or_default().push((der, ca));
    }
    let mut refused = HashSet::new();
    for group in by_subject.values().chain(by_key_id.values()) {
        let keys: std::collections::BTreeSet<&Vec<u8>> = group.iter().filter_map(|(_, c)| c.spki.as_ref()).collect();
        if keys.len() < 2 {
            continue;
        }
        for (der, ca) in group {
            if !ca.spki.as_ref().is_some_and(|k| established.contains(k)) {
                refused.insert((*der).clone());
            }
        }
    }
    refused
}

/// What publication needs of one distinct CA, computed once.
struct CaInfo {
    cert: X509,
    spki: Option<Vec<u8>>,
    /// Key id, hex: its name in the snapshot's `cas`.
    id: String,
    pem: String,
}

impl CaInfo {
    fn new(cert: &X509) -> CaInfo {
        CaInfo {
            cert: cert.clone(),
            spki: spki(cert),
            id: hex::encode(key_id(cert)),
            pem: cert.to_pem().map(|p| String::from_utf8_lossy(&p).into_owned()).unwrap_or_default(),
        }
    }
}

/// The certificate's public key (SubjectPublicKeyInfo DER): what identifies a CA.
fn spki(cert: &X509) -> Option<Vec<u8>> {
    cert.public_key().ok().and_then(|k| k.public_key_to_der().ok())
}

fn key_id(cert: &X509) -> Vec<u8> {
    cert.subject_key_id().map(|k| k.as_slice().to_vec()).unwrap_or_default()
}

/// Identity of the policy file version (same rule as the trust map watcher).
fn policy_stamp(path: &Path) -> Option<(u64, u64, Option<SystemTime>)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()))
}

/// The background thread.
pub struct SyncThread {
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl SyncThread {
    /// Starts the sync for an instance. Configuration errors (bad anchor or roots file)
    /// fail here, so radiusd refuses to start instead of rejecting everyone later.
    pub fn start(
        label: String,
        cfg: SyncConfig,
        trust_map_path: PathBuf,
        cell: Arc<SnapshotCell>,
        poll: Duration,
    ) -> Result<SyncThread, String> {
        let mut engine = Engine::new(label.clone(), cfg, trust_map_path.clone())?;
        match TrustMap::load(&trust_map_path) {
            Ok(map) => {
                log::info!(
                    "{label}: serving persisted trust map {} (generation {}, {} names) until DNS confirms it",
                    trust_map_path.display(),
                    map.generation,
                    map.name_count()
                );
                engine.restore(&map);
                cell.store(map);
            }
            Err(e) if trust_map_path.exists() => log::error!("{label}: ignoring persisted trust map {e}"),
            Err(_) => log::info!("{label}: no persisted trust map yet; rejecting until the first sync"),
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rlm_rust-sync")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the sync runtime: {e}"))?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("rlm_rust-sync".into())
            .spawn(move || {
                runtime.block_on(run(engine, cell, poll, stop_rx));
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(|e| format!("cannot start the sync thread: {e}"))?;
        Ok(SyncThread { stop: Some(stop_tx), thread: Some(thread) })
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(mut engine: Engine, cell: Arc<SnapshotCell>, poll: Duration, mut stop: watch::Receiver<bool>) {
    let label = engine.label.clone();
    let policy_path = engine.cfg.policy.clone();
    let mut stamp = None;
    let mut first = true;
    loop {
        let mut changed = false;
        let now_stamp = policy_stamp(&policy_path);
        if now_stamp != stamp {
            stamp = now_stamp;
            match policy::load(&policy_path) {
                Ok(loaded) => {
                    for d in &loaded.diagnostics {
                        log::warn!("{label}: policy {d}");
                    }
                    changed |= engine.set_policy(loaded.policy);
                    log::info!("{label}: policy {}: {} names", policy_path.display(), engine.all_names().len());
                }
                Err(e) => log::error!("{label}: {e}; keeping the previous policy"),
            }
        }
        let due = engine.due();
        if !due.is_empty() {
            let round = engine.round(due);
            tokio::select! {
                (c, _) = round => changed |= c,
                _ = stop.changed() => break,
            }
        }
        if changed || first {
            match engine.publish() {
                Ok(map) => cell.store(map),
                Err(e) => log::error!("{label}: not published, keeping the previous generation: {e}"),
            }
            first = false;
        }
        let wake = engine.next_due().map(|d| d.min(Instant::now() + poll)).unwrap_or(Instant::now() + poll);
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = stop.changed() => break,
        }
    }
    log::info!("{label}: sync stopped");
}
