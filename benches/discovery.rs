//! On-demand discovery's first-attempt hit rate, with real parts: knotd serving an
//! NSEC3-signed fleet zone whose only device record is the organisation's trust anchor at
//! the wildcard owner (`*._device.fleet.example TLSA 2 0 0 <CA>`, DANE-TA), radiusd (no
//! `-X`) loading the module with the policy `Fleet-WiFi|*._device.fleet.example`, and
//! `eapol_test` as the devices.
//!
//! The module hands the EAP identity of a new conversation (the first Access-Request) to
//! the sync, which looks the name up while the EAP-TLS handshake goes on; the check runs in
//! the handshake's last round trip and rejects with "discovery pending" when the name is
//! not in the trust map yet; the device's retry is admitted. Measured per TLS version
//! (`for_each_tls_version`) over N device names never seen before (each its own P-256 leaf
//! from the fleet CA, SAN = its name), one after the other:
//! - the first attempt's outcome: accepted (discovery won the race), rejected "discovery
//!   pending" (the module's reason in the radiusd log, and EAP-Failure), or anything else,
//!   which is counted and printed: it is a bug;
//! - then, once the name is in the trust map, one retry, asserted accepted;
//! - the first attempt's timeline, from its first Access-Request: a timestamping RADIUS
//!   relay between `eapol_test` and radiusd gives the round trips, the last Access-Request
//!   (FreeRADIUS runs the check-eap-tls virtual server, hence the check, on it) and the
//!   final reply (the handshake's duration); the query-logging DNS forwarder between the
//!   module and knotd (`testkit::dnsproxy`) gives when the name's TLSA query left the sync;
//!   a tail of the radiusd log (1 ms poll) gives when the module's decision line appeared
//!   (bounded by the reply, which follows it); when the name entered the map requests see
//!   is the later of when a watcher of the persisted trust map (1 ms poll) first saw a file
//!   holding it and when the log tail saw the sync's "published generation" line: while the
//!   map is small the sync renames the file into place, logs, then swaps the map in memory
//!   (on a loaded machine the rename and the log line can be milliseconds apart).
//!
//! The same is then run with each new name's DNS answer held back by the forwarder
//! (default 300 ms, longer than a loopback handshake): the pending path, where the hit
//! rate drops and every retry must still be admitted.
//!
//! The fleet zone has a TTL of 300 s and `max_interval` is the module's default (1 h), so
//! no name is refreshed during the run: each lookup is a discovery, and the zone's keys come
//! from the resolver's cache, as in a fleet at work. New names arrive one at a time, at most
//! `discovery_rate` (10, the default) a second, optionally each a quiet time after the
//! sync's last publication (default none: the sync publishes an on-demand answer at once,
//! other changes at most every 100 ms).
//!
//! `cargo bench --bench discovery`. Environment:
//! - `RLM_BENCH_DISCOVERY_NAMES` (default 50): new device names per TLS version;
//! - `RLM_BENCH_DISCOVERY_SLOW_MS` (default 300; 0 = skip): the held-back variant's delay;
//! - `RLM_BENCH_DISCOVERY_QUIET_MS` (default 0): quiet time before each new name;
//! - `RLM_BENCH_DISCOVERY_DEBUG=1`: run `freeradius -X` instead (slower handshakes).
//!
//! Under `cargo test` it runs a smoke test instead: 3 names per TLS version, DNS as served,
//! every retry asserted admitted, nothing timed. `RLM_RUST_SKIP_EAP_TLS` skips it.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use testkit::dns::Zone;
use testkit::dnsproxy::TLSA;
use testkit::eapol::{self, for_each_tls_version, EapolResult, TlsVersion};
use testkit::fleet::{decision, nsec3, Fleet, PENDING, WAIT};
use testkit::pki::Device;
use testkit::skip;
use testkit::stack::StackOptions;

const ZONE: &str = "fleet.example";
const SSID: &str = "Fleet-WiFi";
const DOMAIN_ENTRY: &str = "*._device.fleet.example";
/// TTL of the fleet zone and its anchor record.
const ZONE_TTL: u32 = 300;
/// New names per domain per second the module looks up (`discovery_rate`, its default).
const DISCOVERY_RATE: u32 = 10;
/// How long after the attempt's reply the module's decision line may take to reach the log.
const LOG_WAIT: Duration = Duration::from_secs(3);

/// How often the trust map and the radiusd log are looked at.
const POLL: Duration = Duration::from_millis(1);

const ACCESS_REQUEST: u8 = 1;
const ACCESS_ACCEPT: u8 = 2;
const ACCESS_REJECT: u8 = 3;

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// One RADIUS packet through the [`Stopwatch`].
#[derive(Clone, Copy, Debug)]
struct Packet {
    at: Instant,
    code: u8,
    to_server: bool,
}

#[derive(Default)]
struct RelayState {
    stop: AtomicBool,
    packets: Mutex<Vec<Packet>>,
}

/// A RADIUS relay on loopback that timestamps every packet it passes: point the supplicant
/// at [`Stopwatch::port`]. Stops on drop.
struct Stopwatch {
    port: u16,
    state: Arc<RelayState>,
    threads: Vec<JoinHandle<()>>,
}

impl Stopwatch {
    fn start(server_port: u16) -> Stopwatch {
        let (front, back, port) = testkit::relay::loopback_pair(server_port, Duration::from_millis(20));
        let state = Arc::new(RelayState::default());
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let up = {
            let (front, back, state, client) =
                (front.try_clone().expect("dup"), back.try_clone().expect("dup"), state.clone(), client.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !state.stop.load(Ordering::SeqCst) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else { continue };
                    let at = Instant::now();
                    *client.lock().unwrap() = Some(from);
                    state.packets.lock().unwrap().push(Packet { at, code: buf[0], to_server: true });
                    let _ = back.send(&buf[..n]);
                }
            })
        };
        let down = {
            let state = state.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !state.stop.load(Ordering::SeqCst) {
                    let Ok(n) = back.recv(&mut buf) else { continue };
                    let at = Instant::now();
                    state.packets.lock().unwrap().push(Packet { at, code: buf[0], to_server: false });
                    if let Some(to) = *client.lock().unwrap() {
                        let _ = front.send_to(&buf[..n], to);
                    }
                }
            })
        };
        Stopwatch { port, state, threads: vec![up, down] }
    }

    /// The packets relayed since the last call.
    fn take(&self) -> Vec<Packet> {
        std::mem::take(&mut *self.state.packets.lock().unwrap())
    }
}

impl Drop for Stopwatch {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[derive(Default)]
struct WatchState {
    stop: AtomicBool,
    /// Name -> when it first had an association in the persisted trust map.
    seen: Mutex<HashMap<String, Instant>>,
}

/// Watches the persisted trust map (every millisecond) for names that gain associations.
/// The sync renames each new file into place just before it swaps the map in memory, so
/// when the watcher first sees a file holding a name is when requests can see it, to
/// within the poll. (The file's own times do not say it: its mtime is taken before the
/// sync's fsync, its ctime from the kernel's coarse clock, a few ms off.)
struct MapWatch {
    state: Arc<WatchState>,
    thread: Option<JoinHandle<()>>,
}

impl MapWatch {
    fn start(path: PathBuf) -> MapWatch {
        let state = Arc::new(WatchState::default());
        let s = state.clone();
        let thread = std::thread::spawn(move || {
            let mut last = None;
            while !s.stop.load(Ordering::SeqCst) {
                std::thread::sleep(POLL);
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                let at = Instant::now();
                let stamp = (meta.ino(), meta.mtime(), meta.mtime_nsec(), meta.len());
                if last == Some(stamp) {
                    continue;
                }
                // Replaced by rename: what is read is the file just stat'ed, or a newer one.
                let Ok(text) = std::fs::read(&path) else { continue };
                let Ok(map) = serde_json::from_slice::<serde_json::Value>(&text) else { continue };
                last = Some(stamp);
                let Some(names) = map["names"].as_object() else { continue };
                let mut seen = s.seen.lock().unwrap();
                for (name, entry) in names {
                    let published = entry["associations"].as_array().is_some_and(|a| !a.is_empty());
                    if published && !seen.contains_key(name) {
                        seen.insert(name.clone(), at);
                    }
                }
            }
        });
        MapWatch { state, thread: Some(thread) }
    }

    /// When `name` entered the trust map, waiting for it at most `limit`.
    fn wait(&self, name: &str, limit: Duration) -> Option<Instant> {
        let mut at = None;
        testkit::poll_until(limit, || {
            at = self.state.seen.lock().unwrap().get(name).copied();
            at.is_some()
        });
        at
    }
}

impl Drop for MapWatch {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Default)]
struct LogState {
    stop: AtomicBool,
    /// The module's decision lines, with when the watcher first saw each.
    decisions: Mutex<Vec<(Instant, String)>>,
    /// When each of the sync's "published generation" lines was seen (written after the
    /// trust map file is renamed into place, before the in-memory swap).
    publications: Mutex<Vec<Instant>>,
}

/// Tails radiusd's log (every millisecond) and timestamps the module's decision lines (when
/// the check ran) and the sync's publications, to within the poll.
struct LogWatch {
    state: Arc<LogState>,
    thread: Option<JoinHandle<()>>,
}

impl LogWatch {
    fn start(path: PathBuf) -> LogWatch {
        let state = Arc::new(LogState::default());
        let s = state.clone();
        let thread = std::thread::spawn(move || {
            let (mut pos, mut partial) = (0u64, Vec::new());
            while !s.stop.load(Ordering::SeqCst) {
                std::thread::sleep(POLL);
                let Ok(mut file) = std::fs::File::open(&path) else { continue };
                if file.seek(SeekFrom::Start(pos)).is_err() {
                    continue;
                }
                let mut fresh = Vec::new();
                let Ok(n) = file.read_to_end(&mut fresh) else { continue };
                let at = Instant::now();
                pos += n as u64;
                partial.extend_from_slice(&fresh);
                while let Some(nl) = partial.iter().position(|&c| c == b'\n') {
                    let line: Vec<u8> = partial.drain(..=nl).collect();
                    let line = String::from_utf8_lossy(&line);
                    if line.contains("rlm_rust[rust]: accept name=") || line.contains("rlm_rust[rust]: reject name=") {
                        s.decisions.lock().unwrap().push((at, line.trim_end().to_owned()));
                    } else if line.contains("rlm_rust[rust]: published generation ") {
                        s.publications.lock().unwrap().push(at);
                    }
                }
            }
        });
        LogWatch { state, thread: Some(thread) }
    }

    /// When the first decision line about `name` since `since` was seen, waiting for it at
    /// most `limit`.
    fn first_decision(&self, name: &str, since: Instant, limit: Duration) -> Option<Instant> {
        let needle = format!(" name={name} ssid=");
        let mut at = None;
        testkit::poll_until(limit, || {
            at = self
                .state
                .decisions
                .lock()
                .unwrap()
                .iter()
                .find(|(t, l)| *t >= since && l.contains(&needle))
                .map(|p| p.0);
            at.is_some()
        });
        at
    }
}

impl LogWatch {
    /// When the first publication line at or after `t` was seen, waiting for it at most
    /// `limit`.
    fn publication_after(&self, t: Instant, limit: Duration) -> Option<Instant> {
        let mut at = None;
        testkit::poll_until(limit, || {
            at = self.state.publications.lock().unwrap().iter().copied().find(|p| *p >= t);
            at.is_some()
        });
        at
    }
}

impl Drop for LogWatch {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a first attempt ended.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Accepted,
    Pending,
    Other(String),
}

/// One new name's first attempt.
struct Sample {
    outcome: Outcome,
    /// First Access-Request to the final reply.
    handshake: Duration,
    round_trips: usize,
    /// First Access-Request to the last one, whose processing runs the check (ms).
    to_last_request: f64,
    /// First Access-Request to the name's TLSA query reaching the forwarder (ms; None: no
    /// query seen).
    to_query: Option<f64>,
    /// First Access-Request to the module's decision line (the check) in the log, bounded
    /// by the reply (ms).
    to_check: Option<f64>,
    /// First Access-Request to the name in the trust map requests see: the later of the
    /// file holding it and the publication line (ms, signed).
    to_map: f64,
}

/// What one variant (DNS as served, or held back) gave under one TLS version.
struct Run {
    variant: String,
    tls: TlsVersion,
    samples: Vec<Sample>,
    retries_accepted: usize,
}

/// The bench's fixture: the fleet, the relay in front of radiusd, the trust map and log watchers.
struct Bench {
    f: Fleet,
    relay: Stopwatch,
    watch: MapWatch,
    logs: LogWatch,
    debug: bool,
    /// Quiet time before each new name since the sync's last publication.
    quiet: Duration,
}

/// One `eapol_test` run of `device` through the relay: its result, the radiusd log from its
/// start to the module's decision line (or [`LOG_WAIT`] after the reply when none came),
/// and the packets relayed.
fn attempt(b: &Bench, device: &Device) -> (EapolResult, String, Vec<Packet>) {
    let mark = b.f.rd.mark();
    b.relay.take();
    let s = b.f.st.lab.supplicant(device, SSID);
    let result = eapol::run(&b.f.st.lab.work, b.relay.port, &s);
    let packets = b.relay.take();
    let (accept, reject) = (decision("accept", &device.name, SSID), decision("reject", &device.name, SSID));
    let mut log = String::new();
    testkit::poll_until(LOG_WAIT, || {
        log = b.f.rd.log_since(mark);
        log.contains(&accept) || log.contains(&reject)
    });
    (result, log, packets)
}

/// The module's lines in an attempt's log, for reports.
fn module_lines(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("rlm_rust")).collect();
    if lines.is_empty() {
        "(no rlm_rust line)".to_owned()
    } else {
        lines.join("\n")
    }
}

fn classify(r: &EapolResult, log: &str, name: &str) -> Outcome {
    let accept = decision("accept", name, SSID);
    let reject = decision("reject", name, SSID);
    let pending = format!("{reject} {PENDING}");
    if r.accepted
        && r.access_accept
        && r.eap_success
        && !r.eap_failure
        && log.contains(&accept)
        && !log.contains(&reject)
    {
        return Outcome::Accepted;
    }
    if !r.accepted && r.access_reject && !r.access_accept && r.eap_failure && !r.eap_success && log.contains(&pending) {
        return Outcome::Pending;
    }
    Outcome::Other(format!(
        "eapol_test exit {:?}, Access-Accept {}, Access-Reject {}, EAP-Success {}, EAP-Failure {}; module lines:\n{}",
        r.exit_code,
        r.access_accept,
        r.access_reject,
        r.eap_success,
        r.eap_failure,
        module_lines(log)
    ))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `b - a` in ms, negative when `b` came first.
fn ms_between(a: Instant, b: Instant) -> f64 {
    match b.checked_duration_since(a) {
        Some(d) => ms(d),
        None => -ms(a.duration_since(b)),
    }
}

/// Runs `names` new names per TLS version, the DNS answer of each held back by `delay`.
fn run_variant(b: &Bench, variant: &str, names: usize, delay: Duration) -> Vec<Run> {
    let prefix = if delay.is_zero() { "d" } else { "s" };
    let min_gap = Duration::from_secs(1) / DISCOVERY_RATE + Duration::from_millis(10);
    let mut runs = Vec::new();
    for_each_tls_version(|tls| {
        let tag = match tls {
            TlsVersion::Tls12 => "t12",
            TlsVersion::Tls13 => "t13",
        };
        let devices: Vec<Device> = (0..names)
            .map(|i| {
                let stem = format!("{prefix}{i}-{tag}");
                b.f.st.lab.cars_device(&stem, &format!("{stem}._device.{ZONE}"))
            })
            .collect();
        let mut run = Run { variant: variant.to_owned(), tls, samples: Vec::new(), retries_accepted: 0 };
        let mut last_start: Option<Instant> = None;
        let mut last_publication = Instant::now();
        for device in &devices {
            let name = &device.name;
            assert!(b.watch.wait(name, Duration::ZERO).is_none(), "{name}: in the trust map before its first attempt");
            if !delay.is_zero() {
                b.f.dns.delay(name, delay);
            }
            // Within the domain's discovery rate, so every new name is looked up; and
            // `b.quiet` after the sync's last publication (the previous name's), which the
            // sync's pacing of publications would otherwise hold this one's back for.
            let mut wake = last_publication + b.quiet;
            if let Some(t) = last_start {
                wake = wake.max(t + min_gap);
            }
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
            let started = Instant::now();
            last_start = Some(started);
            let (first, log, packets) = attempt(b, device);
            let outcome = classify(&first, &log, name);
            if let Outcome::Other(what) = &outcome {
                eprintln!("BUG: {name} ({tls}): first attempt neither accepted nor \"discovery pending\": {what}");
                eprintln!("--- eapol_test (tail) ---\n{}", first.tail());
            }
            let first_request = packets.iter().find(|p| p.to_server && p.code == ACCESS_REQUEST).map(|p| p.at);
            let reply = packets
                .iter()
                .rev()
                .find(|p| !p.to_server && matches!(p.code, ACCESS_ACCEPT | ACCESS_REJECT))
                .map(|p| p.at);
            let (Some(first_request), Some(reply)) = (first_request, reply) else {
                panic!("{name}: the relay saw no Access-Request or no final reply: {packets:?}\n{}", first.tail());
            };
            let requests: Vec<Instant> =
                packets.iter().filter(|p| p.to_server && p.code == ACCESS_REQUEST).map(|p| p.at).collect();
            let (round_trips, last_request) = (requests.len(), requests[requests.len() - 1]);
            let in_file = b.watch.wait(name, WAIT).unwrap_or_else(|| {
                panic!(
                    "{name} ({tls}): not in the trust map within {WAIT:?} of its first attempt; the retry would not be \
                     admitted. Module lines of the attempt:\n{}\n--- radiusd log (tail) ---\n{}",
                    module_lines(&log),
                    tail(&b.f.rd.log(), 40)
                )
            });
            let query = b.f.dns.queries().into_iter().find(|q| q.name == *name && q.rtype == TLSA && q.at >= started);
            // Requests see the name once the sync swaps the map in, right after it logs the
            // publication, which it does after renaming the file into place: under load,
            // milliseconds may pass between the two. The publication line is the one seen
            // first from just before the file (publications are 100 ms apart or more).
            let logged = b.logs.publication_after(in_file - 5 * POLL, LOG_WAIT);
            let in_map = logged.map_or(in_file, |l| l.max(in_file));
            last_publication = in_map;
            // The check runs while the last Access-Request is processed; its log line is seen
            // within the watcher's poll, so the reply bounds it too.
            let check = b.logs.first_decision(name, started, LOG_WAIT).map(|c| c.min(reply));
            let sample = Sample {
                outcome,
                handshake: reply.duration_since(first_request),
                round_trips,
                to_last_request: ms_between(first_request, last_request),
                to_query: query.map(|q| ms_between(first_request, q.at)),
                to_check: check.map(|c| ms_between(first_request, c)),
                to_map: ms_between(first_request, in_map),
            };
            let at = |v: Option<f64>| v.map_or("(not seen)".to_owned(), |v| format!("{v:.1} ms"));
            eprintln!(
                "{name} ({tls}): {:?}; handshake {:.1} ms, {round_trips} round trips, the last from {:.1} ms; TLSA \
                 query at {}, check at {}, in the trust map file at {:.1} ms, publication logged at {}",
                sample.outcome,
                ms(sample.handshake),
                sample.to_last_request,
                at(sample.to_query),
                at(sample.to_check),
                ms_between(first_request, in_file),
                at(logged.map(|l| ms_between(first_request, l))),
            );
            // The map time is when the watchers saw the file and the line (the swap follows
            // both), so only a lead of more than a poll says the check must have found the name.
            if sample.outcome == Outcome::Pending && sample.to_map + ms(POLL) < sample.to_last_request {
                eprintln!("SURPRISE: {name} ({tls}): pending although in the trust map before its last round trip");
            }
            run.samples.push(sample);

            let (retry, log, _) = attempt(b, device);
            assert!(
                classify(&retry, &log, name) == Outcome::Accepted,
                "{name} ({tls}): the retry after discovery was not admitted: {:?}\n--- eapol_test (tail) ---\n{}",
                classify(&retry, &log, name),
                retry.tail()
            );
            retry.assert_accepted();
            run.retries_accepted += 1;
        }
        runs.push(run);
    });
    if b.debug {
        // With -X the log shows each hint handed to the sync.
        let hinted = b.f.rd.log().matches("rust: looking up ").count();
        eprintln!("{variant}: {hinted} hints logged so far");
    }
    runs
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The `q` quantile (0..=1) of `v`, nearest rank; NaN when empty.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn report(runs: &[Run], timed: bool) {
    println!();
    println!(
        "| DNS | TLS | N | first attempt accepted | hit rate | pending | other | retries admitted | handshake, \
         median (p90) | round trips | request -> TLSA query | request -> last request (the check's round trip) | \
         request -> in trust map, median (p90) | last request - in map, median | in map before the last request |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        let n = r.samples.len();
        let count = |o: &Outcome| r.samples.iter().filter(|s| s.outcome == *o).count();
        let (accepted, pending) = (count(&Outcome::Accepted), count(&Outcome::Pending));
        let other = n - accepted - pending;
        let all = |f: &dyn Fn(&Sample) -> f64| r.samples.iter().map(f).collect::<Vec<f64>>();
        let handshake = all(&|s| ms(s.handshake));
        let round_trips = all(&|s| s.round_trips as f64);
        let last = all(&|s| s.to_last_request);
        let map = all(&|s| s.to_map);
        let slack = all(&|s| s.to_last_request - s.to_map);
        let query: Vec<f64> = r.samples.iter().filter_map(|s| s.to_query).collect();
        let before = r.samples.iter().filter(|s| s.to_map < s.to_last_request).count();
        let with_p90 = |v: &[f64]| {
            if timed {
                format!("{:.1} ms ({:.1})", quantile(v, 0.5), quantile(v, 0.9))
            } else {
                "-".to_owned()
            }
        };
        let median = |v: &[f64]| if timed { format!("{:.1} ms", quantile(v, 0.5)) } else { "-".to_owned() };
        println!(
            "| {} | {} | {n} | {accepted} | {:.1}% | {pending} | {other} | {}/{n} | {} | {:.0} | {} | {} | {} | {} | \
             {before}/{n} |",
            r.variant,
            r.tls,
            100.0 * accepted as f64 / n.max(1) as f64,
            r.retries_accepted,
            with_p90(&handshake),
            quantile(&round_trips, 0.5),
            median(&query),
            median(&last),
            with_p90(&map),
            median(&slack),
        );
    }
    let others: Vec<_> =
        runs.iter().flat_map(|r| r.samples.iter().filter(|s| matches!(s.outcome, Outcome::Other(_)))).collect();
    if !others.is_empty() {
        println!(
            "\n{} first attempt(s) ended in neither accept nor \"discovery pending\" (printed above): bugs",
            others.len()
        );
    }
}

fn main() {
    if skip() {
        return;
    }
    let full = bench_mode();
    let names = if full { env_u64("RLM_BENCH_DISCOVERY_NAMES", 50) as usize } else { 3 };
    let slow = if full { Duration::from_millis(env_u64("RLM_BENCH_DISCOVERY_SLOW_MS", 300)) } else { Duration::ZERO };
    let debug = std::env::var_os("RLM_BENCH_DISCOVERY_DEBUG").is_some_and(|v| v == "1");
    let quiet = Duration::from_millis(env_u64("RLM_BENCH_DISCOVERY_QUIET_MS", 0));
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let t0 = Instant::now();

    let opts = StackOptions { extra_zones: vec![Zone::signed(ZONE, "").with_ttl(ZONE_TTL).with_nsec3()], ..nsec3() };
    let tune = |o: &mut testkit::radiusd::Options| {
        o.debug = debug;
        // The module's default: no name is refreshed while the bench runs.
        if let Some(max) = o.rust_options.iter_mut().find(|(k, _)| k == "max_interval") {
            max.1 = "1h".into();
        }
    };
    let (f, ()) = Fleet::start_tuned(opts, tune, &[(SSID, DOMAIN_ENTRY)], |st| {
        let anchor = hex::encode(st.lab.pki.cars_ca.cert.to_der().expect("der"));
        st.dns.set_tlsa(ZONE, "*._device", ZONE_TTL, &format!("2 0 0 {anchor}"));
    });
    let relay = Stopwatch::start(f.st.lab.port);
    let watch = MapWatch::start(f.st.lab.trust_map.clone());
    let logs = LogWatch::start(f.rd.log_path().to_path_buf());
    let b = Bench { f, relay, watch, logs, debug, quiet };
    let setup = t0.elapsed();
    eprintln!("fleet up in {setup:.1?}: {DOMAIN_ENTRY} on {SSID}, radiusd{}", if debug { " -X" } else { "" });

    let mut runs = run_variant(&b, "as served", names, Duration::ZERO);
    if !slow.is_zero() {
        runs.extend(run_variant(&b, &format!("held back {} ms", slow.as_millis()), names, slow));
    }
    let took = t0.elapsed();
    assert!(!b.f.rd.log().contains("sync stopped"), "the sync stopped during the run");

    if full {
        println!(
            "\nOn-demand discovery, first attempt of {names} new names per TLS version; radiusd{}, module built \
             {}; zone TTL {ZONE_TTL} s, discovery_rate {DISCOVERY_RATE}/s, {} ms quiet before each new name",
            if debug { " -X" } else { " without -X" },
            if cfg!(debug_assertions) { "debug" } else { "release" },
            quiet.as_millis()
        );
    } else {
        println!("\nOn-demand discovery smoke test ({names} new names per TLS version, nothing timed):");
    }
    report(&runs, full);
    println!(
        "\n{} authentications in {took:.1?} (fleet set-up {setup:.1?}); load average before: {}, after: {}",
        runs.iter().map(|r| 2 * r.samples.len()).sum::<usize>(),
        load_before.trim(),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
}
