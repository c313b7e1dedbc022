//! The validating TLSA resolver: the network half of the DNS layer.
//!
//! One [`TlsaResolver`] (one hickory `Resolver`, one cache) lives as long as the module and
//! is driven by the sync thread's tokio runtime. A lookup never fails with an error: every
//! outcome is a [`TlsaAnswer`], so the sync decides per name what to keep.
//!
//! Validation is always on. Without a trust anchor file hickory's built-in root anchors
//! are used; with one, only the DNSKEYs in that file are trusted (a private root or
//! private zones).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

use crate::sync::dns::tlsa::{TlsaAnswer, TlsaRecord};
/// Longest CNAME chain followed from a device name to its TLSA RRset.
pub const MAX_ALIAS_HOPS: usize = 8;

/// Negative-answer TTL used when a denial carries no SOA to take it from.
const FALLBACK_NEGATIVE_TTL: Duration = Duration::from_secs(60);

/// DNS-over-TLS to the configured nameservers (no plaintext fallback when set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotConfig {
    /// Name the server's certificate must carry.
    pub server_name: String,
    /// PEM file with the CA certificates that may issue the server certificate.
    pub ca_file: PathBuf,
}

/// How the trust sync talks to DNS. Validation is not configurable: it is always on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Recursive resolvers (or, in tests, an authoritative server) to ask. Each address's
    /// port is used as given (UDP + TCP, or TLS when `dns_over_tls` is set).
    /// Empty = the system's `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// Zone-file DNSKEY lines to trust (e.g. `kdig DNSKEY . +noall +answer` output).
    /// None = hickory's built-in IANA root anchors. DS lines are not understood.
    pub trust_anchor_file: Option<PathBuf>,
    /// Time allowed for one query to one server.
    pub timeout: Duration,
    /// How many times a failed query is retried.
    pub attempts: usize,
    /// Hard limit on one whole [`TlsaResolver::lookup`], including the DNSKEY/DS queries
    /// of the validation chain (each of which may take `timeout` per attempt).
    pub lookup_deadline: Duration,
    /// Number of responses the resolver caches (TLSA answers plus DNSKEY/DS chain).
    pub cache_size: u64,
    /// DNS over TLS; requires explicit `nameservers`.
    pub dns_over_tls: Option<DotConfig>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            trust_anchor_file: None,
            timeout: Duration::from_secs(3),
            attempts: 2,
            lookup_deadline: Duration::from_secs(15),
            cache_size: 4096,
            dns_over_tls: None,
        }
    }
}

/// Why a [`TlsaResolver`] could not be built. (Lookups never return errors.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolverError {
    /// The configuration is inconsistent (e.g. DoT without nameservers).
    #[error("DNS configuration: {0}")]
    Config(String),
    /// The trust anchor file cannot be read or parsed.
    #[error("trust anchor file {path}: {reason}")]
    TrustAnchor {
        /// The file given as `dns_trust_anchors`.
        path: PathBuf,
        /// Why it is unusable (I/O error, no DNSKEY line, parse error).
        reason: String,
    },
    /// The DoT CA file cannot be read or holds no usable certificate.
    #[error("DNS-over-TLS CA file {path}: {reason}")]
    TlsCa {
        /// The file given as `dns_tls_ca` (or the system web roots by default).
        path: PathBuf,
        /// Why it is unusable (I/O error, bad PEM, no certificate).
        reason: String,
    },
    /// hickory refused the configuration (or resolv.conf could not be read).
    #[error("DNS resolver: {0}")]
    Resolver(String),
}

/// The validating TLSA resolver. Cheap to clone (shares the cache).
///
/// Build it anywhere; call [`TlsaResolver::lookup`] from inside the tokio runtime that is
/// meant to own its sockets, and keep that runtime alive as long as the resolver: hickory
/// spawns its connection tasks on the runtime of the first lookup that needs them.
#[derive(Clone)]
pub struct TlsaResolver {
    resolver: TokioResolver,
    deadline: Duration,
}

impl fmt::Debug for TlsaResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsaResolver").field("deadline", &self.deadline).finish_non_exhaustive()
    }
}

impl TlsaResolver {
    /// Builds the resolver. Reads the trust anchor (and DoT CA) files now, so a bad path
    /// fails at start and not at the first refresh.
    pub fn new(config: &DnsConfig) -> Result<Self, ResolverError> {
        if config.timeout.is_zero() || config.lookup_deadline.is_zero() {
            return Err(ResolverError::Config("timeout and lookup_deadline must be above zero".into()));
        }
        let resolver_config = resolver_config(config)?;

        let mut opts = ResolverOpts::default();
        opts.timeout = config.timeout;
        opts.attempts = config.attempts;
        opts.cache_size = config.cache_size.max(1);
        opts.recursion_desired = true; // recursive resolvers refuse RD=0 for uncached data
        opts.edns0 = true;
        opts.validate = true;
        opts.ndots = 0; // names are absolute anyway; never try search domains
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;

        let mut builder =
            Resolver::builder_with_config(resolver_config, TokioRuntimeProvider::default()).with_options(opts);
        builder = match &config.trust_anchor_file {
            Some(path) => builder.with_trust_anchor(Arc::new(load_trust_anchors(path)?)),
            // hickory's built-in root KSKs (2017 and 2024).
            None => builder.with_trust_anchor(Arc::new(TrustAnchors::default())),
        };
        if let Some(dot) = &config.dns_over_tls {
            builder = builder.with_tls_config(dot_client_config(&dot.ca_file)?);
        }
        let resolver = builder.build().map_err(|e| ResolverError::Resolver(e.to_string()))?;
        if !resolver.options().validate {
            // Cannot happen with a trust anchor set; checked because it is the whole point.
            return Err(ResolverError::Resolver("DNSSEC validation is off".into()));
        }
        Ok(TlsaResolver { resolver, deadline: config.lookup_deadline })
    }

    /// Looks up the TLSA RRset at `name` (a device identity name, or the certificate CN for
    /// the IoT Registry check). The name is made absolute: no search domains. CNAMEs are
    /// followed (at most [`MAX_ALIAS_HOPS`]) and the answer is as strong as the weakest
    /// link of the chain.
    pub async fn lookup(&self, name: &str) -> TlsaAnswer {
        let qname = match absolute_name(name) {
            Ok(n) => n,
            Err(reason) => return TlsaAnswer::Failed { reason },
        };
        let answer = match tokio::time::timeout(self.deadline, self.resolve(qname.clone())).await {
            Ok(answer) => answer,
            Err(_) => TlsaAnswer::Failed { reason: format!("no answer within {:?}", self.deadline) },
        };
        log::debug!("TLSA {qname}: {}", answer.kind());
        answer
    }

    /// Follows the alias chain by hand. hickory follows CNAMEs itself, but its cache mixes
    /// up the chain: a cached target answers without the (maybe insecure) CNAME that led
    /// to it, and a target cached through a chain carries that chain's CNAMEs. So only
    /// records owned by the name asked are believed, and each CNAME is asked for on its
    /// own (its proof joins the answer).
    async fn resolve(&self, qname: Name) -> TlsaAnswer {
        let mut name = qname;
        let mut chain = CnameChain::default();
        for _ in 0..=MAX_ALIAS_HOPS {
            let answer = match self.resolver.lookup(name.clone(), RecordType::TLSA).await {
                Ok(lookup) => tlsa_owned_by(&name, lookup.answers()),
                // A denial for another name: hickory followed a CNAME to it.
                Err(err) if !denial_is_about(&err, &name) => None,
                Err(err) => Some(answer_from_error(err)),
            };
            if let Some(answer) = answer {
                return chain.apply(answer);
            }
            // No TLSA at this name in the answer: it is an alias (or nothing).
            let alias = match self.resolver.lookup(name.clone(), RecordType::CNAME).await {
                Ok(lookup) => lookup,
                Err(err) => return chain.apply(answer_from_error(err)),
            };
            let Some(cname) = alias.answers().iter().find(|r| r.name == name && r.record_type() == RecordType::CNAME)
            else {
                return TlsaAnswer::Failed {
                    reason: format!("answer for {name} holds neither its TLSA nor its CNAME"),
                };
            };
            let RData::CNAME(target) = &cname.data else {
                return TlsaAnswer::Failed { reason: format!("malformed CNAME at {name}") };
            };
            chain.add(cname);
            if chain.visited.contains(&target.0) || target.0 == name {
                return chain.apply(TlsaAnswer::Failed { reason: format!("CNAME loop at {name}") });
            }
            chain.visited.push(name);
            name = target.0.clone();
        }
        TlsaAnswer::Failed { reason: format!("more than {MAX_ALIAS_HOPS} CNAMEs") }
    }

    /// Same as [`TlsaResolver::lookup`]; the name reads better at the IoT Registry step
    /// (`3 0 1` at the certificate's CN).
    pub async fn lookup_tlsa_at(&self, name: &str) -> TlsaAnswer {
        self.lookup(name).await
    }

    /// Forgets every cached answer (positive, negative and bogus).
    pub fn clear_cache(&self) {
        self.resolver.clear_cache();
    }
}

/// Validates with the project's name rules and appends the root label.
fn absolute_name(name: &str) -> Result<Name, String> {
    let normal = crate::model::name::normalize(name).map_err(|e| format!("invalid name {name:?}: {e}"))?;
    let mut qname = Name::from_ascii(&normal).map_err(|e| format!("invalid name {name:?}: {e}"))?;
    qname.set_fqdn(true);
    Ok(qname)
}

fn resolver_config(config: &DnsConfig) -> Result<ResolverConfig, ResolverError> {
    if config.nameservers.is_empty() {
        if config.dns_over_tls.is_some() {
            return Err(ResolverError::Config("dns_over_tls needs explicit nameservers".into()));
        }
        let (system, _ignored_opts) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| ResolverError::Resolver(format!("reading resolv.conf: {e}")))?;
        let servers = system.name_servers().to_vec();
        if servers.is_empty() {
            return Err(ResolverError::Config("resolv.conf lists no nameserver".into()));
        }
        return Ok(ResolverConfig::from_parts(None, vec![], servers));
    }
    let servers = config
        .nameservers
        .iter()
        .map(|addr| {
            let connections = match &config.dns_over_tls {
                Some(dot) => {
                    let mut tls = ConnectionConfig::tls(Arc::from(dot.server_name.as_str()));
                    tls.port = addr.port();
                    vec![tls]
                }
                None => {
                    // UDP first; TCP when the answer is truncated (a TLSA with a full
                    // certificate does not fit in 1232 bytes).
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    vec![udp, tcp]
                }
            };
            NameServerConfig::new(addr.ip(), true, connections)
        })
        .collect();
    Ok(ResolverConfig::from_parts(None, vec![], servers))
}

fn load_trust_anchors(path: &Path) -> Result<TrustAnchors, ResolverError> {
    let err = |reason: String| ResolverError::TrustAnchor { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    // hickory parses an empty file as an empty (trust-nothing) set; say so instead.
    let has_dnskey = text
        .lines()
        .map(|l| l.split(';').next().unwrap_or(""))
        .any(|l| l.split_whitespace().any(|w| w.eq_ignore_ascii_case("DNSKEY")));
    if !has_dnskey {
        return Err(err("no DNSKEY record in the file".into()));
    }
    text.parse::<TrustAnchors>().map_err(|e| err(e.to_string()))
}

fn dot_client_config(ca_file: &Path) -> Result<rustls::ClientConfig, ResolverError> {
    let err = |reason: String| ResolverError::TlsCa { path: ca_file.to_owned(), reason };
    let pem = std::fs::read(ca_file).map_err(|e| err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Weakest proof of a set of records: Bogus < Indeterminate < Insecure < Secure.
fn weakest_proof<'a>(records: impl Iterator<Item = &'a Record>) -> Proof {
    weakest_proof_of(records.map(|r| r.proof))
}

fn weakest_proof_of(proofs: impl Iterator<Item = Proof>) -> Proof {
    let rank = |p: &Proof| match p {
        Proof::Bogus => 0,
        Proof::Indeterminate => 1,
        Proof::Insecure => 2,
        Proof::Secure => 3,
    };
    proofs.min_by_key(rank).unwrap_or(Proof::Indeterminate)
}

/// The TLSA answer at `name` from a positive lookup, or None when the lookup holds no
/// TLSA owned by `name` (an alias). RRSIGs carry no proof of their own and are skipped;
/// records owned by other names (a chain hickory followed) are not believed.
fn tlsa_owned_by(name: &Name, answers: &[Record]) -> Option<TlsaAnswer> {
    let owned: Vec<&Record> =
        answers.iter().filter(|r| r.name == *name && r.record_type() == RecordType::TLSA).collect();
    let records: Vec<TlsaRecord> = owned
        .iter()
        .filter_map(|r| match &r.data {
            RData::TLSA(t) => Some(TlsaRecord {
                usage: u8::from(t.cert_usage),
                selector: u8::from(t.selector),
                matching: u8::from(t.matching),
                data: t.cert_data.clone(),
            }),
            _ => None,
        })
        .collect();
    if records.is_empty() {
        return None;
    }
    let ttl = Duration::from_secs(owned.iter().map(|r| r.ttl).min().unwrap_or(0).into());
    Some(match weakest_proof(owned.iter().copied()) {
        Proof::Secure => TlsaAnswer::Secure { records, ttl },
        Proof::Insecure => TlsaAnswer::Insecure { records, ttl },
        Proof::Bogus => TlsaAnswer::Bogus { reason: "DNSSEC validation failed for a TLSA record".into() },
        Proof::Indeterminate => TlsaAnswer::Failed { reason: "answer without a DNSSEC verdict".into() },
    })
}

/// The CNAMEs followed so far: their weakest proof and smallest TTL bound the answer.
#[derive(Default)]
struct CnameChain {
    visited: Vec<Name>,
    proof: Option<Proof>,
    ttl: Option<u32>,
}

impl CnameChain {
    fn add(&mut self, cname: &Record) {
        let proofs = [Some(cname.proof), self.proof];
        self.proof = Some(weakest_proof_of(proofs.into_iter().flatten()));
        self.ttl = Some(self.ttl.map_or(cname.ttl, |t| t.min(cname.ttl)));
    }

    /// The final answer, weakened to the chain's proof and TTL.
    fn apply(&self, answer: TlsaAnswer) -> TlsaAnswer {
        let Some(proof) = self.proof else { return answer };
        let ttl_cap = Duration::from_secs(self.ttl.unwrap_or(0).into());
        match (proof, answer) {
            (_, failed @ TlsaAnswer::Failed { .. }) | (_, failed @ TlsaAnswer::Bogus { .. }) => failed,
            (Proof::Bogus, _) => TlsaAnswer::Bogus { reason: "DNSSEC validation failed for a CNAME on the way".into() },
            (Proof::Indeterminate, _) => TlsaAnswer::Failed { reason: "CNAME without a DNSSEC verdict".into() },
            (Proof::Secure, TlsaAnswer::Secure { records, ttl }) => {
                TlsaAnswer::Secure { records, ttl: ttl.min(ttl_cap) }
            }
            (_, TlsaAnswer::Secure { records, ttl } | TlsaAnswer::Insecure { records, ttl }) => {
                TlsaAnswer::Insecure { records, ttl: ttl.min(ttl_cap) }
            }
            (p, TlsaAnswer::NoRecords { secure, ttl }) => {
                TlsaAnswer::NoRecords { secure: secure && p == Proof::Secure, ttl: ttl.min(ttl_cap) }
            }
        }
    }
}

/// Negative TTL (RFC 2308 §5): min(SOA TTL, SOA MINIMUM) of the denial's SOA.
fn negative_ttl<'a>(authorities: impl Iterator<Item = &'a Record>) -> Duration {
    authorities
        .filter_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })
        .min()
        .map(|s| Duration::from_secs(s.into()))
        .unwrap_or(FALLBACK_NEGATIVE_TTL)
}

/// A denial is proven when it carries NSEC/NSEC3 records and every authority record
/// (other than RRSIGs) validated.
fn denial_is_secure(authorities: &[Record]) -> bool {
    let relevant = || authorities.iter().filter(|r| r.record_type() != RecordType::RRSIG);
    let has_nsec = relevant().any(|r| matches!(r.record_type(), RecordType::NSEC | RecordType::NSEC3));
    has_nsec && relevant().all(|r| r.proof == Proof::Secure)
}

/// Whether `err` is about `name` itself: true for every error except a denial of another
/// name (the end of a CNAME chain hickory followed on its own).
fn denial_is_about(err: &NetError, name: &Name) -> bool {
    match err {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => no_records.query.name() == name,
        NetError::Dns(DnsError::Nsec { query, .. }) => query.name() == name,
        _ => true,
    }
}

fn answer_from_error(err: NetError) -> TlsaAnswer {
    match err {
        NetError::Dns(DnsError::DnssecBogus) => TlsaAnswer::Bogus { reason: "DNSSEC validation failed".into() },
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => {
            let authorities: &[Record] = no_records.authorities.as_deref().unwrap_or(&[]);
            let soa = no_records.soa.as_ref().map(|soa| soa.ttl.min(soa.data.minimum));
            let ttl = match soa {
                Some(s) => Duration::from_secs(s.into()),
                None => negative_ttl(authorities.iter()),
            };
            TlsaAnswer::NoRecords { secure: denial_is_secure(authorities), ttl }
        }
        // A denial whose NSEC proof is not Secure (hickory turns Bogus into DnssecBogus
        // before we get here, but be explicit).
        NetError::Dns(DnsError::Nsec { proof, response, .. }) => match proof {
            Proof::Insecure => TlsaAnswer::NoRecords { secure: false, ttl: negative_ttl(response.authorities.iter()) },
            Proof::Bogus => TlsaAnswer::Bogus { reason: format!("denial of existence failed validation: {proof}") },
            Proof::Secure => TlsaAnswer::NoRecords { secure: true, ttl: negative_ttl(response.authorities.iter()) },
            Proof::Indeterminate => {
                TlsaAnswer::Failed { reason: "denial of existence without a DNSSEC verdict".into() }
            }
        },
        NetError::Dns(DnsError::ResponseCode(code)) => TlsaAnswer::Failed { reason: format!("server answered {code}") },
        NetError::Timeout => TlsaAnswer::Failed { reason: "query timed out".into() },
        other => TlsaAnswer::Failed { reason: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_absolute_and_checked() {
        let n = absolute_name("Car54._device.cars.example").unwrap();
        assert!(n.is_fqdn());
        assert_eq!(n.to_ascii(), "car54._device.cars.example.");
        assert_eq!(absolute_name("car54._device.cars.example.").unwrap(), n);
        for bad in ["", ".", "single", "a..b", "a b.example", "1.2.3.4", "x\0.example"] {
            assert!(absolute_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_errors_are_reported_not_panics() {
        let dot_without_servers = DnsConfig {
            dns_over_tls: Some(DotConfig { server_name: "dns.example".into(), ca_file: "/nonexistent".into() }),
            ..DnsConfig::default()
        };
        assert!(matches!(TlsaResolver::new(&dot_without_servers), Err(ResolverError::Config(_))));
        let missing_anchor = DnsConfig {
            nameservers: vec!["127.0.0.1:53".parse().unwrap()],
            trust_anchor_file: Some("/nonexistent/anchor".into()),
            ..DnsConfig::default()
        };
        assert!(matches!(TlsaResolver::new(&missing_anchor), Err(ResolverError::TrustAnchor { .. })));
        let missing_ca = DnsConfig {
            nameservers: vec!["127.0.0.1:853".parse().unwrap()],
            dns_over_tls: Some(DotConfig { server_name: "dns.example".into(), ca_file: "/nonexistent/ca.pem".into() }),
            ..DnsConfig::default()
        };
        assert!(matches!(TlsaResolver::new(&missing_ca), Err(ResolverError::TlsCa { .. })));
        let zero = DnsConfig { timeout: Duration::ZERO, ..DnsConfig::default() };
        assert!(matches!(TlsaResolver::new(&zero), Err(ResolverError::Config(_))));
    }

    #[test]
    fn system_resolv_conf_builds_or_reports() {
        // Depends on the machine: either a resolver or a clear error, never a panic.
        match TlsaResolver::new(&DnsConfig::default()) {
            Ok(_) | Err(ResolverError::Resolver(_)) | Err(ResolverError::Config(_)) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn resolver_is_send_sync_and_built_outside_a_runtime() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<TlsaResolver>();
        // Built outside any runtime, with the built-in root anchors.
        let cfg = DnsConfig { nameservers: vec!["127.0.0.1:53".parse().unwrap()], ..DnsConfig::default() };
        let r = TlsaResolver::new(&cfg).unwrap();
        drop(r);
    }
}
