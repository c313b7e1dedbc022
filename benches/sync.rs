//! The trust sync at fleet scale: N device names published as `TLSA 4 0 0` in a
//! DNSSEC-signed zone (a real knotd under a fake signed root), one RSA-2048 device CA at
//! `https://device.cars.example/.well-known/ca/<AKI>.pem` (a real rustls HTTPS server),
//! one SSID allowing all N names, and the sync's own [`Engine`] as radiusd runs it
//! (2 tokio workers, the configured concurrency).
//!
//! Measured per N: the first full round + publish (cold: resolver cache empty, CA not
//! fetched), a second round + publish (warm), the certificate associations published
//! (asserted = N), the trust map and CA bundle sizes, and the memory the sync holds (Rust
//! heap counted by this binary's allocator; process RSS growth, which also sees OpenSSL's
//! heap).
//! For N = 1000 the Python reference (dane-discovery 0.22, `scripts/bench-python-ref.sh`)
//! runs the same discovery against the same knotd and HTTPS server.
//!
//! `cargo bench --bench sync`. Environment:
//! - `RLM_BENCH_SYNC_NAMES` (default `1000,10000`): the fleet sizes;
//! - `RLM_BENCH_SYNC_CONCURRENCY` (default 32, the module's default): parallel names;
//! - `RLM_BENCH_PYTHON_NAMES` (default 1000; 0 = skip the reference): the fleet size at
//!   which the Python reference also runs (it must be one of the sizes above).
//!
//! Under `cargo test` it does nothing: timings are not tests.
#![allow(unsafe_code)] // a counting allocator and libc calls

#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use rlm_rust::sync::Engine;
use support::capki::{issue, Issued, Spec};
use support::dns::{DnsServer, Zone};
use support::https::{HttpsServer, WebPki};
use support::stack::well_known_name;

/// Live bytes of the Rust heap (OpenSSL's own allocations go to malloc and are not seen).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
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

fn heap() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn rss_kib() -> i64 {
    support::rss_kib("self") as i64
}

/// CPU time (user + system) of this process so far, in seconds.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
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

struct Figures {
    n: usize,
    setup_s: f64,
    cold_round_s: f64,
    /// CPU this process (sync engine, HTTPS server) used in the cold round + publish.
    cold_cpu_s: f64,
    cold_publish_s: f64,
    warm_round_s: f64,
    warm_publish_s: f64,
    associations: usize,
    https_requests: usize,
    trust_map_bytes: u64,
    bundle_bytes: u64,
    engine_heap: isize,
    map_heap: isize,
    rss_growth_kib: i64,
}

struct PythonRun {
    n: usize,
    result: Result<serde_json::Value, String>,
}

/// The whole fixture of one fleet size: knotd, the HTTPS server, the files.
struct Fleet {
    _dir: tempfile::TempDir,
    dns: DnsServer,
    web: HttpsServer,
    web_root: PathBuf,
    work: PathBuf,
    names: Vec<String>,
}

fn fleet(n: usize) -> Fleet {
    let dir = tempfile::Builder::new().prefix("rlm-bench-sync-").tempdir().expect("temp dir");
    let work = dir.path().to_path_buf();
    let t = Instant::now();
    let (ca, ders) = make_pki(n);
    let pki_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut body = String::with_capacity(n * 1100);
    // The reference resolves the authority host through the same DNS server.
    body.push_str("device A 127.0.0.1\n");
    for (i, der) in ders.iter().enumerate() {
        body.push_str(&format!("dev{i}._device TLSA 4 0 0 {}\n", hex::encode(der)));
    }
    drop(ders);
    let dns = DnsServer::start(vec![Zone::signed(ZONE, &body)]);
    drop(body);
    let dns_s = t.elapsed().as_secs_f64();

    let web_pki = WebPki::new(&work, &[WEB_HOST]);
    let docroot = work.join("www");
    std::fs::create_dir_all(docroot.join(".well-known/ca")).expect("docroot");
    std::fs::write(docroot.join(".well-known/ca").join(well_known_name(&ca.cert)), ca.pem()).expect("write CA");
    let web = HttpsServer::start(&web_pki, Some(docroot));
    let names: Vec<String> = (0..n).map(device_name).collect();
    let policy: String = names.iter().map(|name| format!("{SSID}|{name}\n")).collect();
    std::fs::write(work.join("policy.txt"), policy).expect("policy");
    eprintln!("N={n}: {n} leaf certificates in {pki_s:.1} s; knotd loaded and signed the zone in {dns_s:.1} s");
    Fleet { _dir: dir, dns, web, web_root: web_pki.root_pem, work, names }
}

fn engine(f: &Fleet, concurrency: usize) -> Engine {
    let pairs: Vec<(String, String)> = [
        ("trust_map", f.work.join("trustmap.json").display().to_string()),
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
    let sync = cfg.sync.expect("sync config");
    let rlm_rust::config::PolicySource::File(policy) = &sync.policy else { panic!("a policy file") };
    let loaded = rlm_rust::policy::load(policy).expect("policy");
    assert!(loaded.diagnostics.is_empty(), "policy: {:?}", loaded.diagnostics);
    let mut engine = Engine::new("bench".into(), sync, cfg.trust_map).expect("engine");
    engine.set_policy(loaded.policy);
    engine
}

fn measure(f: &Fleet, concurrency: usize, setup_s: f64) -> Figures {
    let n = f.names.len();
    // Same runtime shape as the sync thread in radiusd.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (rss0, heap0) = (rss_kib(), heap());
    let mut engine = engine(f, concurrency);

    let (t, cpu0) = (Instant::now(), cpu_s());
    let (_, reports) = runtime.block_on(engine.round(engine.all_names()));
    let cold_round_s = t.elapsed().as_secs_f64();
    let published = reports.iter().filter(|r| r.records.iter().any(|x| x.result.is_ok())).count();
    if published != n {
        let bad: Vec<String> = reports
            .iter()
            .filter(|r| !r.records.iter().any(|x| x.result.is_ok()))
            .take(3)
            .map(|r| r.to_string())
            .collect();
        panic!("N={n}: only {published} names have a usable record; first failures:\n{}", bad.join(""));
    }
    let heap_before_publish = heap();
    let t = Instant::now();
    let map = engine.publish().expect("publish");
    let cold_publish_s = t.elapsed().as_secs_f64();
    let cold_cpu_s = cpu_s() - cpu0;
    assert_eq!(map.association_count(), n, "associations published");
    assert_eq!(map.name_count(), n, "names published");
    let map_heap = heap() - heap_before_publish;
    let engine_heap = heap_before_publish - heap0;
    let rss_growth_kib = rss_kib() - rss0;
    let https_requests = f.web.total_hits();
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let trust_map_bytes = size(f.work.join("trustmap.json"));
    let bundle_bytes = size(f.work.join("ca.pem"));
    drop(reports);

    let t = Instant::now();
    let (_, reports) = runtime.block_on(engine.round(engine.all_names()));
    let warm_round_s = t.elapsed().as_secs_f64();
    let warm_published = reports.iter().filter(|r| r.records.iter().any(|x| x.result.is_ok())).count();
    assert_eq!(warm_published, n, "names with a usable record, warm round");
    drop(map);
    let t = Instant::now();
    let map = engine.publish().expect("publish");
    let warm_publish_s = t.elapsed().as_secs_f64();
    assert_eq!(map.association_count(), n, "associations published (warm)");
    drop(engine);
    runtime.shutdown_timeout(Duration::from_secs(2));
    Figures {
        n,
        setup_s,
        cold_round_s,
        cold_cpu_s,
        cold_publish_s,
        warm_round_s,
        warm_publish_s,
        associations: map.association_count(),
        https_requests,
        trust_map_bytes,
        bundle_bytes,
        engine_heap,
        map_heap,
        rss_growth_kib,
    }
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
        Ok(mut child) => match support::wait_bounded(&mut child, PYTHON_LIMIT) {
            None => Err(format!("killed after {PYTHON_LIMIT:?}; log:\n{}", support::read_lossy(&log))),
            Some(status) => match std::fs::read_to_string(&out).ok().and_then(|t| serde_json::from_str(&t).ok()) {
                Some(v) => Ok(v),
                None => Err(format!("exited {status} without a result; log:\n{}", support::read_lossy(&log))),
            },
        },
    };
    PythonRun { n, result }
}

fn print_report(figures: &[Figures], python: Option<&PythonRun>, concurrency: usize) {
    println!();
    println!(
        "Trust sync, N names x TLSA 4 0 0 (P-256 leaf, RSA-2048 CA) in one signed zone; knotd + HTTPS on \
         loopback; Engine with 2 tokio workers, concurrency {concurrency}; {} cores:",
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1)
    );
    println!();
    println!(
        "| N | cold round | cold publish | cold total | names/s (cold) | cold CPU | warm round | warm publish | associations \
         | CA fetches | trust map file | CA bundle | Rust heap: schedule / map | RSS growth | fixture setup |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for f in figures {
        let cold = f.cold_round_s + f.cold_publish_s;
        println!(
            "| {} | {:.2} s | {:.2} s | **{:.2} s** | {:.0} | {:.2} s | {:.2} s | {:.2} s | {} | {} | {:.1} MiB | {:.1} KiB \
             | {:.1} / {:.1} MiB | {:.1} MiB | {:.1} s |",
            f.n,
            f.cold_round_s,
            f.cold_publish_s,
            cold,
            f.n as f64 / cold,
            f.cold_cpu_s,
            f.warm_round_s,
            f.warm_publish_s,
            f.associations,
            f.https_requests,
            mib(f.trust_map_bytes as f64),
            f.bundle_bytes as f64 / 1024.0,
            mib(f.engine_heap as f64),
            mib(f.map_heap as f64),
            f.rss_growth_kib as f64 / 1024.0,
            f.setup_s,
        );
    }
    if let Some(f) = figures.iter().find(|f| f.n == 10_000) {
        let cold = f.cold_round_s + f.cold_publish_s;
        println!();
        println!(
            "Target (issue 3): 10k names <= 10 s: cold round + publish took {cold:.2} s: {}",
            if cold <= 10.0 { "met" } else { "MISSED" }
        );
    }
    let Some(py) = python else { return };
    println!();
    println!("Side by side, same knotd and HTTPS server, N = {}:", py.n);
    println!();
    println!("| implementation | names | wall | per name | succeeded | DNSSEC seen as secure |");
    println!("|---|---|---|---|---|---|");
    if let Some(f) = figures.iter().find(|f| f.n == py.n) {
        let cold = f.cold_round_s + f.cold_publish_s;
        println!(
            "| rlm_rust sync (cold round + publish, concurrency {concurrency}) | {} | {:.2} s | {:.2} ms | {} | {} (validated locally from the root anchor) |",
            f.n,
            cold,
            cold * 1e3 / f.n as f64,
            f.associations,
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
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sizes = env_list("RLM_BENCH_SYNC_NAMES", &[1000, 10_000]);
    let concurrency = env_usize("RLM_BENCH_SYNC_CONCURRENCY", 32);
    let python_n = env_usize("RLM_BENCH_PYTHON_NAMES", 1000);
    let mut figures = Vec::new();
    let mut python = None;
    for n in sizes {
        let t = Instant::now();
        let f = fleet(n);
        let setup_s = t.elapsed().as_secs_f64();
        let fig = measure(&f, concurrency, setup_s);
        eprintln!(
            "N={n}: cold {:.2} s + {:.2} s publish, warm {:.2} s + {:.2} s",
            fig.cold_round_s, fig.cold_publish_s, fig.warm_round_s, fig.warm_publish_s
        );
        figures.push(fig);
        if n == python_n {
            eprintln!("N={n}: running the Python reference (scripts/bench-python-ref.sh)...");
            let run = python_reference(&f);
            if let Err(e) = &run.result {
                eprintln!("Python reference did not run: {e}");
            }
            python = Some(run);
        }
    }
    print_report(&figures, python.as_ref(), concurrency);
    println!();
    println!("load average at the end: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
}
