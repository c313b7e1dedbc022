//! End-to-end cost of the module: sequential EAP-TLS authentications by `eapol_test`
//! against a real radiusd (no -X), with the module in post-auth and in the check-eap-tls
//! virtual server, in post-auth only, loaded but not called, and not there at all. The
//! module, once loaded, hooks the eap module's TLS context: every full handshake captures
//! digests of the verified chain (csrc/tls_hook.c) whether or not the module is called, so
//! "loaded, not called" minus "no rlm_rust" is the hook's cost per handshake. The four
//! radiusd run side by side, the authentications are interleaved, and the measurement is
//! repeated in blocks with the start order rotated (see [`measure`]). Also the server's RSS
//! over many authentications with the module (a leak shows up as growth).
//!
//! `cargo bench --bench eap_tls`. Environment: `RLM_BENCH_AUTHS` (200) authentications per
//! configuration (rounded up to a multiple of the blocks); `RLM_BENCH_BLOCKS` (16) fresh
//! sets of radiusd it is spread over; `RLM_BENCH_RSS_AUTHS` (1000) authentications of the
//! RSS runs.
//! Under `cargo test` it does nothing: timings are not tests.

use std::time::Instant;

use testkit::eapol::Supplicant;
use testkit::pki::CAR54;
use testkit::radiusd::{Lab, Options, Radiusd};
use testkit::trustmap::{json_policy, Role};

const SSID: &str = "Cars-WiFi";

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(rd: &Radiusd) -> u64 {
    rd.pid().map(|pid| testkit::rss_kib(&pid.to_string())).unwrap_or(0)
}

/// CPU time radiusd has used, in ns: the sum of its threads' run time (schedstat, ns
/// resolution); utime + stime in clock ticks (10 ms) where schedstat is missing.
fn cpu_ns(rd: &Radiusd) -> u64 {
    let Some(pid) = rd.pid() else { return 0 };
    let sched: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
                .sum()
        })
        .unwrap_or(0);
    if sched > 0 {
        return sched;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    ticks * 10_000_000 // USER_HZ = 100
}

/// Page faults (minor + major) radiusd has taken.
fn faults(rd: &Radiusd) -> u64 {
    let Some(pid) = rd.pid() else { return 0 };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the ")": minflt is the 8th field, majflt the 10th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    [7, 9].iter().filter_map(|i| f.get(*i).and_then(|v| v.parse::<u64>().ok())).sum()
}

/// One configuration's lab, radiusd and supplicant.
struct Subject {
    config: usize,
    lab: Lab,
    rd: Radiusd,
    supplicant: Supplicant,
}

fn subject(config: usize, label: &str, opts: &Options) -> Subject {
    let mut lab = Lab::new(Options { debug: false, ..opts.clone() });
    let dev = lab.cars_device("car54", CAR54);
    lab.write_map(&json_policy("bench", &[Role { ssid: SSID, members: &[CAR54], reply: &[] }]), &[dev.chain.as_path()]);
    let rd = lab.start();
    let supplicant = lab.supplicant(&dev, SSID);
    // The configuration is what it says: the hook is installed exactly when the module is.
    let module = lab.raddb.join("mods-enabled/rust").exists();
    let hooked = rd.log().contains("rlm_rust: verification hook installed on ");
    assert_eq!((module, hooked), (lab.opts.rust_module, lab.opts.rust_module), "{label}:\n{}", rd.log());
    if !lab.opts.post_auth && !lab.opts.virtual_server {
        let site = std::fs::read_to_string(lab.raddb.join("sites-enabled/dane-eap-tls")).expect("site");
        assert!(!site.lines().any(|l| l.trim() == "rust"), "{label}: the site still calls the module:\n{site}");
    }
    Subject { config, lab, rd, supplicant }
}

/// What one configuration measured, over all blocks.
#[derive(Default)]
struct Samples {
    ms: Vec<f64>,
    /// radiusd CPU per authentication, us (read before and after each one).
    cpu_us: Vec<f64>,
    /// radiusd CPU from warm-up end to block end, all blocks (ns).
    cpu_total_ns: u64,
    faults: u64,
    /// The median CPU per auth of each block (us).
    block_cpu_us: Vec<f64>,
}

struct Run {
    label: String,
    median_ms: f64,
    p90_ms: f64,
    /// Total radiusd CPU over the run / authentications.
    server_cpu_ms: f64,
    /// Median of the per-authentication radiusd CPU.
    server_cpu_median_ms: f64,
    faults_per_auth: f64,
    block_cpu_us: Vec<f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// About `n` authentications per configuration, in `blocks` blocks. Each block starts a
/// fresh radiusd per configuration, in an order rotated by one per block (every
/// configuration is started first, second, ... equally often), and interleaves their
/// authentications (one of each in turn, the order rotating), so neither a change of
/// background load nor the start order favours a configuration. Many blocks, because one
/// radiusd process differs from the next: the same configuration measured 3.5 to 6.3 ms
/// CPU per auth from one start to the next on this machine, far more than the hook costs.
fn measure(configs: &[(&str, Options)], n: usize, blocks: usize) -> Vec<Run> {
    let k = configs.len();
    let rounds = n.div_ceil(blocks).max(1);
    let mut acc: Vec<Samples> = (0..k).map(|_| Samples::default()).collect();
    for block in 0..blocks {
        let mut subjects: Vec<Subject> =
            (0..k).map(|j| (j + block) % k).map(|c| subject(c, configs[c].0, &configs[c].1)).collect();
        let mut start = Vec::with_capacity(k);
        for s in &subjects {
            for _ in 0..5 {
                s.lab.eapol(&s.supplicant).assert_accepted();
            }
            start.push((cpu_ns(&s.rd), faults(&s.rd)));
        }
        let mut block_cpu: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); k];
        for i in 0..rounds {
            for j in 0..k {
                let s = &mut subjects[(i + j) % k];
                let c = cpu_ns(&s.rd);
                let t = Instant::now();
                s.lab.eapol(&s.supplicant).assert_accepted();
                acc[s.config].ms.push(t.elapsed().as_secs_f64() * 1e3);
                let us = cpu_ns(&s.rd).saturating_sub(c) as f64 / 1e3;
                acc[s.config].cpu_us.push(us);
                block_cpu[s.config].push(us);
            }
        }
        for (s, (cpu0, faults0)) in subjects.iter().zip(start) {
            let a = &mut acc[s.config];
            a.cpu_total_ns += cpu_ns(&s.rd).saturating_sub(cpu0);
            a.faults += faults(&s.rd).saturating_sub(faults0);
            a.block_cpu_us.push(median(&mut block_cpu[s.config]));
        }
    }
    acc.into_iter()
        .zip(configs)
        .map(|(mut a, (label, _))| {
            let auths = a.ms.len() as f64;
            a.ms.sort_by(f64::total_cmp);
            Run {
                label: label.to_string(),
                median_ms: a.ms[a.ms.len() / 2],
                p90_ms: a.ms[a.ms.len() * 9 / 10],
                server_cpu_ms: a.cpu_total_ns as f64 / 1e6 / auths,
                server_cpu_median_ms: median(&mut a.cpu_us) / 1e3,
                faults_per_auth: a.faults as f64 / auths,
                block_cpu_us: a.block_cpu_us,
            }
        })
        .collect()
}

fn rss_over(label: &str, opts: Options, n: usize) {
    let mut lab = Lab::new(Options { debug: false, ..opts });
    let dev = lab.cars_device("car54", CAR54);
    let intruder = lab.meters_device("car54m", CAR54);
    lab.write_map(&json_policy("bench", &[Role { ssid: SSID, members: &[CAR54], reply: &[] }]), &[dev.chain.as_path()]);
    let rd = lab.start();
    let (good, bad) = (lab.supplicant(&dev, SSID), lab.supplicant(&intruder, SSID));
    for _ in 0..20 {
        lab.eapol(&good).assert_accepted();
    }
    let start = rss_kib(&rd);
    let mut points = vec![(0, start)];
    let t = Instant::now();
    for i in 1..=n {
        // Every 4th authentication is a cross-domain certificate: rejected when the module
        // is called, accepted by TLS alone when it is not (the control run).
        if i % 4 == 0 {
            let r = lab.eapol(&bad);
            assert_eq!(r.accepted, !(lab.opts.post_auth || lab.opts.virtual_server), "{}", r.tail());
        } else {
            lab.eapol(&good).assert_accepted();
        }
        if i % (n / 5).max(1) == 0 {
            points.push((i, rss_kib(&rd)));
        }
    }
    let end = rss_kib(&rd);
    println!(
        "RSS of radiusd, {label}, over {n} auths ({:.0} s, 1 in 4 cross-domain): {}",
        t.elapsed().as_secs_f64(),
        points.iter().map(|(i, kib)| format!("{i}: {kib} KiB")).collect::<Vec<_>>().join(", ")
    );
    println!("RSS growth after warm-up, {label}: {} KiB", end as i64 - start as i64);
}

fn print_table(runs: &[Run]) {
    println!(
        "| configuration | median ms/auth | p90 ms/auth | radiusd CPU ms/auth: mean / median | page faults/auth |"
    );
    println!("|---|---|---|---|---|");
    for r in runs {
        println!(
            "| {} | {:.2} | {:.2} | {:.3} / {:.3} | {:.1} |",
            r.label, r.median_ms, r.p90_ms, r.server_cpu_ms, r.server_cpu_median_ms, r.faults_per_auth
        );
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = env_usize("RLM_BENCH_AUTHS", 200);
    let cores = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1);
    // Not called anywhere: no check-eap-tls virtual server, no post-auth call, and not the
    // authorize call either (which hands names admitted by a domain entry to the sync).
    let authorize_call = "\t\t#  nothing here (\"noop\").\n\t\t#\n\t\trust\n";
    let not_called = Options {
        virtual_server: false,
        post_auth: false,
        site_edits: vec![(authorize_call.into(), authorize_call.replace("\t\trust\n", ""))],
        ..Options::default()
    };
    let configs = [
        ("module in check-eap-tls + post-auth (shipped)", Options::default()),
        ("module in post-auth only", Options { virtual_server: false, ..Options::default() }),
        ("module loaded, not called (TLS hook on)", not_called.clone()),
        ("no rlm_rust (no module, no hook)", Options { rust_module: false, ..not_called.clone() }),
    ];
    let blocks = env_usize("RLM_BENCH_BLOCKS", 16).max(1);
    let load_before = loadavg();
    let runs = measure(&configs, n, blocks);
    let per_config = n.div_ceil(blocks).max(1) * blocks;
    println!(
        "{per_config} sequential EAP-TLS auths per configuration (eapol_test, TLS 1.2, P-256), radiusd without -X, \
         in {blocks} blocks (fresh radiusd per block, start order rotated), configurations interleaved, {cores} cores:"
    );
    print_table(&runs);
    let (hooked, bare) = (&runs[2], &runs[3]);
    let diffs: Vec<f64> = hooked.block_cpu_us.iter().zip(&bare.block_cpu_us).map(|(h, b)| h - b).collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (diffs.len().max(2) - 1) as f64;
    println!(
        "TLS hook, end to end (module loaded and not called minus no rlm_rust): wall median {:+.3} ms/auth; \
         radiusd CPU {:+.1} us/auth (mean), {:+.1} us/auth (median); per block (median CPU): mean {mean:+.0} us, \
         standard error {:.0} us over {} blocks",
        hooked.median_ms - bare.median_ms,
        (hooked.server_cpu_ms - bare.server_cpu_ms) * 1e3,
        (hooked.server_cpu_median_ms - bare.server_cpu_median_ms) * 1e3,
        (var / diffs.len() as f64).sqrt(),
        diffs.len()
    );
    for r in &runs {
        let b: Vec<String> = r.block_cpu_us.iter().map(|us| format!("{:.0}", us)).collect();
        println!("median CPU us/auth per block, {}: {}", r.label, b.join(" "));
    }
    println!("load average before: {load_before}; after: {}", loadavg());

    let rss_n = env_usize("RLM_BENCH_RSS_AUTHS", 1000);
    rss_over("module called (shipped)", Options::default(), rss_n);
    rss_over("control: module loaded, not called", not_called, rss_n);
}
