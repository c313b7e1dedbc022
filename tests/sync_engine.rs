//! The trust sync's decisions against real DNS (knotd, DNSSEC) and a real HTTPS server,
//! without radiusd: what gets published, what is refused and why. Adversarial cases: DANE-EE
//! from an insecure zone, bogus signatures, a rogue CA copying another's subject and key
//! id, malformed and unusable records, expired certificates, DNS and CA server outages.

mod support;

use std::path::Path;
use std::sync::{Mutex, Once};
use std::time::Duration;

use rlm_rust::discover::NameReport;
use rlm_rust::policy::{Policy, Role};
use rlm_rust::sync::Engine;
use rlm_rust::trustmap::TrustMap;
use support::capki::{self, Issued, Spec};
use support::dns::{DnsServer, Zone};
use support::https::{HttpsServer, WebPki};
use support::stack::well_known_name;

const CARS: &str = "cars.example";
const METERS: &str = "meters.example";
const LOOSE: &str = "loose.example"; // unsigned, under the signed fake root: provably insecure

/// Captures the sync's log records so tests can assert what it reported.
struct Capture(Mutex<Vec<String>>);

static LOGS: Capture = Capture(Mutex::new(Vec::new()));

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        self.0.lock().unwrap().push(format!("{}", r.args()));
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
}

impl World {
    fn new() -> World {
        install_logger();
        let dir = tempfile::tempdir().unwrap();
        let dns = DnsServer::start(vec![
            Zone::signed(CARS, "").with_ttl(2),
            Zone::signed(METERS, "").with_ttl(2),
            Zone::unsigned(LOOSE, "").with_ttl(2),
        ]);
        let pki = WebPki::new(dir.path(), &["device.cars.example", "device.meters.example", "device.loose.example"]);
        let docroot = dir.path().join("www-a");
        let docroot_b = dir.path().join("www-b");
        for d in [&docroot, &docroot_b] {
            std::fs::create_dir_all(d.join(".well-known/ca")).unwrap();
        }
        let web = HttpsServer::start(&pki, Some(docroot.clone()));
        let web_b = HttpsServer::start(&pki, Some(docroot_b.clone()));
        World { web_root: pki.root_pem.clone(), dir, dns, web, web_b, docroot, docroot_b }
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
                format!("device.cars.example={addr} device.meters.example={addr_b} device.loose.example={addr_b}"),
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

    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }
}

fn policy(names: &[&str]) -> Policy {
    let mut p = Policy::default();
    p.ssids.insert("SSID1".into(), Role { members: names.iter().map(|n| n.to_string()).collect(), reply: vec![] });
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
    assert_eq!(logs_matching("contest", "probable attack").len(), 2);
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
    w.web.route(&path, support::https::Route::Stall(Duration::from_secs(3)));
    let plain = format!("/.well-known/ca/{}.pem", hex::encode(cars.ski()));
    w.web.route(&plain, support::https::Route::Stall(Duration::from_secs(3)));
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
