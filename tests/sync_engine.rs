//! The trust sync's decisions against real DNS (knotd, DNSSEC) and a real HTTPS server,
//! without radiusd: what gets published, what is refused and why. Adversarial cases: DANE-EE
//! from an insecure zone, bogus signatures, a rogue CA copying another's subject and key
//! id, malformed and unusable records, expired certificates, DNS and CA server outages.

use std::path::Path;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use rlm_rust::model::association::{Digest, Matching, Selector, Usage};

use rlm_rust::model::policy::{Entry, Policy};
use rlm_rust::model::snapshot::SnapshotCell;
use rlm_rust::model::trustmap::TrustMap;
use rlm_rust::sync::discover::NameReport;
use rlm_rust::sync::engine::{Engine, SyncThread};
use std::sync::Arc;
use testkit::capki::{self, Issued, Spec};
use testkit::dns::{DnsServer, Zone};
use testkit::https::{HttpsServer, WebPki};
use testkit::stack::well_known_name;

const CARS: &str = "cars.example";
const METERS: &str = "meters.example";
const LOOSE: &str = "loose.example"; // unsigned, under the signed fake root: provably insecure
/// Serves a test's policy document (`World::policy_addr`).
const POLICY_HOST: &str = "policy.example";

/// Captures the sync's log records so tests can assert what it reported.
struct Capture(Mutex<Vec<String>>);

static LOGS: Capture = Capture(Mutex::new(Vec::new()));

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        // The level first: a test can tell a report (error) from a trace (debug).
        self.0.lock().unwrap().push(format!("{} {}", r.level(), r.args()));
    }
    fn flush(&self) {}
}

fn logs_matching(label: &str, needle: &str) -> Vec<String> {
    LOGS.0.lock().unwrap().iter().filter(|l| l.contains(label) && l.contains(needle)).cloned().collect()
}

fn install_logger() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = log::set_logger(&LOGS);
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// knotd with three zones, and two authority hosts on separate HTTPS servers (org A's
/// `device.cars.example`; org B's `device.meters.example`, which also serves
/// `device.loose.example`), so each can serve a different file under the same key id.
struct World {
    dir: tempfile::TempDir,
    dns: DnsServer,
    web: HttpsServer,
    web_b: HttpsServer,
    web_root: std::path::PathBuf,
    docroot: std::path::PathBuf,
    docroot_b: std::path::PathBuf,
    extra_hosts: Vec<String>,
    /// Authenticates every test web server (one certificate for all their host names).
    pki: WebPki,
    /// Where a test's policy server listens (`POLICY_HOST` resolves here).
    policy_addr: std::net::SocketAddr,
}

impl World {
    fn new() -> World {
        World::with_zones(vec![])
    }

    /// The standard zones plus `extra` (all served by one knotd; their authority hosts
    /// `device.<zone>` resolve to org B's web server).
    fn with_zones(extra: Vec<Zone>) -> World {
        install_logger();
        let dir = tempfile::tempdir().unwrap();
        let extra_hosts: Vec<String> = extra.iter().map(|z| format!("device.{}", z.name)).collect();
        let mut zones = vec![
            // NSEC3: the wildcard tests need it (see `Zone::with_nsec3`).
            Zone::signed(CARS, "").with_ttl(2).with_nsec3(),
            Zone::signed(METERS, "").with_ttl(2).with_nsec3(),
            Zone::unsigned(LOOSE, "").with_ttl(2),
        ];
        zones.extend(extra);
        let dns = DnsServer::start(zones);
        let mut hosts = vec!["device.cars.example", "device.meters.example", "device.loose.example", POLICY_HOST];
        hosts.extend(extra_hosts.iter().map(String::as_str));
        let pki = WebPki::new(dir.path(), &hosts);
        let docroot = dir.path().join("www-a");
        let docroot_b = dir.path().join("www-b");
        for d in [&docroot, &docroot_b] {
            std::fs::create_dir_all(d.join(".well-known/ca")).unwrap();
        }
        let web = HttpsServer::start(&pki, Some(docroot.clone()));
        let web_b = HttpsServer::start(&pki, Some(docroot_b.clone()));
        let policy_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        World {
            web_root: pki.root_pem.clone(),
            dir,
            dns,
            web,
            web_b,
            docroot,
            docroot_b,
            extra_hosts,
            pki,
            policy_addr,
        }
    }

    /// Serves `ca` on org A's host.
    fn serve_ca(&self, ca: &Issued) {
        std::fs::write(self.docroot.join(".well-known/ca").join(well_known_name(&ca.cert)), ca.pem()).unwrap();
    }

    /// Serves `ca` on org B's host (meters, loose).
    fn serve_ca_b(&self, ca: &Issued) {
        std::fs::write(self.docroot_b.join(".well-known/ca").join(well_known_name(&ca.cert)), ca.pem()).unwrap();
    }

    fn tlsa(&self, zone: &str, name: &str, rdata: &str) {
        let owner = name.strip_suffix(zone).unwrap().trim_end_matches('.');
        self.dns.set_tlsa(zone, owner, 2, rdata);
    }

    fn publish(&self, zone: &str, name: &str, usage: u8, leaf: &Issued) {
        self.tlsa(zone, name, &format!("{usage} 0 0 {}", hex::encode(leaf.cert.to_der().unwrap())));
    }

    fn engine(&self, label: &str, extra: &[(&str, &str)]) -> Engine {
        let (addr, addr_b) = (self.web.addr(), self.web_b.addr());
        let mut pairs: Vec<(String, String)> = vec![
            ("trust_map".into(), self.path("map.json")),
            ("policy".into(), self.path("unused-policy")),
            ("ca_path".into(), self.path("ca")),
            ("dns_servers".into(), self.dns.addr().to_string()),
            ("dns_trust_anchors".into(), self.dns.trust_anchor_file().display().to_string()),
            ("dns_timeout".into(), "0.5".into()),
            ("https_roots".into(), self.web_root.display().to_string()),
            (
                "https_resolve".into(),
                format!(
                    "device.cars.example={addr} device.meters.example={addr_b} device.loose.example={addr_b} \
                     {POLICY_HOST}={}{}",
                    self.policy_addr,
                    self.extra_hosts.iter().map(|h| format!(" {h}={addr_b}")).collect::<String>()
                ),
            ),
            ("https_timeout".into(), "1".into()),
            ("min_interval".into(), "1".into()),
        ];
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push((k.to_string(), v.to_string()));
        }
        let cfg = rlm_rust::config::from_pairs(label, &pairs).unwrap();
        Engine::new(label.into(), cfg.sync.unwrap(), cfg.trust_map).unwrap()
    }

    /// The sync thread as radiusd runs it, on a policy file of `lines`, publishing into a
    /// snapshot cell the test reads.
    fn thread(&self, label: &str, lines: &str, extra: &[(&str, &str)]) -> (SyncThread, Arc<SnapshotCell>) {
        let policy = self.dir.path().join(format!("{label}.policy"));
        std::fs::write(&policy, lines).unwrap();
        let mut all: Vec<(&str, &str)> = vec![("policy", policy.to_str().unwrap())];
        all.extend_from_slice(extra);
        let engine_pairs = self.engine_pairs(label, &all);
        let cfg = rlm_rust::config::from_pairs(label, &engine_pairs).unwrap();
        let cell = Arc::new(SnapshotCell::default());
        let t =
            SyncThread::start(label.into(), cfg.sync.unwrap(), cfg.trust_map, cell.clone(), Duration::from_millis(100))
                .unwrap();
        (t, cell)
    }

    fn engine_pairs(&self, label: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let (addr, addr_b) = (self.web.addr(), self.web_b.addr());
        let mut pairs: Vec<(String, String)> = vec![
            ("trust_map".into(), self.path(&format!("{label}.json"))),
            ("ca_path".into(), self.path(&format!("{label}-ca"))),
            ("dns_servers".into(), self.dns.addr().to_string()),
            ("dns_trust_anchors".into(), self.dns.trust_anchor_file().display().to_string()),
            ("dns_timeout".into(), "0.5".into()),
            ("https_roots".into(), self.web_root.display().to_string()),
            (
                "https_resolve".into(),
                format!(
                    "device.cars.example={addr} device.meters.example={addr_b} device.loose.example={addr_b} \
                     {POLICY_HOST}={}{}",
                    self.policy_addr,
                    self.extra_hosts.iter().map(|h| format!(" {h}={addr_b}")).collect::<String>()
                ),
            ),
            ("https_timeout".into(), "1".into()),
            ("min_interval".into(), "1".into()),
        ];
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push((k.to_string(), v.to_string()));
        }
        pairs
    }

    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }
}

fn policy(names: &[&str]) -> Policy {
    let mut p = Policy::default();
    for n in names {
        p.allow("SSID1", Entry::parse(n).unwrap(), &[]).unwrap();
    }
    p
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// One round over every policy name, then a publication.
fn sync(rt: &tokio::runtime::Runtime, engine: &mut Engine) -> (TrustMap, Vec<NameReport>) {
    let names = engine.all_names();
    let (_, reports) = rt.block_on(engine.round(names));
    (engine.publish().unwrap(), reports)
}

/// The sync refreshes a name when its TTL (2 s here) runs out; so does the resolver cache.
fn wait_ttl() {
    std::thread::sleep(Duration::from_millis(2200));
}

fn report<'a>(reports: &'a [NameReport], name: &str) -> &'a NameReport {
    reports.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no report for {name}"))
}

fn published(map: &TrustMap, name: &str) -> bool {
    !map.associations(name).is_empty()
}

fn org(o: &str) -> Issued {
    capki::issue(&Spec::ca(o, &format!("{o} Device CA")), None)
}

fn device(ca: &Issued, o: &str, name: &str) -> Issued {
    capki::issue(&Spec::leaf(o, name), Some(ca))
}

#[test]
fn dane_ee_counts_only_from_a_secure_zone_pkix_cd_also_from_an_insecure_one() {
    let w = World::new();
    let cars = org("Cars");
    w.serve_ca(&cars);
    w.serve_ca_b(&cars);
    let (ee_secure, ee_loose, cd_loose) =
        ("ee1._device.cars.example", "ee2._device.loose.example", "cd3._device.loose.example");
    w.publish(CARS, ee_secure, 3, &device(&cars, "Cars", ee_secure));
    w.publish(LOOSE, ee_loose, 3, &device(&cars, "Cars", ee_loose));
    w.publish(LOOSE, cd_loose, 4, &device(&cars, "Cars", cd_loose));
    let rt = runtime();
    let mut e = w.engine("ee", &[]);
    e.set_policy(policy(&[ee_secure, ee_loose, cd_loose]));
    let (map, reports) = sync(&rt, &mut e);

    assert!(published(&map, ee_secure), "{}", report(&reports, ee_secure));
    assert!(!published(&map, ee_loose), "DANE-EE from an insecure zone must not count");
    let r = report(&reports, ee_loose);
    assert_eq!(r.dns, "insecure");
    assert!(r.records[0].result.as_ref().unwrap_err().contains("needs a DNSSEC-secure answer"), "{r}");
    assert!(published(&map, cd_loose), "PKIX-CD is authenticated by its chain: {}", report(&reports, cd_loose));
}

#[test]
fn bogus_signatures_drop_the_name_and_only_that_name() {
    let mut w = World::new();
    let cars = org("Cars");
    w.serve_ca(&cars);
    let (a, b) = ("car1._device.cars.example", "car2._device.cars.example");
    w.publish(CARS, a, 4, &device(&cars, "Cars", a));
    w.publish(CARS, b, 4, &device(&cars, "Cars", b));
    let rt = runtime();
    let mut e = w.engine("bogus", &[]);
    e.set_policy(policy(&[a, b]));
    let (map, _) = sync(&rt, &mut e);
    assert!(published(&map, a) && published(&map, b));

    w.dns.break_signatures(CARS, "car1._device");
    wait_ttl();
    let (map, reports) = sync(&rt, &mut e);
    assert_eq!(report(&reports, a).dns, "bogus");
    assert!(!published(&map, a), "a bogus answer revokes at once");
    assert!(published(&map, b));
    assert!(!logs_matching("bogus", "DNSSEC bogus, name dropped").is_empty());
}

#[test]
fn rogue_ca_copying_an_established_ca_is_refused_and_logged_as_an_attack() {
    let w = World::new();
    let cars = org("Cars");
    w.serve_ca(&cars);
    let car = "car1._device.cars.example";
    w.publish(CARS, car, 4, &device(&cars, "Cars", car));
    let rt = runtime();
    let mut e = w.engine("rogue", &[]);
    e.set_policy(policy(&[car]));
    let (map, _) = sync(&rt, &mut e);
    assert!(published(&map, car));

    // Org B publishes a CA with org A's subject DN and key id but its own key, served by
    // its own authority host, and a device under it.
    let rogue = capki::issue(&Spec { ski: Some(cars.ski()), subject: cars_subject(), ..Spec::ca("x", "x") }, None);
    assert_eq!(rogue.ski(), cars.ski());
    // The authority host of meters.example serves it under the copied key id.
    w.serve_ca_b(&rogue);
    let evil = "aaa._device.meters.example";
    w.publish(METERS, evil, 4, &device(&rogue, "Meters", evil));
    e.set_policy(policy(&[car, evil]));
    let (map, _) = sync(&rt, &mut e);
    assert!(published(&map, car), "the established CA keeps its place");
    assert!(!published(&map, evil), "the rogue CA's device is refused");
    assert!(!logs_matching("rogue", "probable attack").is_empty(), "refusal logged as an attack");
    let ca_files = std::fs::read_dir(w.path("ca")).unwrap().count();
    assert_eq!(ca_files, 1, "only the legitimate CA is in the CA set");
}

fn cars_subject() -> Vec<(String, String)> {
    vec![("C".into(), "SE".into()), ("O".into(), "Cars".into()), ("CN".into(), "Cars Device CA".into())]
}

#[test]
fn two_new_cas_claiming_one_identity_are_both_refused() {
    let w = World::new();
    let real = org("Cars");
    let fake = capki::issue(&Spec { ski: Some(real.ski()), subject: cars_subject(), ..Spec::ca("x", "x") }, None);
    let (a, b) = ("car1._device.cars.example", "aaa._device.meters.example");
    w.serve_ca(&real);
    w.publish(CARS, a, 4, &device(&real, "Cars", a));
    w.serve_ca_b(&fake);
    w.publish(METERS, b, 4, &device(&fake, "Meters", b));
    let rt = runtime();
    let mut e = w.engine("contest", &[]);
    e.set_policy(policy(&[a, b]));
    let (map, _) = sync(&rt, &mut e);
    // Neither was established: trusting whichever sorts first would let the attacker win
    // by choosing its name. Fail closed and say so.
    assert!(!published(&map, a) && !published(&map, b));
    let attack = logs_matching("contest", "probable attack");
    assert_eq!(attack.len(), 1, "{attack:?}");
    assert!(attack[0].contains("device.cars.example") && attack[0].contains("device.meters.example"), "{attack:?}");
}

/// Both orders of arrival: whichever CA was in the CA set first keeps the contested
/// identity (DN and key id), the other is refused and the contest logged with both hosts;
/// and the refusal is not for good: once the kept one's names are gone, the other enters.
#[test]
fn a_contested_identity_stays_with_the_first_in_the_ca_set_until_it_leaves() {
    for attacker_first in [false, true] {
        let w = World::new();
        let real = org("Cars");
        let fake = capki::issue(&Spec { ski: Some(real.ski()), subject: cars_subject(), ..Spec::ca("x", "x") }, None);
        let (car, evil) = ("car1._device.cars.example", "aaa._device.meters.example");
        w.serve_ca(&real);
        w.publish(CARS, car, 4, &device(&real, "Cars", car));
        w.serve_ca_b(&fake);
        w.publish(METERS, evil, 4, &device(&fake, "Meters", evil));
        let (first, second) = if attacker_first { (evil, car) } else { (car, evil) };
        let rt = runtime();
        let label = if attacker_first { "order-b" } else { "order-a" };
        let mut e = w.engine(label, &[]);
        e.set_policy(policy(&[first]));
        let (map, _) = sync(&rt, &mut e);
        assert!(published(&map, first), "{label}: the first claimant alone is published");
        e.set_policy(policy(&[first, second]));
        let (map, _) = sync(&rt, &mut e);
        assert!(published(&map, first), "{label}: the first keeps its place");
        assert!(!published(&map, second), "{label}: the second is refused");
        let attack = logs_matching(label, "probable attack");
        assert!(!attack.is_empty(), "{label}: not logged");
        assert!(attack[0].contains("device.cars.example") && attack[0].contains("device.meters.example"), "{attack:?}");
        // The first one's names leave the policy: the second enters.
        e.set_policy(policy(&[second]));
        let (map, _) = sync(&rt, &mut e);
        assert!(published(&map, second), "{label}: a contest does not lock anyone out for good");
    }
}

#[test]
fn malformed_unusable_and_expired_records_are_reported_and_publish_nothing() {
    let w = World::new();
    let cars = org("Cars");
    w.serve_ca(&cars);
    let name = "car9._device.cars.example";
    let t = capki::now();
    let expired = capki::issue(&Spec::leaf("Cars", name).validity(t - 10 * 86_400, t - 86_400), Some(&cars));
    let owner = "car9._device";
    w.dns.set_tlsa(CARS, owner, 2, &format!("3 0 1 {}", "ab".repeat(31)));
    w.dns.add_record(CARS, owner, 2, "TLSA", "4 1 0 3059301306072a8648ce3d020106082a8648ce3d030107");
    w.dns.add_record(CARS, owner, 2, "TLSA", "2 0 0 308201");
    w.dns.add_record(CARS, owner, 2, "TLSA", "4 0 0 deadbeef");
    w.dns.add_record(CARS, owner, 2, "TLSA", &format!("4 0 0 {}", hex::encode(expired.cert.to_der().unwrap())));
    let rt = runtime();
    let mut e = w.engine("malformed", &[]);
    e.set_policy(policy(&[name]));
    let (map, reports) = sync(&rt, &mut e);
    assert!(!published(&map, name));
    let r = report(&reports, name);
    assert_eq!(r.records.len(), 5, "{r}");
    let reasons: Vec<&str> = r.records.iter().map(|x| x.result.as_ref().unwrap_err().as_str()).collect();
    assert!(reasons.iter().any(|x| x.contains("31")), "{r}");
    assert!(reasons.iter().any(|x| x.to_lowercase().contains("expired")), "{r}");
    assert!(logs_matching("malformed", "withdrawn: no usable TLSA record").len() == 1);
}

#[test]
fn dns_outage_keeps_the_last_good_entry_until_max_stale() {
    let mut w = World::new();
    let cars = org("Cars");
    w.serve_ca(&cars);
    let name = "car1._device.cars.example";
    w.publish(CARS, name, 4, &device(&cars, "Cars", name));
    let rt = runtime();
    let mut e = w.engine("stale", &[("max_stale", "6s")]);
    e.set_policy(policy(&[name]));
    let (map, _) = sync(&rt, &mut e);
    assert!(published(&map, name));

    w.dns.stop();
    wait_ttl();
    let (map, reports) = sync(&rt, &mut e);
    assert_eq!(report(&reports, name).dns, "failed");
    assert!(published(&map, name), "a failed lookup keeps the last good entry");
    std::thread::sleep(Duration::from_secs(5));
    let (map, _) = sync(&rt, &mut e);
    assert!(!published(&map, name), "older than max_stale: dropped, fail closed");
    assert!(!logs_matching("stale", "unconfirmed by DNS for max_stale").is_empty());
}

#[test]
fn unreachable_ca_server_is_a_transient_failure_not_a_revocation() {
    let w = World::new();
    let cars = org("Cars");
    // The CA is never served: every fetch answers 404 (definitive), then the server is
    // made to stall (transient).
    let name = "car1._device.cars.example";
    w.publish(CARS, name, 4, &device(&cars, "Cars", name));
    let rt = runtime();
    let mut e = w.engine("ca-down", &[]);
    e.set_policy(policy(&[name]));
    let (map, reports) = sync(&rt, &mut e);
    assert!(!published(&map, name));
    assert!(report(&reports, name).records[0].result.as_ref().unwrap_err().contains("not found"));
    assert!(!logs_matching("ca-down", "withdrawn").is_empty(), "a missing CA is definitive");

    let path = format!("/.well-known/ca/{}", well_known_name(&cars.cert));
    w.web.route(&path, testkit::https::Route::Stall(Duration::from_secs(3)));
    let plain = format!("/.well-known/ca/{}.pem", hex::encode(cars.ski()));
    w.web.route(&plain, testkit::https::Route::Stall(Duration::from_secs(3)));
    let mut e = w.engine("ca-stall", &[]);
    e.set_policy(policy(&[name]));
    let (map, _) = sync(&rt, &mut e);
    assert!(!published(&map, name));
    assert!(!logs_matching("ca-stall", "lookup failed, keeping last good").is_empty(), "a timeout is transient");
}

#[test]
fn persisted_snapshot_restores_associations_and_ca_chains() {
    let w = World::new();
    let cars = org("Cars");
    w.serve_ca(&cars);
    let name = "car1._device.cars.example";
    w.publish(CARS, name, 4, &device(&cars, "Cars", name));
    let rt = runtime();
    let mut e = w.engine("persist", &[]);
    e.set_policy(policy(&[name]));
    let (map, _) = sync(&rt, &mut e);
    let saved = TrustMap::load(Path::new(&w.path("map.json"))).unwrap();
    assert_eq!(saved.associations(name), map.associations(name));
    assert_eq!(saved.cas().len(), 1, "the chain's CA travels with the snapshot");

    // A new engine (radiusd restart) with DNS gone still publishes the restored entry.
    let mut e2 = w.engine("persist2", &[("dns_servers", "127.0.0.1:9")]);
    e2.restore(&saved);
    let (map2, _) = sync(&rt, &mut e2);
    assert!(published(&map2, name));
    assert_eq!(map2.generation, saved.generation + 1);
}

/// The authority host replaces a CA under the same key id (here: the identity reused for a
/// new key). The CA cached from the first round must not decide the second: the sync asks
/// the host again when a cached CA does not verify a child, and publishes the new device.
#[test]
fn a_ca_replaced_under_its_key_id_is_fetched_again_not_served_from_the_cache() {
    let w = World::new();
    let old = org("Cars");
    w.serve_ca(&old);
    let (a, b) = ("car1._device.cars.example", "car2._device.cars.example");
    w.publish(CARS, a, 4, &device(&old, "Cars", a));
    let rt = runtime();
    let mut e = w.engine("replaced", &[("min_interval", "1h"), ("max_interval", "2h")]);
    e.set_policy(policy(&[a]));
    let (map, _) = sync(&rt, &mut e);
    assert!(published(&map, a));

    let new = capki::issue(&Spec { ski: Some(old.ski()), subject: cars_subject(), ..Spec::ca("x", "x") }, None);
    w.serve_ca(&new);
    w.publish(CARS, b, 4, &device(&new, "Cars", b));
    e.set_policy(policy(&[b]));
    let (map, reports) = sync(&rt, &mut e);
    assert!(published(&map, b), "{}", report(&reports, b));
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(der))
}

fn der(i: &Issued) -> Vec<u8> {
    i.cert.to_der().unwrap()
}

/// An organisation admitted by its domain: `*._device.cars.example TLSA 2 0 0 <its CA>`.
/// Names under the domain are looked up when they show up (never others); each gets the
/// trust anchor, whose certificate goes into the CA set; a device's own records at its
/// exact name take precedence (how one device of a fleet is singled out); a name under a
/// domain entry without any record is remembered as "nothing published".
#[test]
fn a_domain_entry_admits_devices_by_the_dane_ta_at_its_wildcard() {
    let w = World::new();
    let cars = org("Cars");
    w.serve_ca(&cars);
    w.dns.set_tlsa(CARS, "*._device", 2, &format!("2 0 0 {}", hex::encode(der(&cars))));
    let (bus1, car9, bus9) = ("bus1._device.cars.example", "car9._device.cars.example", "bus9._device.meters.example");
    let car9_cert = device(&cars, "Cars", car9);
    w.tlsa(CARS, car9, &format!("3 0 1 {}", sha256_hex(&der(&car9_cert))));
    let rt = runtime();
    let mut e = w.engine("wild", &[]);
    e.set_policy(policy(&["*._device.cars.example", "*._device.meters.example"]));
    for n in [bus1, car9, bus9, "evil._device.cars.example.attacker.example", "a.bus1._device.cars.example"] {
        e.hint(n);
    }
    assert_eq!((e.stats().hints_admitted, e.stats().hints_not_covered), (3, 2), "only names right under a domain");
    let (_, reports) = rt.block_on(e.round(vec![bus1.into(), car9.into(), bus9.into()]));
    let map = e.publish().unwrap();

    let ta = map.associations(bus1);
    assert_eq!(ta.len(), 1, "{}", report(&reports, bus1));
    assert_eq!((ta[0].usage, ta[0].selector, ta[0].matching), (Usage::DaneTa, Selector::Cert, Matching::Full));
    assert_eq!(ta[0].digest, Digest::Sha256(openssl::sha::sha256(&der(&cars))));
    let own = map.associations(car9);
    assert_eq!(own.len(), 1, "its own record, not the wildcard's: {}", report(&reports, car9));
    assert_eq!((own[0].usage, own[0].matching), (Usage::DaneEe, Matching::Sha256));
    let negative = map.entry(bus9).expect("a name under a domain entry without records is remembered");
    assert!(negative.associations.is_empty());
    let ca_files = std::fs::read_dir(w.path("ca")).unwrap().count();
    assert_eq!(ca_files, 1, "the trust anchor is the CA set");
}

/// A trust anchor published only as its key (`2 1 0`) is fetched from the organisation's
/// authority host by the key id of that key; one published as a digest (`2 0 1`) is found
/// among the CAs the sync has already seen.
#[test]
fn dane_ta_by_key_or_digest_finds_the_anchor_certificate_for_the_ca_set() {
    let w = World::new();
    let (cars, meters) = (org("Cars"), org("Meters"));
    w.serve_ca(&cars);
    w.serve_ca_b(&meters);
    let meters_spki = rlm_rust::model::pki::spki_der(&meters.cert).unwrap();
    w.dns.set_tlsa(METERS, "*._device", 2, &format!("2 1 0 {}", hex::encode(&meters_spki)));
    w.dns.set_tlsa(CARS, "*._device", 2, &format!("2 0 1 {}", sha256_hex(&der(&cars))));
    let car1 = "car1._device.cars.example";
    w.publish(CARS, car1, 4, &device(&cars, "Cars", car1));
    let (bus1, m1) = ("bus1._device.cars.example", "m1._device.meters.example");
    let rt = runtime();
    let mut e = w.engine("ta-forms", &[]);
    e.set_policy(policy(&[car1, "*._device.cars.example", "*._device.meters.example"]));
    // car1's chain brings the Cars CA first; then the digest record finds it.
    rt.block_on(e.round(vec![car1.into()]));
    e.hint(bus1);
    e.hint(m1);
    let (_, reports) = rt.block_on(e.round(vec![bus1.into(), m1.into()]));
    let map = e.publish().unwrap();
    assert!(published(&map, bus1) && published(&map, m1));
    let said = |n: &str| report(&reports, n).to_string();
    assert!(said(bus1).contains("trust anchor /C=SE/O=Cars/CN=Cars Device CA"), "{}", said(bus1));
    assert!(said(m1).contains("trust anchor /C=SE/O=Meters/CN=Meters Device CA"), "{}", said(m1));
    let ca_files = std::fs::read_dir(w.path("ca")).unwrap().count();
    assert_eq!(ca_files, 2, "both anchors in the CA set");
}

/// At start-up the persisted snapshot is aged before anything is served: an entry older
/// than max_stale, or whose certificate expired, is not served even with DNS down.
#[test]
fn a_restored_snapshot_is_expired_before_it_is_served() {
    let w = World::new();
    let cars = org("Cars");
    w.serve_ca(&cars);
    let (fresh, old) = ("car1._device.cars.example", "car2._device.cars.example");
    w.publish(CARS, fresh, 4, &device(&cars, "Cars", fresh));
    w.publish(CARS, old, 4, &device(&cars, "Cars", old));
    let rt = runtime();
    let mut e = w.engine("aged", &[]);
    e.set_policy(policy(&[fresh, old]));
    sync(&rt, &mut e);
    // Age car2's entry in the file by two hours.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.path("map.json")).unwrap()).unwrap();
    let t = json["names"][old]["verified_at"].as_i64().unwrap();
    json["names"][old]["verified_at"] = serde_json::json!(t - 7200);
    std::fs::write(w.path("map.json"), json.to_string()).unwrap();
    let saved = TrustMap::load(Path::new(&w.path("map.json"))).unwrap();
    let mut e2 = w.engine("aged2", &[("dns_servers", "127.0.0.1:9"), ("max_stale", "1h")]);
    e2.restore(&saved);
    let served = e2.publish().unwrap();
    assert!(published(&served, fresh));
    assert!(!published(&served, old), "older than max_stale: never served");
    assert!(!logs_matching("aged2", "not served from the persisted map").is_empty());
}

/// A flood of random names under a permitted domain, handed to the running sync thread:
/// admissions stay within the domain's rate, lookups within the discovery pool, and a
/// policy name's withdrawal still reaches the map within its TTL.
#[test]
fn a_flood_of_new_names_stays_within_the_caps_and_never_delays_a_withdrawal() {
    let w = World::new();
    let cars = org("Cars");
    w.serve_ca(&cars);
    let car1 = "car1._device.cars.example";
    w.publish(CARS, car1, 4, &device(&cars, "Cars", car1));
    let extra = [("discovery_rate", "5"), ("discovery_concurrency", "2")];
    let lines = format!("SSID1|{car1}\nSSID1|*._device.meters.example\n");
    let (sync, cell) = w.thread("flood", &lines, &extra);
    let has = |n: &str| cell.load().as_ref().is_some_and(|m| !m.associations(n).is_empty());
    assert!(testkit::poll_until(Duration::from_secs(10), || has(car1)), "car1 never published");

    let start = Instant::now();
    let mut sent = 0;
    let mut withdrawn_at = None;
    let mut gone_after = None;
    while start.elapsed() < Duration::from_secs(4) {
        for _ in 0..50 {
            let name = format!("x{sent}._device.meters.example");
            sync.hint(rlm_rust::sync::ondemand::Hint::new(&name).unwrap());
            sent += 1;
        }
        if withdrawn_at.is_none() && start.elapsed() > Duration::from_millis(500) {
            w.dns.remove(CARS, "car1._device", "TLSA");
            withdrawn_at = Some(Instant::now());
        }
        if let (Some(t), None) = (withdrawn_at, gone_after) {
            if !has(car1) {
                gone_after = Some(t.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = start.elapsed().as_secs_f64();
    if gone_after.is_none() {
        assert!(testkit::poll_until(Duration::from_secs(5), || !has(car1)), "car1 never withdrawn");
        gone_after = withdrawn_at.map(|t| t.elapsed());
    }
    let gone = gone_after.unwrap();
    let stats = sync.stats();
    eprintln!("flood: {sent} hints in {elapsed:.1} s, stats {stats:?}, withdrawal visible after {gone:.2?}");
    assert!(gone <= Duration::from_secs(2 + 3), "the withdrawal took {gone:?}");
    let burst_and_rate = 5.0 + 5.0 * (elapsed + 1.0);
    assert!((stats.hints_admitted as f64) <= burst_and_rate, "{} admitted", stats.hints_admitted);
    assert!(stats.hints_over_rate > 0, "the rate cap never applied");
    assert!(stats.max_discovery_in_flight <= 2, "{} discovery lookups in flight", stats.max_discovery_in_flight);
}

/// A hostile zone: a name with hundreds of TLSA records, dozens of them leaves of CAs
/// served one byte a second. Its lookups end at name_timeout and the record cap keeps them
/// small, while another name's withdrawal reaches the trust map within its TTL and a few
/// seconds.
#[test]
fn a_hostile_zone_cannot_hold_back_another_names_withdrawal() {
    let mut body = String::new();
    // Leaves of 40 different CAs: every such record needs a CA fetch of its own. (The whole
    // RRset must fit one 64 KiB DNS message, or no server could hand it out at all.)
    for i in 0..40 {
        let ca = capki::issue(&Spec::ca("Hostile", &format!("Hostile CA {i}")), None);
        let leaf = device(&ca, "Hostile", "evil._device.hostile.example");
        body.push_str(&format!("evil._device 2 TLSA 4 0 0 {}\n", hex::encode(der(&leaf))));
    }
    // And hundreds more that sort after them (the sync looks at records in a fixed order).
    for i in 0..300u32 {
        body.push_str(&format!("evil._device 2 TLSA 4 1 1 {}\n", sha256_hex(&i.to_be_bytes())));
    }
    let w = World::with_zones(vec![Zone::signed("hostile.example", &body).with_ttl(2)]);
    w.web_b.route_all(testkit::https::Route::Dribble(Duration::from_secs(1)));
    let cars = org("Cars");
    w.serve_ca(&cars);
    let car1 = "car1._device.cars.example";
    w.publish(CARS, car1, 4, &device(&cars, "Cars", car1));
    let lines = format!("SSID1|{car1}\nSSID1|evil._device.hostile.example\n");
    let (sync, cell) = w.thread("hostile", &lines, &[("name_timeout", "4"), ("https_timeout", "2")]);
    let has = |n: &str| cell.load().as_ref().is_some_and(|m| !m.associations(n).is_empty());
    assert!(testkit::poll_until(Duration::from_secs(10), || has(car1)), "car1 never published");
    // The hostile name is being looked up now.
    assert!(testkit::poll_until(Duration::from_secs(5), || sync.stats().refresh_in_flight >= 1));
    let removed = Instant::now();
    w.dns.remove(CARS, "car1._device", "TLSA");
    assert!(testkit::poll_until(Duration::from_secs(10), || !has(car1)), "car1 never withdrawn");
    let took = removed.elapsed();
    assert!(testkit::poll_until(Duration::from_secs(10), || sync.stats().timeouts >= 1), "{:?}", sync.stats());
    eprintln!("hostile zone: withdrawal visible after {took:.2?}; stats {:?}", sync.stats());
    assert!(took <= Duration::from_secs(2 + 3), "the withdrawal took {took:?}");
    assert!(!has("evil._device.hostile.example"));
}

/// The policy fetched from the organisation's server: conditional requests (an unchanged
/// document costs a 304), a new version applied with its bad entries reported, a document
/// that does not parse and a server that goes away change nothing, a restart while it is
/// away starts from the kept copy, and the server coming back is followed again.
#[test]
fn a_policy_url_is_followed_conditionally_and_its_last_good_copy_survives_the_server() {
    let w = World::new();
    let cars = org("Cars");
    w.serve_ca(&cars);
    let (car1, car2) = ("car1._device.cars.example", "car2._device.cars.example");
    w.publish(CARS, car1, 4, &device(&cars, "Cars", car1));
    w.publish(CARS, car2, 4, &device(&cars, "Cars", car2));
    let doc = |members: &[&str]| {
        let members: Vec<String> = members.iter().map(|m| format!("{m:?}")).collect();
        format!(r#"{{"name": "fleet", "roles": [{{"name": "SSID1", "members": [{}]}}]}}"#, members.join(", "))
    };
    let path = "/policy.json";
    let serve = |server: &HttpsServer, body: String, etag: &str| {
        server.route(path, testkit::https::Route::Versioned { body: body.into_bytes(), etag: etag.into() })
    };
    let web = HttpsServer::start_at(&w.pki, None, w.policy_addr);
    serve(&web, doc(&[car1]), "v1");
    let url = format!("https://{POLICY_HOST}{path}");
    let opts = [("policy", url.as_str()), ("policy_refresh", "200ms")];
    let (mut sync, cell) = w.thread("url", "", &opts);
    let has = |cell: &SnapshotCell, n: &str| cell.load().as_ref().is_some_and(|m| !m.associations(n).is_empty());
    assert!(testkit::poll_until(Duration::from_secs(10), || has(&cell, car1)), "car1 never published");
    assert!(testkit::poll_until(Duration::from_secs(5), || web.not_modified(path) >= 2), "no conditional request");
    assert!(!has(&cell, car2));

    // A new version, one of its entries bad: applied, the bad entry reported.
    serve(&web, doc(&[car1, car2, "not a name"]), "v2");
    assert!(testkit::poll_until(Duration::from_secs(10), || has(&cell, car2)), "v2 never applied");
    assert!(!logs_matching("url", "not a name").is_empty(), "the bad entry was not reported");

    // A document that does not parse, then no server at all: the last good policy stays.
    serve(&web, "{\"roles\": [".into(), "broken");
    assert!(testkit::poll_until(Duration::from_secs(5), || !logs_matching("url", "keeping the last good policy")
        .is_empty()));
    drop(web);
    assert!(testkit::poll_until(Duration::from_secs(5), || !logs_matching("url", "Connection refused").is_empty()));
    assert!(has(&cell, car1) && has(&cell, car2), "a failed fetch changed the policy");

    // radiusd restarts while the server is away: the kept copy is the policy.
    sync.stop();
    std::fs::remove_file(w.path("url.json")).unwrap();
    let (mut sync, cell) = w.thread("url", "", &opts);
    assert!(
        testkit::poll_until(Duration::from_secs(10), || has(&cell, car1) && has(&cell, car2)),
        "the kept policy was not used"
    );
    assert!(!logs_matching("url", "starting from the copy kept from the last fetch").is_empty());

    // The server comes back with a version without car1.
    let web = HttpsServer::start_at(&w.pki, None, w.policy_addr);
    serve(&web, doc(&[car2]), "v3");
    assert!(testkit::poll_until(Duration::from_secs(10), || !has(&cell, car1)), "v3 never applied");
    assert!(has(&cell, car2));
    assert!(!logs_matching("url", "answering again").is_empty());
    // Each poll while the source fails traces it at debug level; the operator is told
    // (error) once per outage: the broken document, whose outage the refused connections
    // continued, and the restarted thread's first failure.
    let reports: Vec<String> =
        logs_matching("url", "keeping the last good policy").into_iter().filter(|l| l.starts_with("ERROR ")).collect();
    assert_eq!(reports.len(), 2, "one report per outage and restart: {reports:#?}");
    assert!(reports[1].contains("Connection refused"), "{reports:#?}");
    sync.stop();
}

/// A disk that refuses the trust map file must not hold a withdrawal back: the new
/// generation is served from memory at once, and the file catches up once the disk takes
/// it again.
#[test]
fn a_trust_map_file_that_cannot_be_written_does_not_hold_back_a_withdrawal() {
    let w = World::new();
    let cars = org("Cars");
    w.serve_ca(&cars);
    let (car1, car2) = ("car1._device.cars.example", "car2._device.cars.example");
    w.publish(CARS, car1, 4, &device(&cars, "Cars", car1));
    w.publish(CARS, car2, 4, &device(&cars, "Cars", car2));
    let lines = format!("SSID1|{car1}\nSSID1|{car2}\n");
    let (mut sync, cell) = w.thread("diskfail", &lines, &[("persist_interval", "1")]);
    let has = |n: &str| cell.load().as_ref().is_some_and(|m| !m.associations(n).is_empty());
    assert!(testkit::poll_until(Duration::from_secs(10), || has(car1) && has(car2)), "never published");

    // The file's place is taken by a directory: every rename onto it fails.
    let file = w.path("diskfail.json");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    w.dns.remove(CARS, "car1._device", "TLSA");
    assert!(testkit::poll_until(Duration::from_secs(10), || !has(car1)), "the failed write held the withdrawal back");
    assert!(has(car2));
    assert!(
        testkit::poll_until(Duration::from_secs(5), || !logs_matching("diskfail", "diskfail.json").is_empty()),
        "the failed write was not reported"
    );

    // The disk takes writes again: the file catches up without any further DNS change.
    std::fs::remove_dir(&file).unwrap();
    let on_disk = || TrustMap::load(Path::new(&file)).ok();
    assert!(
        testkit::poll_until(Duration::from_secs(15), || on_disk()
            .is_some_and(|m| m.associations(car1).is_empty() && !m.associations(car2).is_empty())),
        "the trust map file never caught up"
    );
    sync.stop();
}

/// A map large enough is written by a thread of its own, so the sync never waits for the
/// disk: restored from a previous run's file, it is served at once, the file catches up
/// with the published generations, and on stop it holds the last one.
#[test]
fn a_large_trust_map_is_written_off_the_sync_thread_and_complete_at_stop() {
    let w = World::new();
    let names: Vec<String> = (0..12_000).map(|i| format!("dev{i}._device.cars.example")).collect();
    let lines: String = names.iter().map(|n| format!("SSID1|{n}\n")).collect();
    let mut policy = Policy::default();
    let mut entries = std::collections::BTreeMap::new();
    let now = rlm_rust::clock::unix_now();
    for (i, n) in names.iter().enumerate() {
        policy.allow("SSID1", Entry::Name(n.clone()), &[]).unwrap();
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let a = rlm_rust::model::association::Association {
            usage: Usage::DaneEe,
            selector: Selector::Cert,
            matching: Matching::Sha256,
            digest: Digest::Sha256(d),
            not_after: None,
        };
        entries.insert(
            n.clone(),
            rlm_rust::model::trustmap::NameEntry { associations: [a].into(), verified_at: now, ..Default::default() },
        );
    }
    let file = w.path("big.json");
    TrustMap::new(policy, entries, 5, now).write_atomic(Path::new(&file)).unwrap();

    let (mut sync, cell) = w.thread("big", &lines, &[]);
    let generation = || cell.load().as_ref().map_or(0, |m| m.generation);
    assert!(testkit::poll_until(Duration::from_secs(20), || generation() > 5), "the restored map was not served");
    let on_disk = || TrustMap::load(Path::new(&file)).map_or(0, |m| m.generation);
    assert!(testkit::poll_until(Duration::from_secs(30), || on_disk() > 5), "the file never caught up");
    sync.stop();
    assert_eq!(on_disk(), generation(), "on stop the file holds the last published generation");
    assert!(logs_matching("big", "writer panicked").is_empty());
}
