//! End-to-end cost of the module: sequential EAP-TLS authentications by `eapol_test`
//! against a real radiusd (no -X), with the module in post-auth and in the check-eap-tls
//! virtual server, in post-auth only, and not called at all. Also the server's RSS over
//! many authentications with the module (a leak shows up as growth).
//!
//! `cargo bench --bench eap_tls` (RLM_BENCH_AUTHS=200, RLM_BENCH_RSS_AUTHS=1000 by default).
//! Under `cargo test` it does nothing: timings are not tests.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use support::pki::CAR54;
use support::radiusd::{Lab, Options, Radiusd};
use support::trustmap::{json_policy, Role};

const SSID: &str = "Cars-WiFi";

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(rd: &Radiusd) -> u64 {
    rd.pid().map(|pid| support::rss_kib(&pid.to_string())).unwrap_or(0)
}

fn cpu_ticks(rd: &Radiusd) -> u64 {
    let Some(pid) = rd.pid() else { return 0 };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

struct Run {
    label: &'static str,
    median_ms: f64,
    p90_ms: f64,
    server_cpu_ms: f64,
}

fn measure(label: &'static str, opts: Options, n: usize) -> Run {
    let mut lab = Lab::new(Options { debug: false, ..opts });
    let dev = lab.cars_device("car54", CAR54);
    lab.pin(&json_policy("bench", &[Role { ssid: SSID, members: &[CAR54], reply: &[] }]), &[dev.chain.as_path()]);
    let rd = lab.start();
    let s = lab.supplicant(&dev, SSID);
    for _ in 0..5 {
        lab.eapol(&s).assert_accepted();
    }
    let cpu0 = cpu_ticks(&rd);
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        lab.eapol(&s).assert_accepted();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = (cpu_ticks(&rd) - cpu0) as f64 * 1000.0 / 100.0; // USER_HZ = 100
    ms.sort_by(f64::total_cmp);
    Run { label, median_ms: ms[ms.len() / 2], p90_ms: ms[ms.len() * 9 / 10], server_cpu_ms: cpu / n as f64 }
}

fn rss_over(label: &str, opts: Options, n: usize) {
    let mut lab = Lab::new(Options { debug: false, ..opts });
    let dev = lab.cars_device("car54", CAR54);
    let intruder = lab.meters_device("car54m", CAR54);
    lab.pin(&json_policy("bench", &[Role { ssid: SSID, members: &[CAR54], reply: &[] }]), &[dev.chain.as_path()]);
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

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = env_usize("RLM_BENCH_AUTHS", 200);
    let runs = [
        measure("module in check-eap-tls + post-auth (shipped)", Options::default(), n),
        measure("module in post-auth only", Options { virtual_server: false, ..Options::default() }, n),
        measure(
            "module loaded, not called",
            Options { virtual_server: false, post_auth: false, ..Options::default() },
            n,
        ),
    ];
    println!("{n} sequential EAP-TLS auths (eapol_test, TLS 1.2, P-256), radiusd without -X:");
    println!("| configuration | median ms/auth | p90 ms/auth | radiusd CPU ms/auth |");
    println!("|---|---|---|---|");
    for r in &runs {
        println!("| {} | {:.2} | {:.2} | {:.2} |", r.label, r.median_ms, r.p90_ms, r.server_cpu_ms);
    }
    let rss_n = env_usize("RLM_BENCH_RSS_AUTHS", 1000);
    rss_over("module called (shipped)", Options::default(), rss_n);
    rss_over(
        "control: module not called",
        Options { virtual_server: false, post_auth: false, ..Options::default() },
        rss_n,
    );
}
