//! Instance configuration: the `rust { ... }` section of raddb/mods-available/rust.
//!
//! radiusd has already parsed the section and expanded `${...}` variables; the shim hands
//! us its `key = value` pairs and this file is the one place that knows what they mean.
//! The operator CLI reads the same file with [`parse_section`], so both run one config.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::sync::options::SyncConfig;
use crate::sync::policyfeed::{PolicySource, PolicySourceError};

/// Why the section's pairs make no [`Config`]. Every message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The key named appears twice in the section; which value was meant is not guessed.
    #[error("{0} is set twice")]
    SetTwice(String),
    /// A required key is missing (the text says which and what it is for).
    #[error("{0}")]
    Missing(&'static str),
    /// A value of the wrong kind: not a whole number, not yes/no, not a port or IP
    /// address, not a rate above 0.
    #[error("{key} = {value:?}: {reason}")]
    BadValue {
        /// The option, as the section names it.
        key: String,
        /// Its value as the section gives it.
        value: String,
        /// What the option expects instead.
        reason: &'static str,
    },
    /// A duration option whose value [`parse_duration`] refuses.
    #[error("{key} = {value:?}: {source}")]
    BadDuration {
        /// The option, as the section names it.
        key: String,
        /// Its value as the section gives it.
        value: String,
        /// Why it is not a duration.
        source: DurationError,
    },
    /// An item of an address list (`dns_servers`, the address side of `https_resolve`)
    /// that is not an IP address with an optional port; host names are not resolved here.
    #[error("{key}: {addr:?} is not an IP address[:port]")]
    BadAddress {
        /// The option, as the section names it.
        key: String,
        /// The item refused.
        addr: String,
    },
    /// An `https_resolve` item without the `=` between the host and its address.
    #[error("{key}: {item:?} is not host=address:port")]
    BadResolve {
        /// The option, as the section names it.
        key: String,
        /// The item refused.
        item: String,
    },
    /// `policy` is a plain `http://` URL: the policy decides who may join the network,
    /// so it is fetched over HTTPS only.
    #[error(transparent)]
    Policy(#[from] PolicySourceError),
    /// A key this module does not know, usually a typo: no option is silently ignored.
    #[error("unknown option {0:?} (see raddb/mods-available/rust for the options)")]
    Unknown(String),
    /// Values that do not fit together (the text says which).
    #[error("{0}")]
    Inconsistent(&'static str),
}

/// Why a value is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// A suffix other than `ms`, `s`, `m`, `h` or `d` (no suffix means seconds).
    #[error("unknown unit {0:?} (use ms, s, m, h or d)")]
    UnknownUnit(String),
    /// The part before the unit is not a decimal number.
    #[error("not a number")]
    NotANumber,
    /// A value below zero.
    #[error("must be a non-negative number")]
    Negative,
    /// Above 100 years: a longer interval would overflow the deadlines the sync computes
    /// from it (and panic instead of failing the configuration).
    #[error("longer than 100 years")]
    TooLong,
}

/// Everything an instance needs. Sync settings are `Some` when `policy` is set.
#[derive(Debug, Clone)]
pub struct Config {
    /// The instance name (`rust`, `guests`): prefixes its log lines (`rlm_rust[name]`) and
    /// is the metrics' `instance` label.
    pub name: String,
    /// The trust map snapshot file: the hand-made map the watcher loads, or, with
    /// `policy`, where the sync persists each map and what it serves first after a restart.
    pub trust_map: PathBuf,
    /// How often a file is polled for a change: the trust map without `policy`, a policy
    /// file with it. The instance raises it to 5 ms at least.
    pub reload_interval: Duration,
    /// What an accept and a reject tell the NAS and the device.
    pub reply: ReplyConfig,
    /// Where the metrics listener serves `/metrics` and `/status` (None: off).
    pub metrics: Option<SocketAddr>,
    /// The DNS sync's options; None without `policy` (manual mode: the operator writes
    /// the trust map and installs the CAs).
    pub sync: Option<SyncConfig>,
}

/// What the NAS and the device are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyConfig {
    /// `Reply-Message` of a reject: generic, because the device and the NAS need not learn
    /// why (the reason goes to the log and Module-Failure-Message). Empty: none.
    pub reject_message: String,
    /// On accept, set `User-Name` to the verified, normalised DNS name, so accounting
    /// records the identity that was proven, not what the supplicant typed.
    pub user_name: bool,
    /// On accept, put the device's organisation domain into this attribute (e.g. `Class`,
    /// which the NAS echoes in accounting). None: off.
    pub organisation_attribute: Option<String>,
}

impl Default for ReplyConfig {
    fn default() -> Self {
        ReplyConfig { reject_message: DEFAULT_REJECT_MESSAGE.into(), user_name: true, organisation_attribute: None }
    }
}

/// The shipped `reject_message`.
pub const DEFAULT_REJECT_MESSAGE: &str = "Access denied";

/// Keys the shim consumes itself (listed so they are not reported as unknown).
const SHIM_KEYS: [&str; 3] = ["eap_failure_on_reject", "eap_instance", "tls_config"];

/// Builds a [`Config`] from the section's pairs. Errors name the key and the bad value.
pub fn from_pairs(name: &str, pairs: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut map: HashMap<&str, &str> = HashMap::new();
    for (k, v) in pairs {
        if map.insert(k.as_str(), v.as_str()).is_some() {
            return Err(ConfigError::SetTwice(k.clone()));
        }
    }
    let mut take = Taker { map };
    let trust_map = take
        .path("trust_map")?
        .ok_or(ConfigError::Missing("trust_map is required (where the trust map snapshot lives)"))?;
    let reload_interval = take.duration("reload_interval", Duration::from_secs(1))?;
    let reply = ReplyConfig {
        reject_message: take.raw("reject_message").unwrap_or(DEFAULT_REJECT_MESSAGE).trim().to_owned(),
        user_name: take.boolean("reply_user_name", true)?,
        organisation_attribute: take.string("organisation_attribute"),
    };
    let metrics = metrics_listener(&mut take)?;
    let sync = sync_options(&mut take)?;
    for k in SHIM_KEYS {
        take.map.remove(k);
    }
    if let Some(k) = take.map.keys().min() {
        return Err(ConfigError::Unknown(k.to_string()));
    }
    if let Some(s) = &sync {
        check_consistent(s)?;
    }
    Ok(Config { name: name.to_owned(), trust_map, reload_interval, reply, metrics, sync })
}

/// The metrics listener (`metrics_port`, `metrics_address`; default loopback), if any.
fn metrics_listener(take: &mut Taker<'_>) -> Result<Option<SocketAddr>, ConfigError> {
    let metrics_address = take.string("metrics_address");
    Ok(match take.string("metrics_port") {
        None => None,
        Some(port) => {
            let port: u16 = port.parse().map_err(|_| ConfigError::BadValue {
                key: "metrics_port".into(),
                value: port.clone(),
                reason: "not a port number",
            })?;
            let ip = metrics_address.as_deref().unwrap_or("127.0.0.1");
            let ip: std::net::IpAddr = ip.parse().map_err(|_| ConfigError::BadValue {
                key: "metrics_address".into(),
                value: ip.to_owned(),
                reason: "not an IP address",
            })?;
            Some(SocketAddr::new(ip, port))
        }
    })
}

/// The DNS sync's options, present when `policy` is set.
fn sync_options(take: &mut Taker<'_>) -> Result<Option<SyncConfig>, ConfigError> {
    Ok(match take.string("policy") {
        None => None,
        Some(policy) => {
            let policy = PolicySource::parse(&policy)?;
            let ca_path = take
                .path("ca_path")?
                .ok_or(ConfigError::Missing("ca_path is required when policy is set (where the CA set is written)"))?;
            let ca_bundle = take.path("ca_bundle")?.unwrap_or_else(|| ca_path.with_extension("pem"));
            Some(SyncConfig {
                policy,
                policy_refresh: take.duration("policy_refresh", Duration::from_secs(60))?,
                ca_bundle,
                ca_path,
                dns_servers: take.socket_addrs("dns_servers", 53)?,
                dns_trust_anchors: take.path("dns_trust_anchors")?,
                dns_timeout: take.duration("dns_timeout", Duration::from_secs(3))?,
                dns_over_tls: take.string("dns_over_tls"),
                dns_tls_ca: take.path("dns_tls_ca")?,
                https_roots: take.path("https_roots")?,
                https_timeout: take.duration("https_timeout", crate::sync::cafetch::DEFAULT_TIMEOUT)?,
                https_max_body: take.number("https_max_body", crate::sync::cafetch::DEFAULT_MAX_BODY)?,
                https_resolve: take.resolve_map("https_resolve")?,
                chain_max_depth: take
                    .number("chain_max_depth", crate::sync::chain::ChainLimits::default().max_depth)?,
                min_interval: take.duration("min_interval", Duration::from_secs(30))?,
                max_interval: take.duration("max_interval", Duration::from_secs(3600))?,
                max_stale: take.duration("max_stale", Duration::from_secs(86_400))?,
                concurrency: take.number("concurrency", 32)?.max(1),
                registry_domain: take.string("registry_domain").unwrap_or_else(|| "iotregistry.ca".into()),
                require_registry: take.boolean("require_registry", false)?,
                name_timeout: take.duration("name_timeout", Duration::from_secs(20))?,
                max_records: take.number("max_records", 16)?.max(1),
                ca_fetch_rate: take.number("ca_fetch_rate", 50)?.min(u32::MAX as usize) as u32,
                concurrency_per_domain: take.number("concurrency_per_domain", 8)?.max(1),
                discovery_concurrency: take.number("discovery_concurrency", 16)?.max(1),
                discovery_rate: take.rate("discovery_rate", 10.0)?,
                discovery_idle: take.duration("discovery_idle", Duration::from_secs(86_400))?,
                discovery_max_names: take.number("discovery_max_names", 1_000_000)?,
                persist_interval: take.duration("persist_interval", Duration::from_secs(5))?,
            })
        }
    })
}

/// Values each valid on their own that do not fit together.
fn check_consistent(s: &SyncConfig) -> Result<(), ConfigError> {
    if s.min_interval > s.max_interval {
        return Err(ConfigError::Inconsistent("min_interval is larger than max_interval"));
    }
    if s.name_timeout.is_zero() {
        return Err(ConfigError::Inconsistent("name_timeout must be above 0"));
    }
    Ok(())
}

struct Taker<'a> {
    map: HashMap<&'a str, &'a str>,
}

impl Taker<'_> {
    /// The value as given, even empty (an empty `reject_message` turns it off).
    fn raw(&mut self, key: &str) -> Option<&str> {
        self.map.remove(key)
    }

    fn string(&mut self, key: &str) -> Option<String> {
        self.map.remove(key).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    fn path(&mut self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self.string(key).map(PathBuf::from))
    }

    fn duration(&mut self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.string(key) {
            None => Ok(default),
            Some(v) => {
                parse_duration(&v).map_err(|source| ConfigError::BadDuration { key: key.into(), value: v, source })
            }
        }
    }

    fn number(&mut self, key: &str, default: usize) -> Result<usize, ConfigError> {
        match self.string(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| bad_value(key, v, "not a whole number")),
        }
    }

    fn rate(&mut self, key: &str, default: f64) -> Result<f64, ConfigError> {
        match self.string(key) {
            None => Ok(default),
            Some(v) => match v.parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 && r <= 1e6 => Ok(r),
                _ => Err(bad_value(key, v, "expected a number of names per second above 0")),
            },
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.string(key).as_deref() {
            None => Ok(default),
            Some("yes" | "true" | "on" | "1") => Ok(true),
            Some("no" | "false" | "off" | "0") => Ok(false),
            Some(v) => Err(bad_value(key, v.to_owned(), "expected yes or no")),
        }
    }

    fn socket_addrs(&mut self, key: &str, default_port: u16) -> Result<Vec<SocketAddr>, ConfigError> {
        let Some(v) = self.string(key) else {
            return Ok(Vec::new());
        };
        v.split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(|s| parse_addr(s, default_port).ok_or_else(|| bad_address(key, s)))
            .collect()
    }

    fn resolve_map(&mut self, key: &str) -> Result<HashMap<String, SocketAddr>, ConfigError> {
        let Some(v) = self.string(key) else {
            return Ok(HashMap::new());
        };
        v.split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(|item| {
                let (host, addr) = item
                    .split_once('=')
                    .ok_or_else(|| ConfigError::BadResolve { key: key.into(), item: item.into() })?;
                Ok((host.to_ascii_lowercase(), parse_addr(addr, 443).ok_or_else(|| bad_address(key, addr))?))
            })
            .collect()
    }
}

fn bad_value(key: &str, value: String, reason: &'static str) -> ConfigError {
    ConfigError::BadValue { key: key.into(), value, reason }
}

fn bad_address(key: &str, addr: &str) -> ConfigError {
    ConfigError::BadAddress { key: key.into(), addr: addr.into() }
}

/// `ip` or `ip:port` (`[v6]:port`); None when `s` is neither.
fn parse_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    s.parse::<std::net::IpAddr>().ok().map(|ip| SocketAddr::new(ip, default_port))
}

/// `1.5`, `30s`, `10m`, `2h`, `1d` -> Duration.
pub fn parse_duration(v: &str) -> Result<Duration, DurationError> {
    let (num, unit) = match v.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(DurationError::UnknownUnit(unit.to_owned())),
    };
    let n: f64 = num.trim().parse().map_err(|_| DurationError::NotANumber)?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(DurationError::Negative);
    }
    // A huge value ("99999999999999999999d") must be a config error: Duration::from_secs_f64 panics on it,
    // and `Instant::now() + d` in the sync's schedule panics well before u64::MAX seconds.
    if n * scale > MAX_DURATION_SECS {
        return Err(DurationError::TooLong);
    }
    Ok(Duration::from_secs_f64(n * scale))
}

/// Longest duration any option takes (100 years): every deadline computed from one fits.
const MAX_DURATION_SECS: f64 = 100.0 * 365.25 * 86_400.0;

/// Reads the `rust [NAME] { ... }` section of a FreeRADIUS module file into pairs, for
/// the CLI. Handles comments, quotes and the Debian path variables; nothing fancier.
pub fn parse_section(
    text: &str,
    instance: Option<&str>,
    vars: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, SectionError> {
    let mut in_section = false;
    let mut depth = 0usize;
    let mut pairs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim().to_owned();
        if line.is_empty() {
            continue;
        }
        if !in_section {
            let mut words = line.trim_end_matches('{').split_whitespace();
            if line.ends_with('{') && words.next() == Some("rust") && words.next() == instance {
                in_section = true;
                depth = 1;
            }
            continue;
        }
        if line.ends_with('{') {
            depth += 1;
            continue;
        }
        if line == "}" {
            depth -= 1;
            if depth == 0 {
                return Ok(pairs);
            }
            continue;
        }
        if depth == 1 {
            let (k, v) = line.split_once('=').ok_or(SectionError::NotAPair { line: i + 1, text: line.clone() })?;
            pairs.push((k.trim().to_owned(), expand(unquote(v.trim()), vars)));
        }
    }
    Err(SectionError::NotFound { instance: instance.map(str::to_owned) })
}

/// Why a module file has no usable `rust { }` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SectionError {
    /// A line directly in the section that is neither `key = value`, the opening of a
    /// subsection nor a closing brace.
    #[error("line {line}: expected key = value, got {text:?}")]
    NotAPair {
        /// 1-based line in the module file.
        line: usize,
        /// The line, comment and surrounding blanks removed.
        text: String,
    },
    /// No section of that instance opens in the file, or the one that opens never closes.
    #[error("no `rust {}{{ ... }}` section found", instance.as_deref().map(|n| format!("{n} ")).unwrap_or_default())]
    NotFound {
        /// The instance asked for; None for the unnamed `rust { }`.
        instance: Option<String>,
    },
}

fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v)
}

fn expand(mut v: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    while let Some(start) = v.find("${") {
        let Some(end) = v[start..].find('}') else {
            break;
        };
        out.push_str(&v[..start]);
        let key = &v[start + 2..start + end];
        match vars.get(key) {
            Some(val) => out.push_str(val),
            None => out.push_str(&v[start..start + end + 1]),
        }
        v = &v[start + end + 1..];
    }
    out.push_str(v);
    out
}

/// Debian's FreeRADIUS path variables, for reading raddb files outside radiusd.
pub fn debian_vars(raddb: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("localstatedir".into(), "/var".into());
    m.insert("confdir".into(), raddb.into());
    m.insert("raddbdir".into(), raddb.into());
    m.insert("certdir".into(), format!("{raddb}/certs"));
    m.insert("modconfdir".into(), format!("{raddb}/mods-config"));
    m.insert("prefix".into(), "/usr".into());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn manual_mode_needs_only_the_trust_map() {
        let c = from_pairs(
            "rust",
            &pairs(&[("trust_map", "/var/lib/rlm_rust/map.json"), ("eap_failure_on_reject", "yes")]),
        )
        .unwrap();
        assert!(c.sync.is_none());
        assert_eq!(c.reload_interval, Duration::from_secs(1));
    }

    #[test]
    fn sync_mode_parses_every_option() {
        let c = from_pairs(
            "rust",
            &pairs(&[
                ("trust_map", "/m.json"),
                ("policy", "/p.txt"),
                ("ca_path", "/ca"),
                ("dns_servers", "127.0.0.1:5353, ::1"),
                ("dns_timeout", "1.5"),
                ("https_resolve", "device.example.net=127.0.0.1:8443"),
                ("max_stale", "2h"),
                ("min_interval", "1s"),
                ("require_registry", "yes"),
            ]),
        )
        .unwrap();
        let s = c.sync.unwrap();
        assert_eq!(s.dns_servers, vec!["127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()]);
        assert_eq!(s.dns_timeout, Duration::from_millis(1500));
        assert_eq!(s.https_resolve["device.example.net"], "127.0.0.1:8443".parse().unwrap());
        assert_eq!(s.max_stale, Duration::from_secs(7200));
        assert_eq!(s.ca_bundle, PathBuf::from("/ca.pem"));
        assert!(s.require_registry);
    }

    #[test]
    fn reply_options_default_to_a_generic_reject_and_the_verified_user_name() {
        let c = from_pairs("rust", &pairs(&[("trust_map", "/m")])).unwrap();
        assert_eq!(c.reply, ReplyConfig::default());
        assert_eq!(c.reply.reject_message, "Access denied");
        let c = from_pairs(
            "rust",
            &pairs(&[
                ("trust_map", "/m"),
                ("reject_message", ""),
                ("reply_user_name", "no"),
                ("organisation_attribute", "Class"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.reply,
            ReplyConfig {
                reject_message: String::new(),
                user_name: false,
                organisation_attribute: Some("Class".into())
            }
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let e =
            from_pairs("rust", &pairs(&[("trust_map", "/m"), ("reload_interval", "fast")])).unwrap_err().to_string();
        assert!(e.starts_with("reload_interval = \"fast\""), "{e}");
        let e = from_pairs("rust", &pairs(&[("trust_map", "/m"), ("polcy", "/p")])).unwrap_err().to_string();
        assert!(e.contains("unknown option \"polcy\""), "{e}");
        let e = from_pairs("rust", &pairs(&[("trust_map", "/m"), ("policy", "/p")])).unwrap_err().to_string();
        assert!(e.contains("ca_path is required"), "{e}");
        let e = from_pairs("rust", &pairs(&[("policy", "/p")])).unwrap_err().to_string();
        assert!(e.contains("trust_map is required"), "{e}");
        let e = from_pairs(
            "rust",
            &pairs(&[("trust_map", "/m"), ("policy", "/p"), ("ca_path", "/c"), ("dns_servers", "ns1")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("dns_servers") && e.contains("ns1"), "{e}");
    }

    #[test]
    fn reads_the_module_file_like_radiusd() {
        let text = "# comment\nrust {\n\ttrust_map = ${localstatedir}/lib/rlm_rust/map.json # where\n\tpolicy = \"${confdir}/dane/allowed # not a comment\"\n\tsub {\n\t\tx = 1\n\t}\n}\nrust guests {\n\ttrust_map = /g.json\n}\n";
        let vars = debian_vars("/etc/freeradius/3.0");
        let p = parse_section(text, None, &vars).unwrap();
        assert_eq!(
            p,
            vec![
                ("trust_map".into(), "/var/lib/rlm_rust/map.json".into()),
                ("policy".into(), "/etc/freeradius/3.0/dane/allowed # not a comment".into())
            ]
        );
        assert_eq!(parse_section(text, Some("guests"), &vars).unwrap(), vec![("trust_map".into(), "/g.json".into())]);
        assert_eq!(
            parse_section(text, Some("nope"), &vars).unwrap_err().to_string(),
            "no `rust nope { ... }` section found"
        );
        assert_eq!(parse_section("", None, &vars).unwrap_err().to_string(), "no `rust { ... }` section found");
        assert_eq!(
            parse_section("rust {\n  trust_map\n}\n", None, &vars).unwrap_err().to_string(),
            "line 2: expected key = value, got \"trust_map\""
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("1y").is_err());
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        // Found by the config fuzz target (fuzz/regressions/config/): from_secs_f64 panicked.
        assert_eq!(parse_duration("99999999999999999999d").unwrap_err().to_string(), "longer than 100 years");
        assert!(parse_duration("6666666666666666666666000776803").is_err());
        let e = from_pairs("rust", &pairs(&[("trust_map", "/m"), ("reload_interval", "18446744073709551616")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("reload_interval = \"18446744073709551616\": longer than 100 years"), "{e}");
        assert_eq!(parse_duration("36500d").unwrap(), Duration::from_secs(36_500 * 86_400));
        assert!(parse_duration("36525.01d").is_err());
    }
}
