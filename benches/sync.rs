//! The trust sync at fleet scale: N device names published as `TLSA 4 0 0` in a
//! DNSSEC-signed zone (a real knotd under a fake signed root), one RSA-2048 device CA at
//! `https://device.cars.example/.well-known/ca/<AKI>.pem` (a real rustls HTTPS server),
//! one SSID allowing all N names, and the sync's own [`Engine`] as radiusd runs it
//! (2 tokio workers, the configured concurrency).
//!
//! Measured per N (the fixture's set-up, N leaf certificates and knotd loading and signing
//! the zone, is timed on its own and is part of no other figure):
//! - the first full round + publish (cold: resolver cache empty, CA not fetched) and a
//!   second one (warm): wall time, names/s, CPU of this process (sync engine and HTTPS
//!   server) and of knotd (it shares the cores), CA fetches (HTTP requests the sync's
//!   fetcher sent and fetches its cache answered, from the engine's stats; requests the
//!   HTTPS server logged), TLSA answers per DNSSEC class, and the certificate associations
//!   published (asserted = N both times);
//! - memory, in Rust heap bytes counted by this binary's allocator, as requested and as
//!   glibc's malloc lays them out (header, 16-byte granules: the footprint; OpenSSL's heap
//!   is not seen): what the engine holds after the cold round; the trust map alone and the
//!   schedule alone, each rebuilt through the public API from the published entries the way
//!   the engine builds them (names shared with the policy; associations copied, so each
//!   figure counts its own); the policy; and the process RSS growth over the cold round, as
//!   read and after `malloc_trim`;
//! - the persisted snapshot: its size on disk, `TrustMap::load` (read + parse, asserted
//!   equal to the published map: same names, same entries), the same load in a fresh
//!   process (this binary with `--load-snapshot <file>`: its time, heap and RSS growth,
//!   free of this process's fragmentation), and the start-up path as `SyncThread::start`
//!   runs it, step by step (`Engine::new`, `restore` with `max_stale`, the first `publish`,
//!   which writes the file again, a large map's in the background; asserted N
//!   associations) and as a whole (`SyncThread::start` until it returns serving the map).
//!
//! For N = 1000 the Python reference (dane-discovery 0.22, `scripts/bench-python-ref.sh`)
//! runs the same discovery against the same knotd and HTTPS server.
//!
//! `cargo bench --bench sync`. Environment:
//! - `RLM_BENCH_SYNC_NAMES` (default `1000,10000`): the fleet sizes;
//! - `RLM_BENCH_SYNC_CONCURRENCY` (default 32, the module's default): parallel names;
//! - `RLM_BENCH_PYTHON_NAMES` (default 1000; 0 = skip the reference): the fleet size at
//!   which the Python reference also runs (it must be one of the sizes above);
//! - `RLM_BENCH_SYNC_WARM` (default 1; 0 = skip): the warm round (at a million names it
//!   takes as long as the cold one: the resolver caches 4096 answers);
//! - `RLM_BENCH_SYNC_STARTUP_NAMES` (default none): sizes at which only the start-up path
//!   is measured as above, from a snapshot the bench writes through the public API (one
//!   `4 0 0` association per name, one CA) instead of a sync: a million names' start-up
//!   without a million-name zone (`RLM_BENCH_SYNC_NAMES=` for that alone).
//!
//! Under `cargo test --benches` it runs a smoke test instead: 200 names, cold and warm
//! round, the snapshot loaded and the start-up path (also from a written snapshot), every
//! assertion above, no reference.
//! Without knotd (and knotc, keymgr, kdig) it says so and does nothing.
#![allow(unsafe_code)] // a counting allocator and libc calls

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::X509;
use rlm_rust::clock::unix_now;
use rlm_rust::model::association::{Association, Matching, Selector, Usage};
use rlm_rust::model::policy::Policy;
use rlm_rust::model::snapshot::SnapshotCell;
use rlm_rust::model::trustmap::{CaKeyIds, NameEntry, TrustMap};
use rlm_rust::sync::discover::{Discovered, Outcome};
use rlm_rust::sync::engine::{Engine, Stats, SyncThread};
use rlm_rust::sync::options::SyncConfig;
use rlm_rust::sync::schedule::Schedule;
use testkit::capki::{issue, Issued, Spec};
use testkit::dns::{DnsServer, Zone};
use testkit::https::{HttpsServer, WebPki};
use testkit::stack::well_known_name;

/// Live bytes of the Rust heap (OpenSSL's own allocations go to malloc and are not seen),
/// as requested, and as glibc's malloc lays them out (see [`chunk`]).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static FOOTPRINT: AtomicIsize = AtomicIsize::new(0);

/// The memory glibc's malloc takes for an allocation of `size` bytes: an 8-byte header,
/// 16-byte granules, 32 bytes at least; above its mmap threshold (128 KiB unless it has
/// raised it), whole pages. Fragmentation and free memory are not in it: what a structure
/// holds, in RSS, once the heap is in a steady state.
fn chunk(size: usize) -> isize {
    let bytes =
        if size >= 128 * 1024 { (size + 16).div_ceil(4096) * 4096 } else { (size + 8).div_ceil(16).max(2) * 16 };
    bytes as isize
}

fn count(size: usize, sign: isize) {
    LIVE.fetch_add(sign * size as isize, Ordering::Relaxed);
    FOOTPRINT.fetch_add(sign * chunk(size), Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        count(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            count(layout.size(), -1);
            count(new_size, 1);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const ZONE: &str = "cars.example";
const WEB_HOST: &str = "device.cars.example";
const SSID: &str = "Cars-WiFi";
/// Bound on the whole Python reference run (it also stops itself at its own deadline).
const PYTHON_LIMIT: Duration = Duration::from_secs(900);

/// Heap bytes: as requested, and their malloc footprint.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct Held {
    bytes: isize,
    footprint: isize,
}

impl Held {
    fn now() -> Held {
        Held { bytes: LIVE.load(Ordering::Relaxed), footprint: FOOTPRINT.load(Ordering::Relaxed) }
    }

    /// What was allocated and not freed since `self`.
    fn since(self) -> Held {
        let now = Held::now();
        Held { bytes: now.bytes - self.bytes, footprint: now.footprint - self.footprint }
    }
}

fn rss_kib() -> i64 {
    testkit::rss_kib("self") as i64
}

/// CPU time (user + system) of this process so far, in seconds.
fn cpu_s() -> f64 {
    cpu_of("self")
}

/// CPU time (user + system) of process `pid` (`"self"` for this one) so far, in seconds.
fn cpu_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    ticks as f64 / 100.0 // USER_HZ = 100
}

fn env_list(key: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(key) {
        Ok(v) => v.split([',', ' ']).filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => default.to_vec(),
    }
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn device_name(i: usize) -> String {
    format!("dev{i}._device.{ZONE}")
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// The device CA (RSA-2048, self-signed, SKI = AKI) and N leaf certificates as DER.
/// One P-256 key serves every leaf (key generation is not what is measured); the RSA
/// signatures are spread over the cores.
fn make_pki(n: usize) -> (Issued, Vec<Vec<u8>>) {
    let rsa = Rsa::generate(2048).expect("RSA key");
    // Key id by RFC 5280 4.2.1.2 method 1 (SHA-1 of the subjectPublicKey bits, for RSA the
    // PKCS#1 key): the reference computes the CA's key id that way instead of reading
    // the SKI extension, so the extension must agree with it.
    let ski = openssl::sha::sha1(&rsa.public_key_to_der_pkcs1().expect("pkcs1")).to_vec();
    let ca_key = PKey::from_rsa(rsa).expect("PKey");
    let ca = issue(&Spec { ski: Some(ski), ..Spec::ca("Cars Inc", "Cars Device CA").key(&ca_key) }, None);
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let leaf_key = PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("PKey");
    let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1);
    let per = n.div_ceil(threads).max(1);
    let mut ders: Vec<Vec<u8>> = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(per)
            .map(|start| {
                let (ca, leaf_key) = (&ca, &leaf_key);
                s.spawn(move || {
                    (start..(start + per).min(n))
                        .map(|i| {
                            let spec = Spec::leaf("Cars Inc", &device_name(i)).key(leaf_key);
                            issue(&spec, Some(ca)).cert.to_der().expect("der")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            ders.extend(h.join().expect("leaf thread"));
        }
    });
    (ca, ders)
}

/// Names of the smoke test under `cargo test --benches`.
const SMOKE_NAMES: usize = 200;

/// RSS after handing free heap pages back to the kernel, so a difference of two readings
/// is what the structures built in between hold, not what malloc kept around.
fn trimmed_rss_kib() -> i64 {
    // SAFETY: malloc_trim only releases free memory of glibc's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
    rss_kib()
}

/// The 1-minute load average (the machine is shared: every figure is read with it).
fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().next().unwrap_or("?").to_owned()
}

/// Whether `tool` is on PATH or where Debian puts knot's programs.
fn have_tool(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .any(|d| d.join(tool).is_file())
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Bytes per name.
fn per_name(bytes: f64, n: usize) -> f64 {
    bytes / n.max(1) as f64
}

/// The fixture's set-up, timed apart from everything measured.
#[derive(Clone, Copy)]
struct Setup {
    pki_s: f64,
    /// knotd loading and signing the zone, until it answers with its keys.
    dns_s: f64,
    total_s: f64,
    knotd_rss_kib: Option<u64>,
}

/// One round over every name and the publish after it.
struct Round {
    round_s: f64,
    publish_s: f64,
    /// CPU this process (sync engine, HTTPS server) used in the round + publish, and
    /// knotd's CPU meanwhile (it shares the cores).
    cpu_s: f64,
    knotd_cpu_s: Option<f64>,
    /// CA fetches by the sync's fetcher: HTTP requests sent, fetches its cache answered,
    /// fetches that got no certificate.
    ca_requests: u64,
    ca_cache_hits: u64,
    ca_failures: u64,
    /// Requests the HTTPS server logged.
    https_hits: usize,
    /// TLSA answers per DNSSEC class (those that occurred).
    dns_answers: Vec<(&'static str, u64)>,
    associations: usize,
    load_before: String,
    load_after: String,
}

impl Round {
    fn total_s(&self) -> f64 {
        self.round_s + self.publish_s
    }
}

/// Rust heap and RSS.
struct Memory {
    /// The engine after the cold round (reports dropped), before its publish.
    engine: Held,
    /// The same after the publish: the published map and the CA book included.
    engine_published: Held,
    map: Held,
    schedule: Held,
    policy: Held,
    /// Process RSS growth from before the engine was built to after the cold publish, as
    /// read, and after handing free heap back to the kernel.
    rss_growth_kib: i64,
    trimmed_rss_growth_kib: i64,
}

/// What a fresh process measures loading the snapshot (`--load-snapshot`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FreshLoad {
    load_s: f64,
    held: Held,
    rss_kib: i64,
    names: usize,
    associations: usize,
}

/// The persisted snapshot and the start-up path that serves it.
struct Snapshot {
    file_bytes: u64,
    bundle_bytes: u64,
    /// The generation on disk (the cold or the warm round's).
    generation: u64,
    load_s: f64,
    fresh: FreshLoad,
    engine_new_s: f64,
    restore_s: f64,
    publish_s: f64,
    thread_start_s: f64,
    load_avg: String,
}

struct Figures {
    n: usize,
    setup: Setup,
    cold: Round,
    warm: Option<Round>,
    mem: Memory,
    snap: Snapshot,
}

struct PythonRun {
    n: usize,
    result: Result<serde_json::Value, String>,
}

/// The whole fixture of one fleet size: knotd, the HTTPS server, the files.
struct Fleet {
    _dir: tempfile::TempDir,
    dns: DnsServer,
    knotd_pid: Option<String>,
    web: HttpsServer,
    web_root: PathBuf,
    work: PathBuf,
    names: Vec<String>,
    setup: Setup,
}

fn fleet(n: usize) -> Fleet {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("rlm-bench-sync-").tempdir().expect("temp dir");
    let work = dir.path().to_path_buf();
    let t = Instant::now();
    let (ca, ders) = make_pki(n);
    let pki_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut body = String::with_capacity(n * 1600);
    // The reference resolves the authority host through the same DNS server.
    body.push_str("device A 127.0.0.1\n");
    for (i, der) in ders.iter().enumerate() {
        body.push_str(&format!("dev{i}._device TLSA 4 0 0 {}\n", hex::encode(der)));
    }
    drop(ders);
    let dns = DnsServer::start(vec![Zone::signed(ZONE, &body)]);
    drop(body);
    let dns_s = t.elapsed().as_secs_f64();
    let knotd_pid = std::fs::read_to_string(dns.dir().join("run/knot.pid"))
        .ok()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty());
    let knotd_rss_kib = knotd_pid.as_deref().map(testkit::rss_kib).filter(|&kib| kib > 0);

    let web_pki = WebPki::new(&work, &[WEB_HOST]);
    let docroot = work.join("www");
    std::fs::create_dir_all(docroot.join(".well-known/ca")).expect("docroot");
    std::fs::write(docroot.join(".well-known/ca").join(well_known_name(&ca.cert)), ca.pem()).expect("write CA");
    let web = HttpsServer::start(&web_pki, Some(docroot));
    let names: Vec<String> = (0..n).map(device_name).collect();
    let policy: String = names.iter().map(|name| format!("{SSID}|{name}\n")).collect();
    std::fs::write(work.join("policy.txt"), policy).expect("policy");
    eprintln!("N={n}: {n} leaf certificates in {pki_s:.1} s; knotd loaded and signed the zone in {dns_s:.1} s");
    let setup = Setup { pki_s, dns_s, total_s: started.elapsed().as_secs_f64(), knotd_rss_kib };
    Fleet { _dir: dir, dns, knotd_pid, web, web_root: web_pki.root_pem, work, names, setup }
}

fn trust_map_path(f: &Fleet) -> PathBuf {
    f.work.join("trustmap.json")
}

/// The module's configuration for this fleet, as radiusd's `rust { }` section gives it.
fn sync_config(f: &Fleet, concurrency: usize) -> SyncConfig {
    let pairs: Vec<(String, String)> = [
        ("trust_map", trust_map_path(f).display().to_string()),
        ("policy", f.work.join("policy.txt").display().to_string()),
        ("ca_path", f.work.join("ca").display().to_string()),
        ("dns_servers", f.dns.addr().to_string()),
        ("dns_trust_anchors", f.dns.trust_anchor_file().display().to_string()),
        ("dns_timeout", "2".into()),
        ("https_roots", f.web_root.display().to_string()),
        ("https_resolve", format!("{WEB_HOST}={}", f.web.addr())),
        ("https_timeout", "5".into()),
        ("concurrency", concurrency.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let cfg = rlm_rust::config::from_pairs("bench", &pairs).expect("config");
    assert_eq!(cfg.trust_map, trust_map_path(f));
    cfg.sync.expect("sync config")
}

fn load_policy(cfg: &SyncConfig) -> Policy {
    let rlm_rust::sync::policyfeed::PolicySource::File(policy) = &cfg.policy else { panic!("a policy file") };
    let loaded = rlm_rust::model::policy::load(policy).expect("policy");
    assert!(loaded.diagnostics.is_empty(), "policy: {:?}", loaded.diagnostics);
    loaded.policy
}

fn engine(f: &Fleet, cfg: &SyncConfig) -> Engine {
    let mut engine = Engine::new("bench".into(), cfg.clone(), trust_map_path(f)).expect("engine");
    engine.set_policy(load_policy(cfg));
    engine
}

/// CPU time (user + system) of knotd so far, in seconds.
fn knotd_cpu_s(f: &Fleet) -> Option<f64> {
    f.knotd_pid.as_deref().map(cpu_of)
}

/// Looks every name up once; panics unless each has a usable record. Returns the wall time.
fn sync_round(runtime: &tokio::runtime::Runtime, engine: &mut Engine, n: usize, which: &str) -> f64 {
    let t = Instant::now();
    let (_, reports) = runtime.block_on(engine.round(engine.all_names()));
    let round_s = t.elapsed().as_secs_f64();
    let usable = |r: &&rlm_rust::sync::discover::NameReport| r.records.iter().any(|x| x.result.is_ok());
    let published = reports.iter().filter(usable).count();
    if published != n {
        let bad: Vec<String> = reports.iter().filter(|r| !usable(r)).take(3).map(|r| r.to_string()).collect();
        panic!("N={n}, {which} round: only {published} names have a usable record; first failures:\n{}", bad.join(""));
    }
    round_s
}

/// The counters at the start of a round.
struct RoundStart {
    load: String,
    stats: Stats,
    https_hits: usize,
    cpu_s: f64,
    knotd_cpu_s: Option<f64>,
}

impl RoundStart {
    fn now(f: &Fleet, engine: &Engine) -> RoundStart {
        RoundStart {
            load: load1(),
            stats: engine.stats(),
            https_hits: f.web.total_hits(),
            cpu_s: cpu_s(),
            knotd_cpu_s: knotd_cpu_s(f),
        }
    }

    /// The round's figures, the counters now against those at its start.
    fn figures(self, f: &Fleet, engine: &Engine, (round_s, publish_s): (f64, f64), map: &TrustMap) -> Round {
        let (cpu, knotd) = (cpu_s() - self.cpu_s, knotd_cpu_s(f).zip(self.knotd_cpu_s).map(|(b, a)| b - a));
        let (before, after) = (&self.stats, engine.stats());
        let dns_answers = after
            .dns_answers
            .iter()
            .map(|(class, count)| {
                let was = before.dns_answers.iter().find(|(c, _)| c == class).map_or(0, |(_, c)| *c);
                (*class, count - was)
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        Round {
            round_s,
            publish_s,
            cpu_s: cpu,
            knotd_cpu_s: knotd,
            ca_requests: after.ca_fetches.requests - before.ca_fetches.requests,
            ca_cache_hits: after.ca_fetches.cache_hits - before.ca_fetches.cache_hits,
            ca_failures: after.ca_fetches.failures - before.ca_fetches.failures,
            https_hits: f.web.total_hits() - self.https_hits,
            dns_answers,
            associations: map.association_count(),
            load_before: self.load,
            load_after: load1(),
        }
    }
}

/// The trust map alone: the published entries rebuilt into a map of their own, the way
/// the engine builds it (names shared with the policy, entries in the tables), with the
/// associations copied so that they count here.
fn map_alone(map: &TrustMap) -> Held {
    let start = Held::now();
    let entries: Vec<(Arc<str>, NameEntry)> = map
        .entries()
        .map(|(name, e)| {
            let mut entry = e.clone();
            entry.associations = e.associations.to_vec().into();
            (name.clone(), entry)
        })
        .collect();
    let alone = TrustMap::from_entries(map.shared_policy(), entries, map.generation, map.generated_at);
    let held = start.since();
    assert_eq!(alone.association_count(), map.association_count());
    held
}

/// The schedule alone: a `Schedule` with the engine's timing and limits, the policy's
/// names (shared with it, as in the engine) and, per name, the outcome the cold round
/// recorded (its associations, copied, and the CA chain).
fn schedule_alone(cfg: &SyncConfig, policy: &Policy, map: &TrustMap) -> Held {
    let cas: Vec<X509> = map.cas().values().map(|pem| X509::from_pem(pem.as_bytes()).expect("CA PEM")).collect();
    let names: Vec<Arc<str>> = policy.names().into_iter().filter_map(|n| policy.interned(n)).collect();
    let timing = cfg.timing();
    let limits = cfg.limits();
    let (now, wall) = (Instant::now(), unix_now());
    let start = Held::now();
    let outcomes: Vec<(Arc<str>, Outcome)> = names
        .iter()
        .map(|name| {
            let found = Discovered {
                associations: map.associations(name).to_vec().into(),
                cas: cas.clone(),
                ttl: Duration::from_secs(300),
            };
            (name.clone(), Outcome::Published(found))
        })
        .collect();
    let mut schedule = Schedule::new(timing, limits);
    schedule.set_names(names.iter().cloned(), now);
    for (name, outcome) in outcomes {
        schedule.record(&name, outcome, now, wall);
    }
    let held = start.since();
    assert_eq!(schedule.published().count(), names.len(), "schedule: every name published");
    held
}

/// The heap the policy alone holds (its names and SSID rules), parsed from the file.
fn policy_alone(cfg: &SyncConfig) -> Held {
    let start = Held::now();
    let policy = load_policy(cfg);
    let held = start.since();
    drop(policy);
    held
}

/// Panics unless `loaded` holds exactly the names of `published`, with the same entries.
fn assert_same_entries(loaded: &TrustMap, published: &TrustMap) {
    assert_eq!(loaded.name_count(), published.name_count(), "names in the loaded snapshot");
    for (name, entry) in published.entries() {
        let got = loaded.entry(name).unwrap_or_else(|| panic!("{name}: missing from the loaded snapshot"));
        assert_eq!(got.associations, entry.associations, "{name}: associations in the loaded snapshot");
        let ids = |e: &NameEntry| e.chain.ids().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(ids(got), ids(entry), "{name}: chain in the loaded snapshot");
    }
}

/// `--load-snapshot <file>`: this process loads the snapshot as radiusd's start-up does
/// and prints what that took and holds (JSON), so the RSS is a fresh process's.
fn load_snapshot_here(path: &Path) {
    let (rss0, start) = (trimmed_rss_kib(), Held::now());
    let t = Instant::now();
    let map = TrustMap::load(path).unwrap_or_else(|e| panic!("persisted snapshot: {e}"));
    let load_s = t.elapsed().as_secs_f64();
    let (held, rss_kib) = (start.since(), trimmed_rss_kib() - rss0);
    let out = FreshLoad { load_s, held, rss_kib, names: map.name_count(), associations: map.association_count() };
    println!("{}", serde_json::to_string(&out).expect("JSON"));
}

fn fresh_load(path: &Path) -> FreshLoad {
    let exe = std::env::current_exe().expect("this binary");
    let out = Command::new(exe).arg("--load-snapshot").arg(path).stderr(Stdio::inherit()).output().expect("run");
    assert!(out.status.success(), "--load-snapshot {}: {}", path.display(), out.status);
    serde_json::from_slice(&out.stdout).expect("--load-snapshot output")
}

/// The persisted snapshot: its size, loading it, and the start-up path that serves it.
/// `published`: the maps of the rounds (the file holds one of them).
fn snapshot(path: &Path, cfg: &SyncConfig, n: usize, published: &[&TrustMap]) -> Snapshot {
    let path = path.to_path_buf();
    let load_avg = load1();
    let t = Instant::now();
    let loaded = TrustMap::load(&path).unwrap_or_else(|e| panic!("N={n}: persisted snapshot: {e}"));
    let load_s = t.elapsed().as_secs_f64();
    assert_eq!(loaded.name_count(), n, "names in the persisted snapshot");
    assert_eq!(loaded.association_count(), n, "associations in the persisted snapshot");
    let on_disk = published
        .iter()
        .find(|m| m.generation == loaded.generation)
        .unwrap_or_else(|| panic!("persisted generation {} is not one this run published", loaded.generation));
    assert_same_entries(&loaded, on_disk);
    let fresh = fresh_load(&path);
    assert_eq!((fresh.names, fresh.associations), (n, n), "a fresh process's load of the snapshot");

    // Start-up, step by step as `SyncThread::start` takes it.
    let t = Instant::now();
    let mut engine = Engine::new("bench-restart".into(), cfg.clone(), path.clone()).expect("engine");
    let engine_new_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    engine.restore(&loaded);
    let restore_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let served = engine.publish().expect("publish the restored map");
    let publish_s = t.elapsed().as_secs_f64();
    assert_eq!(served.association_count(), n, "associations served from the persisted snapshot");
    assert_same_entries(&served, &loaded);
    drop((served, engine, loaded));

    // And as a whole: `SyncThread::start` returns once the persisted map is served.
    let cell = Arc::new(SnapshotCell::default());
    let t = Instant::now();
    let mut thread =
        SyncThread::start("bench-start".into(), cfg.clone(), path.clone(), cell.clone(), Duration::from_secs(1))
            .expect("SyncThread::start");
    let thread_start_s = t.elapsed().as_secs_f64();
    let served = cell.load().as_ref().map(|m| (m.name_count(), m.association_count()));
    thread.stop();
    assert_eq!(served, Some((n, n)), "SyncThread::start serves the persisted snapshot (names, associations)");
    Snapshot {
        file_bytes: file_size(&path),
        bundle_bytes: file_size(&cfg.ca_bundle),
        generation: on_disk.generation,
        load_s,
        fresh,
        engine_new_s,
        restore_s,
        publish_s,
        thread_start_s,
        load_avg,
    }
}

fn measure(f: &Fleet, concurrency: usize, warm: bool) -> Figures {
    let n = f.names.len();
    let cfg = sync_config(f, concurrency);
    // Same runtime shape as the sync thread in radiusd.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (rss0, trimmed0, start) = (rss_kib(), trimmed_rss_kib(), Held::now());
    let mut engine = engine(f, &cfg);

    let counters = RoundStart::now(f, &engine);
    let round_s = sync_round(&runtime, &mut engine, n, "cold");
    let engine_held = start.since();
    let t = Instant::now();
    let cold_map = engine.publish().expect("publish");
    let publish_s = t.elapsed().as_secs_f64();
    assert_eq!(cold_map.association_count(), n, "associations published (cold)");
    assert_eq!(cold_map.name_count(), n, "names published (cold)");
    let cold = counters.figures(f, &engine, (round_s, publish_s), &cold_map);
    let engine_published = start.since();
    let rss_growth_kib = rss_kib() - rss0;
    let trimmed_rss_growth_kib = trimmed_rss_kib() - trimmed0;
    eprintln!(
        "N={n}: cold {round_s:.2} s + {publish_s:.2} s publish, {:.2} s CPU (load {})",
        cold.cpu_s, cold.load_after
    );

    let mem = Memory {
        engine: engine_held,
        engine_published,
        map: map_alone(&cold_map),
        schedule: schedule_alone(&cfg, engine.policy(), &cold_map),
        policy: policy_alone(&cfg),
        rss_growth_kib,
        trimmed_rss_growth_kib,
    };

    let mut published = vec![cold_map];
    let warm = warm.then(|| {
        let counters = RoundStart::now(f, &engine);
        let round_s = sync_round(&runtime, &mut engine, n, "warm");
        let t = Instant::now();
        let map = engine.publish().expect("publish");
        let publish_s = t.elapsed().as_secs_f64();
        assert_eq!(map.association_count(), n, "associations published (warm)");
        assert_eq!(map.name_count(), n, "names published (warm)");
        let round = counters.figures(f, &engine, (round_s, publish_s), &map);
        eprintln!("N={n}: warm {round_s:.2} s + {publish_s:.2} s publish (load {})", round.load_after);
        published.push(map);
        round
    });
    // radiusd stops (waiting for the trust map write): the next start serves the
    // persisted snapshot.
    engine.flush().expect("write the trust map");
    drop(engine);
    runtime.shutdown_timeout(Duration::from_secs(2));
    let snap = snapshot(&trust_map_path(f), &cfg, n, &published.iter().collect::<Vec<_>>());
    eprintln!(
        "N={n}: snapshot {:.1} MiB, loaded in {:.2} s ({:.2} s in a fresh process), SyncThread::start served it in {:.2} s",
        mib(snap.file_bytes as f64),
        snap.load_s,
        snap.fresh.load_s,
        snap.thread_start_s
    );
    Figures { n, setup: f.setup, cold, warm, mem, snap }
}

/// Runs `scripts/bench-python-ref.sh` against this fleet's servers (bounded).
fn python_reference(f: &Fleet) -> PythonRun {
    let n = f.names.len();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let names_file = f.work.join("names.txt");
    let out = f.work.join("python-ref.json");
    std::fs::write(&names_file, f.names.join("\n") + "\n").expect("names");
    let log = f.work.join("python-ref.log");
    let log_file = std::fs::File::create(&log).expect("log");
    let child = Command::new(root.join("scripts/bench-python-ref.sh"))
        .current_dir(root)
        .args(["--dns", &f.dns.addr().to_string(), "--https", &f.web.addr().to_string()])
        .arg("--web-root")
        .arg(&f.web_root)
        .arg("--names")
        .arg(&names_file)
        .arg("--out")
        .arg(&out)
        .args(["--deadline", &(PYTHON_LIMIT.as_secs() - 60).to_string()])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn();
    let result = match child {
        Err(e) => Err(format!("cannot run scripts/bench-python-ref.sh: {e}")),
        Ok(mut child) => match testkit::wait_bounded(&mut child, PYTHON_LIMIT) {
            None => Err(format!("killed after {PYTHON_LIMIT:?}; log:\n{}", testkit::read_lossy(&log))),
            Some(status) => match std::fs::read_to_string(&out).ok().and_then(|t| serde_json::from_str(&t).ok()) {
                Some(v) => Ok(v),
                None => Err(format!("exited {status} without a result; log:\n{}", testkit::read_lossy(&log))),
            },
        },
    };
    PythonRun { n, result }
}

/// Start-up alone (`RLM_BENCH_SYNC_STARTUP_NAMES`), from a snapshot this bench writes
/// through the public API instead of a sync: N names of one SSID, each with one `4 0 0`
/// association (a digest of its name; no check is run) through an RSA-2048 CA, verified
/// now, as the sync persists them. DNS is a closed port: start-up serves the snapshot
/// before any lookup.
struct StartupOnly {
    n: usize,
    /// Writing the snapshot (`TrustMap::write_atomic`: JSON, fsync, rename).
    write_s: f64,
    snap: Snapshot,
}

fn startup_only(n: usize) -> StartupOnly {
    let dir = tempfile::Builder::new().prefix("rlm-bench-startup-").tempdir().expect("temp dir");
    let work = dir.path();
    let (ca, _) = make_pki(0);
    let names: Vec<String> = (0..n).map(device_name).collect();
    let policy: String = names.iter().map(|name| format!("{SSID}|{name}\n")).collect();
    std::fs::write(work.join("policy.txt"), policy).expect("policy");
    let path = work.join("trustmap.json");
    let pairs: Vec<(String, String)> = [
        ("trust_map", path.display().to_string()),
        ("policy", work.join("policy.txt").display().to_string()),
        ("ca_path", work.join("ca").display().to_string()),
        ("dns_servers", format!("127.0.0.1:{}", testkit::dns::free_port())),
        ("dns_timeout", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let cfg = rlm_rust::config::from_pairs("bench", &pairs).expect("config").sync.expect("sync config");
    let id = hex::encode(rlm_rust::sync::cabook::digest_of(&ca.cert).expect("CA digest"));
    let chain = CaKeyIds::new([Arc::from(id.as_str())]);
    let now = unix_now();
    let year = Some(now + 86_400 * 365);
    let entries = names.iter().map(|name| {
        let association = Association::from_data(Usage::PkixCd, Selector::Cert, Matching::Full, name.as_bytes(), year)
            .expect("association");
        let entry = NameEntry { associations: vec![association].into(), chain: chain.clone(), verified_at: now };
        (Arc::<str>::from(name.as_str()), entry)
    });
    let pem = String::from_utf8(ca.pem()).expect("PEM");
    let map = TrustMap::from_entries(Arc::new(load_policy(&cfg)), entries, 1, now).with_cas([(id, pem)].into());
    assert_eq!(map.association_count(), n);
    let t = Instant::now();
    map.write_atomic(&path).expect("write the snapshot");
    let write_s = t.elapsed().as_secs_f64();
    let snap = snapshot(&path, &cfg, n, &[&map]);
    eprintln!(
        "start-up alone, N={n}: snapshot {:.1} MiB written in {write_s:.2} s, loaded in {:.2} s, SyncThread::start \
         served it in {:.2} s (load {})",
        mib(snap.file_bytes as f64),
        snap.load_s,
        snap.thread_start_s,
        load1()
    );
    StartupOnly { n, write_s, snap }
}

fn answers(list: &[(&str, u64)]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter().map(|(class, count)| format!("{class} {count}")).collect::<Vec<_>>().join(", ")
}

fn print_report(figures: &[Figures], startups: &[StartupOnly], python: Option<&PythonRun>, concurrency: usize) {
    let cores = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1);
    println!();
    println!(
        "Trust sync, N names x TLSA 4 0 0 (P-256 leaf, RSA-2048 CA) in one signed zone; knotd + HTTPS on \
         loopback; Engine with 2 tokio workers, concurrency {concurrency}; {cores} cores:"
    );
    println!();
    println!(
        "| N | round | sync | publish | total | names/s | CPU (this process) | per name | knotd CPU | CA fetches: sent / \
         from cache / failed | HTTPS requests logged | TLSA answers | associations | load avg before -> after |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for f in figures {
        for (which, r) in [("cold", Some(&f.cold)), ("warm", f.warm.as_ref())] {
            let Some(r) = r else { continue };
            println!(
                "| {} | {which} | {:.2} s | {:.2} s | **{:.2} s** | {:.0} | {:.2} s | {:.2} ms | {} | {} / {} / {} | {} | {} \
                 | {} | {} -> {} |",
                f.n,
                r.round_s,
                r.publish_s,
                r.total_s(),
                f.n as f64 / r.total_s(),
                r.cpu_s,
                r.cpu_s * 1e3 / f.n as f64,
                r.knotd_cpu_s.map_or("?".into(), |s| format!("{s:.2} s")),
                r.ca_requests,
                r.ca_cache_hits,
                r.ca_failures,
                r.https_hits,
                answers(&r.dns_answers),
                r.associations,
                r.load_before,
                r.load_after,
            );
        }
    }
    println!();
    println!(
        "Memory: Rust heap, requested bytes / malloc footprint (per name); process RSS as read and after \
         malloc_trim:"
    );
    println!();
    println!(
        "| N | engine after the cold round | + its publish | trust map alone | schedule alone | policy | process RSS \
         growth, cold round (read / trimmed) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for f in figures {
        let m = &f.mem;
        let held = |h: &Held| {
            format!(
                "{:.1} / {:.1} MiB ({:.0} / {:.0} B)",
                mib(h.bytes as f64),
                mib(h.footprint as f64),
                per_name(h.bytes as f64, f.n),
                per_name(h.footprint as f64, f.n)
            )
        };
        let rss = |kib: i64| format!("{:.1} MiB ({:.0} B)", kib as f64 / 1024.0, per_name(kib as f64 * 1024.0, f.n));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} / {} |",
            f.n,
            held(&m.engine),
            held(&m.engine_published),
            held(&m.map),
            held(&m.schedule),
            held(&m.policy),
            rss(m.rss_growth_kib),
            rss(m.trimmed_rss_growth_kib),
        );
    }
    println!();
    println!(
        "Persisted snapshot and start-up (SyncThread::start: TrustMap::load, Engine::new, restore, first publish); \
         \"fresh process\": `--load-snapshot`, the map (with its policy) in a process of its own:"
    );
    println!();
    println!(
        "| N | trust map file | CA bundle | TrustMap::load | fresh process: load / heap / RSS | Engine::new | restore \
         | first publish (writes the file, in the background for large maps) | **SyncThread::start** | load avg |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for f in figures {
        let s = &f.snap;
        let fresh = &s.fresh;
        println!(
            "| {} | {:.1} MiB ({:.0} B/name, generation {}) | {:.1} KiB | {:.2} s | {:.2} s / {:.1} MiB / {:.1} MiB \
             ({:.0} / {:.0} B/name) | {:.3} s | {:.2} s | {:.2} s | **{:.2} s** | {} |",
            f.n,
            mib(s.file_bytes as f64),
            per_name(s.file_bytes as f64, f.n),
            s.generation,
            s.bundle_bytes as f64 / 1024.0,
            s.load_s,
            fresh.load_s,
            mib(fresh.held.footprint as f64),
            fresh.rss_kib as f64 / 1024.0,
            per_name(fresh.held.footprint as f64, f.n),
            per_name(fresh.rss_kib as f64 * 1024.0, f.n),
            s.engine_new_s,
            s.restore_s,
            s.publish_s,
            s.thread_start_s,
            s.load_avg,
        );
    }
    println!();
    println!("Fixture set-up (not part of any figure above):");
    println!();
    println!("| N | leaf certificates | knotd loads and signs the zone | whole fixture | knotd RSS |");
    println!("|---|---|---|---|---|");
    for f in figures {
        let s = &f.setup;
        let knotd = s.knotd_rss_kib.map_or("?".into(), |kib| format!("{:.0} MiB", kib as f64 / 1024.0));
        println!("| {} | {:.1} s | {:.1} s | {:.1} s | {knotd} |", f.n, s.pki_s, s.dns_s, s.total_s);
    }
    if !startups.is_empty() {
        println!();
        println!(
            "Start-up alone, from a snapshot written through the public API (one 4 0 0 association per name, one CA), \
             no sync before it:"
        );
        println!();
        println!(
            "| N | trust map file | write_atomic | TrustMap::load | fresh process: load / heap / RSS | restore | first \
             publish (writes the file, in the background for large maps) | **SyncThread::start** | load avg |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for st in startups {
            let s = &st.snap;
            println!(
                "| {} | {:.1} MiB ({:.0} B/name) | {:.2} s | {:.2} s | {:.2} s / {:.1} MiB / {:.1} MiB ({:.0} / {:.0} B/name) \
                 | {:.2} s | {:.2} s | **{:.2} s** | {} |",
                st.n,
                mib(s.file_bytes as f64),
                per_name(s.file_bytes as f64, st.n),
                st.write_s,
                s.load_s,
                s.fresh.load_s,
                mib(s.fresh.held.footprint as f64),
                s.fresh.rss_kib as f64 / 1024.0,
                per_name(s.fresh.held.footprint as f64, st.n),
                per_name(s.fresh.rss_kib as f64 * 1024.0, st.n),
                s.restore_s,
                s.publish_s,
                s.thread_start_s,
                s.load_avg,
            );
        }
        for st in startups.iter().filter(|st| st.n >= 10_000) {
            let start_1m = st.snap.thread_start_s * 1e6 / st.n as f64;
            let projected = if st.n == 1_000_000 { "" } else { " (linear projection from N)" };
            println!(
                "Target at N={}: snapshot served at start-up <= 2 s at 1M names: {start_1m:.2} s{projected}: {}",
                st.n,
                if start_1m <= 2.0 { "met" } else { "MISSED" }
            );
        }
    }
    println!();
    // Below 10k names the fixed costs (resolver start, first CA fetch, files) dominate: no
    // projection to 1M names from there.
    for f in figures.iter().filter(|f| f.n >= 10_000) {
        let scale = 1e6 / f.n as f64;
        let cold = f.cold.total_s();
        let (sync_1m, start_1m) = (cold * scale, f.snap.thread_start_s * scale);
        let projected = if f.n == 1_000_000 { "" } else { " (linear projection from N)" };
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let map = per_name(f.mem.map.footprint as f64, f.n);
        println!(
            "Targets at N={}: cold 1M-name sync <= 300 s: {sync_1m:.0} s{projected}: {}; trust map <= 300 B per name \
             (malloc footprint): {map:.0} B: {}; snapshot served at start-up <= 2 s at 1M names: {start_1m:.2} s\
             {projected}: {}",
            f.n,
            verdict(sync_1m <= 300.0),
            verdict(map <= 300.0),
            verdict(start_1m <= 2.0),
        );
        if f.n == 10_000 {
            println!("Target at N=10000: cold round + publish <= 10 s: {cold:.2} s: {}", verdict(cold <= 10.0));
        }
    }
    let Some(py) = python else { return };
    println!();
    println!("Side by side, same knotd and HTTPS server, N = {}:", py.n);
    println!();
    println!("| implementation | names | wall | per name | succeeded | DNSSEC seen as secure |");
    println!("|---|---|---|---|---|---|");
    if let Some(f) = figures.iter().find(|f| f.n == py.n) {
        let cold = f.cold.total_s();
        println!(
            "| rlm_rust sync (cold round + publish, concurrency {concurrency}) | {} | {:.2} s | {:.2} ms | {} | {} \
             (validated locally from the root anchor) |",
            f.n,
            cold,
            cold * 1e3 / f.n as f64,
            f.cold.associations,
            f.n
        );
    }
    match &py.result {
        Ok(v) => {
            let wall = v["wall_s"].as_f64().unwrap_or(0.0);
            let attempted = v["attempted"].as_u64().unwrap_or(0).max(1);
            println!(
                "| {} (sequential, per name: Identity + get_all_certificates + get_pkix_cd_trust_chain) | {} | {:.2} s \
                 | {:.2} ms | {} | {} |",
                v["implementation"].as_str().unwrap_or("Python reference"),
                v["names"],
                wall,
                wall * 1e3 / attempted as f64,
                v["succeeded"],
                v["dnssec_true"],
            );
            let fetches = v["ca_fetches"].as_u64().unwrap_or(0);
            let fetch_s = v["ca_fetch_s"].as_f64().unwrap_or(0.0);
            println!();
            println!("Python reference time by phase: {}", v["phases_s"]);
            println!(
                "Python reference CA fetches (A lookup of {WEB_HOST} + HTTPS GET, new TLS connection each): {fetches} \
                 in {fetch_s:.2} s ({:.1} ms each); the rest of its work: {:.2} s ({:.2} ms per name)",
                fetch_s * 1e3 / fetches.max(1) as f64,
                wall - fetch_s,
                (wall - fetch_s) * 1e3 / attempted as f64
            );
            if v["errors"].as_object().is_some_and(|e| !e.is_empty()) {
                println!("Python reference failures (top 5): {}", v["errors"]);
            }
            println!(
                "Note: the reference does no DNSSEC validation; it believes the AD bit of the server it asks. knotd \
                 is authoritative and never sets AD, so every answer reads dnssec=False there (PKIX-CD does not \
                 need it; DANE-EE would be refused). rlm_rust validates each answer itself from the fake root's \
                 DNSKEY. The reference also fetches the CA over HTTPS (plus an A lookup of the authority host) \
                 twice per name, with no cache; rlm_rust fetches it once for the fleet."
            );
        }
        Err(e) => println!("| dane-discovery 0.22 | {} | did not run: {e} | | | |", py.n),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--load-snapshot") {
        load_snapshot_here(Path::new(args.get(i + 1).expect("--load-snapshot <file>")));
        return;
    }
    let bench = args.iter().any(|a| a == "--bench");
    if let Some(tool) = ["knotd", "knotc", "keymgr", "kdig"].into_iter().find(|t| !have_tool(t)) {
        eprintln!("{tool} not found (apt-get install knot knot-dnsutils): skipping the sync bench");
        return;
    }
    let (sizes, startup_sizes, python_n, warm) = if bench {
        (
            env_list("RLM_BENCH_SYNC_NAMES", &[1000, 10_000]),
            env_list("RLM_BENCH_SYNC_STARTUP_NAMES", &[]),
            env_usize("RLM_BENCH_PYTHON_NAMES", 1000),
            env_usize("RLM_BENCH_SYNC_WARM", 1) != 0,
        )
    } else {
        (vec![SMOKE_NAMES], vec![SMOKE_NAMES], 0, true)
    };
    let concurrency = env_usize("RLM_BENCH_SYNC_CONCURRENCY", 32);
    let mut figures = Vec::new();
    let mut python = None;
    for n in sizes {
        eprintln!("N={n}: setting up (load average {})", load1());
        let f = fleet(n);
        figures.push(measure(&f, concurrency, warm));
        if n == python_n {
            eprintln!("N={n}: running the Python reference (scripts/bench-python-ref.sh)...");
            let run = python_reference(&f);
            if let Err(e) = &run.result {
                eprintln!("Python reference did not run: {e}");
            }
            python = Some(run);
        }
    }
    let startups: Vec<StartupOnly> = startup_sizes.into_iter().map(startup_only).collect();
    print_report(&figures, &startups, python.as_ref(), concurrency);
    println!();
    println!("load average at the end: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
}
