//! Fleet admission end to end: a policy entry `SSID|*._device.cars.example` admits devices
//! never listed by name, by the organisation's trust anchor published once at the wildcard
//! owner (`*._device.cars.example TLSA 2 0 0 <CA>`, DANE-TA). Real parts: knotd serving
//! signed zones, the HTTPS CA server, radiusd with the module, `eapol_test`.
//!
//! The module resolves through a loopback forwarder to knotd (`testkit::dnsproxy`): it
//! logs every query (knotd keeps no query log), which shows what the sync looked up, and
//! can slow the answer for one name, so a first attempt comes in before its discovery ends.
//!
//! Wildcard answers need NSEC3-signed zones (hickory 0.26 calls a wildcard answer proven by
//! NSEC bogus): every test signs the device zones with NSEC3 except the one that shows an
//! NSEC zone fails closed.
//!
//! Every authentication runs under TLS 1.2 and again under TLS 1.3 (`for_each_tls_version`);
//! where a first attempt must find its name never seen, each version gets its own fleet or
//! its own device names.

use std::time::{Duration, Instant};

use testkit::capki::{self, Spec};
use testkit::dns::Zone;
use testkit::eapol::{for_each_tls_version, TlsVersion};
use testkit::fleet::{
    assert_pending_or_accepted, decision, device_files, issuer, nsec3, publish_anchor, Fleet, CARS_FLEET, CARS_WIFI,
    PENDING, WAIT,
};
use testkit::pki::Device;
use testkit::skip;
use testkit::stack::{StackOptions, CARS, METERS, TTL};

const METERS_WIFI: &str = "Meters-WiFi";
const METERS_FLEET: &str = "*._device.meters.example";
const BUS1: &str = "bus1._device.cars.example";
const BUS2: &str = "bus2._device.cars.example";
const BUS3: &str = "bus3._device.cars.example";
const BUS4: &str = "bus4._device.cars.example";
const BUS5: &str = "bus5._device.cars.example";
const CAR13: &str = "car13._device.cars.example";
const CAR54: &str = "car54._device.cars.example";
const M1: &str = "m1._device.meters.example";
/// The attacker's own (signed) zone.
const ATTACKER: &str = "attacker.example";

const NOT_PUBLISHED: &str = "reason=name has no published certificate association";
const NO_MATCH: &str = "reason=certificate matches no association of the name";
const NOT_ALLOWED: &str = "reason=name not allowed on SSID";

/// How long the forwarder holds a slowed name's queries: longer than a whole EAP-TLS
/// handshake on loopback (tens of ms), well under the module's DNS timeout (1 s).
const SLOW_DNS: Duration = Duration::from_millis(500);

/// The first device of a fleet: nothing of the domain is in the CA set or the trust map
/// yet. Its DNS answer is slowed beyond the handshake, so the first attempt is decided
/// before discovery ends: the check must reject it as "discovery pending" (EAP-Failure);
/// the retry is accepted and the name is in the trust map.
#[test]
fn the_first_device_of_a_fleet_is_rejected_pending_discovery_then_admitted_on_retry() {
    if skip() {
        return;
    }
    // A fleet per version: each first attempt is the fleet's first.
    for_each_tls_version(|tls| {
        let f = Fleet::cars(nsec3());
        f.dns.delay(BUS1, SLOW_DNS);
        let bus1 = f.st.lab.cars_device("bus1", BUS1);
        assert_eq!(f.entry(BUS1), None, "never listed, never seen");

        let t0 = Instant::now();
        let (first, log) = f.attempt(&bus1, BUS1, CARS_WIFI);
        let first_done = t0.elapsed();
        let in_map = f.wait_entry(BUS1, "in the trust map with the anchor", |n| n == Some(1)) + first_done;
        let mark = f.rd.mark();
        let retry = f.st.lab.eapol(&f.st.lab.supplicant(&bus1, CARS_WIFI));
        retry.assert_accepted();
        f.rd.wait_for(mark, &decision("accept", BUS1, CARS_WIFI), WAIT);
        eprintln!(
            "first device ({tls}): first attempt done after {first_done:.2?}, {BUS1} in the trust map {in_map:.2?} \
             after it started (DNS slowed by {SLOW_DNS:?})"
        );
        let what = assert_pending_or_accepted(&first, &log, BUS1, CARS_WIFI);
        eprintln!("first device ({tls}): first attempt {what}");
    });
}

/// A further device of a fleet whose anchor is in the CA set already (bus1 brought it):
/// bus2's first attempt races its discovery (outcome recorded), bus3's DNS answer is slowed
/// so its first attempt is rejected as "discovery pending"; each retry is accepted and each
/// name is in the trust map. Prints the measured discovery times.
#[test]
fn a_further_fleet_device_is_rejected_pending_discovery_or_admitted_then_admitted_on_retry() {
    if skip() {
        return;
    }
    let f = Fleet::cars(nsec3());
    let bus1 = f.st.lab.cars_device("bus1", BUS1);
    let t0 = Instant::now();
    for_each_tls_version(|tls| {
        let tries = f.admit(&bus1, CARS_WIFI);
        eprintln!("fleet: first device {BUS1} admitted ({tls}) after {tries} tries, {:.2?}", t0.elapsed());
    });

    // Names never seen, two per version: the first races its discovery, the second's
    // answer is held back.
    for_each_tls_version(|tls| {
        let (racing, slowed) = match tls {
            TlsVersion::Tls12 => (("bus2", BUS2), ("bus3", BUS3)),
            TlsVersion::Tls13 => (("bus4", BUS4), ("bus5", BUS5)),
        };
        f.dns.delay(slowed.1, SLOW_DNS);
        for (stem, name) in [racing, slowed] {
            let device = f.st.lab.cars_device(stem, name);
            assert_eq!(f.entry(name), None, "{name}: never listed, never seen");
            let t0 = Instant::now();
            let (first, log) = f.attempt(&device, name, CARS_WIFI);
            let what = assert_pending_or_accepted(&first, &log, name, CARS_WIFI);
            if name == slowed.1 {
                assert_eq!(what, "rejected: discovery pending", "its answer was held back {SLOW_DNS:?}");
            }
            let in_map = f.wait_entry(name, "in the trust map with the anchor", |n| n == Some(1));
            let took = t0.elapsed();
            let mark = f.rd.mark();
            f.st.lab.eapol(&f.st.lab.supplicant(&device, CARS_WIFI)).assert_accepted();
            f.rd.wait_for(mark, &decision("accept", name, CARS_WIFI), WAIT);
            assert!(f.tlsa_queries(name) >= 1, "{name} looked up: {:?}", f.dns.queries());
            eprintln!(
                "fleet ({tls}): {name} first attempt {what}; in the trust map {took:.2?} after it started (waited \
                 {in_map:.2?} after it ended){}",
                if name == slowed.1 { format!("; DNS slowed by {SLOW_DNS:?}") } else { String::new() }
            );
        }
    });
}

/// One device of the fleet is revoked by a record at its own name: a TXT record there
/// makes the name exist, so the wildcard no longer answers for it and its TLSA query gets
/// NODATA. car13 (admitted before) is then rejected, bus1 still accepted.
#[test]
fn a_fleet_device_revoked_by_its_own_record_is_rejected_while_the_fleet_stays_admitted() {
    if skip() {
        return;
    }
    let f = Fleet::cars(nsec3());
    let bus1 = f.st.lab.cars_device("bus1", BUS1);
    let car13 = f.st.lab.cars_device("car13", CAR13);
    for_each_tls_version(|_| {
        f.admit(&bus1, CARS_WIFI);
        f.admit(&car13, CARS_WIFI);
    });

    let revoked = Instant::now();
    f.st.dns.add_record(CARS, "car13._device", TTL, "TXT", "\"revoked\"");
    f.wait_entry(CAR13, "left with no association", |n| n == Some(0));
    let took = revoked.elapsed();
    eprintln!("fleet revocation: TXT at {CAR13} -> its entry empty after {took:.2?} (TTL {TTL} s)");
    assert!(took <= Duration::from_secs(u64::from(TTL) + 3), "revocation took {took:?}");

    for_each_tls_version(|_| {
        let (r, log) = f.attempt(&car13, CAR13, CARS_WIFI);
        r.assert_rejected_with_eap_failure();
        assert!(log.contains(&format!("{} {NOT_PUBLISHED}", decision("reject", CAR13, CARS_WIFI))), "{log}");
        let (r, log) = f.attempt(&bus1, BUS1, CARS_WIFI);
        r.assert_accepted();
        assert!(log.contains(&decision("accept", BUS1, CARS_WIFI)), "{log}");
    });
    assert_eq!(f.associations(BUS1), Some(1), "the wildcard still answers for the rest of the fleet");
}

/// Names that merely contain the domain, or sit two labels below it, are not covered by
/// the domain entry: rejected ("name not allowed on SSID") and never looked up, although
/// DNS would vouch for both (the attacker's own signed zone publishes a DANE-EE record for
/// its certificate; the fleet's wildcard also answers for names deeper below the domain).
#[test]
fn names_outside_the_domain_entry_are_rejected_and_never_looked_up() {
    if skip() {
        return;
    }
    let opts = StackOptions { extra_zones: vec![Zone::signed(ATTACKER, "").with_ttl(TTL).with_nsec3()], ..nsec3() };
    let f = Fleet::cars(opts);
    // bus1 brings the Cars CA into the CA set, so TLS completes for the certificates below
    // and the check decides.
    let bus1 = f.st.lab.cars_device("bus1", BUS1);
    for_each_tls_version(|_| {
        f.admit(&bus1, CARS_WIFI);
    });

    let suffix_trick = "evil._device.cars.example.attacker.example";
    let deeper = "x.bus1._device.cars.example";
    let cars_ca = issuer(&f.st.lab.pki.cars_ca);
    let evil = capki::issue(&Spec::leaf("Attacker", suffix_trick), Some(&cars_ca));
    f.st.dns.set_tlsa(
        ATTACKER,
        "evil._device.cars.example",
        TTL,
        &format!("3 0 0 {}", hex::encode(evil.cert.to_der().unwrap())),
    );
    let evil = device_files(&f.st, "evil", suffix_trick, &evil, &[&f.st.lab.pki.cars_ca.cert]);
    let deep = f.st.lab.cars_device("deep", deeper);
    let served = f.st.dns.dig(deeper, "TLSA");
    assert!(served.starts_with("2 0 0 "), "the fleet's wildcard answers for {deeper} too: {served:?}");
    for_each_tls_version(|_| {
        for device in [&evil, &deep] {
            let (r, log) = f.attempt(device, &device.name, CARS_WIFI);
            r.assert_rejected_with_eap_failure();
            assert!(log.contains("rlm_rust: captured the presented certificate"), "TLS completed:\n{log}");
            assert!(log.contains(&format!("{} {NOT_ALLOWED}", decision("reject", &device.name, CARS_WIFI))), "{log}");
            assert!(!log.contains(&format!("looking up {}", device.name)), "handed to the sync:\n{log}");
        }
    });
    // A barrier: hints are taken in order, so once a later name's query reaches DNS, any
    // lookup of the names above would have been sent.
    let bus2 = f.st.lab.cars_device("bus2", BUS2);
    let _ = f.attempt(&bus2, BUS2, CARS_WIFI);
    assert!(testkit::poll_until(WAIT, || f.tlsa_queries(BUS2) > 0), "{BUS2} never looked up: {:?}", f.dns.queries());

    assert_eq!(f.dns.queries_under(ATTACKER), vec![], "the attacker's zone was queried");
    assert_eq!(f.dns.queries_under(deeper), vec![], "the deeper name was queried");
    assert!(f.tlsa_queries(BUS1) >= 1, "the forwarder sees the sync's lookups");
    for name in [suffix_trick, deeper] {
        assert_eq!(f.entry(name), None, "{name} in the trust map");
        assert!(!f.rd.log().contains(&format!("rlm_rust[rust]: {name}")), "the sync logged {name}");
    }
}

/// Both organisations admitted by their domain, each on its own SSID (Cars-WiFi,
/// Meters-WiFi), each anchor in the CA set because a device of each was admitted (m1,
/// bus1): the Meters CA is one TLS accepts, so a certificate it issues reaches the check.
fn two_fleets() -> (Fleet, Device) {
    let policy = [(CARS_WIFI, CARS_FLEET), (METERS_WIFI, METERS_FLEET)];
    let (f, ()) = Fleet::start(nsec3(), &policy, |st| {
        publish_anchor(st, CARS, &st.lab.pki.cars_ca);
        publish_anchor(st, METERS, &st.lab.pki.meters_ca);
    });
    let bus1 = f.st.lab.cars_device("bus1", BUS1);
    let m1 = f.st.lab.meters_device("m1", M1);
    for_each_tls_version(|_| {
        f.admit(&m1, METERS_WIFI);
        f.admit(&bus1, CARS_WIFI);
    });
    (f, bus1)
}

/// Cross-domain signing through a trust anchor: a Meters-CA certificate for
/// `bus1._device.cars.example` (SAN and CN that name) is rejected on Cars-WiFi.
#[test]
fn another_organisations_trust_anchor_cannot_sign_for_the_fleet() {
    if skip() {
        return;
    }
    let (f, _) = two_fleets();
    let forged = f.st.lab.meters_device("bus1-by-meters", BUS1);
    for_each_tls_version(|_| {
        let (r, log) = f.attempt(&forged, BUS1, CARS_WIFI);
        r.assert_rejected_with_eap_failure();
        assert!(log.contains("rlm_rust: captured the presented certificate"), "TLS completed:\n{log}");
        assert!(log.contains(&format!("{} {NO_MATCH}", decision("reject", BUS1, CARS_WIFI))), "{log}");
        assert!(!log.contains(&decision("accept", BUS1, CARS_WIFI)), "{log}");
    });
}

/// The Cars anchor certificate merely sent along is not a chain through it: a Meters-CA
/// leaf for bus1 sent as [leaf, Cars CA] (where a check of the sent certificates would
/// find the anchor right above the leaf) is verified by OpenSSL through the Meters CA, and
/// rejected.
#[test]
fn a_chain_that_only_carries_the_anchor_certificate_is_rejected() {
    if skip() {
        return;
    }
    let (f, _) = two_fleets();
    let meters_ca = issuer(&f.st.lab.pki.meters_ca);
    let leaf = capki::issue(&Spec::leaf("Test Devices", BUS1), Some(&meters_ca));
    let forged = device_files(&f.st, "bus1-carrying-anchor", BUS1, &leaf, &[&f.st.lab.pki.cars_ca.cert]);
    for_each_tls_version(|_| {
        let (r, log) = f.attempt(&forged, BUS1, CARS_WIFI);
        r.assert_rejected_with_eap_failure();
        assert!(
            log.contains("rlm_rust: captured the presented certificate") && log.contains("and a verified chain of 2"),
            "TLS completed, through leaf and Meters CA:\n{log}"
        );
        // What FreeRADIUS prints of depth 1 is the verified issuer, not the certificate sent there.
        assert!(log.contains("TLS-Cert-Common-Name := \"Meters Device CA\""), "{log}");
        assert!(!log.contains("TLS-Cert-Common-Name := \"Cars Device CA\""), "{log}");
        assert!(log.contains(&format!("{} {NO_MATCH}", decision("reject", BUS1, CARS_WIFI))), "{log}");
        assert!(!log.contains(&decision("accept", BUS1, CARS_WIFI)), "{log}");
    });
}

/// DANE-TA vouches for every certificate under the anchor, so the certificate must carry
/// the name it claims: a Cars-CA certificate whose SAN is bus2 (CN bus1) claiming bus1 is
/// rejected, while bus1's own is accepted.
#[test]
fn a_certificate_from_the_anchor_for_another_name_is_rejected() {
    if skip() {
        return;
    }
    let f = Fleet::cars(nsec3());
    let bus1 = f.st.lab.cars_device("bus1", BUS1);
    let cars_ca = issuer(&f.st.lab.pki.cars_ca);
    let spec = Spec { sans: vec![BUS2.to_string()], ..Spec::leaf("Test Devices", BUS1) };
    let other = capki::issue(&spec, Some(&cars_ca));
    let other = device_files(&f.st, "bus2-as-bus1", BUS1, &other, &[&f.st.lab.pki.cars_ca.cert]);
    for_each_tls_version(|_| {
        f.admit(&bus1, CARS_WIFI);
        let (r, log) = f.attempt(&other, BUS1, CARS_WIFI);
        r.assert_rejected_with_eap_failure();
        assert!(log.contains("rlm_rust: captured the presented certificate"), "TLS completed:\n{log}");
        assert!(log.contains(&format!("{} {NO_MATCH}", decision("reject", BUS1, CARS_WIFI))), "{log}");
    });
}

/// The validator's known limitation: in an NSEC-signed zone a wildcard answer is Bogus, so
/// a device published only through the fleet's wildcard is rejected (fail closed), on its
/// first attempt and after its lookup; a device with its own record in the same zone is
/// admitted, and DNS does serve the anchor for the fleet device.
#[test]
fn under_nsec_a_wildcard_only_fleet_device_is_rejected() {
    if skip() {
        return;
    }
    let policy = [(CARS_WIFI, CAR54), (CARS_WIFI, CARS_FLEET)];
    let (f, car54) = Fleet::start(StackOptions::default(), &policy, |st| {
        publish_anchor(st, CARS, &st.lab.pki.cars_ca);
        // car54's own PKIX-CD record brings the Cars CA into the CA set: TLS completes for
        // the fleet device, and the check decides.
        let car54 = st.lab.cars_device("car54", CAR54);
        st.publish(CARS, &car54);
        car54
    });
    let served = f.st.dns.dig(BUS1, "TLSA");
    assert!(served.starts_with("2 0 0 "), "knotd answers the wildcard for {BUS1}: {served:?}");
    f.wait_entry(CAR54, "published", |n| n == Some(1));
    for_each_tls_version(|_| {
        f.admit(&car54, CARS_WIFI);
    });

    let bus1 = f.st.lab.cars_device("bus1", BUS1);
    let reject = decision("reject", BUS1, CARS_WIFI);
    // Before the lookup ends or after (the TLS 1.3 try comes second): pending, or nothing published.
    for_each_tls_version(|_| {
        let (r, log) = f.attempt(&bus1, BUS1, CARS_WIFI);
        r.assert_rejected_with_eap_failure();
        assert!(
            log.contains(&format!("{reject} {PENDING}")) || log.contains(&format!("{reject} {NOT_PUBLISHED}")),
            "{log}"
        );
    });
    let sync_log = f.rd.wait_for(0, &format!("rlm_rust[rust]: {BUS1}: DNSSEC bogus"), WAIT);
    let said = sync_log.lines().find(|l| l.contains("DNSSEC bogus")).unwrap_or_default().to_owned();
    assert_eq!(f.associations(BUS1), Some(0), "remembered as nothing published");
    for_each_tls_version(|_| {
        let (r, log) = f.attempt(&bus1, BUS1, CARS_WIFI);
        r.assert_rejected_with_eap_failure();
        assert!(log.contains(&format!("{reject} {NOT_PUBLISHED}")), "{log}");
    });
    eprintln!("under NSEC: the sync said {said:?}; the check: {NOT_PUBLISHED}");
}
