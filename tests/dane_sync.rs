//! The DNS trust sync inside a real radiusd: knotd with DNSSEC-signed zones publishes the
//! devices' TLSA records, an HTTPS server publishes their CAs, `eapol_test` authenticates.
//!
//! Each test asserts the RADIUS outcome and the module's logged reason, every
//! authentication under TLS 1.2 and again under TLS 1.3 against the same radiusd.
//! Revocation is measured: the time from removing a TLSA record (TTL 2 s) to the name
//! leaving the trust map is printed and bounded.

use std::time::{Duration, Instant};

use openssl::x509::X509;
use testkit::eapol::for_each_tls_version;
use testkit::pki::{Device, LeafSpec, CAR54, METER7};
use testkit::skip;
use testkit::stack::{Stack, CARS, METERS, TTL};

const CARS_WIFI: &str = "Cars-WiFi";
const METERS_WIFI: &str = "Meters-WiFi";

/// Removal -> trust map without the name: TTL, plus the resolver's TTL rounding and one
/// sync poll; anything beyond this bound is a bug in the refresh schedule.
fn revocation_bound() -> Duration {
    Duration::from_secs(u64::from(TTL) + 3)
}

#[test]
fn published_device_is_accepted_and_cross_domain_certificate_rejected() {
    if skip() {
        return;
    }
    let mut st = Stack::new();
    let car54 = st.lab.cars_device("car54", CAR54);
    let meter7 = st.lab.meters_device("meter7", METER7);
    // Org B's CA issues a certificate for org A's name: TLS will accept it (org B's CA is
    // in the CA set for org B's own devices); the certificate binding must not.
    let forged = st.lab.meters_device("car54-forged", CAR54);
    st.publish(CARS, &car54);
    st.publish(METERS, &meter7);
    st.set_policy(&[(CARS_WIFI, CAR54), (METERS_WIFI, METER7)]);
    let rd = st.start();
    st.wait_published(&rd, CAR54, true, Duration::from_secs(20));
    st.wait_published(&rd, METER7, true, Duration::from_secs(20));

    for_each_tls_version(|_| {
        let mark = rd.mark();
        st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted();
        rd.wait_for(mark, &format!("rlm_rust[rust]: accept name={CAR54} ssid={CARS_WIFI}"), Duration::from_secs(5));

        st.lab.eapol(&st.lab.supplicant(&meter7, METERS_WIFI)).assert_accepted();

        let mark = rd.mark();
        st.lab.eapol(&st.lab.supplicant(&forged, CARS_WIFI)).assert_rejected_with_eap_failure();
        rd.wait_for(mark, "reason=certificate matches no association of the name", Duration::from_secs(5));
    });

    // The CA set on disk was written by the sync, in OpenSSL hashed form.
    let ca_files = std::fs::read_dir(st.lab.certdir.join("dane-ca")).unwrap().count();
    assert_eq!(ca_files, 2, "both organisations' CAs, nothing else");
}

#[test]
fn removed_tlsa_record_revokes_within_its_ttl_and_republishing_restores() {
    if skip() {
        return;
    }
    let mut st = Stack::new();
    let car54 = st.lab.cars_device("car54", CAR54);
    st.publish(CARS, &car54);
    st.set_policy(&[(CARS_WIFI, CAR54)]);
    let rd = st.start();
    st.wait_published(&rd, CAR54, true, Duration::from_secs(20));
    for_each_tls_version(|_| st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted());

    let removed = Instant::now();
    st.withdraw(CARS, &car54);
    let took = st.wait_published(&rd, CAR54, false, Duration::from_secs(30));
    let delay = removed.elapsed();
    eprintln!("revocation: TLSA removed -> name out of the trust map in {delay:.2?} (TTL {TTL} s; poll {took:.2?})");
    assert!(delay <= revocation_bound(), "revocation took {delay:?}, bound {:?}", revocation_bound());

    for_each_tls_version(|_| {
        let mark = rd.mark();
        st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_rejected_with_eap_failure();
        rd.wait_for(mark, "reason=name has no published certificate association", Duration::from_secs(5));
    });

    st.publish(CARS, &car54);
    st.wait_published(&rd, CAR54, true, Duration::from_secs(20));
    for_each_tls_version(|_| st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted());
}

#[test]
fn a_ca_added_by_the_sync_is_used_by_the_running_server() {
    if skip() {
        return;
    }
    let mut st = Stack::new();
    let car54 = st.lab.cars_device("car54", CAR54);
    st.publish(CARS, &car54);
    st.set_policy(&[(CARS_WIFI, CAR54)]);
    let rd = st.start();
    st.wait_published(&rd, CAR54, true, Duration::from_secs(20));

    // Org B was never in the CA set: its device fails at the TLS layer.
    let meter7 = st.lab.meters_device("meter7", METER7);
    for_each_tls_version(|_| st.lab.eapol(&st.lab.supplicant(&meter7, METERS_WIFI)).assert_rejected_with_eap_failure());

    // Publishing it in DNS and the policy makes the sync fetch org B's CA and write it to
    // ca_path; the same radiusd process then completes the handshake.
    st.publish(METERS, &meter7);
    st.set_policy(&[(CARS_WIFI, CAR54), (METERS_WIFI, METER7)]);
    st.wait_published(&rd, METER7, true, Duration::from_secs(20));
    for_each_tls_version(|_| {
        let mark = rd.mark();
        st.lab.eapol(&st.lab.supplicant(&meter7, METERS_WIFI)).assert_accepted();
        rd.wait_for(mark, &format!("accept name={METER7}"), Duration::from_secs(5));
    });
}

#[test]
fn restart_with_dns_down_serves_the_persisted_snapshot() {
    if skip() {
        return;
    }
    let mut st = Stack::new();
    let car54 = st.lab.cars_device("car54", CAR54);
    st.publish(CARS, &car54);
    st.set_policy(&[(CARS_WIFI, CAR54)]);
    let mut rd = st.start();
    st.wait_published(&rd, CAR54, true, Duration::from_secs(20));
    rd.stop();

    // DNS goes away (knotd killed), then radiusd restarts.
    st.dns.stop();
    let rd = st.start();
    for_each_tls_version(|_| {
        let mark = rd.mark();
        st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted();
        rd.wait_for(mark, &format!("accept name={CAR54}"), Duration::from_secs(5));
    });
    assert!(rd.log().contains("serving persisted trust map"), "{}", rd.log());
    // The sync keeps trying and keeps the last good entry (max_stale is 1 h here).
    testkit::poll_until(Duration::from_secs(10), || rd.log().contains("lookup failed, keeping last good"));
    for_each_tls_version(|_| st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted());
}

#[test]
fn iot_registry_entry_is_required_and_revocable() {
    if skip() {
        return;
    }
    let mut st = Stack::new();
    // A registry-issued device: CN under iotregistry.ca, SAN = its DANE identity.
    let cn = "car60.reg._device.iotregistry.ca";
    let name = "car60._device.cars.example";
    let car60 = st
        .lab
        .pki
        .leaf(&st.lab.pki.cars_ca, &LeafSpec { stem: "car60", cn, sans: &[name], aki: testkit::pki::Aki::KeyId });
    st.publish(CARS, &car60);
    st.register(cn, &car60);
    st.set_policy(&[(CARS_WIFI, name)]);
    let rd = st.start();
    st.wait_published(&rd, name, true, Duration::from_secs(20));
    for_each_tls_version(|_| st.lab.eapol(&st.lab.supplicant(&car60, CARS_WIFI)).assert_accepted());

    let removed = Instant::now();
    st.unregister(cn);
    st.wait_published(&rd, name, false, Duration::from_secs(30));
    let delay = removed.elapsed();
    eprintln!("registry revocation: 3 0 1 removed -> name out of the trust map in {delay:.2?}");
    assert!(delay <= revocation_bound() + Duration::from_secs(u64::from(TTL)), "took {delay:?}");
    for_each_tls_version(|_| {
        let mark = rd.mark();
        st.lab.eapol(&st.lab.supplicant(&car60, CARS_WIFI)).assert_rejected_with_eap_failure();
        rd.wait_for(mark, "reason=name has no published certificate association", Duration::from_secs(5));
    });
}

#[test]
fn policy_changes_apply_live_bad_lines_are_reported_and_an_unreadable_policy_keeps_the_last() {
    if skip() {
        return;
    }
    let mut st = Stack::new();
    let car54 = st.lab.cars_device("car54", CAR54);
    let meter7 = st.lab.meters_device("meter7", METER7);
    st.publish(CARS, &car54);
    st.publish(METERS, &meter7);
    st.set_policy(&[(CARS_WIFI, CAR54)]);
    let rd = st.start();
    st.wait_published(&rd, CAR54, true, Duration::from_secs(20));

    // A policy with bad lines: each reported with file:line and reason, the rest loads.
    let mark = rd.mark();
    let text = format!("{CARS_WIFI}|{CAR54}\n{METERS_WIFI}|{METER7}\n{METERS_WIFI}|10.0.0.7\nno-pipe-here\n");
    testkit::trustmap::replace_atomically(&st.policy, text.as_bytes());
    st.wait_published(&rd, METER7, true, Duration::from_secs(20));
    let log = rd.wait_for(mark, "an IP address is not a device name", Duration::from_secs(5));
    let file = st.policy.display().to_string();
    assert!(log.contains(&format!("{file}:3: device name \"10.0.0.7\"")), "{log}");
    assert!(log.contains(&format!("{file}:4: expected SSID|device-name")), "{log}");
    for_each_tls_version(|_| st.lab.eapol(&st.lab.supplicant(&meter7, METERS_WIFI)).assert_accepted());

    // The policy file disappears: the error is logged and the last policy stays.
    let mark = rd.mark();
    std::fs::remove_file(&st.policy).unwrap();
    rd.wait_for(mark, "keeping the last good policy", Duration::from_secs(5));
    for_each_tls_version(|_| st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted());
    assert!(st.published_names().contains(&CAR54.to_string()));
}

#[test]
fn config_check_with_the_sync_loads_and_exits() {
    if skip() {
        return;
    }
    let st = Stack::new();
    let t = Instant::now();
    let (ok, out) = st.lab.config_check();
    assert!(ok, "freeradius -C failed:\n{out}");
    assert!(out.contains("Configuration appears to be OK"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(20), "the sync thread must not hold up exit");
}

#[test]
fn operator_cli_runs_one_sync_with_the_module_config_and_explains_each_name() {
    if skip() {
        return;
    }
    let st = Stack::new();
    let car54 = st.lab.cars_device("car54", CAR54);
    st.publish(CARS, &car54);
    let missing = "car99._device.cars.example";
    st.set_policy(&[(CARS_WIFI, CAR54), (CARS_WIFI, missing)]);
    let module_file = st.lab.raddb.join("mods-enabled/rust");
    let out = std::process::Command::new(testkit::trustmap::cli())
        .args(["sync", "--config"])
        .arg(&module_file)
        .args(["--raddb", &st.lab.raddb.display().to_string()])
        .arg(format!("--set=ca_path={}", st.lab.root.join("cli-ca").display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "not every name published -> exit 1\n{text}");
    assert!(text.contains(&format!("{CAR54}: DNS secure")), "{text}");
    assert!(text.contains("TLSA 4 0 0 (") && text.contains(": published 4 0 0 sha256:"), "{text}");
    assert!(text.contains("/O=Test Devices/CN=car54"), "{text}");
    assert!(text.contains(&format!("{missing}: DNS no-records")), "{text}");
    assert!(text.contains("2 names looked up") && text.contains("1 published"), "{text}");
}

/// Writes `issued`'s certificate and key for a supplicant (the chain file holds only the
/// certificate: a self-signed device has nothing else to send).
fn device_files(st: &Stack, stem: &str, name: &str, issued: &testkit::capki::Issued) -> Device {
    let dir = &st.lab.work;
    let (cert, key) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
    std::fs::write(&cert, issued.pem()).unwrap();
    std::fs::write(&key, issued.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    Device { name: name.to_string(), cert: cert.clone(), key, chain: cert }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(bytes))
}

/// DANE-EE with no CA at all ("put a key in DNS"): a self-signed device certificate
/// published as `3 0 0` in a signed zone. The sync puts the certificate itself into the CA
/// set as its own anchor, so the handshake completes, and the check binds to it.
#[test]
fn self_signed_dane_ee_device_is_admitted_end_to_end() {
    if skip() {
        return;
    }
    let mut st = Stack::new();
    let name = "sensor1._device.cars.example";
    let issued = testkit::capki::issue(&testkit::capki::Spec::leaf("Sensors", name), None);
    let sensor = device_files(&st, "sensor1", name, &issued);
    st.dns.set_tlsa(CARS, "sensor1._device", TTL, &format!("3 0 0 {}", hex::encode(issued.cert.to_der().unwrap())));
    st.set_policy(&[(CARS_WIFI, name)]);
    let rd = st.start();
    st.wait_published(&rd, name, true, Duration::from_secs(20));
    let ca_set: Vec<_> = std::fs::read_dir(st.lab.certdir.join("dane-ca")).unwrap().collect();
    assert_eq!(ca_set.len(), 1, "the self-signed certificate is the whole CA set");

    for_each_tls_version(|_| {
        let mark = rd.mark();
        st.lab.eapol(&st.lab.supplicant(&sensor, CARS_WIFI)).assert_accepted();
        rd.wait_for(mark, &format!("accept name={name} ssid={CARS_WIFI}"), Duration::from_secs(5));
    });

    // Another self-signed certificate for the same name (same subject, another key) gets
    // through no TLS: it is not in the CA set.
    let other = testkit::capki::issue(&testkit::capki::Spec::leaf("Sensors", name), None);
    let other = device_files(&st, "sensor1-other", name, &other);
    for_each_tls_version(|_| st.lab.eapol(&st.lab.supplicant(&other, CARS_WIFI)).assert_rejected_with_eap_failure());
}

/// Digest records: `3 1 1` (the key), `3 0 1` and `3 0 2` (the certificate) are matched
/// against the captured digests; the devices' CA is in the CA set through another name's
/// PKIX-CD record. A certificate from another CA for the same name is refused.
#[test]
fn dane_ee_digest_records_match_the_captured_certificate() {
    if skip() {
        return;
    }
    let mut st = Stack::new();
    let car54 = st.lab.cars_device("car54", CAR54);
    st.publish(CARS, &car54);
    let names = ["car61._device.cars.example", "car62._device.cars.example", "car63._device.cars.example"];
    let devices: Vec<Device> =
        names.iter().zip(["car61", "car62", "car63"]).map(|(n, stem)| st.lab.cars_device(stem, n)).collect();
    let der = |d: &Device| X509::from_pem(&std::fs::read(&d.cert).unwrap()).unwrap();
    let spki = rlm_rust::model::pki::spki_der(&der(&devices[0])).unwrap();
    st.dns.set_tlsa(CARS, "car61._device", TTL, &format!("3 1 1 {}", sha256_hex(&spki)));
    st.dns.set_tlsa(CARS, "car62._device", TTL, &format!("3 0 1 {}", sha256_hex(&der(&devices[1]).to_der().unwrap())));
    let sha512 = hex::encode(openssl::sha::sha512(&der(&devices[2]).to_der().unwrap()));
    st.dns.set_tlsa(CARS, "car63._device", TTL, &format!("3 0 2 {sha512}"));
    let mut policy = vec![(CARS_WIFI, CAR54)];
    policy.extend(names.iter().map(|n| (CARS_WIFI, *n)));
    st.set_policy(&policy);
    // Org B's CA is in the CA set too (it issues for its own meter7).
    let meter7 = st.lab.meters_device("meter7", METER7);
    st.publish(METERS, &meter7);
    policy.push((METERS_WIFI, METER7));
    st.set_policy(&policy);
    let rd = st.start();
    for n in names.iter().chain([&METER7]) {
        st.wait_published(&rd, n, true, Duration::from_secs(20));
    }
    let forged = st.lab.meters_device("car61-forged", names[0]);
    for_each_tls_version(|_| {
        for (name, device) in names.iter().zip(&devices) {
            let mark = rd.mark();
            st.lab.eapol(&st.lab.supplicant(device, CARS_WIFI)).assert_accepted();
            rd.wait_for(mark, &format!("accept name={name} ssid={CARS_WIFI}"), Duration::from_secs(5));
        }
        let mark = rd.mark();
        st.lab.eapol(&st.lab.supplicant(&forged, CARS_WIFI)).assert_rejected_with_eap_failure();
        rd.wait_for(mark, "reason=certificate matches no association of the name", Duration::from_secs(5));
    });
}

/// A CA withdrawn from DNS stays cached in the running radiusd's OpenSSL store (removed CA
/// files are not forgotten until `ca_path_reload_interval`). Its DN and key id are then
/// reused for a different key, which DNS publishes a device under. Whoever still holds the
/// withdrawn CA's key can complete TLS through the stale copy, with a certificate copying
/// every printed field of the new device, CA fields included; nothing it presents is
/// admitted.
#[test]
fn a_stale_ca_cached_in_radiusd_admits_nothing_after_its_identity_is_reused() {
    if skip() {
        return;
    }
    let mut st = Stack::new();
    let car54 = st.lab.cars_device("car54", CAR54);
    st.publish(CARS, &car54);
    st.set_policy(&[(CARS_WIFI, CAR54)]);
    let rd = st.start();
    st.wait_published(&rd, CAR54, true, Duration::from_secs(20));
    // A handshake loads the CA into radiusd's store.
    for_each_tls_version(|_| st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted());

    // Withdrawn: the device's record and the CA leave DNS and .well-known.
    let old_ca = &st.lab.pki.cars_ca;
    let well_known = st.docroot.join(".well-known/ca").join(testkit::stack::well_known_name(&old_ca.cert));
    std::fs::remove_file(&well_known).unwrap();
    st.withdraw(CARS, &car54);
    st.wait_published(&rd, CAR54, false, Duration::from_secs(30));

    // The identity is reused: same DN, key id, serial and validity, another key; a new
    // device car99 is published under it and admitted.
    let new_key = testkit::capki::ec_key();
    let time = |t: &openssl::asn1::Asn1TimeRef| rlm_rust::model::pki::unix_time(t).unwrap();
    let reused = testkit::capki::issue(
        &testkit::capki::Spec {
            ski: Some(old_ca.cert.subject_key_id().unwrap().as_slice().to_vec()),
            serial: Some(old_ca.cert.serial_number().to_bn().unwrap().to_vec()),
            not_before: time(old_ca.cert.not_before()),
            not_after: time(old_ca.cert.not_after()),
            subject: vec![
                ("C".into(), "SE".into()),
                ("O".into(), "Cars Org".into()),
                ("CN".into(), "Cars Device CA".into()),
            ],
            ..testkit::capki::Spec::ca("x", "x").key(&new_key)
        },
        None,
    );
    assert_eq!(reused.cert.subject_name().try_cmp(old_ca.cert.subject_name()).unwrap(), std::cmp::Ordering::Equal);
    assert_eq!(reused.cert.serial_number().to_bn().unwrap(), old_ca.cert.serial_number().to_bn().unwrap());
    std::fs::write(&well_known, reused.pem()).unwrap();
    let car99_name = "car99._device.cars.example";
    let car99 = testkit::capki::issue(&testkit::capki::Spec::leaf("Test Devices", car99_name), Some(&reused));
    st.dns.set_tlsa(CARS, "car99._device", TTL, &format!("4 0 0 {}", hex::encode(car99.cert.to_der().unwrap())));
    st.set_policy(&[(CARS_WIFI, CAR54), (CARS_WIFI, car99_name)]);
    st.wait_published(&rd, car99_name, true, Duration::from_secs(30));

    // The old device, claiming its own (withdrawn) name: TLS still completes through the
    // stale CA; the name has nothing published.
    for_each_tls_version(|_| {
        let mark = rd.mark();
        st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_rejected_with_eap_failure();
        rd.wait_for(
            mark,
            &format!("reject name={CAR54} ssid={CARS_WIFI} reason=name has no published"),
            Duration::from_secs(5),
        );
    });

    // The holder of the withdrawn CA's key mints a copy of car99's certificate (serial,
    // subject, validity, key id, SAN) signed with it, claiming car99.
    let copy_key = testkit::capki::ec_key();
    let copy = testkit::capki::issue(
        &testkit::capki::Spec {
            ski: Some(vec![]),
            ..testkit::capki::Spec::leaf("Test Devices", car99_name)
                .name(car99.cert.subject_name())
                .serial(&car99.cert.serial_number().to_bn().unwrap().to_vec())
                .validity_of(&car99.cert)
                .key(&copy_key)
        },
        Some(&old_ca.issued()),
    );
    let copy = device_files(&st, "car99-copy", car99_name, &copy);
    for_each_tls_version(|_| {
        let mark = rd.mark();
        st.lab.eapol(&st.lab.supplicant(&copy, CARS_WIFI)).assert_rejected_with_eap_failure();
        let log = rd.wait_reply_logged(mark);
        assert!(
            log.contains("captured the presented certificate"),
            "TLS refused it, so the stale CA was not used:\n{log}"
        );
        assert!(
            log.contains(&format!(
                "reject name={car99_name} ssid={CARS_WIFI} reason=certificate matches no association of the name"
            )),
            "{log}"
        );
        assert!(!log.contains(&format!("accept name={car99_name}")), "{log}");
    });
}

/// The metrics listener while radiusd runs, scraped with a real HTTP client: decisions by
/// result and reason, names by state, the last round, DNS answers by DNSSEC class, the CA
/// set and the trust map generation; `rlm-rust status` shows the same per name, from the
/// running module and from the persisted trust map.
#[test]
fn metrics_and_status_are_served_while_radiusd_runs() {
    if skip() {
        return;
    }
    let mut st = Stack::new();
    st.lab.opts.rust_options.push(("metrics_port".into(), "0".into()));
    st.lab.render();
    let car54 = st.lab.cars_device("car54", CAR54);
    // meter7 brings org B's CA into the CA set, so the forgery reaches the check.
    let meter7 = st.lab.meters_device("meter7", METER7);
    let forged = st.lab.meters_device("car54-forged", CAR54);
    let missing = "car99._device.cars.example";
    st.publish(CARS, &car54);
    st.publish(METERS, &meter7);
    st.set_policy(&[(CARS_WIFI, CAR54), (CARS_WIFI, missing), (METERS_WIFI, METER7)]);
    let rd = st.start();
    st.wait_published(&rd, CAR54, true, Duration::from_secs(20));
    st.wait_published(&rd, METER7, true, Duration::from_secs(20));
    let line = rd.wait_for(0, "/metrics", Duration::from_secs(10));
    let base = line
        .lines()
        .find_map(|l| l.split("metrics at ").nth(1))
        .and_then(|u| u.strip_suffix("/metrics"))
        .expect("metrics URL in the log")
        .to_string();
    for_each_tls_version(|_| {
        st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted();
        st.lab.eapol(&st.lab.supplicant(&forged, CARS_WIFI)).assert_rejected_with_eap_failure();
    });

    let get = |path: &str| -> String {
        let out =
            std::process::Command::new("curl").args(["-sS", "--max-time", "5"]).arg(format!("{base}{path}")).output();
        let out = out.expect("curl");
        assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Names by state are recounted every second.
    let mut metrics = String::new();
    let seen = testkit::poll_until(Duration::from_secs(5), || {
        metrics = get("/metrics");
        metrics.contains("rlm_rust_names{instance=\"rust\",state=\"withdrawn\"} 1")
    });
    assert!(seen, "{metrics}");
    for want in [
        // Two of each (TLS 1.2 and 1.3). Each authentication is decided in the check-eap-tls
        // virtual server and again in post-auth; the forged certificate never gets past the
        // first.
        "rlm_rust_decisions_total{instance=\"rust\",stage=\"tls_check\",result=\"accept\",reason=\"\"} 2",
        "rlm_rust_decisions_total{instance=\"rust\",stage=\"post_auth\",result=\"accept\",reason=\"\"} 2",
        "rlm_rust_decisions_total{instance=\"rust\",stage=\"tls_check\",result=\"reject\",reason=\"no_association_match\"} 2",
        "rlm_rust_decisions_total{instance=\"rust\",stage=\"post_auth\",result=\"reject\",reason=\"no_association_match\"} 0",
        "rlm_rust_names{instance=\"rust\",state=\"published\"} 2",
        "rlm_rust_ca_set_size{instance=\"rust\"} 2",
        "rlm_rust_sync_last_round_timestamp_seconds{instance=\"rust\"}",
        "rlm_rust_dns_answers_total{instance=\"rust\",class=\"secure\"}",
        "rlm_rust_trust_map_generation{instance=\"rust\"}",
        "# EOF",
    ] {
        assert!(metrics.contains(want), "metrics lack {want}:\n{metrics}");
    }

    let cli = |args: &[&str]| {
        let out = std::process::Command::new(testkit::trustmap::cli()).arg("status").args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let live = cli(&["--url", &base]);
    assert!(live.contains("instance rust: trust map generation"), "{live}");
    assert!(live.contains("decisions at tls_check: 2 accepted; rejected: no_association_match 2"), "{live}");
    assert!(live.contains("decisions at post_auth: 2 accepted; rejected: none"), "{live}");
    let row = |text: &str, name: &str| text.lines().find(|l| l.starts_with(name)).map(str::to_owned);
    let car_row = row(&live, CAR54).unwrap_or_else(|| panic!("{live}"));
    assert!(car_row.contains("published"), "{car_row}");
    let missing_row = row(&live, missing).unwrap_or_else(|| panic!("{live}"));
    assert!(missing_row.contains("withdrawn") && missing_row.contains("no TLSA record"), "{missing_row}");

    let offline = cli(&["--trust-map", &st.lab.trust_map.display().to_string()]);
    assert!(offline.contains("persisted"), "{offline}");
    assert!(row(&offline, CAR54).is_some_and(|r| r.contains("published")), "{offline}");
}
