//! The request-path check against trust maps of 100k and 1M names, and the per-handshake
//! capture work of the TLS hook reproduced in Rust.
//!
//! Every name has one certificate association, the mix a fleet publishes: 9 in 10 a
//! `4 0 0` (PKIX-CD, the whole certificate), 1 in 10 a `3 1 1` (DANE-EE, SHA-256 of the
//! key). Each request is what radiusd hands the module: User-Name, Called-Station-Id and
//! the digests the TLS hook captured for a 2-certificate verified chain (leaf + device CA:
//! SHA-256 and SHA-512 of each certificate and of its SubjectPublicKeyInfo, and the leaf's
//! SAN). One call is what `rlm_rust_check` does with them: validate the capture
//! (`PresentedCert::from_capture`) and decide (`check::check`). The digests are synthetic
//! (uniformly random, as real ones are): the check only compares them.
//!
//! Requests cycle through up to 100k different names spread over the whole map, so the
//! hash tables are read the way a busy server reads them, not from a warm cache line (the
//! per-call pass also times 1,000 names cycled, the warm-cache case, for comparison).
//! Criterion gives the central figures; a second pass times single calls to print the
//! median and p99 per call (each sample includes one `Instant::now()` pair, whose own cost
//! is printed too).
//!
//! "hook capture": `CapturedChain::of` on a real P-256 leaf + P-256 CA chain, the Rust
//! equivalent of what `csrc/tls_hook.c` does per full handshake (DER-encode each
//! certificate and its key, four digests each, read the leaf's SAN dNSNames).
//!
//! `cargo bench --bench check`; `RLM_BENCH_CHECK_NAMES` (default `100000,1000000`) sets the
//! map sizes. Under `cargo test` every benchmark runs once against a 1,000-name map and
//! nothing is timed.
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn
#![allow(unsafe_code)] // a counting allocator and malloc_trim

use testkit::capki;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use openssl::hash::{hash, MessageDigest};

use rlm_rust::model::association::{Association, Digest, Matching, Selector, Usage};
use rlm_rust::model::digests::OwnedDigests;
use rlm_rust::model::policy::{Entry, Policy, ReplyAttr};
use rlm_rust::model::trustmap::{NameEntry, TrustMap};
use rlm_rust::request::check::{check, Decision, Reason, Request};
use rlm_rust::request::presented::{CapturedChain, PresentedCert, RawCapture, Source};

/// Live bytes and blocks of the Rust heap: what the trust map holds, without the
/// temporaries built on the way (which glibc keeps in the process after they are freed).
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

fn count(bytes: isize, blocks: isize) {
    LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
    LIVE_BLOCKS.fetch_add(blocks, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            count(layout.size() as isize, 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        count(-(layout.size() as isize), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize, 0);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// glibc's cost of one heap block beyond its requested size: an 8-byte header, and the
/// size rounded up to 16 (8 bytes on average).
const MALLOC_OVERHEAD: f64 = 16.0;

fn heap() -> (isize, isize) {
    (LIVE_BYTES.load(Ordering::Relaxed), LIVE_BLOCKS.load(Ordering::Relaxed))
}

/// The resident set once glibc has handed the freed temporaries back to the kernel.
fn trimmed_rss_mib() -> f64 {
    // SAFETY: malloc_trim only releases free memory of the allocator; no pointer is involved.
    unsafe { libc::malloc_trim(0) };
    rss_mib()
}

const STATION: &str = "00-00-00-00-00-01:FLEET";
const FLEETS: usize = 100;
/// Most distinct names the requests cycle through.
const MAX_SAMPLES: usize = 100_000;
/// Per-call timing pass: calls per case.
const TIMED_CALLS: usize = 400_000;

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn sizes() -> Vec<usize> {
    if !bench_mode() {
        return vec![1000];
    }
    match std::env::var("RLM_BENCH_CHECK_NAMES") {
        Ok(v) => v.split([',', ' ']).filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => vec![100_000, 1_000_000],
    }
}

fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

/// This process's resident set, MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
    kib.and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

fn name(i: usize) -> String {
    format!("dev{i}._device.fleet{}.example", i % FLEETS)
}

/// splitmix64: deterministic, uniformly distributed bytes for synthetic digests.
fn fill(seed: u64, out: &mut [u8]) {
    let mut s = seed;
    for chunk in out.chunks_mut(8) {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

/// The digests of a synthetic certificate (`kind` separates leaves, CAs and forgeries).
fn digests(kind: u64, i: usize) -> OwnedDigests {
    let seed = (kind << 40) ^ (i as u64).wrapping_mul(4);
    let mut d = OwnedDigests { cert_sha256: [0; 32], cert_sha512: [0; 64], spki_sha256: [0; 32], spki_sha512: [0; 64] };
    fill(seed, &mut d.cert_sha256);
    fill(seed + 1, &mut d.cert_sha512);
    fill(seed + 2, &mut d.spki_sha256);
    fill(seed + 3, &mut d.spki_sha512);
    d
}

const LEAF: u64 = 1;
const FLEET_CA: u64 = 2;
const FORGED_LEAF: u64 = 3;
const OTHER_CA: u64 = 4;

/// What DNS publishes for device `i`: mostly `4 0 0`, one name in ten `3 1 1`.
fn association(i: usize) -> Association {
    let leaf = digests(LEAF, i);
    if i % 10 == 9 {
        Association {
            usage: Usage::DaneEe,
            selector: Selector::Spki,
            matching: Matching::Sha256,
            digest: Digest::Sha256(leaf.spki_sha256),
            not_after: None,
        }
    } else {
        // Matching type 0: the map keeps the SHA-256 of the certificate, what the hook captures.
        Association {
            usage: Usage::PkixCd,
            selector: Selector::Cert,
            matching: Matching::Full,
            digest: Digest::Sha256(leaf.cert_sha256),
            not_after: Some(1_900_000_000),
        }
    }
}

/// One SSID allowing each of the `n` names by its own (exact) entry, with a VLAN reply.
fn build_map(n: usize) -> TrustMap {
    let reply = [ReplyAttr { attribute: "Tunnel-Private-Group-Id".into(), value: "10".into() }];
    let mut policy = Policy::default();
    let mut names = BTreeMap::new();
    for i in 0..n {
        policy.allow("FLEET", Entry::Name(name(i)), &reply).expect("a new entry");
        names.insert(name(i), NameEntry { associations: vec![association(i)].into(), ..Default::default() });
    }
    TrustMap::new(policy, names, 1, 0)
}

/// One request's attribute values as radiusd holds them (owned; borrowed per call).
struct Sample {
    user: String,
    chain: [OwnedDigests; 2],
}

/// Device `i` presenting its own certificate (issued by its fleet's CA).
fn legit(i: usize) -> Sample {
    Sample { user: name(i), chain: [digests(LEAF, i), digests(FLEET_CA, i % FLEETS)] }
}

/// A cross-domain certificate for device `i`'s name: another CA issued it, so it has
/// other digests than the one DNS publishes.
fn forged(i: usize) -> Sample {
    Sample { user: name(i), chain: [digests(FORGED_LEAF, i), digests(OTHER_CA, 0)] }
}

/// Devices spread over the whole map (7919 is prime, so at most one of each).
fn spread(n: usize) -> impl Iterator<Item = usize> {
    (0..n.min(MAX_SAMPLES)).map(move |k| k * 7919 % n)
}

/// What `rlm_rust_check` does: borrow the captured values, validate them, decide.
#[inline(always)]
fn decide<'m>(map: &'m TrustMap, s: &Sample) -> Decision<'m> {
    let [leaf, ca] = &s.chain;
    let c256: [&[u8]; 2] = [&leaf.cert_sha256, &ca.cert_sha256];
    let c512: [&[u8]; 2] = [&leaf.cert_sha512, &ca.cert_sha512];
    let s256: [&[u8]; 2] = [&leaf.spki_sha256, &ca.spki_sha256];
    let s512: [&[u8]; 2] = [&leaf.spki_sha512, &ca.spki_sha512];
    let san: [&[u8]; 1] = [s.user.as_bytes()];
    let raw = RawCapture {
        source: Some(Source::Handshake),
        cert_sha256: &c256,
        cert_sha512: &c512,
        spki_sha256: &s256,
        spki_sha512: &s512,
        san_dns: &san,
        chain_length: Some(2),
    };
    let req =
        Request { user_name: Some(&s.user), called_station_id: Some(STATION), cert: PresentedCert::from_capture(&raw) };
    check(Some(map), black_box(&req))
}

struct Percentiles {
    median: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

fn percentiles(mut ns: Vec<u64>) -> Percentiles {
    ns.sort_unstable();
    let pct = |p: f64| ns[((ns.len() as f64 - 1.0) * p) as usize];
    Percentiles { median: pct(0.5), p99: pct(0.99), p999: pct(0.999), max: ns[ns.len() - 1] }
}

/// Times single calls over `samples` (cycled), `TIMED_CALLS` in all.
fn per_call(map: &TrustMap, samples: &[Sample]) -> Percentiles {
    let mut ns = Vec::with_capacity(TIMED_CALLS);
    for k in 0..TIMED_CALLS {
        let s = &samples[k % samples.len()];
        let t = Instant::now();
        black_box(decide(map, black_box(s)));
        ns.push(t.elapsed().as_nanos() as u64);
    }
    percentiles(ns)
}

fn bench_check_at(c: &mut Criterion, n: usize, report: &mut Vec<String>) {
    let (t, rss0, heap0) = (Instant::now(), trimmed_rss_mib(), heap());
    let map = build_map(n);
    let build_s = t.elapsed().as_secs_f64();
    let (map_mib, heap1) = (trimmed_rss_mib() - rss0, heap());
    let (bytes, blocks) = ((heap1.0 - heap0.0) as f64, (heap1.1 - heap0.1) as f64);
    let per_name = (bytes + blocks * MALLOC_OVERHEAD) / n as f64;
    assert_eq!(map.association_count(), n);
    let accepts: Vec<Sample> = spread(n).map(legit).collect();
    let rejects: Vec<Sample> = spread(n).map(forged).collect();
    // Sanity: the synthetic requests get the decision they are meant to measure (a bench of
    // early rejects would be cheaper), for both kinds of association.
    // Devices 0 and 9 are a `4 0 0` and a `3 1 1` name.
    for s in accepts.iter().take(20).chain([&legit(0), &legit(9)]) {
        assert!(matches!(decide(&map, s), Decision::Accept { .. }), "{} must be accepted", s.user);
    }
    for s in rejects.iter().take(20).chain([&forged(0), &forged(9)]) {
        assert_eq!(decide(&map, s), Decision::Reject(Reason::NoAssociationMatch), "{} must be rejected", s.user);
    }
    let l = label(n);
    report.push(format!(
        "{l} names: trust map built in {build_s:.1} s; it holds {per_name:.0} bytes per name ({:.0} heap bytes in \
         {:.1} blocks per name, each block +{MALLOC_OVERHEAD} for malloc), process RSS +{map_mib:.0} MiB \
         ({:.0} bytes per name, policy and trust map); requests cycle through {} names",
        bytes / n as f64,
        blocks / n as f64,
        map_mib * 1048576.0 / n as f64,
        accepts.len()
    ));
    eprintln!("{}", report[report.len() - 1]);

    let mut k = 0;
    c.bench_function(&format!("check accept, {l} names"), |b| {
        b.iter(|| {
            let s = &accepts[k % accepts.len()];
            k += 1;
            black_box(decide(&map, black_box(s)))
        })
    });
    let mut k = 0;
    c.bench_function(&format!("check reject (cross-domain: the name, another certificate), {l} names"), |b| {
        b.iter(|| {
            let s = &rejects[k % rejects.len()];
            k += 1;
            black_box(decide(&map, black_box(s)))
        })
    });

    // Per-call percentiles (only under `cargo bench`: `cargo test` runs benches once, as smoke tests).
    if !bench_mode() {
        return;
    }
    let hot = &accepts[..accepts.len().min(1000)];
    for (case, samples) in [
        (format!("accept, requests over {} names", accepts.len()), &accepts[..]),
        (format!("reject cross-domain, requests over {} names", rejects.len()), &rejects[..]),
        (format!("accept, requests over {} names (warm cache)", hot.len()), hot),
    ] {
        let p = per_call(&map, samples);
        report.push(format!(
            "check {l} names, {case}, per call over {TIMED_CALLS} calls: median {} ns, p99 {} ns, p99.9 {} ns, \
             max {} ns",
            p.median, p.p99, p.p999, p.max
        ));
    }
}

/// The Rust equivalent of the hook's per-handshake work, on a real chain.
fn bench_capture(c: &mut Criterion) {
    const CAR54: &str = "car54._device.cars.example";
    let ca = capki::issue(&capki::Spec::ca("Cars Inc", "Cars Device CA"), None);
    let leaf = capki::issue(&capki::Spec::leaf("Cars Inc", CAR54), Some(&ca));
    let chain = [leaf.cert.clone(), ca.cert.clone()];
    // Sanity: what is captured matches the association DNS would publish for the leaf.
    let captured = CapturedChain::of(&chain).expect("capture");
    let published =
        Association::from_data(Usage::PkixCd, Selector::Cert, Matching::Full, &leaf.cert.to_der().expect("der"), None)
            .expect("association");
    assert!(captured.with_presented(|p| published.matches(&p.expect("valid capture"), CAR54)));
    assert_eq!(captured.san_dns, vec![CAR54.as_bytes().to_vec()]);
    c.bench_function("hook capture, Rust equivalent of tls_hook.c: CapturedChain::of (P-256 leaf + P-256 CA)", |b| {
        b.iter(|| black_box(CapturedChain::of(black_box(&chain)).expect("capture")))
    });
    // Where that goes: the capture makes 8 such calls (EVP_Digest in the C hook).
    let der = leaf.cert.to_der().expect("der");
    for (label, md) in [("SHA-256", MessageDigest::sha256()), ("SHA-512", MessageDigest::sha512())] {
        c.bench_function(&format!("hook capture, part: one {label} of the leaf DER ({} bytes)", der.len()), |b| {
            b.iter(|| black_box(hash(md, black_box(&der)).expect("digest")))
        });
    }
}

/// The cost of one memory read the CPU cannot predict, what a lookup in a table far larger
/// than the caches pays per dependent step: a random cyclic walk through 256 MiB (Sattolo's
/// shuffle, so one cycle covers every slot), nanoseconds per step.
fn dependent_read_ns() -> f64 {
    const SLOTS: usize = 64 << 20;
    let mut next: Vec<u32> = (0..SLOTS as u32).collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in (1..SLOTS).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        next.swap(i, (seed % i as u64) as usize);
    }
    const STEPS: usize = 2_000_000;
    let (mut at, t) = (0u32, Instant::now());
    for _ in 0..STEPS {
        at = next[at as usize];
    }
    black_box(at);
    t.elapsed().as_nanos() as f64 / STEPS as f64
}

fn bench_all(c: &mut Criterion) {
    let mut report = Vec::new();
    for n in sizes() {
        bench_check_at(c, n, &mut report);
    }
    bench_capture(c);
    if bench_mode() {
        let ns: Vec<u64> = (0..TIMED_CALLS)
            .map(|_| {
                let t = Instant::now();
                black_box(());
                t.elapsed().as_nanos() as u64
            })
            .collect();
        let p = percentiles(ns);
        println!();
        for line in &report {
            println!("{line}");
        }
        println!("(an empty Instant::now() pair alone: median {} ns, p99 {} ns)", p.median, p.p99);
        println!(
            "one dependent read at a random place in 256 MiB (what each step of a lookup in a table \
             far larger than the caches costs here): {:.0} ns",
            dependent_read_ns()
        );
        println!("load average: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    }
}

criterion_group!(benches, bench_all);
criterion_main!(benches);
