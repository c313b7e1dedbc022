//! The DNS trust sync inside a real radiusd: knotd with DNSSEC-signed zones publishes the
//! devices' TLSA records, an HTTPS server publishes their CAs, `eapol_test` authenticates.
//!
//! Each test asserts the RADIUS outcome and the module's logged reason. Revocation is
//! measured: the time from removing a TLSA record (TTL 2 s) to the name leaving the trust
//! map is printed and bounded.

mod support;

use std::time::{Duration, Instant};

use support::pki::{LeafSpec, CAR54, METER7};
use support::stack::{Stack, CARS, METERS, TTL};

const CARS_WIFI: &str = "Cars-WiFi";
const METERS_WIFI: &str = "Meters-WiFi";

/// Removal -> trust map without the name: TTL, plus the resolver's TTL rounding and one
/// sync poll; anything beyond this bound is a bug in the refresh schedule.
fn revocation_bound() -> Duration {
    Duration::from_secs(u64::from(TTL) + 3)
}

fn skip() -> bool {
    if std::env::var_os("RLM_RUST_SKIP_EAP_TLS").is_some() {
        eprintln!("RLM_RUST_SKIP_EAP_TLS set: skipping");
        return true;
    }
    false
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
    // in the CA set for org B's own devices); the pin check must not.
    let forged = st.lab.meters_device("car54-forged", CAR54);
    st.publish(CARS, &car54);
    st.publish(METERS, &meter7);
    st.set_policy(&[(CARS_WIFI, CAR54), (METERS_WIFI, METER7)]);
    let rd = st.start();
    st.wait_published(&rd, CAR54, true, Duration::from_secs(20));
    st.wait_published(&rd, METER7, true, Duration::from_secs(20));

    let mark = rd.mark();
    st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted();
    rd.wait_for(mark, &format!("rlm_rust[rust]: accept name={CAR54} ssid={CARS_WIFI}"), Duration::from_secs(5));

    st.lab.eapol(&st.lab.supplicant(&meter7, METERS_WIFI)).assert_accepted();

    let mark = rd.mark();
    st.lab.eapol(&st.lab.supplicant(&forged, CARS_WIFI)).assert_rejected_with_eap_failure();
    rd.wait_for(mark, "reason=certificate matches no pin of the name", Duration::from_secs(5));

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
    st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted();

    let removed = Instant::now();
    st.withdraw(CARS, &car54);
    let took = st.wait_published(&rd, CAR54, false, Duration::from_secs(30));
    let delay = removed.elapsed();
    eprintln!("revocation: TLSA removed -> name out of the trust map in {delay:.2?} (TTL {TTL} s; poll {took:.2?})");
    assert!(delay <= revocation_bound(), "revocation took {delay:?}, bound {:?}", revocation_bound());

    let mark = rd.mark();
    st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_rejected_with_eap_failure();
    rd.wait_for(mark, "reason=name has no published certificate", Duration::from_secs(5));

    st.publish(CARS, &car54);
    st.wait_published(&rd, CAR54, true, Duration::from_secs(20));
    st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted();
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
    st.lab.eapol(&st.lab.supplicant(&meter7, METERS_WIFI)).assert_rejected_with_eap_failure();

    // Publishing it in DNS and the policy makes the sync fetch org B's CA and write it to
    // ca_path; the same radiusd process then completes the handshake.
    st.publish(METERS, &meter7);
    st.set_policy(&[(CARS_WIFI, CAR54), (METERS_WIFI, METER7)]);
    st.wait_published(&rd, METER7, true, Duration::from_secs(20));
    let mark = rd.mark();
    st.lab.eapol(&st.lab.supplicant(&meter7, METERS_WIFI)).assert_accepted();
    rd.wait_for(mark, &format!("accept name={METER7}"), Duration::from_secs(5));
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
    let mark = rd.mark();
    st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted();
    rd.wait_for(mark, &format!("accept name={CAR54}"), Duration::from_secs(5));
    assert!(rd.log().contains("serving persisted trust map"), "{}", rd.log());
    // The sync keeps trying and keeps the last good entry (max_stale is 1 h here).
    support::poll_until(Duration::from_secs(10), || rd.log().contains("lookup failed, keeping last good"));
    st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted();
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
        .leaf(&st.lab.pki.cars_ca, &LeafSpec { stem: "car60", cn, sans: &[name], aki: support::pki::Aki::KeyId });
    st.publish(CARS, &car60);
    st.register(cn, &car60);
    st.set_policy(&[(CARS_WIFI, name)]);
    let rd = st.start();
    st.wait_published(&rd, name, true, Duration::from_secs(20));
    st.lab.eapol(&st.lab.supplicant(&car60, CARS_WIFI)).assert_accepted();

    let removed = Instant::now();
    st.unregister(cn);
    st.wait_published(&rd, name, false, Duration::from_secs(30));
    let delay = removed.elapsed();
    eprintln!("registry revocation: 3 0 1 removed -> name out of the trust map in {delay:.2?}");
    assert!(delay <= revocation_bound() + Duration::from_secs(u64::from(TTL)), "took {delay:?}");
    let mark = rd.mark();
    st.lab.eapol(&st.lab.supplicant(&car60, CARS_WIFI)).assert_rejected_with_eap_failure();
    rd.wait_for(mark, "reason=name has no published certificate", Duration::from_secs(5));
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
    support::trustmap::replace_atomically(&st.policy, text.as_bytes());
    st.wait_published(&rd, METER7, true, Duration::from_secs(20));
    let log = rd.wait_for(mark, "an IP address is not a device name", Duration::from_secs(5));
    let file = st.policy.display().to_string();
    assert!(log.contains(&format!("{file}:3: device name \"10.0.0.7\"")), "{log}");
    assert!(log.contains(&format!("{file}:4: expected SSID|device-name")), "{log}");
    st.lab.eapol(&st.lab.supplicant(&meter7, METERS_WIFI)).assert_accepted();

    // The policy file disappears: the error is logged and the last policy stays.
    let mark = rd.mark();
    std::fs::remove_file(&st.policy).unwrap();
    rd.wait_for(mark, "keeping the previous policy", Duration::from_secs(5));
    st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI)).assert_accepted();
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
    let out = std::process::Command::new(support::trustmap::cli())
        .args(["sync", "--config"])
        .arg(&module_file)
        .args(["--raddb", &st.lab.raddb.display().to_string()])
        .arg(format!("--set=ca_path={}", st.lab.root.join("cli-ca").display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "not every name pinned -> exit 1\n{text}");
    assert!(text.contains(&format!("{CAR54}: DNS secure")), "{text}");
    assert!(text.contains("TLSA 4 0 0 (") && text.contains("pinned /O=Test Devices/CN=car54"), "{text}");
    assert!(text.contains(&format!("{missing}: DNS no-records")), "{text}");
    assert!(text.contains("2 names looked up") && text.contains("1 pinned"), "{text}");
}
