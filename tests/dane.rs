//! The DNS layer of the trust sync (`rlm_rust::sync::dns`) against a real knotd: signed zones
//! under a fake signed root, an unsigned zone, broken signatures, a wrong anchor, denials,
//! runtime changes with short TTLs, and dead nameservers.

use testkit::capki::{self, Ku, Spec, DAY};
use testkit::dns;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use dns::{Anchoring, DnsServer, Zone};
use rlm_rust::model::association::{Matching, Selector};
use rlm_rust::sync::dns::resolver::{DnsConfig, TlsaResolver};
use rlm_rust::sync::dns::tlsa::{classify, RecordUse, TlsaAnswer, TlsaRecord};

/// A self-signed RSA-2048 certificate for `name` (about 800 bytes of DER).
fn device_cert(name: &str) -> Vec<u8> {
    let now = capki::now();
    let spec = Spec {
        ca: None,
        key_usage: Ku::None,
        eku: vec![],
        ..Spec::leaf("", name).subject(&[("CN", name)]).key(&capki::rsa_key()).validity(now, now + 30 * DAY)
    };
    let spec = spec.serial(&[7]).no_key_ids();
    capki::issue(&spec, None).cert.to_der().unwrap()
}

fn tlsa_text(usage: u8, selector: u8, matching: u8, data: &[u8]) -> String {
    format!("{usage} {selector} {matching} {}", hex::encode(data))
}

/// The sync thread's shape: a multi-thread runtime owned by the test.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

fn config_for(server: &DnsServer) -> DnsConfig {
    DnsConfig {
        nameservers: vec![server.addr()],
        trust_anchor_file: Some(server.trust_anchor_file().to_owned()),
        timeout: Duration::from_secs(2),
        attempts: 1,
        lookup_deadline: Duration::from_secs(10),
        ..DnsConfig::default()
    }
}

fn lookup(rt: &tokio::runtime::Runtime, resolver: &TlsaResolver, name: &str) -> TlsaAnswer {
    rt.block_on(resolver.lookup(name))
}

fn records_of(answer: &TlsaAnswer) -> &[TlsaRecord] {
    match answer {
        TlsaAnswer::Secure { records, .. } | TlsaAnswer::Insecure { records, .. } => records,
        _ => &[],
    }
}

#[test]
fn secure_answer_carries_full_certificates_over_tcp() {
    let pkix = device_cert("car54._device.cars.example");
    let dane = device_cert("car54._device.cars.example");
    let body = format!(
        "car54._device 300 TLSA {}\ncar54._device 300 TLSA {}\n",
        tlsa_text(4, 0, 0, &pkix),
        tlsa_text(3, 0, 0, &dane)
    );
    let server = DnsServer::start(vec![Zone::signed("cars.example", &body)]);
    assert!(pkix.len() + dane.len() > 1232, "the answer must not fit in one 1232-byte UDP reply");
    // knot really truncates this answer at hickory's EDNS size: TCP is needed.
    let port = server.addr().port().to_string();
    let udp = dns::run(
        "kdig",
        &[
            "@127.0.0.1",
            "-p",
            &port,
            "+notcp",
            "+ignore",
            "+bufsize=1232",
            "+dnssec",
            "car54._device.cars.example",
            "TLSA",
        ],
        server.dir(),
    );
    assert!(udp.stdout.contains(" tc"), "expected TC=1 over UDP: {}", udp.stdout);

    let rt = runtime();
    let resolver = TlsaResolver::new(&config_for(&server)).unwrap();
    let t0 = Instant::now();
    let answer = lookup(&rt, &resolver, "car54._device.cars.example");
    let cold = t0.elapsed();
    let t1 = Instant::now();
    let again = lookup(&rt, &resolver, "CAR54._device.cars.example.");
    let warm = t1.elapsed();
    eprintln!("validated TLSA lookup: cold {cold:?}, warm (cached) {warm:?}");

    let TlsaAnswer::Secure { records, ttl } = &answer else { panic!("expected Secure, got {answer:?}") };
    assert!(*ttl <= Duration::from_secs(300) && *ttl > Duration::from_secs(250), "ttl {ttl:?}");
    assert_eq!(records.len(), 2);
    let pkix_rec = records.iter().find(|r| r.usage == 4).expect("usage 4 record");
    let dane_rec = records.iter().find(|r| r.usage == 3).expect("usage 3 record");
    assert_eq!((pkix_rec.selector, pkix_rec.matching, &pkix_rec.data), (0, 0, &pkix));
    assert_eq!((dane_rec.selector, dane_rec.matching, &dane_rec.data), (0, 0, &dane));
    assert_eq!(classify(pkix_rec), RecordUse::PkixCd);
    assert_eq!(classify(dane_rec), RecordUse::DaneEe { selector: Selector::Cert, matching: Matching::Full });
    assert!(matches!(again, TlsaAnswer::Secure { .. }), "{again:?}");
    assert_eq!(records_of(&again).len(), 2);
}

#[test]
fn unsigned_zone_under_signed_root_is_insecure() {
    let cert = device_cert("car1._device.plain.example");
    let server = DnsServer::start(vec![
        Zone::signed("cars.example", "ns2 A 127.0.0.1\n"),
        Zone::unsigned("plain.example", &format!("car1._device TLSA {}\n", tlsa_text(4, 0, 0, &cert))),
    ]);
    let rt = runtime();
    let resolver = TlsaResolver::new(&config_for(&server)).unwrap();
    let answer = lookup(&rt, &resolver, "car1._device.plain.example");
    let TlsaAnswer::Insecure { records, ttl } = &answer else { panic!("expected Insecure, got {answer:?}") };
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].data, cert);
    assert!(*ttl > Duration::ZERO);
    // A name that does not exist there: denied, but the denial is not proven.
    let missing = lookup(&rt, &resolver, "nobody._device.plain.example");
    assert!(matches!(missing, TlsaAnswer::NoRecords { secure: false, .. }), "{missing:?}");
}

#[test]
fn mixed_chain_counts_as_its_weakest_proof() {
    // CNAMEs from a signed zone into an unsigned one and the other way round: one answer
    // made of secure and insecure records is Insecure, whatever the cache holds.
    let cert = device_cert("car2._device.plain.example");
    let server = DnsServer::start(vec![
        Zone::signed(
            "cars.example",
            "alias._device 60 CNAME car2._device.plain.example.\ncar3._device TLSA 3 0 0 3001\n\
             hop1._device CNAME hop2._device\nhop2._device CNAME car3._device\nloop._device CNAME loop._device\n\
             dangling._device CNAME nothing._device.plain.example.\n",
        ),
        Zone::unsigned(
            "plain.example",
            &format!(
                "car2._device TLSA {}\nback._device CNAME car3._device.cars.example.\n\
                 dangling._device CNAME nothing._device.cars.example.\n",
                tlsa_text(3, 0, 0, &cert)
            ),
        ),
    ]);
    let rt = runtime();
    let resolver = TlsaResolver::new(&config_for(&server)).unwrap();
    // Both orders: target first (then cached), and chain first (target cached via chain).
    for target_first in [true, false] {
        resolver.clear_cache();
        let direct = || lookup(&rt, &resolver, "car3._device.cars.example");
        if target_first {
            assert!(matches!(direct(), TlsaAnswer::Secure { .. }));
        }
        let secure_to_insecure = lookup(&rt, &resolver, "alias._device.cars.example");
        let TlsaAnswer::Insecure { records, ttl } = &secure_to_insecure else {
            panic!("secure CNAME -> insecure TLSA: {secure_to_insecure:?}")
        };
        assert_eq!(records[0].data, cert);
        assert!(*ttl <= Duration::from_secs(60), "the CNAME's TTL bounds the answer: {ttl:?}");
        let insecure_to_secure = lookup(&rt, &resolver, "back._device.plain.example");
        assert!(matches!(insecure_to_secure, TlsaAnswer::Insecure { .. }), "{insecure_to_secure:?}");
        // The target asked directly, and through a signed chain, is Secure.
        let again = direct();
        assert!(matches!(again, TlsaAnswer::Secure { .. }), "target_first={target_first}: {again:?}");
        let chained = lookup(&rt, &resolver, "hop1._device.cars.example");
        assert!(matches!(chained, TlsaAnswer::Secure { .. }), "{chained:?}");
        let looped = lookup(&rt, &resolver, "loop._device.cars.example");
        // A CNAME to nowhere: the denial is only as proven as the CNAME (secure -> insecure
        // NXDOMAIN, and insecure -> secure NXDOMAIN, are both unproven).
        for name in ["dangling._device.cars.example", "dangling._device.plain.example"] {
            let dangling = lookup(&rt, &resolver, name);
            assert!(matches!(dangling, TlsaAnswer::NoRecords { secure: false, .. }), "{name}: {dangling:?}");
        }
        // hickory gives up on the loop itself: an empty, unproven answer (or our own check).
        assert!(
            matches!(looped, TlsaAnswer::Failed { .. } | TlsaAnswer::NoRecords { secure: false, .. }),
            "{looped:?}"
        );
    }
}

#[test]
fn broken_signatures_are_bogus_and_only_there() {
    let cert = device_cert("car54._device.cars.example");
    let body = format!("car54._device TLSA {t}\ncar55._device TLSA {t}\n", t = tlsa_text(3, 0, 0, &cert));
    let mut server = DnsServer::start(vec![Zone::signed("cars.example", &body)]);
    server.break_signatures("cars.example", "car54._device");
    let rt = runtime();
    let resolver = TlsaResolver::new(&config_for(&server)).unwrap();
    let broken = lookup(&rt, &resolver, "car54._device.cars.example");
    assert!(matches!(broken, TlsaAnswer::Bogus { .. }), "{broken:?}");
    let intact = lookup(&rt, &resolver, "car55._device.cars.example");
    assert!(matches!(intact, TlsaAnswer::Secure { .. }), "{intact:?}");
}

#[test]
fn wrong_trust_anchor_makes_everything_bogus() {
    let cert = device_cert("car54._device.cars.example");
    let body = format!("car54._device TLSA {}\n", tlsa_text(3, 0, 0, &cert));
    let server = DnsServer::start(vec![Zone::signed("cars.example", &body)]);
    // Another server's root key: well-formed, but not the key that signs this root.
    let other = DnsServer::start(vec![Zone::signed("other.example", "")]);
    let mut cfg = config_for(&server);
    cfg.trust_anchor_file = Some(other.trust_anchor_file().to_owned());
    let rt = runtime();
    let resolver = TlsaResolver::new(&cfg).unwrap();
    let answer = lookup(&rt, &resolver, "car54._device.cars.example");
    assert!(matches!(answer, TlsaAnswer::Bogus { .. }), "{answer:?}");
    // A denial cannot be trusted either.
    let missing = lookup(&rt, &resolver, "nobody._device.cars.example");
    assert!(matches!(missing, TlsaAnswer::Bogus { .. }), "{missing:?}");
}

#[test]
fn nxdomain_and_nodata_are_proven_denials() {
    let server = DnsServer::start(vec![Zone::signed("cars.example", "car9._device A 127.0.0.1\n").with_ttl(30)]);
    let rt = runtime();
    let resolver = TlsaResolver::new(&config_for(&server)).unwrap();
    let nxdomain = lookup(&rt, &resolver, "nobody._device.cars.example");
    let TlsaAnswer::NoRecords { secure, ttl } = nxdomain else { panic!("expected NoRecords, got {nxdomain:?}") };
    assert!(secure, "NXDOMAIN in a signed zone is proven by NSEC");
    assert!(ttl <= Duration::from_secs(30), "negative ttl {ttl:?}");
    let nodata = lookup(&rt, &resolver, "car9._device.cars.example");
    assert!(matches!(nodata, TlsaAnswer::NoRecords { secure: true, .. }), "{nodata:?}");
}

#[test]
fn removed_record_disappears_after_its_ttl() {
    let cert = device_cert("car54._device.cars.example");
    let server = DnsServer::start(vec![Zone::signed("cars.example", "").with_ttl(2)]);
    server.set_tlsa("cars.example", "car54._device", 2, &tlsa_text(4, 0, 0, &cert));
    let rt = runtime();
    let resolver = TlsaResolver::new(&config_for(&server)).unwrap();
    let before = lookup(&rt, &resolver, "car54._device.cars.example");
    let TlsaAnswer::Secure { ttl, .. } = &before else { panic!("expected Secure, got {before:?}") };
    assert!(*ttl <= Duration::from_secs(2), "validated ttl {ttl:?} above the record's 2 s");

    server.remove("cars.example", "car54._device", "TLSA");
    let removed_at = Instant::now();
    // Still cached right after the removal ...
    let cached = lookup(&rt, &resolver, "car54._device.cars.example");
    assert!(matches!(cached, TlsaAnswer::Secure { .. }), "{cached:?}");
    // ... and gone once the TTL ran out (bounded wait).
    let gone = loop {
        let answer = lookup(&rt, &resolver, "car54._device.cars.example");
        if matches!(answer, TlsaAnswer::NoRecords { .. }) {
            break answer;
        }
        assert!(removed_at.elapsed() < Duration::from_secs(6), "still {answer:?} after 6 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(matches!(gone, TlsaAnswer::NoRecords { secure: true, .. }), "{gone:?}");
    eprintln!("removal visible after {:?}", removed_at.elapsed());
    assert!(removed_at.elapsed() <= Duration::from_secs(3) + Duration::from_millis(500));
}

#[test]
fn silent_nameserver_fails_within_the_timeout() {
    // Bound but never answering, for UDP and TCP on the same port.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let _tcp = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let cfg = DnsConfig {
        nameservers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        trust_anchor_file: None,
        timeout: Duration::from_millis(400),
        attempts: 1,
        lookup_deadline: Duration::from_secs(3),
        ..DnsConfig::default()
    };
    let rt = runtime();
    let resolver = TlsaResolver::new(&cfg).unwrap();
    let t0 = Instant::now();
    let answer = lookup(&rt, &resolver, "car54._device.cars.example");
    let took = t0.elapsed();
    eprintln!("silent nameserver: {answer:?} after {took:?}");
    assert!(matches!(answer, TlsaAnswer::Failed { .. }), "{answer:?}");
    // timeout x (1 + attempts), with slack; and never beyond the lookup deadline.
    assert!(took < Duration::from_millis(400 * 2 + 600), "took {took:?}");
}

#[test]
fn closed_port_fails_fast() {
    let port = dns::free_port(); // nothing listens there
    let cfg = DnsConfig {
        nameservers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        timeout: Duration::from_millis(400),
        attempts: 1,
        ..DnsConfig::default()
    };
    let rt = runtime();
    let resolver = TlsaResolver::new(&cfg).unwrap();
    let t0 = Instant::now();
    let answer = lookup(&rt, &resolver, "car54._device.cars.example");
    let took = t0.elapsed();
    eprintln!("closed port: {answer:?} after {took:?}");
    assert!(matches!(answer, TlsaAnswer::Failed { .. }), "{answer:?}");
    assert!(took < Duration::from_millis(400 * 2 + 600), "took {took:?}");
}

#[test]
fn malformed_published_records_are_unusable() {
    let cert = device_cert("car54._device.cars.example");
    let mut truncated = cert.clone();
    truncated.truncate(cert.len() / 2);
    let body = format!(
        "car54._device TLSA 3 0 1 {short_hash}\ncar54._device TLSA 4 0 0 {garbage}\n\
         car54._device TLSA 3 0 0 {truncated}\ncar54._device TLSA 3 1 0 {spki}\ncar54._device TLSA 4 0 0 {good}\n",
        short_hash = "ab".repeat(31),
        garbage = hex::encode(b"this is not a certificate"),
        truncated = hex::encode(&truncated),
        // A certificate where a SubjectPublicKeyInfo belongs.
        spki = hex::encode(&cert),
        good = hex::encode(&cert),
    );
    let server = DnsServer::start(vec![Zone::signed("cars.example", &body)]);
    let rt = runtime();
    let resolver = TlsaResolver::new(&config_for(&server)).unwrap();
    let answer = lookup(&rt, &resolver, "car54._device.cars.example");
    let TlsaAnswer::Secure { records, .. } = &answer else { panic!("expected Secure, got {answer:?}") };
    assert_eq!(records.len(), 5);
    let mut usable = 0;
    for r in records {
        match classify(r) {
            RecordUse::PkixCd => {
                assert_eq!(r.data, cert);
                usable += 1;
            }
            RecordUse::Unusable { reason } => eprintln!("unusable: {reason}"),
            RecordUse::DaneEe { .. } | RecordUse::DaneTa { .. } => panic!("{r:?} must not be usable"),
        }
    }
    assert_eq!(usable, 1, "only the well-formed 4 0 0 record is usable");
}

#[test]
fn resolver_built_here_runs_on_a_background_runtime() {
    let cert = device_cert("car54._device.cars.example");
    let body = format!("car54._device TLSA {}\n", tlsa_text(3, 0, 0, &cert));
    let server = DnsServer::start(vec![Zone::signed("cars.example", &body)]);
    // Built outside any runtime, used by a thread that owns its runtime (the sync thread).
    let resolver = TlsaResolver::new(&config_for(&server)).unwrap();
    let worker = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let first = rt.block_on(resolver.lookup("car54._device.cars.example"));
        let second = rt.block_on(resolver.lookup_tlsa_at("car54._device.cars.example"));
        (first, second)
    });
    let (first, second) = worker.join().unwrap();
    assert!(matches!(first, TlsaAnswer::Secure { .. }), "{first:?}");
    assert_eq!(first, second);
}

#[test]
fn zone_key_anchors_without_a_root() {
    let cert = device_cert("car54._device.cars.example");
    let body = format!("car54._device TLSA {}\n", tlsa_text(3, 0, 0, &cert));
    let server = DnsServer::start_with(
        vec![Zone::signed("cars.example", &body), Zone::signed("fleet.cars.example", &body)],
        Anchoring::ZoneKeys,
    );
    let rt = runtime();
    let resolver = TlsaResolver::new(&config_for(&server)).unwrap();
    for name in ["car54._device.cars.example", "car54._device.fleet.cars.example"] {
        let answer = lookup(&rt, &resolver, name);
        assert!(matches!(answer, TlsaAnswer::Secure { .. }), "{name}: {answer:?}");
    }
    // A zone the server does not serve: knot REFUSES, which says nothing about the name.
    let elsewhere = lookup(&rt, &resolver, "car54._device.elsewhere.example");
    assert!(matches!(elsewhere, TlsaAnswer::Failed { .. }), "{elsewhere:?}");
}

#[test]
fn invalid_names_fail_without_a_query() {
    let cfg = DnsConfig { nameservers: vec!["127.0.0.1:9".parse().unwrap()], ..DnsConfig::default() };
    let rt = runtime();
    let resolver = TlsaResolver::new(&cfg).unwrap();
    for name in ["", "single", "a..b.example", "bad name.example", "1.2.3.4"] {
        let answer = lookup(&rt, &resolver, name);
        assert!(
            matches!(&answer, TlsaAnswer::Failed { reason } if reason.contains("invalid name")),
            "{name:?}: {answer:?}"
        );
    }
}
