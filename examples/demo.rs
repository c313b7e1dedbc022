//! The local demo behind `scripts/demo.sh`: the whole stack on loopback with embedded
//! defaults, and three devices authenticating through it, under TLS 1.2 and TLS 1.3.
//!
//! knotd serves DNSSEC-signed zones (cars.example, meters.example) with each device's
//! certificate as TLSA 4 0 0; an HTTPS server publishes the device CAs at
//! .well-known/ca/<AKI>.pem; radiusd loads rlm_rust, whose sync thread validates the
//! records, fetches and verifies the chains, writes the CA set and the trust map of
//! certificate associations. Then eapol_test plays the devices. Every decision is checked
//! twice: eapol_test's outcome, and the module's log line, which names the certificate the
//! TLS hook captured in the handshake (`cert=` the first 8 bytes of its SHA-256).

use std::path::Path;
use std::time::{Duration, Instant};

use openssl::hash::MessageDigest;
use openssl::x509::X509;

use testkit::eapol::{EapolResult, TlsVersion};
use testkit::pki::{CAR54, METER7};
use testkit::radiusd::Radiusd;
use testkit::stack::{Stack, CARS, METERS, TTL};

const CARS_WIFI: &str = "Cars-WiFi";
const METERS_WIFI: &str = "Meters-WiFi";

/// How the module's log names a certificate: the first 8 bytes of its SHA-256, in hex.
fn cert_id(pem: &Path) -> String {
    let cert = X509::from_pem(&std::fs::read(pem).expect("read certificate")).expect("parse certificate");
    let digest = cert.digest(MessageDigest::sha256()).expect("digest");
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The module's decision lines (from the `rlm_rust[` prefix on) in `log`.
fn decisions(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("rlm_rust[rust]: accept") || l.contains("rlm_rust[rust]: reject"))
        .map(|l| l.find("rlm_rust[").map(|i| &l[i..]).unwrap_or(l).trim())
        .collect()
}

/// Prints what eapol_test and radiusd said about the authentication(s) since `mark`, and
/// returns the decision lines.
fn show(what: &str, r: &EapolResult, rd: &Radiusd, mark: usize) -> Vec<String> {
    let log = rd.wait_reply_logged(mark);
    let lines = decisions(&log).into_iter().map(str::to_owned).collect::<Vec<_>>();
    let verdict = if r.accepted { "Access-Accept" } else { "Access-Reject" };
    let eap = if r.eap_success {
        "EAP-Success"
    } else if r.eap_failure {
        "EAP-Failure"
    } else {
        "no EAP result"
    };
    println!("\n== {what}\n   eapol_test: {verdict} ({eap}, {})", r.tls_versions.join(", "));
    // The check runs in the check-eap-tls virtual server and again in post-auth: one line
    // of each distinct decision is enough.
    let mut shown: Vec<String> = Vec::new();
    for l in &lines {
        let decision = l.rsplit_once(" (").map(|(d, _)| d).unwrap_or(l).to_owned();
        if !shown.contains(&decision) {
            println!("   radiusd:    {l}");
            shown.push(decision);
        }
    }
    lines
}

/// Panics unless one of `lines` starts with `expected` followed by ` (` (the timing).
fn assert_logged(lines: &[String], expected: &str) {
    let want = format!("{expected} (");
    assert!(
        lines.iter().any(|l| l.starts_with(&want)),
        "expected the module to log {expected:?}; it logged:\n{}",
        lines.join("\n")
    );
}

fn main() {
    println!("Starting knotd (signed zones, TTL {TTL} s), the HTTPS CA server and radiusd with rlm_rust...");
    let mut st = Stack::new();
    let car54 = st.lab.cars_device("car54", CAR54);
    let meter7 = st.lab.meters_device("meter7", METER7);
    let forged = st.lab.meters_device("car54-forged", CAR54);
    let (car54_id, meter7_id, forged_id) = (cert_id(&car54.cert), cert_id(&meter7.cert), cert_id(&forged.cert));
    st.publish(CARS, &car54);
    st.publish(METERS, &meter7);
    st.set_policy(&[(CARS_WIFI, CAR54), (METERS_WIFI, METER7)]);
    let rd = st.start();
    let t = Instant::now();
    st.wait_published(&rd, CAR54, true, Duration::from_secs(30));
    st.wait_published(&rd, METER7, true, Duration::from_secs(30));
    println!("DNS sync published {CAR54} and {METER7} in {:.2?}", t.elapsed());
    println!("certificates: {CAR54} cert={car54_id}, {METER7} cert={meter7_id}, forged {CAR54} cert={forged_id}");

    // radiusd offers TLS 1.2 and 1.3 (RFC 9190): each device tries both.
    for tls in TlsVersion::BOTH {
        let mark = rd.mark();
        let r = st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI).tls(tls));
        let lines = show(&format!("{CAR54} (Cars CA, published in DNS) on {CARS_WIFI}, {tls}"), &r, &rd, mark);
        assert!(r.accepted && r.eap_success, "the published device must be accepted");
        r.assert_tls(tls);
        assert_logged(&lines, &format!("rlm_rust[rust]: accept name={CAR54} ssid={CARS_WIFI} cert={car54_id}"));
    }

    // Reconnecting resumes the TLS 1.2 session: no certificate crosses the wire, and the
    // check binds to the capture restored from the session cache. (TLS 1.2 only: TLS 1.3
    // clients get no session to resume, FreeRADIUS 3.2 would restore nothing for them.)
    let mark = rd.mark();
    let r = st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI).reauths(1).tls(TlsVersion::Tls12));
    let lines = show(&format!("{CAR54} authenticates again, resuming its TLS session"), &r, &rd, mark);
    assert!(r.accepted && r.eap_success, "both authentications must be accepted");
    assert_eq!((r.full_handshakes, r.resumed), (1, 1), "one full handshake, then one resumed");
    assert_logged(&lines, &format!("rlm_rust[rust]: accept name={CAR54} ssid={CARS_WIFI} cert={car54_id} resumed"));

    for tls in TlsVersion::BOTH {
        let mark = rd.mark();
        let r = st.lab.eapol(&st.lab.supplicant(&forged, CARS_WIFI).tls(tls));
        let what = format!("{CAR54} with a certificate from the Meters CA (cross-domain signing), {tls}");
        let lines = show(&what, &r, &rd, mark);
        assert!(!r.accepted && r.eap_failure && !r.eap_success, "cross-domain: Access-Reject with EAP-Failure");
        r.assert_tls(tls);
        assert_logged(
            &lines,
            &format!(
                "rlm_rust[rust]: reject name={CAR54} ssid={CARS_WIFI} reason=certificate matches no association of the name cert={forged_id}"
            ),
        );
    }

    let removed = Instant::now();
    st.withdraw(CARS, &car54);
    st.wait_published(&rd, CAR54, false, Duration::from_secs(30));
    println!("\nTLSA record of {CAR54} removed from DNS: out of the trust map after {:.2?}", removed.elapsed());
    for tls in TlsVersion::BOTH {
        let mark = rd.mark();
        let r = st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI).tls(tls));
        let lines = show(&format!("{CAR54} after revocation, {tls}"), &r, &rd, mark);
        assert!(!r.accepted && r.eap_failure && !r.eap_success, "revoked: Access-Reject with EAP-Failure");
        r.assert_tls(tls);
        assert_logged(
            &lines,
            &format!(
                "rlm_rust[rust]: reject name={CAR54} ssid={CARS_WIFI} reason=name has no published certificate association cert={car54_id}"
            ),
        );
    }

    for tls in TlsVersion::BOTH {
        let mark = rd.mark();
        let r = st.lab.eapol(&st.lab.supplicant(&meter7, CARS_WIFI).tls(tls));
        let lines = show(&format!("{METER7} on {CARS_WIFI} (not allowed on that SSID), {tls}"), &r, &rd, mark);
        assert!(!r.accepted && r.eap_failure && !r.eap_success, "wrong SSID: Access-Reject with EAP-Failure");
        r.assert_tls(tls);
        assert_logged(
            &lines,
            &format!(
                "rlm_rust[rust]: reject name={METER7} ssid={CARS_WIFI} reason=name not allowed on SSID cert={meter7_id}"
            ),
        );
    }

    println!(
        "\nDemo complete: {CAR54} accepted under TLS 1.2 and TLS 1.3 (and its TLS 1.2 session resumed), \
         3 rejected with EAP-Failure under both (cross-domain, revoked, wrong SSID), as expected."
    );
}
