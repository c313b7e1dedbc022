//! rlm-rust: the operator's tool beside the module.
//!
//! - `map`: write a trust map from certificate files and a policy (for sites and tests that
//!   do not publish in DNS yet): each certificate becomes a `3 0 0` association of every
//!   policy name in its SAN;
//! - `explain`: replay the module's decision for a name, SSID and certificate chain,
//!   offline: verify the chain as TLS would, capture it as the hook would, and say which
//!   association matched or why none did;
//! - `show`: summarise a trust map file;
//! - `sync`: run one DNS sync with the module's configuration and report every name;
//! - `status`: what a running module knows (its metrics listener's `/status`), or what the
//!   persisted trust map says when radiusd is not running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use openssl::x509::X509;

use rlm_rust::model::association::{Association, Matching, Selector, Usage};
use rlm_rust::model::pki;
use rlm_rust::model::policy;
use rlm_rust::model::trustmap::{NameEntry, TrustMap};
use rlm_rust::request::check::{check, Decision, Request};
use rlm_rust::request::presented::CapturedChain;

#[derive(Parser)]
#[command(name = "rlm-rust", version, about = "Operator tool for the rlm_rust FreeRADIUS module")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a trust map associating each certificate with the policy names in its SAN.
    Map {
        /// Policy file (`SSID|name` lines, or JSON with roles).
        #[arg(long)]
        policy: PathBuf,
        /// Where to write the trust map (atomically).
        #[arg(long)]
        out: PathBuf,
        /// Associate the certificate's public key (`3 1 0`) instead of the certificate
        /// (`3 0 0`): the device stays admitted when its certificate is re-issued for the
        /// same key.
        #[arg(long)]
        key: bool,
        /// Generation number to stamp into the map.
        #[arg(long, default_value_t = 1)]
        generation: u64,
        /// PEM files, each starting with a device certificate (none: every name of the
        /// policy is allowed but has nothing published).
        certificates: Vec<PathBuf>,
    },
    /// Show what the module would decide for this name, SSID and certificate chain.
    Explain {
        #[arg(long)]
        trust_map: PathBuf,
        /// The name the device claims (User-Name).
        #[arg(long)]
        name: String,
        /// The SSID (from Called-Station-Id).
        #[arg(long)]
        ssid: String,
        /// Trust anchors for the TLS verification (PEM; repeatable). Default: the CA set
        /// recorded in the trust map.
        #[arg(long = "ca")]
        cas: Vec<PathBuf>,
        /// What the device sends: its certificate, optionally followed by intermediates.
        chain: PathBuf,
    },
    /// Summarise a trust map file.
    Show {
        #[arg(long)]
        trust_map: PathBuf,
    },
    /// Run one DNS sync outside radiusd with the module's configuration and print, per
    /// name, what was found: records, DNSSEC status, chain, associations, or why each was
    /// skipped.
    Sync {
        /// The module file (e.g. /etc/freeradius/3.0/mods-enabled/rust).
        #[arg(long)]
        config: PathBuf,
        /// The instance name (`rust NAME { }`); default: the unnamed `rust { }`.
        #[arg(long)]
        instance: Option<String>,
        /// raddb directory for ${confdir}-style variables.
        #[arg(long, default_value = "/etc/freeradius/3.0")]
        raddb: String,
        /// Override an option: --set dns_servers=127.0.0.1:5353 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Also write the CA set and the trust map, as the module would.
        #[arg(long)]
        write: bool,
        /// Only these names (default: every name of the policy).
        names: Vec<String>,
    },
    /// What the module knows, per name: from the running module (`--url` of its metrics
    /// listener) or from the persisted trust map (`--trust-map`).
    Status {
        /// The metrics listener, e.g. http://127.0.0.1:9812 (`metrics_port` of the module).
        #[arg(long, conflicts_with = "trust_map")]
        url: Option<String>,
        /// The persisted trust map (when radiusd is not running).
        #[arg(long)]
        trust_map: Option<PathBuf>,
        /// Most names listed (problems first).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rlm-rust: {e}");
            ExitCode::from(2)
        }
    }
}

fn read_certs(path: &Path) -> Result<Vec<X509>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    pki::parse_pem_chain(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Map { policy, out, key, generation, certificates } => {
            write_map(&policy, &out, key, generation, &certificates)
        }
        Command::Explain { trust_map, name, ssid, cas, chain } => explain(&trust_map, &name, &ssid, &cas, &chain),
        Command::Sync { config, instance, raddb, overrides, write, names } => {
            sync_once(&config, instance.as_deref(), &raddb, &overrides, write, names)
        }
        Command::Status { url, trust_map, limit, json } => status(url, trust_map, limit, json),
        Command::Show { trust_map } => show(&trust_map),
    }
}

/// Summarises a trust map file: its generation, SSIDs, and every name's associations.
fn show(trust_map: &Path) -> Result<ExitCode, String> {
    let map = TrustMap::load(trust_map).map_err(|e| e.to_string())?;
    println!("generation {} written at {}", map.generation, map.generated_at);
    for (ssid, rules) in map.policy().ssids() {
        println!("SSID {ssid}: {} names, {} domains", rules.name_count(), rules.domain_count());
    }
    let mut entries: Vec<_> = map.entries().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (name, entry) in entries {
        if entry.associations.is_empty() {
            println!("{name}: nothing published (discovered on demand)");
        }
        for a in entry.associations.iter() {
            println!("{name}: {a}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_map(
    policy_path: &Path,
    out: &Path,
    key: bool,
    generation: u64,
    files: &[PathBuf],
) -> Result<ExitCode, String> {
    let loaded = policy::load(policy_path).map_err(|e| e.to_string())?;
    for d in &loaded.diagnostics {
        eprintln!("warning: {d}");
    }
    let allowed = loaded.policy.names().into_iter().map(str::to_owned).collect::<Vec<_>>();
    let mut names: BTreeMap<String, NameEntry> = BTreeMap::new();
    for file in files {
        let leaf = read_certs(file)?.remove(0);
        let (selector, data) = if key {
            (Selector::Spki, pki::spki_der(&leaf).map_err(|e| format!("{}: {e}", file.display()))?)
        } else {
            (Selector::Cert, leaf.to_der().map_err(|e| format!("{}: {e}", file.display()))?)
        };
        let association =
            Association::from_data(Usage::DaneEe, selector, Matching::Full, &data, None).map_err(|e| e.to_string())?;
        let mut used = false;
        for san in pki::san_dns_names(&leaf) {
            let Ok(n) = rlm_rust::model::name::normalize(&san) else {
                continue;
            };
            if allowed.contains(&n) {
                println!("{n} <- {} ({association})", file.display());
                let entry: &mut NameEntry = names.entry(n).or_default();
                entry.associations = entry.associations.iter().cloned().chain([association.clone()]).collect();
                used = true;
            }
        }
        if !used {
            eprintln!("warning: {}: no SAN dNSName of this certificate is in the policy", file.display());
        }
    }
    let map = TrustMap::new(loaded.policy, names, generation, rlm_rust::clock::unix_now());
    map.write_atomic(out).map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "wrote {} ({} names, {} certificate associations)",
        out.display(),
        map.name_count(),
        map.association_count()
    );
    Ok(ExitCode::SUCCESS)
}

fn explain(trust_map: &Path, name: &str, ssid: &str, cas: &[PathBuf], chain: &Path) -> Result<ExitCode, String> {
    let map = TrustMap::load(trust_map).map_err(|e| e.to_string())?;
    let mut anchors = Vec::new();
    for p in cas {
        anchors.extend(read_certs(p)?);
    }
    if cas.is_empty() {
        for pem in map.cas().values() {
            anchors.extend(pki::parse_pem_chain(pem.as_bytes()).map_err(|e| format!("trust map CA set: {e}"))?);
        }
    }
    let mut sent = read_certs(chain)?;
    let leaf = sent.remove(0);
    println!(
        "certificate: {} (sha256 {})",
        pki::oneline(leaf.subject_name()),
        hex::encode(leaf.digest(openssl::hash::MessageDigest::sha256()).map_err(|e| e.to_string())?)
    );
    let verified = match pki::verify_chain(&leaf, &sent, &anchors) {
        Ok(v) => v,
        Err(e) => {
            println!("reject: TLS would refuse the handshake: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let via: Vec<String> = verified.iter().skip(1).map(|c| pki::oneline(c.subject_name())).collect();
    println!(
        "TLS verifies it via {}",
        if via.is_empty() { "itself (trust anchor)".to_string() } else { via.join(" <- ") }
    );
    let captured = CapturedChain::of(&verified).map_err(|e| e.to_string())?;
    let station = format!("00-00-00-00-00-00:{ssid}");
    captured.with_presented(|cert| {
        let normal = rlm_rust::model::name::normalize(name).unwrap_or_default();
        let matched =
            cert.as_ref().ok().and_then(|c| map.associations(&normal).iter().find(|a| a.matches(c, &normal)).cloned());
        let req = Request { user_name: Some(name), called_station_id: Some(&station), cert };
        match check(Some(&map), &req) {
            Decision::Accept { reply } => {
                println!("accept: {name} on SSID {ssid}");
                if let Some(a) = matched {
                    println!("  matched association {a}");
                }
                for r in reply {
                    println!("  reply {} = {}", r.attribute, r.value);
                }
                Ok(ExitCode::SUCCESS)
            }
            Decision::Reject(reason) => {
                println!("reject: {reason}");
                for a in map.associations(&normal) {
                    println!("  published: {a}");
                }
                Ok(ExitCode::from(1))
            }
        }
    })
}

fn sync_once(
    config: &Path,
    instance: Option<&str>,
    raddb: &str,
    overrides: &[String],
    write: bool,
    only: Vec<String>,
) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(config).map_err(|e| format!("{}: {e}", config.display()))?;
    let mut pairs = rlm_rust::config::parse_section(&text, instance, &rlm_rust::config::debian_vars(raddb))
        .map_err(|e| format!("{}: {e}", config.display()))?;
    for o in overrides {
        let (k, v) = o.split_once('=').ok_or(format!("--set {o:?}: expected KEY=VALUE"))?;
        pairs.retain(|(key, _)| key != k);
        pairs.push((k.to_owned(), v.to_owned()));
    }
    let cfg = rlm_rust::config::from_pairs(instance.unwrap_or("rust"), &pairs)
        .map_err(|e| format!("{}: {e}", config.display()))?;
    let sync = cfg.sync.ok_or("this instance has no `policy`: nothing to sync (it uses a hand-made trust map)")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let source = sync.policy.clone();
        let mut engine = rlm_rust::sync::engine::Engine::new("rlm-rust sync".into(), sync, cfg.trust_map.clone())
            .map_err(|e| e.to_string())?;
        let mut feed = engine.policy_feed(std::time::Duration::ZERO).map_err(|e| e.to_string())?.without_keeping();
        let loaded = match feed.poll().await {
            rlm_rust::sync::policyfeed::Update::Loaded(l) => l,
            rlm_rust::sync::policyfeed::Update::Failed(e) => return Err(format!("policy {e}")),
            rlm_rust::sync::policyfeed::Update::Unchanged => return Err(format!("policy {source}: nothing read")),
        };
        for d in &loaded.diagnostics {
            eprintln!("warning: policy {d}");
        }
        engine.set_policy(loaded.policy);
        let names = if only.is_empty() { engine.all_names() } else { only };
        let started = std::time::Instant::now();
        let (_, reports) = engine.round(names.clone()).await;
        for r in &reports {
            print!("{r}");
        }
        let published = reports.iter().filter(|r| r.records.iter().any(|x| x.result.is_ok())).count();
        println!("{} names looked up in {:.2?}: {published} published", names.len(), started.elapsed());
        if write {
            let map = engine.publish().map_err(|e| e.to_string())?;
            engine.flush().map_err(|e| e.to_string())?;
            println!(
                "wrote {} (generation {}, {} names, {} certificate associations)",
                cfg.trust_map.display(),
                map.generation,
                map.name_count(),
                map.association_count()
            );
        }
        Ok(if published == names.len() { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}

/// `rlm-rust status`.
fn status(url: Option<String>, trust_map: Option<PathBuf>, limit: usize, json: bool) -> Result<ExitCode, String> {
    let doc = match (url, trust_map) {
        (Some(url), _) => fetch_status(&url, limit)?,
        (None, Some(path)) => persisted_status(&path, limit)?,
        (None, None) => return Err("status needs --url (a running module) or --trust-map (the persisted map)".into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
    } else {
        print!("{}", rlm_rust::ops::status::render(&doc, rlm_rust::clock::unix_now()));
    }
    Ok(ExitCode::SUCCESS)
}

fn fetch_status(url: &str, limit: usize) -> Result<serde_json::Value, String> {
    let url = format!("{}/status?limit={limit}", url.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rlm_rust::sync::https::install_crypto_provider();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let resp = client.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP status {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not a status document: {e}"))
    })
}

/// The status document a persisted trust map supports: what is published and when DNS
/// last confirmed it (no lookups, errors or schedule: those live in the running module).
fn persisted_status(path: &Path, limit: usize) -> Result<serde_json::Value, String> {
    let map = TrustMap::load(path).map_err(|e| e.to_string())?;
    let mut names: Vec<serde_json::Value> = map
        .entries()
        .map(|(name, e)| {
            serde_json::json!({
                "name": &**name,
                "state": if e.associations.is_empty() { "withdrawn" } else { "published" },
                "associations": e.associations.len(),
                "changed_at": e.verified_at,
            })
        })
        .collect();
    names.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    names.truncate(limit);
    Ok(serde_json::json!({
        "source": path.display().to_string(),
        "trust_map": {
            "generation": map.generation,
            "generated_at": map.generated_at,
            "names": map.name_count(),
            "associations": map.association_count(),
        },
        "names": names,
    }))
}
