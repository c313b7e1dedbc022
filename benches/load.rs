//! Load and reliability: K concurrent `eapol_test` supplicants (real EAP-TLS) against a real
//! radiusd while another thread replaces the trust map file 100 times a second, with the
//! module polling it every 5 ms (`reload_interval = 0.005`, the shortest it accepts).
//!
//! Policy: Cars-WiFi allows car1, car2, car3 (and, in half of the maps, a decoy car9);
//! Meters-WiFi allows meter7. Eight supplicant cases, half of them legitimate:
//!
//! | case | expected |
//! |---|---|
//! | car1, car2 (Cars Device CA) on Cars-WiFi | accept |
//! | meter7 (Meters Device CA) on Meters-WiFi | accept |
//! | car1, car2 with a Meters Device CA certificate (cross-domain) | reject |
//! | meter7 on Cars-WiFi (name not allowed) | reject |
//! | car3 with a Meters Device CA certificate (cross-domain) | reject |
//! | car3 (Cars Device CA) on Cars-WiFi | accept under "allow" maps, reject under "deny" maps |
//!
//! The swapper writes (temp file + rename, as the sync does) one of four maps every 10 ms,
//! each with a fresh `generation`: it alternates between two variants (with and without the
//! decoy, so the files really differ) of the current *kind*, and the kind flips between
//! "allow" (car3's certificate published) and "deny" (car3 allowed, nothing published for
//! it) every `FLIP_MS`. Every case but the flapping car3 has the same verdict under all
//! four maps. A decision counts as wrong only when it is wrong under every map that could
//! have been live during the authentication: the kinds on disk from `SLACK_MS` before it
//! started to its end. The slack is justified by the measured reload latency of the -X
//! phase (asserted below it).
//!
//! Phase 1 (radiusd without -X): throughput, wrong decisions (asserted 0), unclean outcomes
//! (a reject without EAP-Failure, a timeout: asserted 0), crash (`kill -0`, asserted
//! alive), RSS every second, file replacements per second, and the module's reloads per
//! second counted from its "loaded trust map" lines (radiusd logs them at info level).
//! Phase 2 (`freeradius -X`, shorter): the same load; the module's "loaded trust map
//! (generation N)" lines are timestamped by a log tailer, giving reloads per second, the
//! write-to-live latency, and that generations only move forward; its decision lines are
//! counted against the supplicants' outcomes.
//!
//! In the server log an accepted authentication shows two module accept lines (the
//! check-eap-tls virtual server, then post-auth) and two "Login OK"; a rejected one one
//! module reject line (the virtual server refuses, post-auth is not reached) and two
//! "Login incorrect". `RLM_LOAD_SWAP_HZ=0` is the control run without replacements.
//! The module polls every 5 ms (`MIN_RELOAD`, the shortest it accepts), so nearly every
//! one of the 100 file replacements a second becomes live; each live one is a different
//! generation.
//!
//! `cargo bench --bench load`. Environment (defaults give ~60 s in all):
//! - `RLM_LOAD_WORKERS` (8): parallel supplicants;
//! - `RLM_LOAD_SECS` (40), `RLM_LOAD_DEBUG_SECS` (10, 0 = skip phase 2): phase lengths;
//! - `RLM_LOAD_MAX_AUTHS` (100000): a cap on authentications per phase;
//! - `RLM_LOAD_SWAP_HZ` (100): trust map file replacements per second (0: none);
//! - `RLM_LOAD_FLIP_MS` (2000): how long each kind (allow / deny car3) stays on disk;
//! - `RLM_LOAD_SLACK_MS` (500): how far back a written map counts as possibly live.
//!
//! Under `cargo test` it does nothing: timings are not tests.
#![allow(unsafe_code)] // kill(pid, 0) to see radiusd alive

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use testkit::eapol::{self, EapolResult, Supplicant};
use testkit::pki::Device;
use testkit::radiusd::{Lab, Options};
use testkit::trustmap::{json_policy, replace_atomically, Role};

const CARS_WIFI: &str = "Cars-WiFi";
const METERS_WIFI: &str = "Meters-WiFi";
const CAR1: &str = "car1._device.cars.example";
const CAR2: &str = "car2._device.cars.example";
const CAR3: &str = "car3._device.cars.example";
const CAR9: &str = "car9._device.cars.example";
const METER7: &str = "meter7._device.meters.example";

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Which trust maps are on disk: car3's certificate association in the map ("allow") or
/// car3 allowed with no association ("deny").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Allow,
    Deny,
}

/// What a case should get.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The same verdict under every map (true = accept).
    Always(bool),
    /// Accept under "allow" maps, reject under "deny" maps.
    Flapping,
}

impl Expect {
    fn verdict(self, kind: Kind) -> bool {
        match self {
            Expect::Always(v) => v,
            Expect::Flapping => kind == Kind::Allow,
        }
    }
}

struct Case {
    label: &'static str,
    supplicant: Supplicant,
    expect: Expect,
}

/// The four maps (kind x variant) as JSON values; the swapper stamps a generation on each.
struct Maps {
    by_kind: BTreeMap<(Kind, bool), serde_json::Value>,
}

struct Devices {
    car1: Device,
    car2: Device,
    car3: Device,
    car9: Device,
    meter7: Device,
    car1x: Device,
    car2x: Device,
    car3x: Device,
}

fn devices(lab: &Lab) -> Devices {
    Devices {
        car1: lab.cars_device("car1", CAR1),
        car2: lab.cars_device("car2", CAR2),
        car3: lab.cars_device("car3", CAR3),
        car9: lab.cars_device("car9", CAR9),
        meter7: lab.meters_device("meter7", METER7),
        car1x: lab.meters_device("car1x", CAR1),
        car2x: lab.meters_device("car2x", CAR2),
        car3x: lab.meters_device("car3x", CAR3),
    }
}

fn cases(lab: &Lab, d: &Devices) -> Vec<Case> {
    let c = |label, dev: &Device, ssid, expect| Case { label, supplicant: lab.supplicant(dev, ssid), expect };
    vec![
        c("car1 legit", &d.car1, CARS_WIFI, Expect::Always(true)),
        c("car1 cross-domain", &d.car1x, CARS_WIFI, Expect::Always(false)),
        c("car2 legit", &d.car2, CARS_WIFI, Expect::Always(true)),
        c("car2 cross-domain", &d.car2x, CARS_WIFI, Expect::Always(false)),
        c("meter7 legit", &d.meter7, METERS_WIFI, Expect::Always(true)),
        c("meter7 not allowed on Cars-WiFi", &d.meter7, CARS_WIFI, Expect::Always(false)),
        c("car3 flapping", &d.car3, CARS_WIFI, Expect::Flapping),
        c("car3 cross-domain", &d.car3x, CARS_WIFI, Expect::Always(false)),
    ]
}

/// Writes the four maps with the real CLI (`rlm-rust map`) and reads them back as JSON.
fn make_maps(lab: &Lab, d: &Devices) -> Maps {
    let mut by_kind = BTreeMap::new();
    for kind in [Kind::Allow, Kind::Deny] {
        for decoy in [false, true] {
            let mut cars = vec![CAR1, CAR2, CAR3];
            let mut chains = vec![d.car1.chain.as_path(), d.car2.chain.as_path(), d.meter7.chain.as_path()];
            if kind == Kind::Allow {
                chains.push(d.car3.chain.as_path());
            }
            if decoy {
                cars.push(CAR9);
                chains.push(d.car9.chain.as_path());
            }
            let policy = json_policy(
                &format!("load-{kind:?}-{decoy}"),
                &[
                    Role { ssid: CARS_WIFI, members: &cars, reply: &[("Tunnel-Private-Group-Id", "10")] },
                    Role { ssid: METERS_WIFI, members: &[METER7], reply: &[] },
                ],
            );
            let out = lab.work.join(format!("map-{kind:?}-{decoy}.json"));
            lab.write_map_to(&out, &policy, &chains);
            let value: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&out).expect("read map")).expect("map json");
            by_kind.insert((kind, decoy), value);
        }
    }
    Maps { by_kind }
}

impl Maps {
    fn bytes(&self, kind: Kind, decoy: bool, generation: u64) -> Vec<u8> {
        let mut v = self.by_kind[&(kind, decoy)].clone();
        v["generation"] = serde_json::Value::from(generation);
        serde_json::to_vec_pretty(&v).expect("serialize map")
    }
}

/// The file replacements: (when, generation, kind), in order.
struct Timeline {
    writes: Vec<(Instant, u64, Kind)>,
}

impl Timeline {
    /// Kinds on disk at any time in [from, to].
    fn kinds(&self, from: Instant, to: Instant) -> Vec<Kind> {
        let at_from = self.writes.iter().rev().find(|w| w.0 <= from).map(|w| w.2).unwrap_or(Kind::Allow);
        let mut ks = vec![at_from];
        ks.extend(self.writes.iter().filter(|w| w.0 > from && w.0 <= to).map(|w| w.2));
        ks.sort();
        ks.dedup();
        ks
    }
}

fn rss_kib(pid: u32) -> u64 {
    testkit::rss_kib(&pid.to_string())
}

/// `kill -0 pid`.
fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; the pid is our own child.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}

/// One finished authentication.
struct Auth {
    case: usize,
    start: Instant,
    end: Instant,
    result: EapolResult,
}

#[derive(Default)]
struct PhaseReport {
    label: String,
    secs: f64,
    auths: usize,
    accepts: usize,
    rejects: usize,
    wrong: Vec<String>,
    unclean: Vec<String>,
    flapping_strict: BTreeMap<Kind, (usize, usize)>,
    flapping_ambiguous: usize,
    writes: usize,
    write_secs: f64,
    reloads: usize,
    reload_latency_ms: Vec<f64>,
    generations_forward: bool,
    rss_kib: Vec<u64>,
    alive: bool,
    log_accepts: usize,
    log_rejects: usize,
    log_logins_ok: usize,
    log_logins_bad: usize,
    log_errors: Vec<String>,
    load_before: String,
    load_after: String,
    auth_ms: Vec<f64>,
}

/// The generation of a "loaded trust map ... (generation N, ..." line.
fn loaded_generation(line: &str) -> Option<u64> {
    if !line.contains("loaded trust map") {
        return None;
    }
    line.split("(generation ").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn run_phase(label: &str, debug: bool, secs: u64) -> PhaseReport {
    let workers = env_u64("RLM_LOAD_WORKERS", 8) as usize;
    let max_auths = env_u64("RLM_LOAD_MAX_AUTHS", 100_000) as usize;
    let swap_hz = env_u64("RLM_LOAD_SWAP_HZ", 100);
    let flip = Duration::from_millis(env_u64("RLM_LOAD_FLIP_MS", 2000));
    let slack = Duration::from_millis(env_u64("RLM_LOAD_SLACK_MS", 500));

    let mut lab = Lab::new(Options { debug, reload_interval: "0.005".into(), ..Options::default() });
    let devs = devices(&lab);
    let maps = make_maps(&lab, &devs);
    let cases = cases(&lab, &devs);
    replace_atomically(&lab.trust_map, &maps.bytes(Kind::Allow, false, 1));
    let rd = lab.start();
    let pid = rd.pid().expect("radiusd pid");
    // Warm-up (and a sanity check of every case under the initial "allow" map).
    for c in &cases {
        let r = eapol::run(&lab.work, lab.port, &c.supplicant);
        assert_eq!(r.accepted, c.expect.verdict(Kind::Allow), "warm-up {}: {}", c.label, r.tail());
    }
    let log_mark = rd.mark();

    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let auths: Mutex<Vec<Auth>> = Mutex::new(Vec::new());
    let timeline = Mutex::new(Timeline { writes: Vec::new() });
    let rss = Mutex::new(Vec::new());
    let seen_loads: Mutex<Vec<(Instant, u64)>> = Mutex::new(Vec::new());
    let load_before = loadavg();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(secs);
    let mut write_secs = 0.0;

    std::thread::scope(|s| {
        // Swapper: one replacement every 1/swap_hz s on an absolute schedule.
        let swapper = s.spawn(|| {
            let period = Duration::from_secs_f64(1.0 / swap_hz.max(1) as f64);
            let start = Instant::now();
            let mut n: u64 = 0;
            if swap_hz == 0 {
                return 0.0;
            }
            while !stop.load(Ordering::Relaxed) {
                let kind = if (start.elapsed().as_millis() / flip.as_millis().max(1)) % 2 == 0 {
                    Kind::Allow
                } else {
                    Kind::Deny
                };
                let generation = 2 + n;
                let bytes = maps.bytes(kind, n % 2 == 1, generation);
                // Recorded before the rename: the map cannot be live before this instant.
                timeline.lock().unwrap().writes.push((Instant::now(), generation, kind));
                replace_atomically(&lab.trust_map, &bytes);
                n += 1;
                let due = start + period * n as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            start.elapsed().as_secs_f64()
        });
        // RSS and liveness every second.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                rss.lock().unwrap().push(rss_kib(pid));
                let tick = Instant::now();
                while tick.elapsed() < Duration::from_secs(1) && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            rss.lock().unwrap().push(rss_kib(pid));
        });
        // Log tailer: when each "loaded trust map (generation N)" line first appears.
        s.spawn(|| {
            let mut pos = log_mark;
            let mut partial = String::new();
            loop {
                let done = stop.load(Ordering::Relaxed);
                let text = rd.log_since(pos);
                let now = Instant::now();
                pos += text.len();
                partial.push_str(&text);
                while let Some(nl) = partial.find('\n') {
                    let line: String = partial.drain(..=nl).collect();
                    if let Some(g) = loaded_generation(&line) {
                        seen_loads.lock().unwrap().push((now, g));
                    }
                }
                if done {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        // Supplicants.
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| loop {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= max_auths {
                        break;
                    }
                    let case = i % cases.len();
                    let start = Instant::now();
                    let result = eapol::run(&lab.work, lab.port, &cases[case].supplicant);
                    let end = Instant::now();
                    auths.lock().unwrap().push(Auth { case, start, end, result });
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        stop.store(true, Ordering::Relaxed);
        write_secs = swapper.join().expect("swapper");
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let load_after = loadavg();
    // Let the last replies and reload lines reach the log.
    std::thread::sleep(Duration::from_millis(300));
    let still_alive = alive(pid);

    let timeline = timeline.into_inner().unwrap();
    let auths = auths.into_inner().unwrap();
    let mut rep = PhaseReport {
        label: label.to_string(),
        secs: elapsed,
        auths: auths.len(),
        writes: timeline.writes.len(),
        write_secs,
        rss_kib: rss.into_inner().unwrap(),
        alive: still_alive,
        load_before,
        load_after,
        ..PhaseReport::default()
    };
    for a in &auths {
        let c = &cases[a.case];
        let r = &a.result;
        rep.auth_ms.push((a.end - a.start).as_secs_f64() * 1e3);
        let clean_accept = r.accepted && r.access_accept && r.eap_success && !r.eap_failure;
        let clean_reject = !r.accepted && r.access_reject && !r.access_accept && r.eap_failure && !r.eap_success;
        let at = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();
        if !clean_accept && !clean_reject {
            rep.unclean.push(format!(
                "{} at {:.3}-{:.3} s: exit {:?}, accept {}, reject {}, eap-success {}, eap-failure {}\n{}",
                c.label,
                at(a.start),
                at(a.end),
                r.exit_code,
                r.access_accept,
                r.access_reject,
                r.eap_success,
                r.eap_failure,
                r.tail()
            ));
            continue;
        }
        if clean_accept {
            rep.accepts += 1;
        } else {
            rep.rejects += 1;
        }
        let kinds = timeline.kinds(a.start.checked_sub(slack).unwrap_or(a.start), a.end);
        if !kinds.iter().any(|k| c.expect.verdict(*k) == clean_accept) {
            rep.wrong.push(format!(
                "{}: {} at {:.3}-{:.3} s, maps possibly live: {kinds:?}\n{}",
                c.label,
                if clean_accept { "ACCEPTED" } else { "REJECTED" },
                at(a.start),
                at(a.end),
                r.tail()
            ));
        }
        if let Expect::Flapping = c.expect {
            if kinds.len() == 1 {
                let e = rep.flapping_strict.entry(kinds[0]).or_default();
                if clean_accept {
                    e.0 += 1;
                } else {
                    e.1 += 1;
                }
            } else {
                rep.flapping_ambiguous += 1;
            }
        }
    }

    // Reloads the module logged, and how long after its write each became visible.
    let loads = seen_loads.into_inner().unwrap();
    rep.reloads = loads.len();
    rep.generations_forward = loads.windows(2).all(|w| w[0].1 < w[1].1);
    // Staleness: for each write, how long until a map at least that new was loaded (the
    // longest an older map can stay live once a newer one is on disk). Writes after the
    // last logged load are left out.
    let mut li = 0;
    for (written, g, _) in &timeline.writes {
        while li < loads.len() && loads[li].1 < *g {
            li += 1;
        }
        let Some((seen, _)) = loads.get(li) else { break };
        rep.reload_latency_ms.push(seen.saturating_duration_since(*written).as_secs_f64() * 1e3);
    }

    // The server's own account of the decisions (after the warm-up).
    let log = rd.log_since(log_mark);
    for line in log.lines() {
        if line.contains("rlm_rust[rust]: accept ") {
            rep.log_accepts += 1;
        } else if line.contains("rlm_rust[rust]: reject ") {
            rep.log_rejects += 1;
        }
        if line.contains("Login OK") {
            rep.log_logins_ok += 1;
        } else if line.contains("Login incorrect") {
            rep.log_logins_bad += 1;
        }
        if ["panic", "Segmentation", "SIGSEGV", "refused trust map", "disappeared", "Exiting"]
            .iter()
            .any(|w| line.contains(w))
        {
            rep.log_errors.push(line.to_string());
        }
    }
    if !rep.wrong.is_empty() || !rep.unclean.is_empty() || !rep.alive {
        eprintln!("radiusd log (tail) of {label}:\n{}", tail(&log, 200));
        eprintln!("lab at {} (set RLM_RUST_KEEP_LAB=1 to keep it)", lab.root.display());
    }
    drop(rd);
    rep
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn print_report(rep: &mut PhaseReport) {
    let first = rep.rss_kib.first().copied().unwrap_or(0);
    let last = rep.rss_kib.last().copied().unwrap_or(0);
    let max = rep.rss_kib.iter().copied().max().unwrap_or(0);
    println!("### {}", rep.label);
    println!("load average before: {}; after: {}", rep.load_before, rep.load_after);
    println!("| metric | value |");
    println!("|---|---|");
    println!("| duration | {:.1} s |", rep.secs);
    println!("| EAP-TLS authentications (eapol_test, concurrent) | {} |", rep.auths);
    println!("| auths/s | {:.1} |", rep.auths as f64 / rep.secs);
    println!(
        "| auth latency median / p90 / max | {:.0} / {:.0} / {:.0} ms |",
        pct(&mut rep.auth_ms, 0.5),
        pct(&mut rep.auth_ms, 0.9),
        pct(&mut rep.auth_ms, 1.0)
    );
    println!("| accepts / rejects (clean: EAP-Success / EAP-Failure) | {} / {} |", rep.accepts, rep.rejects);
    println!("| wrong decisions | {} |", rep.wrong.len());
    println!("| unclean outcomes (timeout, reject without EAP-Failure, ...) | {} |", rep.unclean.len());
    let strict = |k| rep.flapping_strict.get(&k).copied().unwrap_or_default();
    let (aa, ar) = strict(Kind::Allow);
    let (da, dr) = strict(Kind::Deny);
    println!(
        "| car3 (flapping) under allow maps: accept/reject; under deny maps; ambiguous | {aa}/{ar}; {da}/{dr}; {} |",
        rep.flapping_ambiguous
    );
    let rate = |n: usize, secs: f64| if n == 0 { "-".to_string() } else { format!("{:.1}", n as f64 / secs) };
    println!(
        "| trust map file replacements/s | {} ({} in {:.1} s) |",
        rate(rep.writes, rep.write_secs),
        rep.writes,
        rep.write_secs
    );
    println!("| module reloads/s (\"loaded trust map\" lines) | {} ({}) |", rate(rep.reloads, rep.secs), rep.reloads);
    if !rep.reload_latency_ms.is_empty() {
        println!(
            "| map write to live (first load of it or newer) p50 / p99 / max | {:.0} / {:.0} / {:.0} ms |",
            pct(&mut rep.reload_latency_ms, 0.5),
            pct(&mut rep.reload_latency_ms, 0.99),
            pct(&mut rep.reload_latency_ms, 1.0)
        );
    }
    println!("| generations loaded strictly increasing | {} |", rep.generations_forward);
    println!(
        "| radiusd RSS first / last / max (sampled every 1 s, {} samples) | {first} / {last} / {max} KiB |",
        rep.rss_kib.len()
    );
    println!("| radiusd alive after (kill -0) | {} |", rep.alive);
    println!(
        "| server log: module accept/reject lines; Login OK/incorrect | {}/{}; {}/{} |",
        rep.log_accepts, rep.log_rejects, rep.log_logins_ok, rep.log_logins_bad
    );
    println!();
    let series: Vec<String> = rep.rss_kib.iter().step_by(5).map(|k| (k / 1024).to_string()).collect();
    println!("RSS of radiusd every 5 s (MiB): {}", series.join(" "));
    println!();
    for w in &rep.wrong {
        println!("WRONG DECISION: {w}");
    }
    for u in &rep.unclean {
        println!("UNCLEAN OUTCOME: {u}");
    }
    for e in &rep.log_errors {
        println!("SERVER LOG: {e}");
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = env_u64("RLM_LOAD_SECS", 40);
    let debug_secs = env_u64("RLM_LOAD_DEBUG_SECS", 10);
    println!(
        "EAP-TLS under load while the trust map is replaced: {} eapol_test workers, {} replacements/s, \
         reload_interval 0.005, kind flips every {} ms, slack {} ms; {} cores",
        env_u64("RLM_LOAD_WORKERS", 8),
        env_u64("RLM_LOAD_SWAP_HZ", 100),
        env_u64("RLM_LOAD_FLIP_MS", 2000),
        env_u64("RLM_LOAD_SLACK_MS", 500),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let mut reports = vec![run_phase("radiusd without -X", false, secs)];
    if debug_secs > 0 {
        reports.push(run_phase("freeradius -X (reload log lines timed)", true, debug_secs));
    }
    for r in &mut reports {
        print_report(r);
    }
    let slack_ms = env_u64("RLM_LOAD_SLACK_MS", 500) as f64;
    for r in &mut reports {
        assert!(r.alive, "{}: radiusd died", r.label);
        assert!(r.wrong.is_empty(), "{}: {} wrong decisions (above)", r.label, r.wrong.len());
        assert!(r.unclean.is_empty(), "{}: {} unclean outcomes (above)", r.label, r.unclean.len());
        assert!(r.generations_forward, "{}: a reload went back to an older generation", r.label);
        if r.writes > 0 {
            assert!(r.reloads > 0, "{}: no reload was logged", r.label);
            let max_latency = pct(&mut r.reload_latency_ms, 1.0);
            assert!(max_latency < slack_ms, "{}: reload latency {max_latency:.0} ms exceeds the slack", r.label);
        }
    }
}
