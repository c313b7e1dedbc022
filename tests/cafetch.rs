//! `.well-known/ca/` fetching against a real HTTPS server on loopback that misbehaves on
//! purpose: every failure must be bounded in time and memory and name the URL.

use testkit::{capki, https};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capki::{issue, Spec};
use https::{DeadListener, HttpsServer, Route, WebPki};
use rlm_rust::model::pki::dashed_hex;
use rlm_rust::sync::cafetch::{CaFetcher, FetchConfig, FetchError};
use rlm_rust::sync::https::HttpError;

const CARS: &str = "device.cars.example";
const METERS: &str = "device.meters.example";

struct Lab {
    server: HttpsServer,
    pki: WebPki,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = WebPki::new(dir.path(), &[CARS, METERS]);
        let server = HttpsServer::start(&pki, None);
        Lab { server, pki, _dir: dir }
    }

    fn config(&self, timeout: Duration) -> FetchConfig {
        let mut host_overrides = HashMap::new();
        host_overrides.insert(CARS.to_string(), self.server.addr());
        host_overrides.insert(METERS.to_string(), self.server.addr());
        FetchConfig {
            roots: Some(self.pki.root_pem.clone()),
            timeout,
            port: Some(self.server.addr().port()),
            host_overrides,
            ..FetchConfig::default()
        }
    }

    fn fetcher(&self) -> CaFetcher {
        CaFetcher::new(self.config(Duration::from_secs(5))).expect("fetcher")
    }
}

fn dashed_path(key_id: &[u8]) -> String {
    format!("/.well-known/ca/{}.pem", dashed_hex(key_id))
}

fn plain_path(key_id: &[u8]) -> String {
    format!("/.well-known/ca/{}.pem", hex::encode(key_id))
}

fn some_ca(cn: &str) -> capki::Issued {
    issue(&Spec::ca("Cars Org", cn), None)
}

#[tokio::test]
async fn fetches_pem_by_dashed_key_id() {
    let lab = Lab::new();
    let ca = some_ca("Cars Root CA");
    lab.server.route(&dashed_path(&ca.ski()), Route::Ok(ca.pem()));
    let got = lab.fetcher().fetch(CARS, &ca.ski()).await.expect("fetch");
    assert_eq!(got.to_der().unwrap(), ca.cert.to_der().unwrap());
    assert_eq!(lab.server.hits(&dashed_path(&ca.ski())), 1);
    assert_eq!(lab.server.hits(&plain_path(&ca.ski())), 0);
}

#[tokio::test]
async fn falls_back_to_plain_hex_after_404() {
    let lab = Lab::new();
    let ca = some_ca("Cars Root CA");
    lab.server.route(&plain_path(&ca.ski()), Route::Ok(ca.pem()));
    let f = lab.fetcher();
    let got = f.fetch(CARS, &ca.ski()).await.expect("fetch");
    assert_eq!(got.to_der().unwrap(), ca.cert.to_der().unwrap());
    assert_eq!(lab.server.hits(&dashed_path(&ca.ski())), 1);
    assert_eq!(lab.server.hits(&plain_path(&ca.ski())), 1);
    assert_eq!(f.stats().requests, 2);
}

#[tokio::test]
async fn accepts_der_and_pem_with_extra_blocks() {
    let lab = Lab::new();
    let a = some_ca("A");
    let b = some_ca("B");
    lab.server.route(&dashed_path(&a.ski()), Route::Ok(a.cert.to_der().unwrap()));
    // A chain file: the first CERTIFICATE block is the one served for this key id.
    let mut chain = b"\n# comment\n".to_vec();
    chain.extend(b.pem());
    chain.extend(a.pem());
    lab.server.route(&dashed_path(&b.ski()), Route::Ok(chain));
    let f = lab.fetcher();
    assert!(f.fetch(CARS, &a.ski()).await.is_ok());
    assert!(f.fetch(CARS, &b.ski()).await.is_ok());
}

#[tokio::test]
async fn missing_ca_is_not_found_naming_both_urls() {
    let lab = Lab::new();
    let key_id = [0xde, 0xad, 0xbe, 0xef];
    let e = lab.fetcher().fetch(CARS, &key_id).await.unwrap_err();
    match &e {
        FetchError::NotFound { urls } => assert_eq!(urls.len(), 2),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("de-ad-be-ef.pem") && msg.contains("deadbeef.pem"), "{msg}");
}

#[tokio::test]
async fn html_page_is_a_parse_error_naming_the_url() {
    let lab = Lab::new();
    let key_id = [1, 2, 3];
    lab.server.route(&dashed_path(&key_id), Route::Html);
    let e = lab.fetcher().fetch(CARS, &key_id).await.unwrap_err();
    assert!(matches!(e, FetchError::Parse { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("HTML") && msg.contains("01-02-03.pem"), "{msg}");
}

#[tokio::test]
async fn unrelated_certificate_is_refused() {
    let lab = Lab::new();
    let wanted = some_ca("Wanted");
    let other = some_ca("Other");
    lab.server.route(&dashed_path(&wanted.ski()), Route::Ok(other.pem()));
    let e = lab.fetcher().fetch(CARS, &wanted.ski()).await.unwrap_err();
    match &e {
        FetchError::WrongCertificate { wanted: w, found, .. } => {
            assert_eq!(w, &dashed_hex(&wanted.ski()));
            assert_eq!(found.as_deref(), Some(dashed_hex(&other.ski()).as_str()));
        }
        other => panic!("expected WrongCertificate, got {other:?}"),
    }
}

#[tokio::test]
async fn streamed_50_mb_body_is_cut_off_at_the_limit() {
    let lab = Lab::new();
    let key_id = [0x50; 20];
    let path = dashed_path(&key_id);
    lab.server.route(&path, Route::Huge { bytes: 50 * 1024 * 1024, declare_length: false });
    let t0 = Instant::now();
    let e = lab.fetcher().fetch(CARS, &key_id).await.unwrap_err();
    assert!(matches!(e, FetchError::Http(HttpError::TooLarge { limit: 65536, .. })), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    // Give the server a moment to notice the closed connection, then check it could not
    // push the whole body: the client stopped reading at the limit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = lab.server.bytes_sent(&path);
    eprintln!("server pushed {sent} bytes before the client hung up");
    assert!(sent < 20 * 1024 * 1024, "server sent {sent} bytes");
    // And the connection is closed, not left draining in the background.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(lab.server.bytes_sent(&path), sent, "still reading after the limit");
}

#[tokio::test]
async fn announced_huge_body_is_refused_before_reading() {
    let lab = Lab::new();
    let key_id = [0x51; 20];
    lab.server.route(&dashed_path(&key_id), Route::Huge { bytes: 50 * 1024 * 1024, declare_length: true });
    let e = lab.fetcher().fetch(CARS, &key_id).await.unwrap_err();
    assert!(matches!(e, FetchError::Http(HttpError::TooLarge { .. })), "{e:?}");
}

#[tokio::test]
async fn redirect_to_itself_is_refused_without_following() {
    let lab = Lab::new();
    let key_id = [0x30; 4];
    let path = dashed_path(&key_id);
    lab.server.route(&path, Route::RedirectSelf);
    let e = lab.fetcher().fetch(CARS, &key_id).await.unwrap_err();
    match &e {
        FetchError::Http(HttpError::Redirect { location, .. }) => assert_eq!(location.as_deref(), Some(&path[..])),
        other => panic!("expected Redirect, got {other:?}"),
    }
    assert_eq!(lab.server.hits(&path), 1, "the redirect must not be followed");
    assert_eq!(lab.server.hits(&plain_path(&key_id)), 0);
}

#[tokio::test]
async fn stalled_server_times_out() {
    let lab = Lab::new();
    let key_id = [0x31; 4];
    lab.server.route(&dashed_path(&key_id), Route::Stall(Duration::from_secs(8)));
    let f = CaFetcher::new(lab.config(Duration::from_millis(800))).unwrap();
    let t0 = Instant::now();
    let e = f.fetch(CARS, &key_id).await.unwrap_err();
    assert!(matches!(e, FetchError::Http(HttpError::Timeout { .. })), "{e:?}");
    assert!(e.to_string().contains("31-31-31-31.pem"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn connection_closed_without_answer_is_a_transport_error() {
    let lab = Lab::new();
    let key_id = [0x32; 4];
    lab.server.route(&dashed_path(&key_id), Route::Close);
    let e = lab.fetcher().fetch(CARS, &key_id).await.unwrap_err();
    assert!(matches!(e, FetchError::Http(HttpError::Transport { .. })), "{e:?}");
    assert!(e.to_string().contains("32-32-32-32.pem"), "{e}");
}

#[tokio::test]
async fn port_that_accepts_then_closes_is_a_transport_error() {
    let lab = Lab::new();
    let dead = DeadListener::start();
    let mut cfg = lab.config(Duration::from_secs(3));
    cfg.port = Some(dead.addr.port());
    cfg.host_overrides.insert(CARS.to_string(), dead.addr);
    let t0 = Instant::now();
    let e = CaFetcher::new(cfg).unwrap().fetch(CARS, &[0x33; 4]).await.unwrap_err();
    assert!(matches!(e, FetchError::Http(HttpError::Transport { .. })), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn server_with_an_untrusted_certificate_is_refused() {
    let lab = Lab::new();
    let ca = some_ca("Cars Root CA");
    lab.server.route(&dashed_path(&ca.ski()), Route::Ok(ca.pem()));
    // Trust another web root than the one that issued the server's certificate.
    let other_dir = tempfile::tempdir().unwrap();
    let other = WebPki::new(other_dir.path(), &[CARS]);
    let mut cfg = lab.config(Duration::from_secs(3));
    cfg.roots = Some(other.root_pem.clone());
    let e = CaFetcher::new(cfg).unwrap().fetch(CARS, &ca.ski()).await.unwrap_err();
    eprintln!("{e}");
    match &e {
        FetchError::Http(HttpError::Transport { message, .. }) => {
            assert!(message.to_lowercase().contains("certificate"), "{message}")
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert_eq!(lab.server.total_hits(), 0, "no request may pass the TLS check");
}

#[tokio::test]
async fn server_error_status_is_reported() {
    let lab = Lab::new();
    let key_id = [0x34; 4];
    lab.server.route(&dashed_path(&key_id), Route::Status(500));
    let e = lab.fetcher().fetch(CARS, &key_id).await.unwrap_err();
    assert!(matches!(e, FetchError::Status { status: 500, .. }), "{e:?}");
    // Only a 404 moves on to the plain-hex name.
    assert_eq!(lab.server.hits(&plain_path(&key_id)), 0);
}

#[tokio::test]
async fn bad_inputs_are_refused_without_a_request() {
    let lab = Lab::new();
    let f = lab.fetcher();
    assert!(matches!(f.fetch("evil.example:1/x", &[1]).await, Err(FetchError::InvalidHost(_))));
    assert!(matches!(f.fetch(CARS, &[]).await, Err(FetchError::EmptyKeyId)));
    assert!(matches!(f.fetch(CARS, &[7; 65]).await, Err(FetchError::KeyIdTooLong(65))));
    assert_eq!(f.stats().requests, 0);
}

#[test]
fn missing_or_empty_roots_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, b"").unwrap();
    for roots in [dir.path().join("missing.pem"), empty] {
        let r = CaFetcher::new(FetchConfig { roots: Some(roots), ..FetchConfig::default() });
        assert!(matches!(r, Err(FetchError::Config(_))));
    }
}

#[tokio::test]
async fn cache_answers_repeat_lookups() {
    let lab = Lab::new();
    let ca = some_ca("Cars Root CA");
    lab.server.route(&dashed_path(&ca.ski()), Route::Ok(ca.pem()));
    let f = lab.fetcher();
    for _ in 0..5 {
        f.fetch(CARS, &ca.ski()).await.expect("fetch");
    }
    assert_eq!(lab.server.total_hits(), 1);
    assert_eq!(f.stats().requests, 1);
    assert_eq!(f.stats().cache_hits, 4);
    f.clear_cache();
    f.fetch(CARS, &ca.ski()).await.expect("fetch");
    assert_eq!(lab.server.total_hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_of_one_ca_send_one_request() {
    let lab = Lab::new();
    let ca = some_ca("Cars Root CA");
    let path = dashed_path(&ca.ski());
    lab.server.route(&path, Route::Delay(Duration::from_millis(300), Box::new(Route::Ok(ca.pem()))));
    let f = Arc::new(lab.fetcher());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (f, key_id) = (f.clone(), ca.ski());
        tasks.spawn(async move { f.fetch(CARS, &key_id).await.map(|c| c.to_der().unwrap()) });
    }
    let want = ca.cert.to_der().unwrap();
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.expect("task").expect("fetch"), want);
    }
    assert_eq!(lab.server.hits(&path), 1);
}

#[tokio::test]
async fn failures_are_remembered_briefly() {
    let lab = Lab::new();
    let key_id = [0x35; 4];
    let f = lab.fetcher();
    for _ in 0..3 {
        assert!(f.fetch(CARS, &key_id).await.is_err());
    }
    assert_eq!(lab.server.total_hits(), 2, "one 404 pair, then the cached failure");

    let mut cfg = lab.config(Duration::from_secs(3));
    cfg.negative_ttl = Duration::ZERO;
    let f = CaFetcher::new(cfg).unwrap();
    for _ in 0..2 {
        assert!(f.fetch(CARS, &key_id).await.is_err());
    }
    assert_eq!(lab.server.total_hits(), 6, "failures not cached when negative_ttl = 0");
}

#[tokio::test]
async fn cache_is_per_authority_host() {
    let lab = Lab::new();
    // Org B's host serves a certificate under org A's key id. Org A's lookups must not be
    // answered with it from the cache.
    let a = some_ca("Cars Root CA");
    let b_fake = issue(&Spec { ski: Some(a.ski()), ..Spec::ca("Meters Org", "Meters Root CA") }, None);
    let f = lab.fetcher();
    lab.server.route(&dashed_path(&a.ski()), Route::Ok(b_fake.pem()));
    let from_b = f.fetch(METERS, &a.ski()).await.expect("fetch from B");
    assert_eq!(from_b.to_der().unwrap(), b_fake.cert.to_der().unwrap());
    lab.server.route(&dashed_path(&a.ski()), Route::Ok(a.pem()));
    let from_a = f.fetch(CARS, &a.ski()).await.expect("fetch from A");
    assert_eq!(from_a.to_der().unwrap(), a.cert.to_der().unwrap());
    assert_eq!(lab.server.total_hits(), 2);
}
