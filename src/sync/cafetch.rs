//! Fetching CA certificates from `https://<authority host>/.well-known/ca/<key id>.pem`.
//!
//! A PKIX-CD certificate in DNS names its issuer only by the Authority Key Identifier; the
//! issuing organisation publishes the CA certificate under that key id on its authority
//! host. Everything fetched here is attacker
//! reachable data: the body size, the time and the redirects are bounded, and a
//! certificate is only returned if its Subject Key Identifier is the one asked for.
//! Whether it really signed the child is the caller's check ([`crate::sync::chain`]).
//!
//! One [`CaFetcher`] lives for the module's lifetime: one HTTP client (connection reuse)
//! and one cache, so a CA shared by thousands of device names is fetched once per cycle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openssl::x509::X509;

use crate::model::name;
use crate::model::pki::dashed_hex;
use crate::sync::https::{HttpError, HttpsClient, HttpsConfig};

pub use crate::sync::https::DEFAULT_ROOTS;
/// A CA certificate is a few KiB; anything much larger is not one.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Connect + whole-response budget of one request (the module's `https_timeout` default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a fetched CA is reused: one sync cycle fetches each CA once.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(3600);
/// How long a failure is remembered, so thousands of names under one broken authority
/// host cost one timeout, not thousands, while a fixed server is picked up soon.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(60);

/// Longest key id looked up (SHA-512 size; real ones are 20 or 32 bytes).
pub const MAX_KEY_ID: usize = 64;

const WELL_KNOWN: &str = "/.well-known/ca/";

/// How to reach `.well-known/ca/`.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// PEM bundle of the web roots that authenticate authority hosts
    /// (None: [`DEFAULT_ROOTS`]). Only these roots are trusted, never a built-in list.
    pub roots: Option<PathBuf>,
    /// Connect timeout, and the budget of one whole request (headers and body).
    pub timeout: Duration,
    /// Largest body accepted; reading stops as soon as it is exceeded.
    pub max_body: usize,
    /// Port of the authority hosts (None: 443). For tests.
    pub port: Option<u16>,
    /// Host name -> address, bypassing DNS (reqwest `resolve()`). For tests; production
    /// leaves it empty and uses the system resolver.
    pub host_overrides: HashMap<String, SocketAddr>,
    /// Lifetime of a successfully fetched certificate in the cache.
    pub cache_ttl: Duration,
    /// Lifetime of a failure in the cache (Duration::ZERO: failures are not cached).
    pub negative_ttl: Duration,
    /// Most requests sent per second (bursts of twice that); 0: no limit. One hostile
    /// zone's chains cannot turn the sync into a crawler.
    pub rate_limit: u32,
    /// Most (authority host, key id) entries kept.
    pub cache_capacity: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            roots: None,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            port: None,
            host_overrides: HashMap::new(),
            cache_ttl: DEFAULT_CACHE_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            rate_limit: 0,
            cache_capacity: 10_000,
        }
    }
}

/// Why no CA certificate was obtained. Every network error names the URL; the type is
/// `Clone` because a cached failure is handed to every name that asks for the same CA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The fetcher could not be set up (roots file unreadable, empty, client build).
    #[error("CA fetcher configuration: {0}")]
    Config(String),
    /// The authority host is not a plain DNS host name.
    #[error("{0:?} is not a valid authority host name")]
    InvalidHost(String),
    /// An empty key id cannot name a file.
    #[error("empty authority key identifier")]
    EmptyKeyId,
    /// Key ids are hashes (20 or 32 bytes); a longer one only makes an absurd URL.
    #[error("authority key identifier of {0} bytes (at most {MAX_KEY_ID})")]
    KeyIdTooLong(usize),
    /// Every candidate URL answered 404.
    #[error("CA certificate not found (404) at {}", .urls.join(" and "))]
    NotFound {
        /// The URLs tried, dashed-hex form first.
        urls: Vec<String>,
    },
    /// A status other than 200 and 404.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL that answered.
        url: String,
        /// The HTTP status; 5xx and 429 count as transient (the name keeps its last good
        /// entry), any other as definitive.
        status: u16,
    },
    /// The HTTPS request itself failed: a redirect (never followed: the CA must be at the
    /// well-known URL of the authority host itself), a body over `https_max_body`, no
    /// answer within `https_timeout`, or a connection, TLS or protocol failure.
    #[error(transparent)]
    Http(HttpError),
    /// The body is not a certificate (HTML page, garbage, empty).
    #[error("{url}: not a certificate: {message}")]
    Parse {
        /// The URL that served the body.
        url: String,
        /// What is wrong with the body (empty, an HTML page, bad PEM or DER).
        message: String,
    },
    /// A certificate, but not the one asked for: its Subject Key Identifier differs.
    #[error(
        "{url}: served a certificate with subject key id {} instead of {wanted}",
        .found.as_deref().unwrap_or("<none>")
    )]
    WrongCertificate {
        /// The URL that served it.
        url: String,
        /// The key id asked for (the child's Authority Key Identifier, dashed hex).
        wanted: String,
        /// The served certificate's Subject Key Identifier, dashed hex (None: it has none).
        found: Option<String>,
    },
    /// The fetcher's request rate limit is spent for now (retried later).
    #[error("CA fetch limit of {per_second} requests per second reached; retried later")]
    RateLimited {
        /// The configured limit (`ca_fetch_rate`), requests per second.
        per_second: u32,
    },
}

/// Counters for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// HTTP requests actually sent (cache hits send none).
    pub requests: u64,
    /// `fetch` calls answered from the cache.
    pub cache_hits: u64,
    /// Fetches that obtained no certificate (any reason but the rate limit).
    pub failures: u64,
}

type CacheKey = (String, Vec<u8>);
type CacheValue = Result<X509, FetchError>;

/// Gives successes and failures different lifetimes in one cache.
struct EntryExpiry {
    ok: Duration,
    err: Duration,
}

impl moka::Expiry<CacheKey, CacheValue> for EntryExpiry {
    fn expire_after_create(&self, _: &CacheKey, v: &CacheValue, _: Instant) -> Option<Duration> {
        Some(if v.is_ok() { self.ok } else { self.err })
    }
}

/// Fetches CA certificates by key id. Share it (`Arc`) across tasks.
pub struct CaFetcher {
    client: HttpsClient,
    port: Option<u16>,
    cache_failures: bool,
    /// Keyed by (authority host, key id), not key id alone: a key id is only a claim, and
    /// org B's host serving a certificate under org A's key id must not answer org A's
    /// lookups from the cache.
    cache: moka::sync::Cache<CacheKey, CacheValue>,
    /// One async lock per key being fetched, so concurrent lookups of one CA send one
    /// request and the others wait for its result (no stampede).
    inflight: Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<()>>>>,
    requests: AtomicU64,
    cache_hits: AtomicU64,
    failures: AtomicU64,
    limiter: Option<Mutex<Bucket>>,
}

/// A token bucket: `rate` tokens a second, at most twice that saved up.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let burst = 2.0 * self.rate;
        self.tokens = (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl CaFetcher {
    /// Builds the HTTP client: only the configured roots, HTTPS only, no redirects, no
    /// proxy from the environment, connect and total timeouts.
    pub fn new(config: FetchConfig) -> Result<Self, FetchError> {
        let client = HttpsClient::new(&HttpsConfig {
            roots: config.roots.clone(),
            timeout: config.timeout,
            max_body: config.max_body,
            host_overrides: config.host_overrides.clone(),
        })?;
        let cache = moka::sync::Cache::builder()
            .max_capacity(config.cache_capacity)
            .expire_after(EntryExpiry { ok: config.cache_ttl, err: config.negative_ttl })
            .build();
        Ok(CaFetcher {
            client,
            port: config.port,
            cache_failures: !config.negative_ttl.is_zero(),
            cache,
            inflight: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            limiter: (config.rate_limit > 0).then(|| {
                let rate = f64::from(config.rate_limit);
                Mutex::new(Bucket { rate, tokens: 2.0 * rate, last: Instant::now() })
            }),
        })
    }

    /// The CA certificate whose Subject Key Identifier is `key_id`, from `authority_host`.
    ///
    /// Tries `<hex bytes joined by '-'>.pem` (the reference's form), then `<plain hex>.pem`
    /// when the first answers 404. Cached per (host, key id); concurrent calls for the same
    /// pair share one request.
    pub async fn fetch(&self, authority_host: &str, key_id: &[u8]) -> Result<X509, FetchError> {
        if key_id.is_empty() {
            return Err(FetchError::EmptyKeyId);
        }
        if key_id.len() > MAX_KEY_ID {
            return Err(FetchError::KeyIdTooLong(key_id.len()));
        }
        let host = validate_host(authority_host)?;
        let key: CacheKey = (host, key_id.to_vec());
        if let Some(v) = self.cache.get(&key) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return v;
        }
        let lock = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let _turn = lock.lock().await;
        // Removes the in-flight entry on every exit, even if this future is dropped
        // mid-fetch (declared after `_turn`, so it runs while the lock is still held).
        let _cleanup = InflightGuard { map: &self.inflight, key: &key, lock: &lock };
        // Whoever held the lock before us may have filled the cache.
        if let Some(v) = self.cache.get(&key) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return v;
        }
        let result = self.fetch_uncached(&key.0, key_id).await;
        let limited = matches!(result, Err(FetchError::RateLimited { .. }));
        if result.is_err() && !limited {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        if result.is_ok() || (self.cache_failures && !limited) {
            // Inserted before the in-flight entry goes away: a caller arriving after the
            // removal finds the result in the cache.
            self.cache.insert(key.clone(), result.clone());
        }
        result
    }

    /// Forgets what is cached for (`authority_host`, `key_id`), so the next fetch asks the
    /// host again.
    pub fn forget(&self, authority_host: &str, key_id: &[u8]) {
        if let Ok(host) = validate_host(authority_host) {
            self.cache.invalidate(&(host, key_id.to_vec()));
        }
    }

    /// Drops every cached certificate and failure (e.g. at the start of a sync cycle).
    pub fn clear_cache(&self) {
        self.cache.invalidate_all();
    }

    /// The fetch counters since start.
    pub fn stats(&self) -> FetchStats {
        FetchStats {
            requests: self.requests.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// The candidate URLs for `key_id` at `host`, in the order they are tried.
    pub fn urls(&self, host: &str, key_id: &[u8]) -> Vec<String> {
        let base = match self.port {
            Some(p) => format!("https://{host}:{p}{WELL_KNOWN}"),
            None => format!("https://{host}{WELL_KNOWN}"),
        };
        let mut urls = vec![format!("{base}{}.pem", dashed_hex(key_id))];
        let plain = format!("{base}{}.pem", hex::encode(key_id));
        if plain != urls[0] {
            urls.push(plain);
        }
        urls
    }

    async fn fetch_uncached(&self, host: &str, key_id: &[u8]) -> Result<X509, FetchError> {
        if let Some(limiter) = &self.limiter {
            let mut bucket = limiter.lock().unwrap_or_else(|p| p.into_inner());
            if !bucket.take(Instant::now()) {
                return Err(FetchError::RateLimited { per_second: bucket.rate as u32 });
            }
        }
        let urls = self.urls(host, key_id);
        let mut missing = Vec::new();
        for url in &urls {
            match self.get(url).await {
                Ok(body) => return certificate_from_body(url, &body, key_id),
                Err(FetchError::NotFound { .. }) => missing.push(url.clone()),
                Err(e) => return Err(e),
            }
        }
        Err(FetchError::NotFound { urls: missing })
    }

    /// One GET of a CA certificate: 200 is the body, 404 is "not found", anything else
    /// an error naming the URL.
    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let accept = "application/pem-certificate-chain, application/x-pem-file, application/pkix-cert;q=0.9";
        let answer = self.client.get(url, &[("accept", accept)]).await?;
        match answer.status {
            200 => Ok(answer.body),
            404 => Err(FetchError::NotFound { urls: vec![url.to_owned()] }),
            status => Err(FetchError::Status { url: url.to_owned(), status }),
        }
    }
}

impl From<HttpError> for FetchError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Config(m) => FetchError::Config(m),
            other => FetchError::Http(other),
        }
    }
}

struct InflightGuard<'a> {
    map: &'a Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<()>>>>,
    key: &'a CacheKey,
    lock: &'a Arc<tokio::sync::Mutex<()>>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Only our own entry: a later caller may already have put a fresh lock there.
        if map.get(self.key).is_some_and(|l| Arc::ptr_eq(l, self.lock)) {
            map.remove(self.key);
        }
    }
}

/// The authority host goes into a URL: only a valid DNS name (the one validator of names,
/// [`name::normalize`]) is used, so a crafted name cannot add a port, user info or path.
/// Returns it lower-cased, without trailing dot.
fn validate_host(host: &str) -> Result<String, FetchError> {
    name::normalize(host).map_err(|_| FetchError::InvalidHost(host.to_owned()))
}

/// Parses a `.well-known/ca/` body: the first PEM CERTIFICATE block, or one DER
/// certificate. Then requires its Subject Key Identifier to be `key_id`.
pub fn certificate_from_body(url: &str, body: &[u8], key_id: &[u8]) -> Result<X509, FetchError> {
    let parse = |message: String| FetchError::Parse { url: url.to_owned(), message };
    let trimmed = trim_ascii_start(body);
    let cert = if trimmed.is_empty() {
        return Err(parse("empty body".into()));
    } else if contains(trimmed, b"-----BEGIN ") {
        // PEM may carry text before the block (`openssl x509 -text` output, comments).
        let mut reader = trimmed;
        let der = rustls_pemfile::certs(&mut reader)
            .next()
            .ok_or_else(|| parse("PEM without a CERTIFICATE block".into()))?
            .map_err(|e| parse(format!("bad PEM: {e}")))?;
        X509::from_der(der.as_ref()).map_err(|e| parse(format!("bad certificate in PEM: {e}")))?
    } else if trimmed[0] == b'<' {
        return Err(parse(format!(
            "an HTML/XML page, not a PEM or DER certificate (starts with {:?})",
            printable_prefix(trimmed)
        )));
    } else if body[0] == 0x30 {
        crate::model::pki::der_certificate(body).map_err(|e| parse(e.to_string()))?
    } else {
        return Err(parse(format!("neither PEM nor DER (starts with {:?})", printable_prefix(trimmed))));
    };
    let found = cert.subject_key_id().map(|k| k.as_slice().to_vec());
    if found.as_deref() != Some(key_id) {
        return Err(FetchError::WrongCertificate {
            url: url.to_owned(),
            wanted: dashed_hex(key_id),
            found: found.map(|k| dashed_hex(&k)),
        });
    }
    Ok(cert)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    &b[start..]
}

/// The first bytes of a body, safe to put in a log line.
fn printable_prefix(b: &[u8]) -> String {
    b.iter().take(40).map(|&c| if c.is_ascii_graphic() || c == b' ' { c as char } else { '.' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_file_names() {
        assert_eq!(dashed_hex(&[0x64, 0x65, 0x1a, 0xec]), "64-65-1a-ec");
        let f = CaFetcher::new(FetchConfig { roots: None, port: Some(8443), ..FetchConfig::default() });
        // The system bundle may be missing in minimal containers; the URL logic is what
        // is tested here.
        if let Ok(f) = f {
            assert_eq!(
                f.urls("device.cars.example", &[0xab, 0x01]),
                vec![
                    "https://device.cars.example:8443/.well-known/ca/ab-01.pem".to_string(),
                    "https://device.cars.example:8443/.well-known/ca/ab01.pem".to_string(),
                ]
            );
            // One byte: both forms are the same file, asked once.
            assert_eq!(f.urls("h.example", &[0xab]).len(), 1);
        }
    }

    #[test]
    fn hosts_that_could_change_the_url_are_refused() {
        assert_eq!(validate_host("Device.Cars.Example.").unwrap(), "device.cars.example");
        for bad in [
            "",
            ".",
            "a..b",
            "evil.example:444",
            "user@evil.example",
            "evil.example/x",
            "evil.example?x",
            "evil.example#x",
            "a b.example",
            "[::1]",
        ] {
            assert!(matches!(validate_host(bad), Err(FetchError::InvalidHost(_))), "{bad:?} accepted");
        }
    }

    #[test]
    fn bodies_that_are_not_certificates_are_named() {
        let u = "https://h.example/.well-known/ca/01-02.pem";
        let e = certificate_from_body(u, b"<!DOCTYPE html><html>", &[1, 2]).unwrap_err();
        assert!(e.to_string().contains("HTML"), "{e}");
        assert!(e.to_string().contains(u), "{e}");
        let e = certificate_from_body(u, b"", &[1, 2]).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = certificate_from_body(u, b"-----BEGIN PRIVATE KEY-----\nAAAA\n", &[1, 2]);
        assert!(matches!(e, Err(FetchError::Parse { .. })), "{e:?}");
        let e = certificate_from_body(u, &[0x30, 0x82, 0xff, 0xff, 0], &[1, 2]);
        assert!(matches!(e, Err(FetchError::Parse { .. })), "{e:?}");
        let e = certificate_from_body(u, &[0xff; 100], &[1, 2]);
        assert!(matches!(e, Err(FetchError::Parse { .. })), "{e:?}");
    }
}
