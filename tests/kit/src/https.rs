//! A real HTTPS server on 127.0.0.1 for `.well-known/ca/` tests: rustls (ring) over std
//! threads, with its own throwaway web root CA, serving a directory and, per path, the
//! misbehaviours a CA fetcher must survive (HTML, huge bodies, redirect loops, stalls,
//! dropped connections).
//!
//! Every socket has read/write timeouts and every sleep polls the stop flag, so dropping
//! the server stops and joins all its threads within a few seconds.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::capki::{self, Aki, Ku, Spec, DAY};

/// Bound on every blocking socket operation of the server.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A web root CA and a server certificate for `hosts`.
pub struct WebPki {
    /// PEM of the web root: what the fetcher must be configured to trust.
    pub root_pem: PathBuf,
    root: X509,
    server_cert: X509,
    server_key: PKey<Private>,
}

/// `O=Test Web PKI, CN=<cn>`, valid from now for 30 days.
fn web_spec(cn: &str) -> Spec {
    let now = capki::now();
    Spec::leaf("", cn).subject(&[("O", "Test Web PKI"), ("CN", cn)]).validity(now, now + 30 * DAY)
}

impl WebPki {
    /// Creates the root and a server certificate for `hosts`; writes the root to `dir`.
    pub fn new(dir: &Path, hosts: &[&str]) -> WebPki {
        // The root: CA, keyCertSign, SKI, no AKI.
        let root_spec = Spec {
            ca: Some(true),
            key_usage: Ku::CertSignOnly,
            eku: vec![],
            sans: vec![],
            ..web_spec("Test Web Root")
        };
        let root = capki::issue(&root_spec.aki(Aki::Absent), None);
        // The server: CA:FALSE, EKU serverAuth, SAN `hosts`; no key usage, no key ids.
        let server_spec = Spec { key_usage: Ku::None, ..web_spec(hosts.first().copied().unwrap_or("localhost")) };
        let server = capki::issue(&server_spec.eku(&["serverAuth"]).sans(hosts).no_key_ids(), Some(&root));

        let root_pem = dir.join("web-root.pem");
        std::fs::write(&root_pem, root.pem()).expect("write web root");
        WebPki { root_pem, root: root.cert, server_cert: server.cert, server_key: server.key }
    }
}

/// What the server does for one path.
#[derive(Clone, Debug)]
pub enum Route {
    /// 200 with this body.
    Ok(Vec<u8>),
    /// Any status, empty body.
    Status(u16),
    /// 200 text/html, a typical error page of a misconfigured web server.
    Html,
    /// 200 with `bytes` of data in 16 KiB writes; `declare_length`: with a Content-Length
    /// header, else chunked (the client only learns the size by reading).
    Huge { bytes: u64, declare_length: bool },
    /// 302 to the very same URL.
    RedirectSelf,
    /// Reads the request, then says nothing for this long (then 404).
    Stall(Duration),
    /// Reads the request, then closes the connection without a response.
    Close,
    /// Waits, then does the inner route.
    Delay(Duration, Box<Route>),
    /// 200, then the body one byte per `interval`: a server that never finishes in time.
    Dribble(Duration),
    /// A document with a version: 200 with `ETag: "<etag>"`, or 304 when the request's
    /// If-None-Match names that version.
    Versioned { body: Vec<u8>, etag: String },
}

#[derive(Default)]
struct Shared {
    routes: Mutex<HashMap<String, Route>>,
    /// For every path without a route of its own (before the docroot).
    fallback: Mutex<Option<Route>>,
    hits: Mutex<HashMap<String, usize>>,
    /// 304 answers given, per path.
    not_modified: Mutex<HashMap<String, usize>>,
    sent: Mutex<HashMap<String, u64>>,
    conns: Mutex<Vec<JoinHandle<()>>>,
    stop: AtomicBool,
}

/// The running server. Dropping it stops and joins every thread.
pub struct HttpsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl HttpsServer {
    /// Listens on 127.0.0.1 (ephemeral port). Paths not routed are served from
    /// `docroot` (the URL path below it), else 404.
    pub fn start(pki: &WebPki, docroot: Option<PathBuf>) -> HttpsServer {
        HttpsServer::start_at(pki, docroot, "127.0.0.1:0".parse().expect("addr"))
    }

    /// Listens on `addr` (a server coming back on the port it had).
    pub fn start_at(pki: &WebPki, docroot: Option<PathBuf>, addr: SocketAddr) -> HttpsServer {
        let certs = vec![
            rustls::pki_types::CertificateDer::from(pki.server_cert.to_der().expect("der")),
            rustls::pki_types::CertificateDer::from(pki.root.to_der().expect("der")),
        ];
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pki.server_key.private_key_to_pkcs8().expect("pkcs8").into());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server cert"),
        );
        let listener = TcpListener::bind(addr).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        let (sh, root) = (shared.clone(), docroot);
        let accept = std::thread::spawn(move || {
            while !sh.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let (sh2, cfg, root) = (sh.clone(), config.clone(), root.clone());
                        let h = std::thread::spawn(move || serve(sock, cfg, &sh2, root));
                        let mut conns = sh.conns.lock().expect("conns");
                        // Finished connections release their thread now, not at drop.
                        conns.retain(|h| !h.is_finished());
                        conns.push(h);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HttpsServer { addr, shared, accept: Some(accept) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn route(&self, path: &str, route: Route) {
        self.shared.routes.lock().expect("routes").insert(path.to_string(), route);
    }

    /// Answers every path that has no route of its own with `route`.
    pub fn route_all(&self, route: Route) {
        *self.shared.fallback.lock().expect("fallback") = Some(route);
    }

    /// Requests received for `path`.
    pub fn hits(&self, path: &str) -> usize {
        *self.shared.hits.lock().expect("hits").get(path).unwrap_or(&0)
    }

    /// 304 answers given for `path` (Versioned).
    pub fn not_modified(&self, path: &str) -> usize {
        *self.shared.not_modified.lock().expect("not_modified").get(path).unwrap_or(&0)
    }

    pub fn total_hits(&self) -> usize {
        self.shared.hits.lock().expect("hits").values().sum()
    }

    /// Body bytes the server managed to write for `path` (for Huge).
    pub fn bytes_sent(&self, path: &str) -> u64 {
        *self.shared.sent.lock().expect("sent").get(path).unwrap_or(&0)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let conns: Vec<_> = std::mem::take(&mut *self.shared.conns.lock().expect("conns"));
        for h in conns {
            let _ = h.join();
        }
    }
}

/// Sleeps `d`, in steps, returning early when the server stops.
fn sleep_unless_stopped(d: Duration, sh: &Shared) {
    let end = Instant::now() + d;
    while Instant::now() < end && !sh.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn serve(sock: TcpStream, cfg: Arc<rustls::ServerConfig>, sh: &Shared, docroot: Option<PathBuf>) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(IO_TIMEOUT));
    let _ = sock.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut path = String::new();
    let mut if_none_match = None;
    {
        let mut rd = BufReader::new(&mut tls);
        let mut line = String::new();
        // Handshake failure (client rejected our certificate) ends here.
        if rd.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        path.push_str(line.split_whitespace().nth(1).unwrap_or("/"));
        loop {
            let mut h = String::new();
            if rd.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                if name.eq_ignore_ascii_case("if-none-match") {
                    if_none_match = Some(value.trim().to_string());
                }
            }
        }
    }
    *sh.hits.lock().expect("hits").entry(path.clone()).or_default() += 1;
    let route = sh.routes.lock().expect("routes").get(&path).cloned();
    let route = route.or_else(|| sh.fallback.lock().expect("fallback").clone());
    let route = route.unwrap_or_else(|| {
        let file = docroot
            .filter(|_| !path.contains(".."))
            .and_then(|d| std::fs::read(d.join(path.trim_start_matches('/'))).ok());
        match file {
            Some(body) => Route::Ok(body),
            None => Route::Status(404),
        }
    });
    let route = match route {
        Route::Versioned { etag, .. } if if_none_match.as_deref() == Some(&format!("\"{etag}\"")) => {
            *sh.not_modified.lock().expect("not_modified").entry(path.clone()).or_default() += 1;
            Route::Status(304)
        }
        other => other,
    };
    respond(&mut tls, &route, &path, sh);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn respond<S: Read + Write>(tls: &mut S, route: &Route, path: &str, sh: &Shared) {
    let simple = |status: &str, ctype: &str, extra: &str, body: &[u8]| {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}\
             Connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    match route {
        Route::Ok(body) => {
            let _ = tls.write_all(&simple("200 OK", "application/x-pem-file", "", body));
        }
        Route::Status(code) => {
            let _ = tls.write_all(&simple(&format!("{code} Status"), "text/plain", "", b""));
        }
        Route::Versioned { body, etag } => {
            let extra = format!("ETag: \"{etag}\"\r\n");
            let _ = tls.write_all(&simple("200 OK", "application/json", &extra, body));
        }
        Route::Html => {
            let body = b"<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\
                         <body><h1>It works</h1></body></html>\n";
            let _ = tls.write_all(&simple("200 OK", "text/html", "", body));
        }
        Route::RedirectSelf => {
            let extra = format!("Location: {path}\r\n");
            let _ = tls.write_all(&simple("302 Found", "text/plain", &extra, b""));
        }
        Route::Stall(d) => {
            sleep_unless_stopped(*d, sh);
            let _ = tls.write_all(&simple("404 Not Found", "text/plain", "", b""));
        }
        Route::Close => {}
        Route::Dribble(interval) => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-pem-file\r\nConnection: close\r\n\r\n";
            if tls.write_all(head.as_bytes()).is_err() {
                return;
            }
            for b in b"-----BEGIN CERTIFICATE-----\n".iter().cycle() {
                if sh.stop.load(Ordering::SeqCst) || tls.write_all(&[*b]).and_then(|_| tls.flush()).is_err() {
                    return;
                }
                sleep_unless_stopped(*interval, sh);
            }
        }
        Route::Delay(d, inner) => {
            sleep_unless_stopped(*d, sh);
            respond(tls, inner, path, sh);
        }
        Route::Huge { bytes, declare_length } => {
            let head = if *declare_length {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-pem-file\r\n\
                     Content-Length: {bytes}\r\nConnection: close\r\n\r\n"
                )
            } else {
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-pem-file\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            if tls.write_all(head.as_bytes()).is_err() {
                return;
            }
            // Starts like a PEM so only the size can stop the client.
            let mut block = vec![b'A'; 16 * 1024];
            block[..27].copy_from_slice(b"-----BEGIN CERTIFICATE-----");
            let mut sent = 0u64;
            while sent < *bytes && !sh.stop.load(Ordering::SeqCst) {
                let n = block.len().min((*bytes - sent) as usize);
                let ok = if *declare_length {
                    tls.write_all(&block[..n])
                } else {
                    tls.write_all(format!("{n:x}\r\n").as_bytes())
                        .and_then(|_| tls.write_all(&block[..n]))
                        .and_then(|_| tls.write_all(b"\r\n"))
                };
                if ok.is_err() {
                    break;
                }
                sent += n as u64;
                *sh.sent.lock().expect("sent").entry(path.to_string()).or_default() = sent;
            }
            if !*declare_length && sent >= *bytes {
                let _ = tls.write_all(b"0\r\n\r\n");
            }
        }
    }
}

/// A plain TCP listener that accepts and immediately closes every connection (a dead
/// service behind a live port). Stops when dropped.
pub struct DeadListener {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DeadListener {
    pub fn start() -> DeadListener {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((sock, _)) => drop(sock),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        DeadListener { addr, stop, thread: Some(thread) }
    }
}

impl Drop for DeadListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
