//! The one HTTPS client of the sync: CA certificates from `.well-known/ca/` and a policy
//! document from the organisation's own server go through it.
//!
//! Everything it fetches is reachable by an attacker, so: only the configured web roots
//! (never a built-in list), HTTPS only, no redirects (a redirect is reported, not followed),
//! no proxy from the environment, one deadline over the whole request, and a body limit
//! enforced while reading (the connection is dropped at the first byte too many).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

/// The system web roots Debian maintains (`ca-certificates`).
pub const DEFAULT_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How the client is built.
#[derive(Debug, Clone)]
pub struct HttpsConfig {
    /// PEM bundle of the web roots (None: [`DEFAULT_ROOTS`]).
    pub roots: Option<PathBuf>,
    /// Connect timeout, and the budget of one whole request (headers and body).
    pub timeout: Duration,
    /// Largest body accepted.
    pub max_body: usize,
    /// Host name -> address, bypassing DNS (split horizon setups, tests).
    pub host_overrides: HashMap<String, SocketAddr>,
}

/// Why a request produced no answer. Every variant names the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The client could not be set up (roots file unreadable or empty, client build).
    #[error("HTTPS client configuration: {0}")]
    Config(String),
    /// A 3xx answer; never followed.
    #[error(
        "{url}: redirect to {} refused (the document must be served directly)",
        .location.as_deref().unwrap_or("<no Location>")
    )]
    Redirect {
        /// The URL asked.
        url: String,
        /// Where the server tried to send the request (`Location`), if it said.
        location: Option<String>,
    },
    /// The body (announced or received) exceeds the limit; reading stopped there.
    #[error("{url}: body larger than {limit} bytes, not read further")]
    TooLarge {
        /// The URL asked.
        url: String,
        /// The body limit in bytes.
        limit: usize,
    },
    /// The request did not complete within the timeout.
    #[error("{url}: no complete answer within {after:?}")]
    Timeout {
        /// The URL asked.
        url: String,
        /// The budget that ran out.
        after: Duration,
    },
    /// Connection, TLS or HTTP protocol failure.
    #[error("{url}: {message}")]
    Transport {
        /// The URL asked.
        url: String,
        /// The underlying causes, outermost first (refused, reset, certificate unknown).
        message: String,
    },
}

/// A non-redirect answer. The body is read only for 200.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status (200, 304 Not Modified, 404, ...; never another 3xx).
    pub status: u16,
    /// `ETag` of the answer, for `If-None-Match` next time.
    pub etag: Option<String>,
    /// `Last-Modified` of the answer, for `If-Modified-Since` next time.
    pub last_modified: Option<String>,
    /// The body, at most `max_body` bytes; empty unless the status is 200.
    pub body: Vec<u8>,
}

/// A shared, reusable client (connection reuse across requests).
#[derive(Debug, Clone)]
pub struct HttpsClient {
    client: reqwest::Client,
    timeout: Duration,
    max_body: usize,
}

static PROVIDER: Once = Once::new();

/// reqwest is built with `rustls-no-provider`: rustls needs a process-wide provider. Only
/// the first install wins; an error means one is installed already, which is fine.
pub fn install_crypto_provider() {
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl HttpsClient {
    /// Builds the client from `config`: reads the web roots now (a missing or empty file
    /// is an error at start, not at the first fetch) and refuses a zero body limit.
    pub fn new(config: &HttpsConfig) -> Result<HttpsClient, HttpError> {
        install_crypto_provider();
        let roots_path = config.roots.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_ROOTS));
        let pem = std::fs::read(&roots_path)
            .map_err(|e| HttpError::Config(format!("cannot read web roots {}: {e}", roots_path.display())))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| HttpError::Config(format!("bad web roots {}: {e}", roots_path.display())))?;
        if roots.is_empty() {
            return Err(HttpError::Config(format!("no certificate in web roots {}", roots_path.display())));
        }
        if config.max_body == 0 {
            return Err(HttpError::Config("max_body must be positive".into()));
        }
        let mut builder = reqwest::Client::builder()
            .tls_certs_only(roots)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .user_agent(concat!("rlm_rust/", env!("CARGO_PKG_VERSION")));
        for (host, addr) in &config.host_overrides {
            builder = builder.resolve(host, *addr);
        }
        let client = builder.build().map_err(|e| HttpError::Config(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(HttpsClient { client, timeout: config.timeout, max_body: config.max_body })
    }

    /// The budget of one whole request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The largest body accepted, in bytes.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// One GET with `headers`, within the deadline and the body limit.
    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Answer, HttpError> {
        let request = async {
            let mut req = self.client.get(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let mut resp = req.send().await.map_err(|e| self.transport(url, e))?;
            let status = resp.status();
            let header = |name: reqwest::header::HeaderName| {
                resp.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            };
            if status.is_redirection() && status != reqwest::StatusCode::NOT_MODIFIED {
                return Err(HttpError::Redirect { url: url.to_owned(), location: header(reqwest::header::LOCATION) });
            }
            let (etag, last_modified) = (header(reqwest::header::ETAG), header(reqwest::header::LAST_MODIFIED));
            let mut answer = Answer { status: status.as_u16(), etag, last_modified, body: Vec::new() };
            if status != reqwest::StatusCode::OK {
                return Ok(answer);
            }
            let too_large = || HttpError::TooLarge { url: url.to_owned(), limit: self.max_body };
            // An honest server announcing too much is refused before any body is read.
            let announced = resp.content_length().unwrap_or(0);
            if announced > self.max_body as u64 {
                return Err(too_large());
            }
            answer.body.reserve(announced as usize);
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(url, e))? {
                if answer.body.len() + chunk.len() > self.max_body {
                    // Dropping `resp` closes the connection: the rest is never read.
                    return Err(too_large());
                }
                answer.body.extend_from_slice(&chunk);
            }
            Ok(answer)
        };
        // reqwest's own timeout covers the same span; this one also bounds anything
        // reqwest does not (and is the one that names the URL).
        match tokio::time::timeout(self.timeout, request).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout { url: url.to_owned(), after: self.timeout }),
        }
    }

    fn transport(&self, url: &str, e: reqwest::Error) -> HttpError {
        if e.is_timeout() {
            HttpError::Timeout { url: url.to_owned(), after: self.timeout }
        } else {
            // The URL is already in the error; do not repeat it in the message.
            HttpError::Transport { url: url.to_owned(), message: error_chain(&e.without_url()) }
        }
    }
}

/// reqwest's top-level message is generic ("error sending request"); the cause that
/// tells an operator what happened (certificate unknown, connection reset) is below it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}
