//! PKIX-CD chain authentication: legitimate chains through a real HTTPS server, and the
//! forgeries, loops and profile violations that must be refused. `verify_links` is also
//! exercised directly, without HTTP.

use testkit::{capki, https};

use std::collections::HashMap;
use std::time::Duration;

use capki::{issue, now, Aki, Issued, Ku, OrgPki, Spec, DAY};
use https::{HttpsServer, Route, WebPki};
use openssl::x509::X509;
use rlm_rust::model::pki::dashed_hex;
use rlm_rust::sync::cafetch::{CaFetcher, FetchConfig, FetchError};
use rlm_rust::sync::chain::{authenticate, verify_links, ChainError, ChainLimits};

const CARS: &str = "device.cars.example";
const CAR54: &str = "car54._device.cars.example";
const CAR55: &str = "car55._device.cars.example";

struct Lab {
    server: HttpsServer,
    fetcher: CaFetcher,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = WebPki::new(dir.path(), &[CARS]);
        let server = HttpsServer::start(&pki, None);
        let mut host_overrides = HashMap::new();
        host_overrides.insert(CARS.to_string(), server.addr());
        let fetcher = CaFetcher::new(FetchConfig {
            roots: Some(pki.root_pem.clone()),
            timeout: Duration::from_secs(5),
            port: Some(server.addr().port()),
            host_overrides,
            ..FetchConfig::default()
        })
        .expect("fetcher");
        Lab { server, fetcher, _dir: dir }
    }

    /// Publishes `ca` at its own key id.
    fn publish(&self, ca: &Issued) {
        self.publish_at(&ca.ski(), ca);
    }

    /// Publishes `ca` under `key_id` (an attacker chooses what to serve where).
    fn publish_at(&self, key_id: &[u8], ca: &Issued) {
        self.server.route(&format!("/.well-known/ca/{}.pem", dashed_hex(key_id)), Route::Ok(ca.pem()));
    }

    async fn auth(&self, leaf: &Issued, name: &str) -> Result<Vec<X509>, ChainError> {
        authenticate(&leaf.cert, name, &self.fetcher, ChainLimits::default(), now()).await.map(|c| c.certs)
    }
}

fn der(c: &X509) -> Vec<u8> {
    c.to_der().unwrap()
}

#[tokio::test]
async fn authenticates_root_intermediate_leaf() {
    let lab = Lab::new();
    let org = OrgPki::new("Cars Org");
    lab.publish(&org.root);
    lab.publish(&org.intermediate);
    let leaf = org.device("Cars Org", CAR54);
    let chain =
        authenticate(&leaf.cert, CAR54, &lab.fetcher, ChainLimits::default(), now()).await.expect("authenticated");
    let got: Vec<_> = chain.certs.iter().map(der).collect();
    assert_eq!(got, vec![der(&leaf.cert), der(&org.intermediate.cert), der(&org.root.cert)]);
    assert_eq!(der(chain.issuer()), der(&org.intermediate.cert));
    assert_eq!(der(chain.root()), der(&org.root.cert));
    assert_eq!(chain.cas().len(), 2);
    // Upper-case and trailing-dot forms of the name bind too.
    let second = org.device("Cars Org", CAR55);
    lab.auth(&second, "CAR55._device.cars.example.").await.expect("second device");
    // The second device reused both cached CAs.
    assert_eq!(lab.fetcher.stats().requests, 2);
}

#[tokio::test]
async fn leaf_directly_under_a_root_is_fine() {
    let lab = Lab::new();
    let root = issue(&Spec::ca("Cars Org", "Cars Root CA"), None);
    lab.publish(&root);
    let leaf = issue(&Spec::leaf("Cars Org", CAR54), Some(&root));
    assert_eq!(lab.auth(&leaf, CAR54).await.expect("chain").len(), 2);
}

#[tokio::test]
async fn cross_signed_loop_is_detected() {
    let lab = Lab::new();
    let (ka, kb) = (capki::ec_key(), capki::ec_key());
    let a_self = issue(&Spec::ca("Cars Org", "CA A").key(&ka), None);
    let b_self = issue(&Spec::ca("Cars Org", "CA B").key(&kb), None);
    // A signed by B, B signed by A: each names the other as issuer by key id.
    let a_by_b = issue(&Spec::ca("Cars Org", "CA A").key(&ka), Some(&b_self));
    let b_by_a = issue(&Spec::ca("Cars Org", "CA B").key(&kb), Some(&a_self));
    lab.publish(&a_by_b);
    lab.publish(&b_by_a);
    let leaf = issue(&Spec::leaf("Cars Org", CAR54), Some(&a_self));
    let e = lab.auth(&leaf, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::Loop { .. }), "{e}");
    assert_eq!(lab.fetcher.stats().requests, 2, "stops at the first repeat");
}

#[tokio::test]
async fn ca_naming_itself_as_issuer_without_being_a_root_is_refused() {
    let lab = Lab::new();
    let other = issue(&Spec::ca("Cars Org", "Other"), None);
    let k = capki::ec_key();
    // Subject "Cars CA", AKI = its own SKI, but signed by another key.
    let liar = issue(
        &Spec { aki: Aki::Explicit(capki::key_id_of(&k)), ..Spec::ca("Cars Org", "Cars CA").key(&k) },
        Some(&other),
    );
    lab.publish(&liar);
    let leaf = issue(&Spec::leaf("Cars Org", CAR54), Some(&Issued { cert: liar.cert.clone(), key: k }));
    let e = lab.auth(&leaf, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::NoRoot { .. }), "{e}");
}

#[tokio::test]
async fn forged_intermediate_copying_dn_and_key_id_fails_the_signature() {
    let lab = Lab::new();
    let cars = OrgPki::new("Cars Org");
    let meters = OrgPki::new("Meters Org");
    // Org B's CA signs an intermediate copying org A's intermediate subject DN and key
    // id, with another key; the server (or a poisoned path) serves it at A's key id.
    let forged = issue(
        &Spec {
            subject: Spec::ca("Cars Org", "Cars Org Device CA").subject,
            ski: Some(cars.intermediate.ski()),
            ..Spec::ca("x", "x")
        },
        Some(&meters.root),
    );
    assert_eq!(forged.cert.subject_name().to_der().unwrap(), cars.intermediate.cert.subject_name().to_der().unwrap());
    lab.publish_at(&cars.intermediate.ski(), &forged);
    lab.publish(&meters.root);
    // A genuine org A device: its signature is by A's real intermediate key.
    let leaf = cars.device("Cars Org", CAR54);
    let e = lab.auth(&leaf, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::BadSignature { .. }), "{e}");
    // And a device signed by the forger's key (copying A's DN/AKI) gets a chain that ends
    // at org B's root, never org A's: authenticated, but only as org B's (the CA set then
    // refuses the forged CA next to A's, see tests/caset.rs).
    let forged_leaf = issue(&Spec::leaf("Cars Org", CAR54), Some(&forged));
    let chain = lab.auth(&forged_leaf, CAR54).await.expect("B's chain");
    assert_eq!(der(&chain[2]), der(&meters.root.cert));
}

#[tokio::test]
async fn expired_intermediate_is_named_with_its_dates() {
    let lab = Lab::new();
    let root = issue(&Spec::ca("Cars Org", "Cars Root CA"), None);
    let t = now();
    let old = issue(&Spec::ca("Cars Org", "Cars Old Device CA").validity(t - 400 * DAY, t - 35 * DAY), Some(&root));
    lab.publish(&root);
    lab.publish(&old);
    let leaf = issue(&Spec::leaf("Cars Org", CAR54), Some(&old));
    let e = lab.auth(&leaf, CAR54).await.unwrap_err();
    match &e {
        ChainError::Expired { subject, not_after, .. } => {
            assert!(subject.contains("Cars Old Device CA"), "{subject}");
            assert!(not_after.contains("GMT"), "{not_after}");
        }
        other => panic!("expected Expired, got {other}"),
    }
}

#[tokio::test]
async fn not_yet_valid_root_is_refused() {
    let lab = Lab::new();
    let t = now();
    let root = issue(&Spec::ca("Cars Org", "Cars Future Root").validity(t + DAY, t + 400 * DAY), None);
    lab.publish(&root);
    let leaf = issue(&Spec::leaf("Cars Org", CAR54), Some(&root));
    let e = lab.auth(&leaf, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::NotYetValid { .. }), "{e}");
}

#[tokio::test]
async fn leaf_profile_and_name_are_checked_before_any_request() {
    let lab = Lab::new();
    let org = OrgPki::new("Cars Org");
    lab.publish(&org.root);
    lab.publish(&org.intermediate);
    let server_only =
        issue(&Spec { eku: vec!["serverAuth"], ..Spec::leaf("Cars Org", CAR54) }, Some(&org.intermediate));
    let e = lab.auth(&server_only, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::LeafNotClientAuth { .. }), "{e}");

    let any_eku = issue(&Spec { eku: vec!["2.5.29.37.0"], ..Spec::leaf("Cars Org", CAR54) }, Some(&org.intermediate));
    let e = lab.auth(&any_eku, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::LeafNotClientAuth { .. }), "{e}");

    let other_name = org.device("Cars Org", CAR55);
    let e = lab.auth(&other_name, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::NameBinding(_)), "{e}");
    assert!(e.to_string().contains(CAR54), "{e}");

    // CN alone does not bind: the name must be a SAN dNSName.
    let cn_only = issue(
        &Spec { sans: vec!["car54.elsewhere.example".into()], ..Spec::leaf("Cars Org", CAR54) },
        Some(&org.intermediate),
    );
    let e = lab.auth(&cn_only, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::NameBinding(_)), "{e}");

    let ca_leaf =
        issue(&Spec { ca: Some(true), key_usage: Ku::Ca, ..Spec::leaf("Cars Org", CAR54) }, Some(&org.intermediate));
    let e = lab.auth(&ca_leaf, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::LeafIsCa { .. }), "{e}");

    let critical = issue(&Spec { unknown_critical: true, ..Spec::leaf("Cars Org", CAR54) }, Some(&org.intermediate));
    let e = lab.auth(&critical, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::UnhandledCriticalExtension { .. }), "{e}");

    let e = lab.auth(&org.device("Cars Org", "car54.cars.example"), "car54.cars.example").await.unwrap_err();
    assert!(matches!(e, ChainError::NoAuthorityHost(_)), "{e}");

    assert_eq!(lab.fetcher.stats().requests, 0);
}

#[tokio::test]
async fn chain_deeper_than_the_limit_is_refused() {
    let lab = Lab::new();
    let root = issue(&Spec::ca("Cars Org", "Root"), None);
    lab.publish(&root);
    let mut parent = root;
    for i in 0..5 {
        let ca = issue(&Spec::ca("Cars Org", &format!("Level {i}")), Some(&parent));
        lab.publish(&ca);
        parent = ca;
    }
    let leaf = issue(&Spec::leaf("Cars Org", CAR54), Some(&parent));
    // 6 CAs above the leaf: one more than the default limit of 5.
    let e = lab.auth(&leaf, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::TooDeep { max_depth: 5 }), "{e}");
    assert_eq!(lab.fetcher.stats().requests, 5, "never fetches past the limit");
    let ok = authenticate(&leaf.cert, CAR54, &lab.fetcher, ChainLimits { max_depth: 6 }, now())
        .await
        .expect("within a limit of 6");
    assert_eq!(ok.certs.len(), 7);
}

#[tokio::test]
async fn issuer_profile_violations_are_refused() {
    let lab = Lab::new();
    let root = issue(&Spec::ca("Cars Org", "Cars Root CA"), None);
    lab.publish(&root);

    let not_ca = issue(&Spec { ca: Some(false), ..Spec::ca("Cars Org", "Not A CA") }, Some(&root));
    let no_bc = issue(&Spec { ca: None, ..Spec::ca("Cars Org", "No Basic Constraints") }, Some(&root));
    let no_sign =
        issue(&Spec { key_usage: Ku::CaWithoutCertSign, ..Spec::ca("Cars Org", "No keyCertSign") }, Some(&root));
    for (ca, want) in [(&not_ca, "NotCa"), (&no_bc, "NotCa"), (&no_sign, "NoCertSign")] {
        lab.publish(ca);
        let leaf = issue(&Spec::leaf("Cars Org", CAR54), Some(ca));
        let e = lab.auth(&leaf, CAR54).await.unwrap_err();
        let ok = match want {
            "NotCa" => matches!(e, ChainError::NotCa { .. }),
            _ => matches!(e, ChainError::NoCertSign { .. }),
        };
        assert!(ok, "{want}: {e}");
    }

    // pathLen 0 on the root: it may only issue end-entity certificates (pathLen counts
    // the non-root CAs between it and the leaf).
    let strict_root = issue(&Spec { path_len: Some(0), ..Spec::ca("Cars Org", "Strict Root") }, None);
    let mid = issue(&Spec::ca("Cars Org", "Strict Mid"), Some(&strict_root));
    lab.publish(&strict_root);
    lab.publish(&mid);
    let fine = issue(&Spec::leaf("Cars Org", CAR54), Some(&strict_root));
    lab.auth(&fine, CAR54).await.expect("leaf right under a pathLen 0 root");
    let too_long = issue(&Spec::leaf("Cars Org", CAR54), Some(&mid));
    let e = lab.auth(&too_long, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::PathLen { path_len: 0, below: 1, .. }), "{e}");
}

#[tokio::test]
async fn missing_issuer_names_the_urls() {
    let lab = Lab::new();
    let org = OrgPki::new("Cars Org");
    lab.publish(&org.intermediate); // the root is not published
    let leaf = org.device("Cars Org", CAR54);
    let e = lab.auth(&leaf, CAR54).await.unwrap_err();
    match &e {
        ChainError::Fetch { subject, error: FetchError::NotFound { urls } } => {
            assert!(subject.contains("Cars Org Device CA"), "{subject}");
            assert!(urls[0].contains(&dashed_hex(&org.root.ski())), "{urls:?}");
        }
        other => panic!("expected a NotFound fetch error, got {other}"),
    }
}

#[tokio::test]
async fn leaf_without_aki_cannot_be_walked() {
    let lab = Lab::new();
    let org = OrgPki::new("Cars Org");
    let leaf = issue(&Spec { aki: Aki::Absent, ..Spec::leaf("Cars Org", CAR54) }, Some(&org.intermediate));
    let e = lab.auth(&leaf, CAR54).await.unwrap_err();
    assert!(matches!(e, ChainError::NoAuthorityKeyId { .. }), "{e}");
}

#[test]
fn verify_links_without_http() {
    let org = OrgPki::new("Cars Org");
    let leaf = org.device("Cars Org", CAR54);
    let t = now();
    let good = [leaf.cert.clone(), org.intermediate.cert.clone(), org.root.cert.clone()];
    verify_links(&good, t).expect("good chain");

    assert!(matches!(verify_links(&[], t), Err(ChainError::Empty)));
    // Validity is judged at `now`: the same chain fails a year from now (leaf: 90 days).
    assert!(matches!(verify_links(&good, t + 365 * DAY), Err(ChainError::Expired { .. })));
    // Without the root: does not end at a self-signed certificate.
    let e = verify_links(&good[..2], t).unwrap_err();
    assert!(matches!(e, ChainError::NoRoot { .. }), "{e}");
    // Wrong order: the root is not the leaf's issuer.
    let e = verify_links(&[leaf.cert.clone(), org.root.cert.clone(), org.intermediate.cert.clone()], t).unwrap_err();
    assert!(matches!(e, ChainError::IssuerNameMismatch { .. }), "{e}");
    // A root in the middle: the chain goes on past a trust anchor.
    let root = issue(&Spec::ca("Cars Org", "Loop Root"), None);
    let l2 = issue(&Spec::leaf("Cars Org", CAR54), Some(&root));
    let e = verify_links(&[l2.cert.clone(), root.cert.clone(), root.cert.clone()], t).unwrap_err();
    assert!(matches!(e, ChainError::RootNotLast { .. }), "{e}");
    // A signs B signs A: the repeated certificate is a loop.
    let (ka, kb) = (capki::ec_key(), capki::ec_key());
    let a_self = issue(&Spec::ca("Cars Org", "CA A").key(&ka), None);
    let b_self = issue(&Spec::ca("Cars Org", "CA B").key(&kb), None);
    let a_by_b = issue(&Spec::ca("Cars Org", "CA A").key(&ka), Some(&b_self));
    let b_by_a = issue(&Spec::ca("Cars Org", "CA B").key(&kb), Some(&a_self));
    let l3 = issue(&Spec::leaf("Cars Org", CAR54), Some(&a_self));
    let e =
        verify_links(&[l3.cert.clone(), a_by_b.cert.clone(), b_by_a.cert.clone(), a_by_b.cert.clone()], t).unwrap_err();
    assert!(matches!(e, ChainError::Loop { .. }), "{e}");
    // A forged intermediate with the real one's DN and key id but another key.
    let forged = issue(
        &Spec {
            subject: Spec::ca("Cars Org", "Cars Org Device CA").subject,
            ski: Some(org.intermediate.ski()),
            ..Spec::ca("x", "x")
        },
        Some(&org.root),
    );
    let e = verify_links(&[leaf.cert.clone(), forged.cert.clone(), org.root.cert.clone()], t).unwrap_err();
    assert!(matches!(e, ChainError::BadSignature { .. }), "{e}");
}

/// OpenSSL's own verdict (`X509_verify_cert`, SSL-client purpose, the chain's CAs as the
/// only trusted store), as radiusd will reach it in the handshake.
fn openssl_accepts(certs: &[X509], at: i64) -> bool {
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::verify::X509VerifyParam;
    use openssl::x509::{X509PurposeId, X509StoreContext};
    let mut store = X509StoreBuilder::new().unwrap();
    for ca in &certs[1..] {
        store.add_cert(ca.clone()).unwrap();
    }
    let mut param = X509VerifyParam::new().unwrap();
    param.set_time(at as _);
    param.set_purpose(X509PurposeId::SSL_CLIENT).unwrap();
    store.set_param(&param).unwrap();
    let store = store.build();
    let chain = Stack::new().unwrap();
    let mut ctx = X509StoreContext::new().unwrap();
    ctx.init(&store, &certs[0], &chain, |c| c.verify_cert()).unwrap()
}

/// Our verdicts agree with OpenSSL's on every profile case it judges, so a chain we
/// accept is one radiusd's TLS accepts, and the other way round.
#[test]
fn verdicts_agree_with_openssl() {
    let t = now();
    let root = issue(&Spec::ca("Cars Org", "Agree Root"), None);
    let leaf_under = |ca: &Issued, spec: Spec| issue(&spec, Some(ca));
    let mut cases: Vec<(&str, Vec<X509>)> = Vec::new();
    let int = issue(&Spec::ca("Cars Org", "Agree Int"), Some(&root));
    let leaf = leaf_under(&int, Spec::leaf("Cars Org", CAR54));
    cases.push(("good", vec![leaf.cert.clone(), int.cert.clone(), root.cert.clone()]));
    let expired = issue(&Spec::ca("Cars Org", "Agree Old").validity(t - 400 * DAY, t - DAY), Some(&root));
    let l = leaf_under(&expired, Spec::leaf("Cars Org", CAR54));
    cases.push(("expired CA", vec![l.cert, expired.cert.clone(), root.cert.clone()]));
    let strict = issue(&Spec { path_len: Some(0), ..Spec::ca("Cars Org", "Agree Strict") }, None);
    let mid = issue(&Spec::ca("Cars Org", "Agree Mid"), Some(&strict));
    let l = leaf_under(&mid, Spec::leaf("Cars Org", CAR54));
    cases.push(("pathLen", vec![l.cert, mid.cert.clone(), strict.cert.clone()]));
    let nosign = issue(&Spec { key_usage: Ku::CaWithoutCertSign, ..Spec::ca("Cars Org", "Agree NoSign") }, Some(&root));
    let l = leaf_under(&nosign, Spec::leaf("Cars Org", CAR54));
    cases.push(("no keyCertSign", vec![l.cert, nosign.cert.clone(), root.cert.clone()]));
    let notca = issue(&Spec { ca: Some(false), ..Spec::ca("Cars Org", "Agree NotCA") }, Some(&root));
    let l = leaf_under(&notca, Spec::leaf("Cars Org", CAR54));
    cases.push(("CA:FALSE issuer", vec![l.cert, notca.cert.clone(), root.cert.clone()]));
    let l = leaf_under(&int, Spec { eku: vec!["serverAuth"], ..Spec::leaf("Cars Org", CAR54) });
    cases.push(("serverAuth leaf", vec![l.cert, int.cert.clone(), root.cert.clone()]));
    let l = leaf_under(&int, Spec { key_usage: Ku::Ca, ca: Some(false), ..Spec::leaf("Cars Org", CAR54) });
    cases.push(("keyCertSign-only leaf", vec![l.cert, int.cert.clone(), root.cert.clone()]));
    let l = leaf_under(&int, Spec { unknown_critical: true, ..Spec::leaf("Cars Org", CAR54) });
    cases.push(("unknown critical", vec![l.cert, int.cert.clone(), root.cert.clone()]));
    let forged = issue(
        &Spec { subject: Spec::ca("Cars Org", "Agree Int").subject, ski: Some(int.ski()), ..Spec::ca("x", "x") },
        Some(&root),
    );
    cases.push(("forged intermediate", vec![leaf.cert.clone(), forged.cert.clone(), root.cert.clone()]));

    for (what, certs) in &cases {
        let ours = verify_links(certs, t).is_ok();
        assert_eq!(ours, openssl_accepts(certs, t), "{what}: ours {ours}");
        assert_eq!(ours, *what == "good", "{what}");
    }
}

/// The sync runs `authenticate` on a multi-threaded runtime (`tokio::spawn`): its
/// future must be `Send`.
#[test]
fn authenticate_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let org = OrgPki::new("Cars Org");
    let leaf = org.device("Cars Org", CAR54);
    let dir = tempfile::tempdir().unwrap();
    let pki = WebPki::new(dir.path(), &[CARS]);
    let fetcher = CaFetcher::new(FetchConfig { roots: Some(pki.root_pem.clone()), ..FetchConfig::default() }).unwrap();
    let fut = authenticate(&leaf.cert, CAR54, &fetcher, ChainLimits::default(), now());
    assert_send(&fut);
}
