//! End-to-end EAP-TLS through real parts: `freeradius -X` loading the built `rlm_rust.so`
//! with the shipped `raddb/` files, `eapol_test` as the device, trust maps written by the
//! `rlm-rust` CLI, certificates from a throwaway two-organisation PKI in which TLS trusts
//! both device CAs (so rejecting the wrong organisation is the module's job).
//!
//! Every test asserts the RADIUS outcome, the module's logged decision, and for a reject
//! that the device got EAP-Failure and never EAP-Success; every authentication runs under
//! TLS 1.2 and again under TLS 1.3 (`for_each_tls_version`, which checks the version each
//! handshake negotiated), against the same radiusd. Each test has its own temp dir
//! and port, so they run in parallel. Needs `freeradius` (3.2) and `eapol_test`
//! (package eapoltest) on PATH; set `RLM_RUST_SKIP_EAP_TLS=1` to skip on machines
//! without them.

use std::path::Path;
use std::time::Duration;

use testkit::eapol::{for_each_tls_version, EapolResult, Supplicant, TlsVersion, AP_MAC_COLONS, AP_MAC_DASHES};
use testkit::pki::{CAR54, CAR55, CAR77, METER7};
use testkit::radiusd::{sent_block, Lab, Options, Radiusd};
use testkit::trustmap::{json_policy, line_policy, replace_atomically, Role};

const CARS_WIFI: &str = "Cars-WiFi";
const METERS_WIFI: &str = "Meters-WiFi";
const DEPOT_WIFI: &str = "Depot-WiFi";
const GUEST_WIFI: &str = "Guest-WiFi";

/// Whether to skip (explicitly asked, so a missing tool never silently passes CI).
fn skip() -> bool {
    if testkit::skip() {
        return true;
    }
    for p in ["freeradius", "eapol_test"] {
        assert!(
            testkit::have_program(p),
            "{p} not on PATH (install freeradius / eapoltest, or set RLM_RUST_SKIP_EAP_TLS=1)"
        );
    }
    false
}

/// The standard policy: car54 on Cars-WiFi (VLAN 10), meter7 on Meters-WiFi.
fn standard_policy() -> String {
    json_policy(
        "test",
        &[
            Role { ssid: CARS_WIFI, members: &[CAR54], reply: &[("Tunnel-Private-Group-Id", "10")] },
            Role { ssid: METERS_WIFI, members: &[METER7], reply: &[] },
        ],
    )
}

/// Runs one authentication and returns the supplicant's result and radiusd's log of it.
fn auth(lab: &Lab, rd: &Radiusd, s: &Supplicant) -> (EapolResult, String) {
    let mark = rd.mark();
    let r = lab.eapol(s);
    let log = rd.wait_reply_logged(mark);
    (r, log)
}

fn accept_line(instance: &str, name: &str, ssid: &str) -> String {
    format!("rlm_rust[{instance}]: accept name={name} ssid={ssid}")
}

fn reject_line(instance: &str, name: &str, ssid: &str, reason: &str) -> String {
    format!("rlm_rust[{instance}]: reject name={name} ssid={ssid} reason={reason}")
}

fn assert_accepted(r: &EapolResult, log: &str, instance: &str, name: &str, ssid: &str) {
    r.assert_accepted();
    let line = accept_line(instance, name, ssid);
    assert!(log.contains(&line), "log lacks {line:?}:\n{log}");
    assert!(log.contains("Sent Access-Accept"), "no Access-Accept logged:\n{log}");
    let reject = format!("rlm_rust[{instance}]: reject ");
    assert!(!log.contains(&reject), "a reject was logged for an accepted device:\n{log}");
}

/// The attributes radiusd logged for the first `packet` it sent, with `:=` shown as `=`.
fn sent(log: &str, packet: &str) -> String {
    let block = sent_block(log, packet).unwrap_or_else(|| panic!("no {packet} logged:\n{log}"));
    block.replace(" := ", " = ")
}

/// Reject with EAP-Failure, the module's reason logged, no keys in the reject.
fn assert_rejected(r: &EapolResult, log: &str, instance: &str, name: &str, ssid: &str, reason: &str) {
    r.assert_rejected_with_eap_failure();
    let line = reject_line(instance, name, ssid, reason);
    assert!(log.contains(&line), "log lacks {line:?}:\n{log}");
    assert!(!log.contains("Sent Access-Accept"), "Access-Accept logged:\n{log}");
    let block = sent(log, "Access-Reject");
    assert!(
        !block.contains("MS-MPPE") && !block.contains("EAP-MSK") && !block.contains("EAP-EMSK"),
        "keying material in the Access-Reject:\n{block}"
    );
    assert!(!block.contains("EAP-Message = 0x03"), "EAP-Success in the Access-Reject:\n{block}");
    // The device and the NAS get the generic message; the reason stays in the log.
    assert!(block.contains("Reply-Message = \"Access denied\""), "no generic Reply-Message:\n{block}");
    assert!(!block.contains(reason), "the reason reached the device:\n{block}");
}

/// A lab with the standard policy mapped for org A's car54 and org B's meter7.
fn standard_lab(opts: Options) -> (Lab, testkit::pki::Device, testkit::pki::Device) {
    let lab = Lab::new(opts);
    let car54 = lab.cars_device("car54", CAR54);
    let meter7 = lab.meters_device("meter7", METER7);
    lab.write_map(&standard_policy(), &[&car54.chain, &meter7.chain]);
    (lab, car54, meter7)
}

#[test]
fn config_check_loads_the_module() {
    if skip() {
        return;
    }
    let (lab, _, _) = standard_lab(Options::default());
    let (ok, out) = lab.config_check();
    assert!(ok, "freeradius -C failed:\n{out}");
    // A lost `rlm_rust` export fails here ("Failed linking to rlm_rust structure: ... undefined symbol: rlm_rust").
    assert!(out.contains("rlm_rust"), "rlm_rust not loaded:\n{out}");
    assert!(out.contains("Configuration appears to be OK"), "no OK from freeradius -C:\n{out}");
    // The instance read its options: it loaded the shipped trust_map path
    // (${localstatedir} expanded to the lab's).
    let path = lab.trust_map.display().to_string();
    assert!(
        out.lines().any(|l| l.contains("rlm_rust[rust]") && l.contains(&path)),
        "instance rust did not report loading {path}:\n{out}"
    );
}

/// `trust_map` is documented as required: an instance without it must not start.
#[test]
fn config_check_refuses_an_instance_without_trust_map() {
    if skip() {
        return;
    }
    let (lab, _, _) = standard_lab(Options {
        extra_modules: vec![("rust-broken".into(), "rust broken {\n\treload_interval = 1.0\n}\n".into())],
        ..Options::default()
    });
    let (ok, out) = lab.config_check();
    assert!(!ok, "freeradius -C accepted an instance without trust_map:\n{out}");
    assert!(
        out.lines().any(|l| l.contains("trust_map") && (l.contains("broken") || l.contains("Error"))),
        "the error does not name trust_map:\n{out}"
    );
}

#[test]
fn legitimate_device_is_accepted_with_its_role_reply() {
    if skip() {
        return;
    }
    let (mut lab, car54, _) = standard_lab(Options::default());
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI));
        assert_accepted(&r, &log, "rust", CAR54, CARS_WIFI);
        let block = sent_block(&log, "Access-Accept").expect("accept block");
        assert!(
            block.contains("Tunnel-Private-Group-Id") && block.contains("\"10\""),
            "VLAN of the role missing from the Access-Accept:\n{block}"
        );
        assert!(block.contains("MS-MPPE-Recv-Key"), "no session keys in the accept:\n{block}");

        // Called-Station-Id with a colon-separated MAC (`aa:bb:cc:dd:ee:ff:SSID`).
        let s = lab.supplicant(&car54, CARS_WIFI).called_station_id(Some(&format!("{AP_MAC_COLONS}:{CARS_WIFI}")));
        let (r, log) = auth(&lab, &rd, &s);
        assert_accepted(&r, &log, "rust", CAR54, CARS_WIFI);
    });
}

#[test]
fn cross_domain_certificate_for_the_same_name_is_rejected() {
    if skip() {
        return;
    }
    let (mut lab, _, _) = standard_lab(Options::default());
    // Org B's CA (trusted by TLS for its own devices) issues a certificate for org A's name.
    let forged = lab.meters_device("car54-by-meters", CAR54);
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&forged, CARS_WIFI));
        assert_rejected(&r, &log, "rust", CAR54, CARS_WIFI, "certificate matches no association");
        // TLS itself accepted the chain: the refusal is the module's, via the virtual server.
        assert!(
            log.contains("Certificate rejected by the virtual server"),
            "expected the check-eap-tls-dane rejection:\n{log}"
        );
    });
}

#[test]
fn name_not_allowed_on_this_ssid_is_rejected() {
    if skip() {
        return;
    }
    let (mut lab, car54, meter7) = standard_lab(Options::default());
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, METERS_WIFI));
        assert_rejected(&r, &log, "rust", CAR54, METERS_WIFI, "name not allowed on SSID");
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&meter7, CARS_WIFI));
        assert_rejected(&r, &log, "rust", METER7, CARS_WIFI, "name not allowed on SSID");
    });
}

#[test]
fn unknown_ssid_is_rejected() {
    if skip() {
        return;
    }
    let (mut lab, car54, _) = standard_lab(Options::default());
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, "Nobodys-WiFi"));
        assert_rejected(&r, &log, "rust", CAR54, "Nobodys-WiFi", "unknown SSID");
    });
}

#[test]
fn called_station_id_without_ssid_is_rejected() {
    if skip() {
        return;
    }
    let (mut lab, car54, _) = standard_lab(Options::default());
    let rd = lab.start();
    for_each_tls_version(|_| {
        // A bare MAC, with dashes and with colons.
        for csi in [AP_MAC_DASHES, AP_MAC_COLONS] {
            let s = lab.supplicant(&car54, CARS_WIFI).called_station_id(Some(csi));
            let (r, log) = auth(&lab, &rd, &s);
            assert_rejected(&r, &log, "rust", CAR54, "-", "no SSID in Called-Station-Id");
        }
        // No Called-Station-Id at all.
        let s = lab.supplicant(&car54, CARS_WIFI).called_station_id(None);
        let (r, log) = auth(&lab, &rd, &s);
        assert_rejected(&r, &log, "rust", CAR54, "-", "no SSID in Called-Station-Id");
    });
}

/// A device of the same organisation, published for its own name, claims another one: the
/// certificate it proves is not the one DNS publishes for the name it claims.
#[test]
fn a_device_claiming_another_published_name_is_rejected() {
    if skip() {
        return;
    }
    let mut lab = Lab::new(Options::default());
    let car54 = lab.cars_device("car54", CAR54);
    let car77 = lab.cars_device("car77", CAR77);
    let policy = line_policy(&[(CARS_WIFI, CAR54), (CARS_WIFI, CAR77)]);
    lab.write_map(&policy, &[&car54.chain, &car77.chain]);
    let rd = lab.start();
    for_each_tls_version(|_| {
        let s = lab.supplicant(&car77, CARS_WIFI).identity(CAR54);
        let (r, log) = auth(&lab, &rd, &s);
        assert_rejected(&r, &log, "rust", CAR54, CARS_WIFI, "certificate matches no association of the name");
        // The same certificate under its own name is fine (line-format policy, no reply).
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car77, CARS_WIFI));
        assert_accepted(&r, &log, "rust", CAR77, CARS_WIFI);
    });
}

#[test]
fn allowed_name_without_published_certificate_is_rejected() {
    if skip() {
        return;
    }
    let mut lab = Lab::new(Options::default());
    let car54 = lab.cars_device("car54", CAR54);
    let car55 = lab.cars_device("car55", CAR55);
    // car55 is allowed by the policy, but only car54's certificate is in the map.
    lab.write_map(&line_policy(&[(CARS_WIFI, CAR54), (CARS_WIFI, CAR55)]), &[&car54.chain]);
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car55, CARS_WIFI));
        assert_rejected(&r, &log, "rust", CAR55, CARS_WIFI, "name has no published certificate association");
    });
}

#[test]
fn invalid_user_name_is_rejected() {
    if skip() {
        return;
    }
    let (mut lab, car54, _) = standard_lab(Options::default());
    let rd = lab.start();
    for_each_tls_version(|_| {
        let s = lab.supplicant(&car54, CARS_WIFI).identity("car54 ._device.cars.example");
        let (r, log) = auth(&lab, &rd, &s);
        r.assert_rejected_with_eap_failure();
        assert!(
            log.contains("rlm_rust[rust]: reject name=car54\\u{20}._device.cars.example")
                && log.contains("reason=invalid name"),
            "expected an invalid-name reject, escaped in the log:\n{log}"
        );
    });
}

#[test]
fn replaced_trust_map_is_followed_without_restart() {
    if skip() {
        return;
    }
    let (mut lab, car54, meter7) = standard_lab(Options::default());
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, DEPOT_WIFI));
        assert_rejected(&r, &log, "rust", CAR54, DEPOT_WIFI, "unknown SSID");
    });

    // The sync (here: the CLI) writes a new map: car54 may now also use Depot-WiFi.
    let grown = json_policy(
        "test-v2",
        &[
            Role { ssid: CARS_WIFI, members: &[CAR54], reply: &[] },
            Role { ssid: DEPOT_WIFI, members: &[CAR54], reply: &[("Tunnel-Private-Group-Id", "20")] },
        ],
    );
    let mark = rd.mark();
    lab.write_map(&grown, &[&car54.chain, &meter7.chain]);
    rd.wait_for(mark, "loaded trust map", Duration::from_secs(10));
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, DEPOT_WIFI));
        assert_accepted(&r, &log, "rust", CAR54, DEPOT_WIFI);
        let block = sent_block(&log, "Access-Accept").expect("accept block");
        assert!(block.contains("Tunnel-Private-Group-Id") && block.contains("\"20\""), "{block}");
    });

    // And back: car54 removed from the policy is refused at once, while TLS still trusts
    // its CA and its certificate is unchanged.
    let shrunk = line_policy(&[(METERS_WIFI, METER7)]);
    let mark = rd.mark();
    lab.write_map(&shrunk, &[&meter7.chain]);
    rd.wait_for(mark, "loaded trust map", Duration::from_secs(10));
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI));
        assert_rejected(&r, &log, "rust", CAR54, CARS_WIFI, "unknown SSID");
    });
    assert!(!rd.log().contains("Exiting normally"), "radiusd restarted or exited");
}

#[test]
fn corrupt_trust_map_keeps_the_previous_one() {
    if skip() {
        return;
    }
    let (mut lab, car54, _) = standard_lab(Options::default());
    let rd = lab.start();
    let accepted = || {
        for_each_tls_version(|_| {
            let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI));
            assert_accepted(&r, &log, "rust", CAR54, CARS_WIFI);
        })
    };
    accepted();

    let mark = rd.mark();
    replace_atomically(&lab.trust_map, b"{\"generation\": 7, \"this is\": not json");
    // The error is logged once, naming the file.
    let path = lab.trust_map.display().to_string();
    let found = testkit::poll_until(Duration::from_secs(10), || {
        rd.log_since(mark).lines().any(|l| {
            l.contains(&path) && ["refused", "error", "Error", "invalid", "keeping"].iter().any(|w| l.contains(w))
        })
    });
    assert!(found, "no error naming {path} logged:\n{}", rd.log_since(mark));
    accepted();

    // Removing the file does not drop the map either.
    std::fs::remove_file(&lab.trust_map).expect("rm trust map");
    std::thread::sleep(Duration::from_millis(2500));
    accepted();
}

/// Call site 1: the module only in post-auth (no virtual server). The shim must turn the
/// EAP-Success that eap already put in the reply into EAP-Failure and strip the keys.
#[test]
fn post_auth_only_reject_sends_eap_failure() {
    if skip() {
        return;
    }
    let (mut lab, car54, _) = standard_lab(Options { virtual_server: false, ..Options::default() });
    let forged = lab.meters_device("car54-by-meters", CAR54);
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&forged, CARS_WIFI));
        assert_rejected(&r, &log, "rust", CAR54, CARS_WIFI, "certificate matches no association");
        assert!(
            !log.contains("Certificate rejected by the virtual server"),
            "the virtual server ran although it is disabled:\n{log}"
        );
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI));
        assert_accepted(&r, &log, "rust", CAR54, CARS_WIFI);
        let block = sent_block(&log, "Access-Accept").expect("accept block");
        assert!(block.contains("Tunnel-Private-Group-Id"), "{block}");
    });
}

/// Call site 2: the module only in the check-eap-tls-dane virtual server's authorize.
#[test]
fn virtual_server_only_reject_sends_eap_failure() {
    if skip() {
        return;
    }
    let (mut lab, car54, _) = standard_lab(Options { post_auth: false, ..Options::default() });
    let forged = lab.meters_device("car54-by-meters", CAR54);
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&forged, CARS_WIFI));
        assert_rejected(&r, &log, "rust", CAR54, CARS_WIFI, "certificate matches no association");
        assert!(
            log.contains("Certificate rejected by the virtual server"),
            "expected the check-eap-tls-dane rejection:\n{log}"
        );
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI));
        assert_accepted(&r, &log, "rust", CAR54, CARS_WIFI);
        // The role's reply added in the virtual server reaches the outer Access-Accept.
        let block = sent_block(&log, "Access-Accept").expect("accept block");
        assert!(block.contains("Tunnel-Private-Group-Id") && block.contains("\"10\""), "{block}");
    });
}

/// Control for the post-auth fix-up: with `eap_failure_on_reject = no` FreeRADIUS leaves
/// EAP-Success in the Access-Reject (why the option defaults to yes). The site's
/// Post-Auth-Type REJECT still strips the session keys.
#[test]
fn post_auth_reject_without_fixup_leaks_eap_success_but_no_keys() {
    if skip() {
        return;
    }
    let (mut lab, _, _) =
        standard_lab(Options { virtual_server: false, eap_failure_on_reject: false, ..Options::default() });
    let forged = lab.meters_device("car54-by-meters", CAR54);
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&forged, CARS_WIFI));
        assert!(!r.accepted && r.access_reject, "{}", r.tail());
        assert!(log.contains(&reject_line("rust", CAR54, CARS_WIFI, "certificate matches no association")), "{log}");
        let block = sent_block(&log, "Access-Reject").expect("reject block");
        assert!(!block.contains("MS-MPPE"), "session keys in the Access-Reject:\n{block}");
        // If this starts failing, FreeRADIUS fixed it itself: the option may become moot.
        assert!(
            r.eap_success,
            "expected FreeRADIUS to leave EAP-Success in the reject without the fix-up:\n{}",
            r.tail()
        );
    });
}

#[test]
fn two_instances_use_separate_trust_maps() {
    if skip() {
        return;
    }
    let guests_module = "rust guests {\n\ttrust_map = ${localstatedir}/lib/rlm_rust/guests.json\n\treload_interval = 1.0\n\teap_failure_on_reject = yes\n}\n";
    let choose = "\t\tif (&Called-Station-Id =~ /:Guest-WiFi$/) {\n\t\t\tguests\n\t\t}\n\t\telse {\n\t\t\trust\n\t\t}";
    let mut lab = Lab::new(Options {
        virtual_server: false,
        post_auth_unlang: Some(choose.into()),
        extra_modules: vec![("rust-guests".into(), guests_module.into())],
        ..Options::default()
    });
    let car54 = lab.cars_device("car54", CAR54);
    let meter7 = lab.meters_device("meter7", METER7);
    lab.write_map(&line_policy(&[(CARS_WIFI, CAR54)]), &[&car54.chain]);
    let guests_map = lab.localstatedir.join("lib/rlm_rust/guests.json");
    lab.write_map_to(
        &guests_map,
        &json_policy(
            "guests",
            &[Role { ssid: GUEST_WIFI, members: &[METER7], reply: &[("Tunnel-Private-Group-Id", "99")] }],
        ),
        &[&meter7.chain],
    );
    let rd = lab.start();

    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI));
        assert_accepted(&r, &log, "rust", CAR54, CARS_WIFI);
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&meter7, GUEST_WIFI));
        assert_accepted(&r, &log, "guests", METER7, GUEST_WIFI);
        let block = sent_block(&log, "Access-Accept").expect("accept block");
        assert!(block.contains("\"99\""), "guests' VLAN missing:\n{block}");
        // Each instance only knows its own map.
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, GUEST_WIFI));
        assert_rejected(&r, &log, "guests", CAR54, GUEST_WIFI, "name not allowed on SSID");
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&meter7, CARS_WIFI));
        assert_rejected(&r, &log, "rust", METER7, CARS_WIFI, "name not allowed on SSID");
    });
}

#[test]
fn ca_file_setup_works_too() {
    if skip() {
        return;
    }
    let (mut lab, car54, _) = standard_lab(Options { ca_file: true, ..Options::default() });
    let forged = lab.meters_device("car54-by-meters", CAR54);
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI));
        assert_accepted(&r, &log, "rust", CAR54, CARS_WIFI);
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&forged, CARS_WIFI));
        assert_rejected(&r, &log, "rust", CAR54, CARS_WIFI, "certificate matches no association");
    });
}

/// `rlm-rust explain` agrees with the running module on the two headline cases.
#[test]
fn explain_agrees_with_the_module() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = testkit::pki::TestPki::new(&dir.path().join("pki"));
    let car54 = pki.device(&pki.cars_ca, "car54", CAR54);
    let forged = pki.device(&pki.meters_ca, "forged", CAR54);
    let map = dir.path().join("map/trustmap.json");
    testkit::trustmap::map(&map, &standard_policy(), &[car54.chain.as_path()]);
    let cas = [pki.cars_ca.pem.as_path(), pki.meters_ca.pem.as_path()];
    let (ok, out) = testkit::trustmap::explain(&map, CAR54, CARS_WIFI, &cas, &car54.chain);
    assert!(ok && out.contains("accept") && out.contains("matched association 3 0 0 sha256:"), "{out}");
    let (ok, out) = testkit::trustmap::explain(&map, CAR54, CARS_WIFI, &cas, Path::new(&forged.chain));
    assert!(!ok && out.contains("certificate matches no association"), "{out}");
    // A chain TLS would not complete never reaches the check.
    let (ok, out) = testkit::trustmap::explain(&map, CAR54, CARS_WIFI, &cas[..1], Path::new(&forged.chain));
    assert!(!ok && out.contains("TLS would refuse the handshake"), "{out}");
}

#[test]
fn missing_trust_map_rejects_until_it_appears() {
    if skip() {
        return;
    }
    let mut lab = Lab::new(Options::default());
    let car54 = lab.cars_device("car54", CAR54);
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI));
        assert_rejected(&r, &log, "rust", CAR54, CARS_WIFI, "no trust map loaded");
    });

    let mark = rd.mark();
    lab.write_map(&standard_policy(), &[&car54.chain]);
    rd.wait_for(mark, "loaded trust map", Duration::from_secs(10));
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI));
        assert_accepted(&r, &log, "rust", CAR54, CARS_WIFI);
    });
}

/// The CA set: a CA added to `ca_path` while radiusd runs is used at the next handshake
/// (ARCHITECTURE.md); until then TLS itself refuses its devices with EAP-Failure.
#[test]
fn ca_added_to_ca_path_is_used_without_restart() {
    if skip() {
        return;
    }
    let (mut lab, _, meter7) = standard_lab(Options::default());
    let ca_path = lab.certdir.join("dane-ca");
    std::fs::remove_dir_all(&ca_path).expect("rm ca_path");
    testkit::pki::write_ca_path(&ca_path, &[&lab.pki.cars_ca]);
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&meter7, METERS_WIFI));
        r.assert_rejected_with_eap_failure();
        assert!(!log.contains("rlm_rust[rust]:"), "the module ran although TLS should have refused the chain:\n{log}");
    });
    testkit::pki::write_ca_path(&ca_path, &[&lab.pki.cars_ca, &lab.pki.meters_ca]);
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&meter7, METERS_WIFI));
        assert_accepted(&r, &log, "rust", METER7, METERS_WIFI);
    });
}

/// The other half of the CA-set behaviour: a CA removed from `ca_path` stays in OpenSSL's
/// store of the running radiusd (until `ca_path_reload_interval`), so TLS keeps accepting
/// its devices. Revocation therefore has to come from the trust map, at once.
#[test]
fn ca_removed_from_ca_path_stays_trusted_so_the_map_revokes() {
    if skip() {
        return;
    }
    let (mut lab, car54, meter7) = standard_lab(Options::default());
    let rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&meter7, METERS_WIFI));
        assert_accepted(&r, &log, "rust", METER7, METERS_WIFI);
    });

    let ca_path = lab.certdir.join("dane-ca");
    std::fs::remove_dir_all(&ca_path).expect("rm ca_path");
    testkit::pki::write_ca_path(&ca_path, &[&lab.pki.cars_ca]);
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&meter7, METERS_WIFI));
        // If this fails, OpenSSL stopped caching ca_path lookups: update ARCHITECTURE.md.
        assert_accepted(&r, &log, "rust", METER7, METERS_WIFI);
    });

    let mark = rd.mark();
    lab.write_map(&line_policy(&[(CARS_WIFI, CAR54)]), &[&car54.chain]);
    rd.wait_for(mark, "loaded trust map", Duration::from_secs(10));
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&meter7, METERS_WIFI));
        assert_rejected(&r, &log, "rust", METER7, METERS_WIFI, "unknown SSID");
    });
}

/// SIGHUP with a changed module file: radiusd re-reads its configuration and reloads
/// HUP-safe modules it considers changed (observed on 3.2.1 with a `mods-enabled/`
/// directory include: "HUP - Re-reading configuration files", "HUP - loading modules", and
/// rlm_rust is *not* re-instantiated). Either way the server must survive and keep deciding
/// with the trust map; if the module is re-instantiated, the new instance loads the map.
#[test]
fn sighup_with_changed_config_keeps_serving() {
    if skip() {
        return;
    }
    let (mut lab, car54, _) = standard_lab(Options::default());
    let forged = lab.meters_device("car54-by-meters", CAR54);
    let mut rd = lab.start();
    for_each_tls_version(|_| {
        let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI));
        assert_accepted(&r, &log, "rust", CAR54, CARS_WIFI);
    });
    let module_file = lab.raddb.join("mods-enabled/rust");
    for round in 0..2 {
        // radiusd ignores a HUP when no config file changed ("HUP - No files changed").
        std::thread::sleep(Duration::from_millis(1100));
        let mut text = std::fs::read_to_string(&module_file).expect("read module");
        text.push_str(&format!("# touched for HUP {round}\n"));
        std::fs::write(&module_file, text).expect("touch module");
        let mark = rd.mark();
        rd.hup();
        rd.wait_for(mark, "HUP - loading modules", Duration::from_secs(10));
        let log = rd.wait_for(mark, "Ready to process requests", Duration::from_secs(10));
        if log.contains("Reloaded module \"rust\"") {
            rd.wait_for(mark, "loaded trust map", Duration::from_secs(10));
        }
        assert!(rd.running(), "radiusd died on HUP:\n{}", rd.log_since(mark));
        for_each_tls_version(|_| {
            let (r, log) = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI));
            assert_accepted(&r, &log, "rust", CAR54, CARS_WIFI);
            let (r, log) = auth(&lab, &rd, &lab.supplicant(&forged, CARS_WIFI));
            assert_rejected(&r, &log, "rust", CAR54, CARS_WIFI, "certificate matches no association");
        });
    }
}

/// A `linelog` module `name` writing one line per request (`format` expanded) to
/// `${logdir}/<name>.log`: (file name in mods-enabled, its text).
fn linelog(name: &str, format: &str) -> (String, String) {
    let text = format!(
        "linelog {name} {{\n\tfilename = ${{logdir}}/{name}.log\n\tescape_filenames = no\n\tpermissions = 0600\n\tformat = \"{format}\"\n}}\n"
    );
    (name.to_string(), text)
}

/// `path`'s text once it has at least `lines` lines (waits at most 5 s).
fn read_when_written(path: &std::path::Path, lines: usize) -> String {
    let mut text = String::new();
    testkit::poll_until(Duration::from_secs(5), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().count() >= lines
    });
    text
}

/// The reason of a reject goes to radiusd's log and to Module-Failure-Message (which
/// post-auth logging sees), never to the device: the Access-Reject carries only the
/// configured generic Reply-Message. Both call sites: the check-eap-tls virtual server
/// (whose own lists FreeRADIUS discards) and the outer post-auth.
#[test]
fn reject_reasons_go_to_the_log_and_module_failure_message_not_to_the_device() {
    if skip() {
        return;
    }
    for virtual_server in [true, false] {
        let module =
            linelog("reject_log", "reject %{User-Name} mfm=%{Module-Failure-Message[*]} reply=%{reply:Reply-Message}");
        let mut lab = Lab::new(Options {
            virtual_server,
            extra_modules: vec![module],
            site_edits: vec![(
                "\t\tPost-Auth-Type REJECT {\n".into(),
                "\t\tPost-Auth-Type REJECT {\n\t\t\treject_log\n".into(),
            )],
            rust_options: vec![("reject_message".into(), "Not admitted here".into())],
            ..Options::default()
        });
        let car54 = lab.cars_device("car54", CAR54);
        lab.write_map(&standard_policy(), &[&car54.chain]);
        let forged = lab.meters_device("car54-by-meters", CAR54);
        let rd = lab.start();
        let mut rejects = 0;
        for_each_tls_version(|_| {
            let (r, log) = auth(&lab, &rd, &lab.supplicant(&forged, CARS_WIFI));
            r.assert_rejected_with_eap_failure();
            let reason = "certificate matches no association of the name";
            assert!(log.contains(&reject_line("rust", CAR54, CARS_WIFI, reason)), "{log}");
            let block = sent(&log, "Access-Reject");
            assert!(block.contains("Reply-Message = \"Not admitted here\""), "{block}");
            assert!(!block.contains(reason), "the reason reached the device:\n{block}");
            rejects += 1;
            let logged = read_when_written(&lab.root.join("log/reject_log.log"), rejects);
            let line = logged.lines().nth(rejects - 1).unwrap_or_default();
            // As REDEBUG writes it in the outer server: "<instance>: rlm_rust: <reason>".
            assert!(line.contains(&format!("rust: rlm_rust: {reason}")), "virtual_server={virtual_server}: {logged}");
            assert!(line.contains("reply=Not admitted here"), "{logged}");
        });
    }
}

/// An accept names the identity that was verified: User-Name is the normalised DNS name
/// whatever the supplicant typed, Chargeable-User-Identity answers the NAS's request for one
/// (RFC 4372), and Class carries the organisation's domain. A NAS echoes them in accounting:
/// radiusd's detail file records the session under that identity.
#[test]
fn an_accept_carries_the_verified_identity_into_accounting() {
    if skip() {
        return;
    }
    let acct_port = testkit::radiusd::free_udp_port();
    let detail_module = "detail acct_detail {\n\tfilename = ${logdir}/acct-detail\n\tescape_filenames = no\n\t\
                         permissions = 0600\n\theader = \"%t\"\n}\n"
        .to_string();
    let acct_site = format!(
        "server acct {{\n\tlisten {{\n\t\ttype = acct\n\t\tipaddr = 127.0.0.1\n\t\tport = {acct_port}\n\t}}\n\
         \taccounting {{\n\t\tacct_detail\n\t}}\n}}\n"
    );
    let mut lab = Lab::new(Options {
        extra_modules: vec![("acct_detail".into(), detail_module)],
        extra_sites: vec![("acct".into(), acct_site)],
        rust_options: vec![("organisation_attribute".into(), "Class".into())],
        ..Options::default()
    });
    let car54 = lab.cars_device("car54", CAR54);
    lab.write_map(&standard_policy(), &[&car54.chain]);
    let rd = lab.start();
    // What the supplicant types as its outer identity is not what the NAS should record.
    let typed = "Car54._Device.Cars.Example.";
    for_each_tls_version(|_| {
        let s = lab.supplicant(&car54, CARS_WIFI).identity(typed).radius_attr("89:x:00");
        let (r, log) = auth(&lab, &rd, &s);
        assert_accepted(&r, &log, "rust", typed, CARS_WIFI);
        let block = sent(&log, "Access-Accept");
        let class = format!("Class = 0x{}", hex::encode("cars.example"));
        for want in
            [format!("User-Name = \"{CAR54}\""), format!("Chargeable-User-Identity = 0x{}", hex::encode(CAR54)), class]
        {
            assert!(block.contains(&want), "Access-Accept lacks {want}:\n{block}");
        }
    });

    // The NAS's accounting Start, carrying what the Access-Accept gave it.
    let request = format!(
        "User-Name = \"{CAR54}\"\nClass = 0x{}\nChargeable-User-Identity = 0x{}\nAcct-Status-Type = Start\n\
         Acct-Session-Id = \"s-1\"\nNAS-IP-Address = 127.0.0.1\nCalled-Station-Id = \"00-00-00-00-00-01:{CARS_WIFI}\"\n",
        hex::encode("cars.example"),
        hex::encode(CAR54)
    );
    let mut child = std::process::Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "5", &format!("127.0.0.1:{acct_port}"), "acct", "testing123"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("radclient (package freeradius-utils)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), request.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Received Accounting-Response"), "no Accounting-Response:\n{text}");
    let recorded = read_when_written(&lab.root.join("log/acct-detail"), 1);
    for want in [format!("User-Name = \"{CAR54}\""), "Class = 0x".to_string(), "Acct-Status-Type = Start".to_string()] {
        assert!(recorded.contains(&want), "detail lacks {want}:\n{recorded}");
    }
    assert!(recorded.contains(&hex::encode("cars.example")), "{recorded}");
}

/// The version guard itself: a server pinned to TLS 1.2 (`tls_max_version`) accepts a
/// device that offers 1.3, in 1.2, and the TLS 1.3 pass refuses to count that as TLS 1.3.
#[test]
fn a_server_pinned_to_tls12_fails_the_tls13_pass() {
    if skip() {
        return;
    }
    let (mut lab, car54, _) = standard_lab(Options { tls_max_version: Some("1.2"), ..Options::default() });
    let rd = lab.start();
    let (r, _) = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI).tls(TlsVersion::Tls13));
    assert!(r.accepted, "{}", r.tail());
    assert_eq!(r.tls_versions, ["TLSv1.2"], "{}", r.tail());
    let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for_each_tls_version(|_| {
            let _ = auth(&lab, &rd, &lab.supplicant(&car54, CARS_WIFI));
        })
    }));
    let message = pass.expect_err("the TLS 1.3 pass passed on a TLS 1.2 server");
    let message = message.downcast_ref::<String>().map_or("", String::as_str);
    assert!(message.contains("the TLS 1.3 pass negotiated [\"TLSv1.2\"]"), "{message}");
}
