//! The local demo behind `scripts/demo.sh`: the whole stack on loopback with embedded
//! defaults, and three devices authenticating through it.
//!
//! knotd serves DNSSEC-signed zones (cars.example, meters.example) with each device's
//! certificate as TLSA 4 0 0; an HTTPS server publishes the device CAs at
//! .well-known/ca/<AKI>.pem; radiusd loads rlm_rust, whose sync thread validates the
//! records, fetches and verifies the chains, writes the CA set and the trust map. Then
//! eapol_test plays the devices.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::eapol::EapolResult;
use support::pki::{CAR54, METER7};
use support::radiusd::Radiusd;
use support::stack::{Stack, CARS, METERS, TTL};

const CARS_WIFI: &str = "Cars-WiFi";
const METERS_WIFI: &str = "Meters-WiFi";

fn show(what: &str, r: &EapolResult, rd: &Radiusd, mark: usize) {
    let log = rd.wait_reply_logged(mark);
    let decision = log.lines().find(|l| l.contains("rlm_rust[rust]: accept") || l.contains("rlm_rust[rust]: reject"));
    let verdict = if r.accepted { "Access-Accept" } else { "Access-Reject" };
    let eap = if r.eap_success {
        "EAP-Success"
    } else if r.eap_failure {
        "EAP-Failure"
    } else {
        "no EAP result"
    };
    println!("\n== {what}\n   eapol_test: {verdict} ({eap})");
    if let Some(d) = decision {
        println!("   radiusd:    {}", d.find("rlm_rust[").map(|i| &d[i..]).unwrap_or(d).trim());
    }
}

fn main() {
    println!("Starting knotd (signed zones, TTL {TTL} s), the HTTPS CA server and radiusd with rlm_rust...");
    let mut st = Stack::new();
    let car54 = st.lab.cars_device("car54", CAR54);
    let meter7 = st.lab.meters_device("meter7", METER7);
    let forged = st.lab.meters_device("car54-forged", CAR54);
    st.publish(CARS, &car54);
    st.publish(METERS, &meter7);
    st.set_policy(&[(CARS_WIFI, CAR54), (METERS_WIFI, METER7)]);
    let rd = st.start();
    let t = Instant::now();
    st.wait_published(&rd, CAR54, true, Duration::from_secs(30));
    st.wait_published(&rd, METER7, true, Duration::from_secs(30));
    println!("DNS sync published {CAR54} and {METER7} in {:.2?}", t.elapsed());

    let mark = rd.mark();
    let r = st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI));
    show(&format!("{CAR54} (Cars CA, published in DNS) on {CARS_WIFI}"), &r, &rd, mark);
    assert!(r.accepted, "the published device must be accepted");

    let mark = rd.mark();
    let r = st.lab.eapol(&st.lab.supplicant(&forged, CARS_WIFI));
    show(&format!("{CAR54} with a certificate from the Meters CA (cross-domain signing)"), &r, &rd, mark);
    assert!(!r.accepted && r.eap_failure);

    let removed = Instant::now();
    st.withdraw(CARS, &car54);
    st.wait_published(&rd, CAR54, false, Duration::from_secs(30));
    println!("\nTLSA record of {CAR54} removed from DNS: out of the trust map after {:.2?}", removed.elapsed());
    let mark = rd.mark();
    let r = st.lab.eapol(&st.lab.supplicant(&car54, CARS_WIFI));
    show(&format!("{CAR54} after revocation"), &r, &rd, mark);
    assert!(!r.accepted && r.eap_failure);

    let mark = rd.mark();
    let r = st.lab.eapol(&st.lab.supplicant(&meter7, CARS_WIFI));
    show(&format!("{METER7} on {CARS_WIFI} (not allowed on that SSID)"), &r, &rd, mark);
    assert!(!r.accepted);

    println!("\nDemo complete: 1 accepted, 3 rejected with EAP-Failure, as expected.");
}
