//! TLS session resumption with the shipped session cache, through real radiusd and
//! eapol_test re-authentications (`-r`).
//!
//! A resumed TLS 1.2 session has no handshake to capture: FreeRADIUS restores the
//! attributes it cached with the session (the hook's digests among them) and the check
//! reads those, against the trust map of *now*. TLS 1.3 resumption restores nothing in
//! FreeRADIUS 3.2.1, so the hook stops TLS 1.3 tickets: those clients re-authenticate with
//! a full handshake. The shipped eap-dane offers both versions; the supplicant picks.

use std::time::Duration;

use testkit::eapol::{self, EapolResult, TlsVersion};
use testkit::pki::CAR54;
use testkit::radiusd::{Lab, Options};
use testkit::relay::Relay;
use testkit::skip;
use testkit::trustmap::line_policy;

const CARS_WIFI: &str = "Cars-WiFi";

fn assert_all_accepted(r: &EapolResult, auths: usize) {
    assert!(r.accepted, "eapol_test failed:\n{}", r.tail());
    assert_eq!(r.output.matches("(Access-Accept)").count(), auths, "{}", r.tail());
    assert!(!r.output.contains("(Access-Reject)"), "{}", r.tail());
}

/// A TLS 1.2 session resumed twice is accepted each time on the captured certificate,
/// in the check-eap-tls virtual server and in post-auth (`virtual_server`) or in post-auth
/// alone.
fn resumed_tls12_session_is_accepted(virtual_server: bool) {
    let mut lab = Lab::new(Options { virtual_server, ..Options::default() });
    let car54 = lab.cars_device("car54", CAR54);
    lab.write_map(&line_policy(&[(CARS_WIFI, CAR54)]), &[&car54.cert]);
    let rd = lab.start();
    let mark = rd.mark();
    // TLS 1.2 only: FreeRADIUS 3.2 restores a cached session's attributes only for TLS 1.2.
    let r = lab.eapol(&lab.supplicant(&car54, CARS_WIFI).reauths(2).tls(TlsVersion::Tls12));
    assert_all_accepted(&r, 3);
    assert_eq!((r.full_handshakes, r.resumed), (1, 2), "expected one full handshake, two resumed:\n{}", r.tail());
    r.assert_tls(TlsVersion::Tls12);
    let log = rd.wait_for(mark, "resumed (", Duration::from_secs(5));
    let resumed_accepts = log.matches(&format!("accept name={CAR54} ssid={CARS_WIFI} cert=")).count();
    let calls = if virtual_server { 2 } else { 1 };
    assert_eq!(resumed_accepts, 3 * calls, "{log}");
    assert_eq!(log.matches(" resumed (").count(), 2 * calls, "two resumed decisions per call site:\n{log}");
}

#[test]
fn resumed_tls12_session_is_accepted_in_both_call_sites() {
    if skip() {
        return;
    }
    resumed_tls12_session_is_accepted(true);
}

#[test]
fn resumed_tls12_session_is_accepted_in_post_auth_only() {
    if skip() {
        return;
    }
    resumed_tls12_session_is_accepted(false);
}

/// The name is withdrawn between the authentication and the re-authentication that
/// resumes its session: the resumed session is rejected with EAP-Failure.
#[test]
fn resumed_tls12_session_of_a_name_withdrawn_meanwhile_is_rejected() {
    if skip() {
        return;
    }
    let mut lab = Lab::new(Options { reload_interval: "0.05".into(), ..Options::default() });
    let car54 = lab.cars_device("car54", CAR54);
    let policy = line_policy(&[(CARS_WIFI, CAR54)]);
    lab.write_map(&policy, &[&car54.cert]);
    let rd = lab.start();
    let relay = Relay::hold_after_first_accept(lab.port);
    // TLS 1.2 only: TLS 1.3 sessions do not resume (no tickets), so there is no resumed one to withdraw.
    let supplicant = lab.supplicant(&car54, CARS_WIFI).reauths(1).tls(TlsVersion::Tls12);
    let work = lab.work.clone();
    let port = relay.port();
    let mark = rd.mark();
    let run = std::thread::spawn(move || eapol::run(&work, port, &supplicant));

    assert!(relay.wait_accepted(Duration::from_secs(20)), "the first authentication was not accepted");
    // Withdrawn: still allowed by the policy, but nothing published for it any more.
    let loaded = rd.mark();
    lab.write_map(&policy, &[]);
    rd.wait_for(loaded, "loaded trust map", Duration::from_secs(10));
    relay.release();
    let r = run.join().expect("eapol_test thread");

    // The re-authentication is what follows the first authentication's success event.
    let first = r.output.find("CTRL-EVENT-EAP-SUCCESS").expect("first authentication succeeded");
    let reauth = &r.output[first + "CTRL-EVENT-EAP-SUCCESS".len()..];
    assert!(reauth.contains("Handshake finished - resumed=1"), "the re-authentication did not resume:\n{}", r.tail());
    assert!(reauth.contains("(Access-Reject)") && reauth.contains("EAP: Received EAP-Failure"), "{}", r.tail());
    assert!(!reauth.contains("EAP: Received EAP-Success"), "a rejected device was told EAP-Success:\n{}", r.tail());
    let log = rd.log_since(mark);
    let line = format!(
        "rlm_rust[rust]: reject name={CAR54} ssid={CARS_WIFI} reason=name has no published certificate association cert="
    );
    let rejected = log.lines().find(|l| l.contains(&line)).unwrap_or_else(|| panic!("no reject logged:\n{log}"));
    assert!(rejected.contains(" resumed ("), "the reject was not of the resumed session: {rejected}");
}

/// TLS 1.3 clients are not offered tickets: every re-authentication is a full handshake
/// the hook captures, and is accepted.
#[test]
fn tls13_reauthentication_is_a_full_handshake_and_accepted() {
    if skip() {
        return;
    }
    let mut lab = Lab::new(Options::default());
    let car54 = lab.cars_device("car54", CAR54);
    lab.write_map(&line_policy(&[(CARS_WIFI, CAR54)]), &[&car54.cert]);
    let rd = lab.start();
    assert!(rd.log().contains("TLS 1.3 session tickets disabled on eap_dane/tls-common"), "{}", rd.log());
    let mark = rd.mark();
    let r = lab.eapol(&lab.supplicant(&car54, CARS_WIFI).reauths(2).tls(TlsVersion::Tls13));
    assert_all_accepted(&r, 3);
    // wpa_supplicant reports a TLS 1.3 handshake as finished more than once; none resumed.
    assert!(
        r.full_handshakes >= 3 && r.resumed == 0,
        "{} full, {} resumed:\n{}",
        r.full_handshakes,
        r.resumed,
        r.tail()
    );
    r.assert_tls(TlsVersion::Tls13);
    assert_eq!(r.tls_versions.len(), 3, "three handshakes: {:?}", r.tls_versions);
    let log = rd.wait_for(mark, "Sent Access-Accept", Duration::from_secs(5));
    assert!(!log.contains(" resumed ("), "{log}");
    assert_eq!(log.matches("captured the presented certificate").count(), 3, "{log}");
}
