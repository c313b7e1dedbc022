//! The request-path check against a trust map of 100k names.
//!
//! Criterion gives the central figures; a second pass times single calls to print the
//! median and p99 per call (each sample includes one `Instant::now()` pair, ~20-40 ns).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};

use rlm_rust::check::{check, Decision, Request};
use rlm_rust::pki::{CaPin, Pin};
use rlm_rust::policy::{Policy, ReplyAttr, Role};
use rlm_rust::presented::{parse_asn1_time, PresentedCert};
use rlm_rust::trustmap::{NameEntry, TrustMap};

const NAMES: usize = 100_000;

fn name(i: usize) -> String {
    format!("dev{i}._device.fleet{}.example", i % 100)
}

fn t(asn1: &str) -> i64 {
    parse_asn1_time(asn1).unwrap_or_default()
}

fn pin(i: usize) -> Pin {
    Pin {
        serial: (i as u64 + 1).to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect(),
        subject: format!("/O=Fleet {}/CN={}", i % 100, name(i)),
        issuer: format!("/C=CA/O=Fleet {}/CN=Fleet {} Device CA", i % 100, i % 100),
        authority_key_id: vec![(i % 100) as u8 + 1; 20],
        not_before: t("260914000000Z"),
        not_after: t("281213230000Z"),
        ca: CaPin {
            serial: vec![0x2d, (i % 100) as u8 + 1],
            subject: format!("/C=CA/O=Fleet {}/CN=Fleet {} Device CA", i % 100, i % 100),
            issuer: format!("/C=CA/O=Fleet {}/CN=Fleet {} Device CA", i % 100, i % 100),
            not_before: t("231114221320Z"),
            not_after: t("330518033320Z"),
        },
        sha256: vec![0; 32],
    }
}

fn build_map() -> TrustMap {
    let mut policy = Policy::default();
    let mut names = BTreeMap::new();
    let mut members = std::collections::BTreeSet::new();
    for i in 0..NAMES {
        members.insert(name(i));
        names.insert(name(i), NameEntry { pins: vec![pin(i)], ..Default::default() });
    }
    policy.ssids.insert(
        "FLEET".into(),
        Role { members, reply: vec![ReplyAttr { attribute: "Tunnel-Private-Group-Id".into(), value: "10".into() }] },
    );
    TrustMap::new(policy, names, 1, 0)
}

/// The attribute strings FreeRADIUS would send for device `i` (owned, borrowed per call).
struct Attrs {
    user: String,
    serial: String,
    subject: String,
    issuer: String,
    aki: String,
    san: String,
    ca_serial: String,
}

fn attrs(i: usize) -> Attrs {
    let p = pin(i);
    Attrs {
        user: name(i),
        serial: hex::encode(&p.serial),
        subject: p.subject.clone(),
        issuer: p.issuer.clone(),
        aki: p.authority_key_id.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"),
        san: name(i),
        ca_serial: hex::encode(&p.ca.serial),
    }
}

fn request<'a>(a: &'a Attrs, sans: &'a [&'a str]) -> Request<'a> {
    Request {
        user_name: Some(&a.user),
        called_station_id: Some("00-00-00-00-00-01:FLEET"),
        cert: PresentedCert {
            serial: Some(&a.serial),
            subject: Some(&a.subject),
            issuer: Some(&a.issuer),
            valid_since: Some("260914000000Z"),
            expiration: Some("281213230000Z"),
            authority_key_id: Some(&a.aki),
            san_dns: sans,
            ca_serial: Some(&a.ca_serial),
            ca_subject: Some(&a.issuer),
            ca_issuer: Some(&a.issuer),
            ca_valid_since: Some("231114221320Z"),
            ca_expiration: Some("330518033320Z"),
        },
    }
}

fn bench_check(c: &mut Criterion) {
    let map = build_map();
    let sample: Vec<Attrs> = (0..1000).map(|k| attrs(k * 97 % NAMES)).collect();
    // Sanity: the synthetic requests really are accepted (a bench of rejects is cheaper).
    {
        let a = &sample[0];
        let sans = [a.san.as_str()];
        let r = request(a, &sans);
        assert!(matches!(check(Some(&map), &r), Decision::Accept { .. }), "synthetic request must be accepted");
    }

    let mut k = 0;
    c.bench_function("check accept, 100k names", |b| {
        b.iter(|| {
            let a = &sample[k % sample.len()];
            k += 1;
            let sans = [a.san.as_str()];
            black_box(check(Some(&map), black_box(&request(a, &sans))))
        })
    });

    let mut forged = attrs(42);
    forged.issuer = "/C=CA/O=Meters/CN=Meters Device CA".into();
    c.bench_function("check reject (cross-domain), 100k names", |b| {
        let sans = [forged.san.as_str()];
        b.iter(|| black_box(check(Some(&map), black_box(&request(&forged, &sans)))))
    });

    // Per-call percentiles (only under `cargo bench`: `cargo test` runs benches once, as smoke tests).
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mut samples = Vec::with_capacity(200_000);
    for n in 0..200_000 {
        let a = &sample[n % sample.len()];
        let sans = [a.san.as_str()];
        let r = request(a, &sans);
        let t = Instant::now();
        black_box(check(Some(&map), black_box(&r)));
        samples.push(t.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "check accept, 100k names, per call over {} calls: median {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        samples.len(),
        pct(0.5),
        pct(0.99),
        pct(0.999),
        samples[samples.len() - 1]
    );
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
