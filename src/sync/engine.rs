//! The trust sync: a background thread inside radiusd that keeps the trust map and the CA
//! set equal to what DNS publishes for the policy's names.
//!
//! One thread owns one tokio runtime, one validating resolver and one HTTPS client for the
//! instance's lifetime. It looks names up as they fall due, each lookup bounded by
//! `name_timeout`, a few at a time per domain, names discovered on demand in a pool of their
//! own; and it publishes results as they complete, in this order: CA set on disk (when it
//! changed), trust map file, in-memory swap, so an association is never live before the
//! CAs its handshake needs. A publication copies only the trust map shards it changes, so
//! a withdrawal, a Bogus answer or an expiry reaches the request path within moments
//! whatever other zones are doing. Requests never wait for any of this.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openssl::x509::X509;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::unix_now;
use crate::model::name;
use crate::model::policy::{self, parent, Loaded, Policy};
use crate::model::snapshot::SnapshotCell;
use crate::model::trustmap::{CaKeyIds, NameEntry, TrustMap};
use crate::stores::caset::{CaSet, CaSetError};
use crate::sync::cabook::{digest_of, CaBook, CaDigest, Contest};
use crate::sync::cafetch::{CaFetcher, FetchConfig, FetchError, FetchStats};
use crate::sync::chain::ChainLimits;
use crate::sync::discover::{Discoverer, KnownCas, NameReport, Outcome};
use crate::sync::dns::resolver::{DnsConfig, DotConfig, ResolverError, TlsaResolver};
use crate::sync::https::{HttpError, HttpsClient, HttpsConfig};
use crate::sync::ondemand::{DomainRates, Hint};
use crate::sync::options::SyncConfig;
use crate::sync::policyfeed::{PolicyFeed, PolicySource, Update};
use crate::sync::registry::Registry;
use crate::sync::schedule::{Good, NameRow, NameStatus, Origin, Pool, Schedule, Shown};

/// Names in the channel from the request path to the sync thread.
pub const HINT_QUEUE: usize = 4096;

/// Why the sync could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The validating resolver could not be built (trust anchor or DNS-over-TLS CA file
    /// unreadable, no usable nameserver): fix the `dns_*` options.
    #[error(transparent)]
    Resolver(#[from] ResolverError),
    /// The CA fetcher's HTTPS client could not be built (typically `https_roots`
    /// unreadable or holding no certificate).
    #[error(transparent)]
    Fetcher(#[from] FetchError),
    /// OpenSSL could not supply the random label of the anchor probes; without it a zone
    /// could pre-publish records at the probe name, so the sync does not start.
    #[error("random source: {0}")]
    Random(#[source] openssl::error::ErrorStack),
    /// The tokio runtime of the sync could not be created (out of threads or file
    /// descriptors).
    #[error("cannot start the sync runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The operating system refused to spawn the sync thread.
    #[error("cannot start the sync thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Why the CA set or the trust map file was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The hashed CA directory could not be replaced: radiusd keeps reading the previous
    /// CA set, so devices of a new CA fail their handshake until a retry succeeds.
    #[error("CA set {path}: {source}")]
    CaSet {
        /// The directory written (`ca_path`).
        path: PathBuf,
        /// What the write ran into (permissions, full disk).
        source: CaSetError,
    },
    /// The PEM bundle of the CA set could not be replaced; it stays at its previous
    /// content until a retry succeeds.
    #[error("CA bundle {path}: {source}")]
    CaBundle {
        /// The file written (`ca_bundle`).
        path: PathBuf,
        /// What the write ran into.
        source: CaSetError,
    },
    /// The trust map file could not be replaced: the new map is served from memory, but a
    /// restart before a retry succeeds starts from the older file.
    #[error("trust map {path}: {source}")]
    TrustMap {
        /// The trust map file (`trust_map`).
        path: PathBuf,
        /// The I/O error of the atomic replace.
        source: std::io::Error,
    },
    /// The background thread writing a large trust map panicked; the file keeps its
    /// previous content (writes are atomic) and is written again later.
    #[error("the trust map writer panicked")]
    WriterPanicked,
}

/// Builds the discovery parts from the configuration (fails fast on bad files).
pub fn discoverer(cfg: &SyncConfig) -> Result<Discoverer, EngineError> {
    let dns = DnsConfig {
        nameservers: cfg.dns_servers.clone(),
        trust_anchor_file: cfg.dns_trust_anchors.clone(),
        timeout: cfg.dns_timeout,
        dns_over_tls: cfg.dns_over_tls.as_ref().map(|server_name| DotConfig {
            server_name: server_name.clone(),
            ca_file: cfg.dns_tls_ca.clone().unwrap_or_else(|| PathBuf::from(crate::sync::https::DEFAULT_ROOTS)),
        }),
        ..DnsConfig::default()
    };
    let resolver = TlsaResolver::new(&dns)?;
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
        rate_limit: cfg.ca_fetch_rate,
        ..FetchConfig::default()
    };
    let fetcher = CaFetcher::new(fetch)?;
    Ok(Discoverer {
        answers: Default::default(),
        resolver,
        fetcher,
        registry: Registry::new(&cfg.registry_domain, cfg.require_registry),
        limits: ChainLimits { max_depth: cfg.chain_max_depth },
        max_records: cfg.max_records,
        known: KnownCas::default(),
    })
}

/// A finished lookup.
struct Done {
    name: Arc<str>,
    outcome: Outcome,
    report: NameReport,
}

/// Counters of the sync, for tests, benchmarks and the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lookups the sync loop started in the refresh pool (policy names, anchor probes).
    pub refreshes: u64,
    /// Lookups the sync loop started in the discovery pool (names discovered on demand).
    pub discoveries: u64,
    /// Most refresh-pool lookups in flight at once so far (bounded by `concurrency`).
    pub max_refresh_in_flight: usize,
    /// Most discovery-pool lookups in flight at once so far (bounded by
    /// `discovery_concurrency`).
    pub max_discovery_in_flight: usize,
    /// Names seen on the request path and admitted for discovery.
    pub hints_admitted: u64,
    /// Hinted names outside every domain entry of the policy: ignored.
    pub hints_not_covered: u64,
    /// Hinted names refused because their domain was over `discovery_rate`; a device
    /// that keeps trying is admitted once the rate allows.
    pub hints_over_rate: u64,
    /// Hinted names refused because `discovery_max_names` names are tracked already.
    pub hints_over_capacity: u64,
    /// Lookups cut off by `name_timeout` (counted as failures: the last good entry stays).
    pub timeouts: u64,
    /// Trust map generations published.
    pub publications: u64,
    /// Publications that rewrote the CA set on disk (the accepted CAs changed).
    pub ca_set_writes: u64,
    /// Names tracked now, of every origin.
    pub names: usize,
    /// Of those, names discovered on demand.
    pub discovered_names: usize,
    /// Refresh-pool lookups in flight now.
    pub refresh_in_flight: usize,
    /// Discovery-pool lookups in flight now.
    pub discovery_in_flight: usize,
    /// Names per status (recounted every second, not per lookup).
    pub status_counts: Vec<(NameStatus, usize)>,
    /// The last completed round over the configured names: when it ended (Unix seconds)
    /// and how long it took. None until the first round completes.
    pub last_round: Option<(i64, Duration)>,
    /// TLSA answers received per DNSSEC class (`secure`, `insecure`, `bogus`,
    /// `no-records`, `failed`), since start.
    pub dns_answers: Vec<(&'static str, u64)>,
    /// Counters of the CA fetches from `.well-known/ca/`.
    pub ca_fetches: FetchStats,
    /// CAs in the CA set as last decided (accepted, not refused as contested).
    pub ca_set_size: usize,
}

/// An operator's request for the status view (answered by the sync loop).
pub struct StatusRequest {
    /// Most names listed (problems first).
    pub limit: usize,
    /// Where the sync loop sends its answer; dropped unanswered if the sync stops.
    pub reply: tokio::sync::oneshot::Sender<StatusReport>,
}

/// What the sync knows, for a person.
#[derive(Debug, Clone)]
pub struct StatusReport {
    /// The counters as of the request.
    pub stats: Stats,
    /// The policy source (file path or URL) the names come from.
    pub policy: String,
    /// Per-name rows, problems first, at most the requested limit.
    pub rows: Vec<NameRow>,
}

/// Things written to disk, and when.
#[derive(Debug, Default)]
struct Disk {
    /// The CA set last written (by certificate digest).
    ca_set: Option<HashSet<CaDigest>>,
    /// How long the last trust map write took: a slow one makes later ones wait for
    /// `persist_interval` instead of happening before every swap.
    last_write: Duration,
    written_at: Option<Instant>,
    /// The published map differs from the file.
    dirty: bool,
    /// No retry of a write that failed (or was put off) before this.
    retry_at: Option<Instant>,
    /// A write running on its own thread: how long it took, and how it ended.
    writing: Option<std::thread::JoinHandle<(Duration, Result<(), WriteError>)>>,
}

/// When `persist` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// After a publication: skipped while writes are slow and the last one is recent.
    Throttled,
    /// The interval is over: write (a large map in the background).
    Due,
    /// Shutdown: write here and now, after any write still running.
    Now,
}

/// Maps at least this large are written by a thread of their own.
const BACKGROUND_WRITE_NAMES: usize = 10_000;

/// A trust map write that took longer than this makes later ones wait for the interval.
const SLOW_WRITE: Duration = Duration::from_millis(50);

/// How a publication's trust map reaches the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PersistPlan {
    /// Not now: the file stays behind (dirty) until the interval is over.
    PutOff,
    /// On a thread of its own (a large map): the sync never waits for the disk.
    Background,
    /// Here, before the swap: a small map is quick, and shutdown must finish the file.
    Inline,
}

impl Disk {
    /// The decision of [`Engine::persist`] for a map of `names` names at `now`, from the
    /// disk's state alone (no I/O): `every` is how long after a write the next may follow.
    fn plan(&self, names: usize, when: Write, every: Duration, now: Instant) -> PersistPlan {
        let slow = self.last_write > SLOW_WRITE;
        let recent = self.written_at.is_some_and(|t| now.saturating_duration_since(t) < every);
        let busy = self.writing.is_some();
        if (slow && recent && when == Write::Throttled) || (busy && when != Write::Now) {
            PersistPlan::PutOff
        } else if when != Write::Now && names >= BACKGROUND_WRITE_NAMES {
            PersistPlan::Background
        } else {
            PersistPlan::Inline
        }
    }
}

/// A publication whose files could not all be written. The new map is served anyway
/// (`map`); the files are written again later.
#[derive(Debug, thiserror::Error)]
#[error("generation {} served from memory, not all written: {reason}", .map.generation)]
pub struct PublishError {
    /// The new generation, to be stored in the snapshot cell all the same.
    pub map: TrustMap,
    /// Every failed write's message, joined by `; `.
    pub reason: String,
}

/// The sync's state and its operations.
pub struct Engine {
    label: String,
    /// The first label of the anchor probes (see `anchor_probe`).
    anchor_label: String,
    cfg: SyncConfig,
    trust_map_path: PathBuf,
    discoverer: Arc<Discoverer>,
    schedule: Schedule,
    policy: Arc<Policy>,
    generation: u64,
    /// The last published map (what requests see).
    map: TrustMap,
    cas: CaBook,
    /// CAs refused by the last decision, and the contests behind them (logged on change).
    refused: HashSet<CaDigest>,
    contests: Vec<Contest>,
    /// The CA set decided last.
    accepted: HashSet<CaDigest>,
    /// Keys (SPKI) of the CAs written last: they keep a contested identity.
    established: HashSet<Vec<u8>>,
    /// One shared chain per distinct CA list.
    chains: HashMap<Vec<CaDigest>, CaKeyIds>,
    /// Names whose trust map entry may have changed since the last publication.
    pending: HashSet<Arc<str>>,
    /// A name discovered on demand changed: publish without waiting for the throttle.
    urgent: bool,
    /// A published name needs a CA the book has not counted: recount at the next publish.
    recount: bool,
    last_recount: Option<Instant>,
    rates: DomainRates,
    disk: Disk,
    stats: Stats,
}

/// Results are published together at most this often: a cold sync of a million names
/// does not build a thousand maps a second, and a withdrawal waits at most this long.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Longest a CA nobody needs any more stays in the CA set (it admits nothing meanwhile:
/// the check binds to published associations).
const RECOUNT_EVERY: Duration = Duration::from_secs(60);

impl Engine {
    /// An empty engine for the instance `label` (the log prefix), persisting to
    /// `trust_map_path`. Builds the resolver and the CA fetcher now, so a bad anchor
    /// or roots file fails here; tracks nothing until [`Engine::restore`] or
    /// [`Engine::set_policy`].
    pub fn new(label: String, cfg: SyncConfig, trust_map_path: PathBuf) -> Result<Engine, EngineError> {
        let discoverer = Arc::new(discoverer(&cfg)?);
        let timing = cfg.timing();
        let limits = cfg.limits();
        let policy = Arc::new(Policy::default());
        let mut nonce = [0u8; 6];
        openssl::rand::rand_bytes(&mut nonce).map_err(EngineError::Random)?;
        Ok(Engine {
            label,
            anchor_label: format!("rlm-rust-anchor-{}", hex::encode(nonce)),
            rates: DomainRates::new(cfg.discovery_rate),
            cfg,
            trust_map_path,
            discoverer,
            schedule: Schedule::new(timing, limits),
            map: TrustMap::from_entries(policy.clone(), [], 0, 0),
            policy,
            generation: 0,
            cas: CaBook::default(),
            refused: HashSet::new(),
            contests: Vec::new(),
            accepted: HashSet::new(),
            established: HashSet::new(),
            chains: HashMap::new(),
            pending: HashSet::new(),
            urgent: false,
            recount: true,
            last_recount: None,
            disk: Disk::default(),
            stats: Stats::default(),
        })
    }

    /// Restores the last good state from the persisted trust map, so a restart with DNS
    /// down serves it (and ages it towards max_stale) instead of starting empty. Entries
    /// already past max_stale or expired are dropped before anything is served.
    pub fn restore(&mut self, map: &TrustMap) {
        self.generation = map.generation;
        self.set_policy(map.policy().clone());
        let mut cas_by_id: HashMap<&str, X509> = HashMap::new();
        for (id, pem) in map.cas() {
            if let Ok(c) = X509::from_pem(pem.as_bytes()) {
                cas_by_id.insert(id, c);
            }
        }
        let wall = unix_now();
        let now = Instant::now();
        for (name, entry) in map.entries() {
            let cas: Option<Vec<X509>> = entry.chain.ids().map(|id| cas_by_id.get(id).cloned()).collect();
            let Some(cas) = cas else { continue };
            if self.schedule.origin(name).is_none() && self.policy.covers(name) {
                // Discovered on demand before the restart: kept while it shows up again.
                self.schedule.add_discovered(name.clone(), wall, now);
            }
            if entry.associations.is_empty() {
                continue;
            }
            let good =
                Good { associations: entry.associations.clone(), cas: cas.into(), verified_at: entry.verified_at };
            self.schedule.restore(name, good);
            self.pending.insert(name.clone());
        }
        self.established = cas_by_id.values().filter_map(|c| crate::model::pki::spki_der(c).ok()).collect();
        for name in self.schedule.expire(wall) {
            log::warn!("{}: {name}: not served from the persisted map (expired, or older than max_stale)", self.label);
        }
        self.recount = true;
    }

    /// Installs a policy; returns true when it differs from the current one.
    pub fn set_policy(&mut self, policy: Policy) -> bool {
        if policy == *self.policy {
            return false;
        }
        let policy = Arc::new(policy);
        let names: Vec<Arc<str>> = policy.names().into_iter().filter_map(|n| policy.interned(n)).collect();
        let now = Instant::now();
        let mut gone = self.schedule.set_names(names, now);
        gone.extend(self.schedule.retain_discovered(|n| policy.covers(n)));
        let domains = policy.domains();
        let anchors: Vec<Arc<str>> = domains.iter().map(|d| Arc::from(self.anchor_probe(d))).collect();
        gone.extend(self.schedule.set_anchors(anchors, now));
        self.rates.retain(|d| domains.contains(d));
        self.policy = policy;
        self.pending.extend(gone);
        // Names keep their entries; the map is rebuilt under the new policy at the next
        // publication (entries it no longer allows are dropped there).
        self.map = self.map.with_policy(self.policy.clone(), self.map.generation, self.map.generated_at);
        self.recount = true;
        true
    }

    /// The policy in force (the last one installed).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The feed of this engine's policy source. A URL's last good document is kept next
    /// to the trust map (`trustmap.json` -> `trustmap.policy-cache.json`).
    pub fn policy_feed(&self, file_poll: Duration) -> Result<PolicyFeed, HttpError> {
        let client = HttpsClient::new(&HttpsConfig {
            roots: self.cfg.https_roots.clone(),
            timeout: self.cfg.https_timeout,
            max_body: self.cfg.https_max_body,
            host_overrides: self.cfg.https_resolve.clone(),
        })?;
        let cache = self.trust_map_path.with_extension("policy-cache.json");
        Ok(PolicyFeed::new(self.cfg.policy.clone(), client, cache, file_poll, self.cfg.policy_refresh))
    }

    /// The name looked up for a domain entry's trust anchor: a label no device has (random
    /// per engine, so no zone can publish records at it ahead of time), which the domain's
    /// wildcard answers. Its anchor goes into the CA set before the first device of the
    /// fleet shakes hands; the name itself is never in the trust map.
    fn anchor_probe(&self, domain: &str) -> String {
        format!("{}.{domain}", self.anchor_label)
    }

    /// The counters, with the current sizes filled in.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.names = self.schedule.len();
        s.discovered_names = self.schedule.discovered();
        let (all, discovery) = self.schedule.in_flight();
        s.refresh_in_flight = all - discovery;
        s.discovery_in_flight = discovery;
        s.last_round = self.schedule.last_round();
        s.dns_answers = self.discoverer.answers.get().to_vec();
        s.ca_fetches = self.discoverer.fetcher.stats();
        s.ca_set_size = self.accepted.len();
        s
    }

    /// The names the policy lists, and the anchor probe of each domain entry.
    pub fn all_names(&self) -> Vec<String> {
        let names = self.policy.names().into_iter().map(str::to_owned);
        names.chain(self.policy.domains().into_iter().map(|d| self.anchor_probe(d))).collect()
    }

    /// A name seen in an EAP conversation. Starts tracking it when it is directly under a
    /// domain entry, within its domain's rate and the cap on discovered names; marks it
    /// seen when tracked already.
    pub fn hint(&mut self, name: &str) {
        let wall = unix_now();
        if self.schedule.seen(name, wall) {
            return;
        }
        let Some(domain) = parent(name).filter(|_| self.policy.covers(name)) else {
            self.stats.hints_not_covered += 1;
            return;
        };
        if self.schedule.discovered() >= self.cfg.discovery_max_names {
            self.stats.hints_over_capacity += 1;
            return;
        }
        let now = Instant::now();
        if !self.rates.admit(domain, now) {
            self.stats.hints_over_rate += 1;
            return;
        }
        self.stats.hints_admitted += 1;
        self.schedule.add_discovered(Arc::from(name), wall, now);
    }

    /// Starts due lookups within the pools' limits.
    fn start_due(&mut self, tasks: &mut JoinSet<Done>) {
        let wall = unix_now();
        for (name, pool) in self.schedule.take_due(Instant::now()) {
            let (all, discovery) = self.schedule.in_flight();
            match pool {
                Pool::Refresh => {
                    self.stats.refreshes += 1;
                    self.stats.max_refresh_in_flight = self.stats.max_refresh_in_flight.max(all - discovery);
                }
                Pool::Discovery => {
                    self.stats.discoveries += 1;
                    self.stats.max_discovery_in_flight = self.stats.max_discovery_in_flight.max(discovery);
                }
            }
            let (d, deadline) = (self.discoverer.clone(), self.cfg.name_timeout);
            tasks.spawn(async move {
                let (outcome, report) = discover_within(&d, &name, wall, deadline).await;
                Done { name, outcome, report }
            });
        }
    }

    /// Records a finished lookup.
    fn finish(&mut self, done: Done) {
        if done.report.dns == "timeout" {
            self.stats.timeouts += 1;
        }
        self.log_outcome(&done.name, &done.outcome);
        self.schedule.note_records(&done.name, done.report.records.len());
        let on_demand = matches!(self.schedule.origin(&done.name), Some(Origin::Discovered { .. }));
        if self.schedule.record(&done.name, done.outcome, Instant::now(), unix_now()) {
            // A device is in the middle of its handshake waiting for this answer: publish
            // now rather than at the next throttled publication (discovery is capped per
            // domain and in flight, so this cannot turn into a publication storm).
            self.urgent |= on_demand;
            self.pending.insert(done.name);
        }
    }

    /// Whether a change waits that should not wait for the publication throttle.
    pub fn has_urgent(&self) -> bool {
        self.urgent && self.has_pending()
    }

    /// Recounts the names per status (a walk over every name: once a second, not per
    /// lookup).
    pub fn refresh_status(&mut self) {
        self.stats.status_counts = self.schedule.status_counts().to_vec();
    }

    /// The status view: the counters and up to `limit` names, problems first.
    pub fn status(&self, limit: usize) -> StatusReport {
        StatusReport {
            stats: self.stats(),
            policy: self.cfg.policy.to_string(),
            rows: self.schedule.rows(Instant::now(), limit),
        }
    }

    /// Looks `names` up now, all of them (only `concurrency` at a time), and records the
    /// results: one sync round for the operator tool and tests. Returns whether any entry
    /// changed, and the reports in name order.
    pub async fn round(&mut self, names: Vec<String>) -> (bool, Vec<NameReport>) {
        let mut tasks = JoinSet::new();
        let mut reports = Vec::new();
        let before = self.pending.len();
        // A round is not limited per domain: the operator asked for these names.
        let mut queue: std::collections::VecDeque<Arc<str>> = names
            .iter()
            .filter_map(|n| name::normalize(n).ok())
            .map(|n| self.policy.interned(&n).unwrap_or_else(|| Arc::from(n)))
            .collect();
        let wall = unix_now();
        while !queue.is_empty() || !tasks.is_empty() {
            while tasks.len() < self.cfg.concurrency {
                let Some(name) = queue.pop_front() else { break };
                self.schedule.start(&name);
                let (d, deadline) = (self.discoverer.clone(), self.cfg.name_timeout);
                tasks.spawn(async move {
                    let (outcome, report) = discover_within(&d, &name, wall, deadline).await;
                    Done { name, outcome, report }
                });
            }
            if let Some(Ok(done)) = tasks.join_next().await {
                reports.push(done.report.clone());
                self.log_outcome(&done.name, &done.outcome);
                self.schedule.note_records(&done.name, done.report.records.len());
                if self.schedule.record(&done.name, done.outcome, Instant::now(), unix_now()) {
                    self.pending.insert(done.name);
                }
            }
        }
        self.expire();
        reports.sort_by(|a, b| a.name.cmp(&b.name));
        (self.pending.len() > before || self.has_pending(), reports)
    }

    /// Drops what expired or went stale, and discovered names that stopped showing up.
    fn expire(&mut self) {
        for name in self.schedule.expire(unix_now()) {
            log::warn!(
                "{}: {name}: associations dropped (expired, unconfirmed by DNS for max_stale, or idle)",
                self.label
            );
            self.pending.insert(name);
        }
    }

    fn log_outcome(&self, name: &str, outcome: &Outcome) {
        let shown;
        let name = match (self.schedule.origin(name), policy::parent(name)) {
            (Some(Origin::Anchor), Some(domain)) => {
                shown = format!("trust anchor of *.{domain} (looked up as {name})");
                shown.as_str()
            }
            _ => name,
        };
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

    /// Whether anything waits to be published.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.recount
    }

    /// The CA digests `good` needs (learning new CAs into the book).
    fn digests_of(&mut self, good: &Good) -> Vec<CaDigest> {
        let mut out = Vec::with_capacity(good.cas.len());
        for ca in good.cas.iter() {
            match digest_of(ca) {
                Some(d) if self.cas.knows(&d) => out.push(d),
                Some(_) => {
                    self.recount = true;
                    if let Some(d) = self.cas.learn(ca) {
                        out.push(d);
                    }
                }
                None => {}
            }
        }
        out
    }

    /// Counts every published name's CAs again and decides the CA set (the contest rule is
    /// in `cabook`). Returns whether the refused set changed.
    fn recount_cas(&mut self) -> bool {
        let mut uses: Vec<(Option<String>, Vec<CaDigest>)> = Vec::new();
        let published: Vec<(Arc<str>, Good)> = self.schedule.published().map(|(n, g)| (n.clone(), g.clone())).collect();
        for (name, good) in &published {
            let digests = self.digests_of(good);
            uses.push((name::authority_host(name), digests));
        }
        self.cas.recount(uses.iter().map(|(h, d)| (h.clone(), d.as_slice())));
        let (accepted, contests, refused) = self.cas.decide(&self.established);
        if contests != self.contests {
            for c in &contests {
                log::error!(
                    "{}: probable attack: CAs with different keys claim subject {} and key id {}: kept {} (served by {}), \
                     refused the one(s) served by {}",
                    self.label,
                    c.subject,
                    c.key_id,
                    if c.kept_hosts.is_empty() { "none" } else { "the one in the CA set" },
                    join(&c.kept_hosts),
                    join(&c.refused_hosts)
                );
            }
        }
        let changed = refused != self.refused;
        self.accepted = accepted;
        self.refused = refused;
        self.contests = contests;
        self.chains.clear();
        self.recount = false;
        self.last_recount = Some(Instant::now());
        changed
    }

    /// What the map shows for `name` now, by the schedule and the CA decision.
    fn entry_for(&mut self, name: &str) -> Option<NameEntry> {
        if self.schedule.origin(name) == Some(Origin::Anchor) {
            return None;
        }
        let good = match self.schedule.shown(name) {
            Shown::Nothing => return None,
            Shown::Negative => return Some(NameEntry::default()),
            Shown::Good(g) => g.clone(),
        };
        let digests = self.digests_of(&good);
        if digests.iter().any(|d| !self.accepted.contains(d)) {
            // A CA of its chain is refused (contested) or not counted yet.
            return None;
        }
        let chain = match self.chains.get(&digests) {
            Some(c) => c.clone(),
            None => {
                let ids = digests.iter().filter_map(|d| self.cas.get(d).map(|s| s.id.clone()));
                let c = CaKeyIds::new(ids);
                self.chains.insert(digests, c.clone());
                c
            }
        };
        Some(NameEntry { associations: good.associations.clone(), chain, verified_at: good.verified_at })
    }

    /// Publishes what changed: the CA set (when it changed), the trust map file, and the
    /// map for the in-memory swap. A failed write is an error that still carries the new
    /// map: it is served, and the write is retried.
    pub fn publish(&mut self) -> Result<TrustMap, PublishError> {
        // Names first, so CAs they newly need are learnt before the CA set is decided.
        self.urgent = false;
        let pending: Vec<Arc<str>> = self.pending.drain().collect();
        for name in &pending {
            if let Shown::Good(g) = self.schedule.shown(name) {
                let g = g.clone();
                self.digests_of(&g);
            }
        }
        let overdue = self.last_recount.is_none_or(|t| t.elapsed() >= RECOUNT_EVERY);
        let refused_changed = if self.recount || overdue { self.recount_cas() } else { false };
        let names: Vec<Arc<str>> = if refused_changed {
            // A CA decision changed: every published name may gain or lose its entry.
            self.map.entries().map(|(n, _)| n.clone()).chain(self.schedule.names().cloned()).collect()
        } else {
            pending
        };
        let mut changes = Vec::with_capacity(names.len());
        for name in names {
            let entry = self.entry_for(&name);
            changes.push((name, entry));
        }
        // A write that fails does not hold the new generation back: a withdrawal must reach
        // requests even when the disk is full. What was not written is retried.
        let mut failed = Vec::new();
        let ca_set = self.write_ca_set_if_changed().unwrap_or_else(|e| {
            failed.push(e.to_string());
            None
        });
        let mut map = self.map.with_changes(changes, self.generation + 1, unix_now());
        if let Some(cas) = ca_set {
            map = map.with_cas(cas);
        }
        if let Err(e) = self.persist(&map, Write::Throttled) {
            failed.push(e.to_string());
        }
        self.generation += 1;
        self.stats.publications += 1;
        self.map = map.clone();
        if !failed.is_empty() {
            return Err(PublishError { map, reason: failed.join("; ") });
        }
        log::info!(
            "{}: published generation {}: {} names with an entry ({} tracked), {} certificate associations, {} CAs",
            self.label,
            map.generation,
            map.name_count(),
            self.schedule.len(),
            map.association_count(),
            self.accepted.len()
        );
        Ok(map)
    }

    /// Writes the CA set when the accepted CAs differ from what is on disk; returns the
    /// snapshot's `cas` (id -> PEM) when it did.
    fn write_ca_set_if_changed(&mut self) -> Result<Option<BTreeMap<String, String>>, WriteError> {
        if self.disk.ca_set.as_ref() == Some(&self.accepted) {
            return Ok(None);
        }
        let plan = plan_ca_set(&self.accepted, &self.cas);
        for e in &plan.refused {
            if e.is_collision() {
                log::error!("{}: CA refused, probable attack: {e}", self.label);
            } else {
                log::warn!("{}: CA refused: {e}", self.label);
            }
        }
        plan.set
            .write_ca_path(&self.cfg.ca_path)
            .map_err(|source| WriteError::CaSet { path: self.cfg.ca_path.clone(), source })?;
        plan.set
            .write_bundle(&self.cfg.ca_bundle)
            .map_err(|source| WriteError::CaBundle { path: self.cfg.ca_bundle.clone(), source })?;
        self.established = plan.set.iter().filter_map(|c| crate::model::pki::spki_der(c).ok()).collect();
        self.disk.ca_set = Some(self.accepted.clone());
        self.stats.ca_set_writes += 1;
        Ok(Some(plan.cas))
    }

    /// Writes the trust map file before the swap while that is quick; once a write took
    /// long (a large map), at most every `persist_interval`. A large map is written by a
    /// thread of its own, so the sync (and the withdrawals it publishes) never waits for
    /// the disk; `Write::Now` (shutdown) waits for every write.
    fn persist(&mut self, map: &TrustMap, when: Write) -> Result<(), WriteError> {
        self.reap_write(when == Write::Now)?;
        let plan = self.disk.plan(map.name_count(), when, self.persist_every(), Instant::now());
        if plan == PersistPlan::PutOff {
            self.disk.dirty = true;
            return Ok(());
        }
        self.disk.dirty = false;
        if plan == PersistPlan::Background {
            let (map, path) = (map.clone(), self.trust_map_path.clone());
            let spawned = std::thread::Builder::new().name("rlm_rust-persist".into()).spawn(move || {
                let started = Instant::now();
                let result = map.write_atomic(&path).map_err(|source| WriteError::TrustMap { path, source });
                (started.elapsed(), result)
            });
            if let Ok(handle) = spawned {
                self.disk.writing = Some(handle);
                return Ok(());
            }
            // No thread to be had: write here rather than not at all.
        }
        let started = Instant::now();
        let result = map.write_atomic(&self.trust_map_path);
        self.wrote(
            started.elapsed(),
            result.map_err(|source| WriteError::TrustMap { path: self.trust_map_path.clone(), source }),
        )
    }

    /// Waits for every trust map write and writes what a publication put off: the file
    /// then holds the last published generation (the operator tool, before it exits).
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.reap_write(true)?;
        if self.disk.dirty {
            let map = self.map.clone();
            self.persist(&map, Write::Now)?;
        }
        Ok(())
    }

    /// Collects a background write that has finished (or, with `wait`, any).
    fn reap_write(&mut self, wait: bool) -> Result<(), WriteError> {
        match &self.disk.writing {
            Some(handle) if wait || handle.is_finished() => {}
            _ => return Ok(()),
        }
        let Some(handle) = self.disk.writing.take() else { return Ok(()) };
        let (took, result) = handle.join().unwrap_or((Duration::ZERO, Err(WriteError::WriterPanicked)));
        self.wrote(took, result)
    }

    fn wrote(&mut self, took: Duration, result: Result<(), WriteError>) -> Result<(), WriteError> {
        match result {
            Ok(()) => {
                self.disk.last_write = took;
                self.disk.written_at = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                self.disk.dirty = true;
                Err(e)
            }
        }
    }

    /// How long after a write the next may follow: `persist_interval`, stretched so that
    /// writing a large map takes at most a tenth of the sync's time.
    fn persist_every(&self) -> Duration {
        self.cfg.persist_interval.max(self.disk.last_write * 10)
    }

    /// Writes the trust map file if a publication skipped it and the interval is over;
    /// with `force` (shutdown), now, waiting for any write still running.
    fn persist_if_due(&mut self, force: bool) {
        if let Err(e) = self.reap_write(force) {
            log::error!("{}: {e}", self.label);
        }
        let ca_set_behind = self.stats.publications > 0 && self.disk.ca_set.as_ref() != Some(&self.accepted);
        if !self.disk.dirty && !ca_set_behind {
            return;
        }
        let now = Instant::now();
        if self.disk.retry_at.is_some_and(|t| now < t) && !force {
            return;
        }
        self.disk.retry_at = Some(now + self.persist_every());
        if ca_set_behind {
            // A CA set write failed: the next publication writes it, then the map.
            self.recount = true;
            return;
        }
        let due = self.disk.written_at.is_none_or(|t| t.elapsed() >= self.persist_every());
        if due || force {
            let map = self.map.clone();
            if let Err(e) = self.persist(&map, if force { Write::Now } else { Write::Due }) {
                log::error!("{}: {e}", self.label);
            }
        }
    }

    /// When the next name falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.schedule.next_due()
    }

    /// Names due now (for tests and the operator tool).
    pub fn due(&self) -> Vec<String> {
        self.schedule.due_now(Instant::now()).iter().map(|n| n.to_string()).collect()
    }
}

/// The CA set a publication writes, decided in memory before anything touches the disk.
struct CaSetPlan {
    set: CaSet,
    /// The snapshot's `cas`: key id -> PEM, of exactly the certificates in `set`.
    cas: BTreeMap<String, String>,
    /// Accepted CAs the set itself refused (a collision the book did not see).
    refused: Vec<CaSetError>,
}

/// Every accepted CA the book holds, in digest order (so the same CAs always make the same
/// files), through the CA set's own collision rule.
fn plan_ca_set(accepted: &HashSet<CaDigest>, book: &CaBook) -> CaSetPlan {
    let mut plan = CaSetPlan { set: CaSet::new(), cas: BTreeMap::new(), refused: Vec::new() };
    let mut ordered: Vec<&CaDigest> = accepted.iter().collect();
    ordered.sort();
    for d in ordered {
        let Some(slot) = book.get(d) else { continue };
        match plan.set.insert(slot.cert.clone()) {
            Ok(()) => {
                plan.cas.insert(slot.id.to_string(), slot.pem.to_string());
            }
            Err(e) => plan.refused.push(e),
        }
    }
    plan
}

/// One name's discovery, cut off at `deadline` (a failure: the last good entry stays).
async fn discover_within(d: &Discoverer, name: &str, wall: i64, deadline: Duration) -> (Outcome, NameReport) {
    match tokio::time::timeout(deadline, d.discover(name, wall)).await {
        Ok(done) => done,
        Err(_) => (
            Outcome::Failed { reason: format!("no complete answer within {deadline:?} (name_timeout)") },
            NameReport { name: name.to_string(), dns: "timeout", records: Vec::new() },
        ),
    }
}

fn join(hosts: &std::collections::BTreeSet<String>) -> String {
    if hosts.is_empty() {
        "no known host".into()
    } else {
        hosts.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The background thread, and the request path's way to it.
pub struct SyncThread {
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
    hints: mpsc::Sender<Hint>,
    status: mpsc::Sender<StatusRequest>,
    stats: Arc<parking_lot::Mutex<Stats>>,
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
    ) -> Result<SyncThread, EngineError> {
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
                // Served only once expired and stale entries are gone (restore dropped them).
                publish_to(&mut engine, &cell);
            }
            Err(e) if trust_map_path.exists() => log::error!("{label}: ignoring persisted trust map {e}"),
            Err(_) => log::info!("{label}: no persisted trust map yet; rejecting until the first sync"),
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rlm_rust-sync")
            .enable_all()
            .build()
            .map_err(EngineError::Runtime)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (hint_tx, hint_rx) = mpsc::channel(HINT_QUEUE);
        let (status_tx, status_rx) = mpsc::channel(4);
        let stats = Arc::new(parking_lot::Mutex::new(engine.stats()));
        let shared = stats.clone();
        let thread = std::thread::Builder::new()
            .name("rlm_rust-sync".into())
            .spawn(move || {
                runtime.block_on(run(engine, cell, poll, stop_rx, hint_rx, status_rx, shared));
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(EngineError::Thread)?;
        Ok(SyncThread { stop: Some(stop_tx), thread: Some(thread), hints: hint_tx, status: status_tx, stats })
    }

    /// The sync's counters as of its last loop.
    pub fn stats(&self) -> Stats {
        self.stats.lock().clone()
    }

    /// What serves the metrics and the status view: the counters, and a way to ask the
    /// sync loop for the per-name view.
    pub fn handle(&self) -> SyncHandle {
        SyncHandle { stats: self.stats.clone(), status: self.status.clone() }
    }

    /// Hands a name seen on the request path to the sync. Never blocks: a full queue
    /// drops the hint (the device's next attempt sends it again).
    pub fn hint(&self, hint: Hint) -> bool {
        self.hints.try_send(hint).is_ok()
    }

    /// Stops the sync loop and waits for the thread, which first writes the trust map file
    /// if it is behind the last publication. Idempotent; dropping the `SyncThread` does
    /// the same.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A reader of a running sync (for the metrics listener).
#[derive(Clone)]
pub struct SyncHandle {
    stats: Arc<parking_lot::Mutex<Stats>>,
    status: mpsc::Sender<StatusRequest>,
}

impl SyncHandle {
    /// The sync's counters as of its last loop (never waits for the loop).
    pub fn stats(&self) -> Stats {
        self.stats.lock().clone()
    }

    /// The status view of up to `limit` names; None when the sync does not answer within
    /// `timeout` (it is stopping, or busy).
    pub async fn status(&self, limit: usize, timeout: Duration) -> Option<StatusReport> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.status.send_timeout(StatusRequest { limit, reply }, timeout).await.ok()?;
        tokio::time::timeout(timeout, answer).await.ok()?.ok()
    }
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs a policy the feed found, reporting its skipped entries.
fn apply_policy(engine: &mut Engine, source: &PolicySource, loaded: Loaded) -> bool {
    for d in &loaded.diagnostics {
        log::warn!("{}: policy {d}", engine.label);
    }
    let changed = engine.set_policy(loaded.policy);
    log::info!(
        "{}: policy {source}: {} names, {} domains",
        engine.label,
        engine.policy.names().len(),
        engine.policy.domains().len()
    );
    changed
}

/// Polls the policy source once, after reading the kept copy of a URL's document.
/// Returns what was found, and the failure if the source did not answer.
async fn first_policy(feed: &mut PolicyFeed, label: &str) -> (Vec<Loaded>, Option<String>) {
    let mut found = Vec::new();
    if let Some(kept) = feed.restore() {
        log::info!("{label}: policy {}: starting from the copy kept from the last fetch", feed.source());
        found.push(kept);
    }
    match feed.poll().await {
        Update::Loaded(loaded) => found.push(loaded),
        Update::Unchanged => {}
        Update::Failed(e) => {
            log::error!("{label}: policy {e}; keeping the last good policy");
            return (found, Some(e));
        }
    }
    (found, None)
}

/// Polls the policy source in a task of its own (a slow policy server never holds the
/// sync loop) and hands every new policy to the loop. A source that keeps failing the same
/// way is reported once (`failing`: how it failed last), and its recovery too.
async fn feed_policy(mut feed: PolicyFeed, label: String, tx: mpsc::Sender<Loaded>, mut failing: Option<String>) {
    loop {
        tokio::time::sleep_until(feed.next_poll().into()).await;
        let update = feed.poll().await;
        match (&update, &failing) {
            // One report per outage: the error of a server going away changes as it goes
            // (reset, then refused), and the operator needs the first one and the recovery.
            (Update::Failed(e), Some(_)) => log::debug!("{label}: policy {e} (still failing)"),
            (Update::Failed(e), _) => log::error!("{label}: policy {e}; keeping the last good policy"),
            (_, Some(_)) => log::info!("{label}: policy {}: answering again", feed.source()),
            _ => {}
        }
        failing = match update {
            Update::Failed(e) => Some(e),
            Update::Loaded(loaded) => {
                if tx.send(loaded).await.is_err() {
                    return;
                }
                None
            }
            Update::Unchanged => None,
        };
    }
}

/// When the next publication is due: none without changes; now for the first, or for an
/// answer a device on demand waits for; else `PUBLISH_EVERY` after the last one.
fn next_publication(engine: &Engine, last: Option<Instant>, now: Instant) -> Option<Instant> {
    if !engine.has_pending() {
        return None;
    }
    if engine.has_urgent() {
        return Some(now);
    }
    Some(last.map_or(now, |t| t + PUBLISH_EVERY))
}

/// Loads the first policy before the first publication (so it never publishes an empty
/// map for a policy that is there), then follows the source from a task of its own.
async fn start_policy_feed(
    engine: &mut Engine,
    poll: Duration,
) -> (Option<tokio::task::JoinHandle<()>>, mpsc::Receiver<Loaded>) {
    let (label, source) = (engine.label.clone(), engine.cfg.policy.clone());
    let (policy_tx, policies) = mpsc::channel(1);
    let feed = match engine.policy_feed(poll) {
        Ok(mut feed) => {
            let (found, failing) = first_policy(&mut feed, &label).await;
            for loaded in found {
                apply_policy(engine, &source, loaded);
            }
            Some(tokio::spawn(feed_policy(feed, label, policy_tx, failing)))
        }
        Err(e) => {
            log::error!("{label}: policy {source}: {e}; no policy can be loaded");
            None
        }
    };
    (feed, policies)
}

/// Publishes into `cell`. A map whose write failed is served all the same (the failure is
/// logged, the write retried): a withdrawal must reach requests even when the disk is full.
fn publish_to(engine: &mut Engine, cell: &SnapshotCell) {
    match engine.publish() {
        Ok(map) => cell.store(map),
        Err(e) => {
            log::error!("{}: {e}", engine.label);
            cell.store(e.map);
        }
    }
}

async fn run(
    mut engine: Engine,
    cell: Arc<SnapshotCell>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
    mut hints: mpsc::Receiver<Hint>,
    mut status: mpsc::Receiver<StatusRequest>,
    stats: Arc<parking_lot::Mutex<Stats>>,
) {
    let label = engine.label.clone();
    let source = engine.cfg.policy.clone();
    let (feed, mut policies) = start_policy_feed(&mut engine, poll).await;
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut next_expire = Instant::now();
    let mut first = true;
    let mut last_publish: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= next_expire {
            engine.expire();
            engine.refresh_status();
            next_expire = now + Duration::from_secs(1);
        }
        engine.start_due(&mut tasks);
        let publish_at = next_publication(&engine, last_publish, now);
        if first || publish_at.is_some_and(|t| t <= now) {
            publish_to(&mut engine, &cell);
            last_publish = Some(now);
            first = false;
        }
        engine.persist_if_due(false);
        let publish_at = next_publication(&engine, last_publish, now);
        let wake = [engine.next_due(), Some(next_expire), publish_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + poll)
            .max(Instant::now() + Duration::from_millis(1));
        tokio::select! {
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(done) = joined {
                    engine.finish(done);
                }
            }
            Some(hint) = hints.recv() => engine.hint(hint.name()),
            Some(loaded) = policies.recv() => {
                apply_policy(&mut engine, &source, loaded);
            }
            Some(req) = status.recv() => {
                let _ = req.reply.send(engine.status(req.limit));
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = stop.changed() => break,
        }
        // Take whatever else is ready before publishing, so one publication covers it.
        while let Some(joined) = tasks.try_join_next() {
            if let Ok(done) = joined {
                engine.finish(done);
            }
        }
        while let Ok(hint) = hints.try_recv() {
            engine.hint(hint.name());
        }
        *stats.lock() = engine.stats();
    }
    tasks.abort_all();
    if let Some(feed) = feed {
        feed.abort();
    }
    engine.persist_if_due(true);
    log::info!("{label}: sync stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::cabook::tests::ca;

    const EVERY: Duration = Duration::from_secs(60);

    fn disk(last_write: Duration, written_ago: Option<Duration>, now: Instant) -> Disk {
        Disk { last_write, written_at: written_ago.map(|ago| now - ago), ..Disk::default() }
    }

    #[test]
    fn a_small_map_is_written_before_the_swap_and_a_large_one_beside_it() {
        let now = Instant::now();
        let fresh = disk(Duration::ZERO, None, now);
        assert_eq!(fresh.plan(10, Write::Throttled, EVERY, now), PersistPlan::Inline);
        assert_eq!(fresh.plan(BACKGROUND_WRITE_NAMES, Write::Throttled, EVERY, now), PersistPlan::Background);
        assert_eq!(fresh.plan(BACKGROUND_WRITE_NAMES, Write::Due, EVERY, now), PersistPlan::Background);
        // Shutdown finishes the file itself, whatever its size.
        assert_eq!(fresh.plan(BACKGROUND_WRITE_NAMES, Write::Now, EVERY, now), PersistPlan::Inline);
    }

    #[test]
    fn after_a_slow_write_publications_put_the_file_off_until_the_interval_is_over() {
        let now = Instant::now();
        let slow_recent = disk(SLOW_WRITE * 2, Some(EVERY / 2), now);
        assert_eq!(slow_recent.plan(10, Write::Throttled, EVERY, now), PersistPlan::PutOff);
        // The interval's own write and shutdown are not put off.
        assert_eq!(slow_recent.plan(10, Write::Due, EVERY, now), PersistPlan::Inline);
        assert_eq!(slow_recent.plan(10, Write::Now, EVERY, now), PersistPlan::Inline);
        let slow_long_ago = disk(SLOW_WRITE * 2, Some(EVERY * 2), now);
        assert_eq!(slow_long_ago.plan(10, Write::Throttled, EVERY, now), PersistPlan::Inline);
        let quick_recent = disk(SLOW_WRITE / 2, Some(Duration::from_millis(1)), now);
        assert_eq!(quick_recent.plan(10, Write::Throttled, EVERY, now), PersistPlan::Inline);
    }

    #[test]
    fn a_write_still_running_holds_every_write_but_shutdowns_back() {
        let now = Instant::now();
        let mut busy = disk(Duration::ZERO, None, now);
        busy.writing = Some(std::thread::spawn(|| (Duration::ZERO, Ok(()))));
        assert_eq!(busy.plan(10, Write::Throttled, EVERY, now), PersistPlan::PutOff);
        assert_eq!(busy.plan(BACKGROUND_WRITE_NAMES, Write::Due, EVERY, now), PersistPlan::PutOff);
        assert_eq!(busy.plan(10, Write::Now, EVERY, now), PersistPlan::Inline);
        let _ = busy.writing.take().map(std::thread::JoinHandle::join);
    }

    #[test]
    fn the_ca_set_holds_exactly_the_accepted_cas_the_book_knows() {
        let (a, b, other) = (ca("Cars CA", &[1; 20]), ca("Meters CA", &[2; 20]), ca("Other CA", &[3; 20]));
        let mut book = CaBook::default();
        let (da, db, dother) = (book.learn(&a).unwrap(), book.learn(&b).unwrap(), book.learn(&other).unwrap());
        let unknown = digest_of(&ca("Unknown CA", &[4; 20])).unwrap();
        let plan = plan_ca_set(&[da, db, unknown].into(), &book);
        assert_eq!(plan.set.len(), 2);
        assert!(plan.set.contains(&a) && plan.set.contains(&b) && !plan.set.contains(&other));
        let ids: BTreeMap<String, String> =
            [&da, &db].iter().map(|d| book.get(d).unwrap()).map(|s| (s.id.to_string(), s.pem.to_string())).collect();
        assert_eq!(plan.cas, ids, "the snapshot lists what the set holds");
        assert!(plan.refused.is_empty());
        assert!(!plan.cas.contains_key(&*book.get(&dother).unwrap().id));
    }

    #[test]
    fn two_accepted_cas_claiming_one_identity_leave_one_in_the_set_and_report_the_other() {
        // The book decides contests before this; should two such CAs still both be
        // accepted, the set refuses the second rather than write an ambiguous directory.
        let (first, second) = (ca("Cars Device CA", &[9; 20]), ca("Cars Device CA", &[9; 20]));
        let mut book = CaBook::default();
        let (d1, d2) = (book.learn(&first).unwrap(), book.learn(&second).unwrap());
        let plan = plan_ca_set(&[d1, d2].into(), &book);
        assert_eq!(plan.set.len(), 1);
        assert_eq!(plan.cas.len(), 1);
        assert_eq!(plan.refused.len(), 1);
        assert!(plan.refused[0].is_collision(), "{}", plan.refused[0]);
        // Same CAs, same outcome: the order is the digests', not the hash set's.
        let again = plan_ca_set(&[d2, d1].into(), &book);
        assert_eq!(again.cas, plan.cas);
    }
}
