//! rlm-rust: the operator's tool beside the module.
//!
//! - `pin`: write a trust map from certificate files and a policy (pinning by hand, for
//!   sites and tests that do not publish in DNS yet);
//! - `explain`: replay the module's decision for a name, SSID and certificate, offline;
//! - `show`: summarise a trust map file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use openssl::x509::X509;

use rlm_rust::check::{check, Decision, Request};
use rlm_rust::pki::{self, FreeradiusAttrs, Pin};
use rlm_rust::policy;
use rlm_rust::presented::PresentedCert;
use rlm_rust::trustmap::{NameEntry, TrustMap};

#[derive(Parser)]
#[command(name = "rlm-rust", version, about = "Operator tool for the rlm_rust FreeRADIUS module")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a trust map pinning the given certificates for the names the policy allows.
    Pin {
        /// Policy file (`SSID|name` lines, or JSON with roles).
        #[arg(long)]
        policy: PathBuf,
        /// Where to write the trust map (atomically).
        #[arg(long)]
        out: PathBuf,
        /// Extra CA certificates to look issuers up in (PEM; repeatable).
        #[arg(long = "ca")]
        cas: Vec<PathBuf>,
        /// Generation number to stamp into the map.
        #[arg(long, default_value_t = 1)]
        generation: u64,
        /// PEM files, each a leaf certificate optionally followed by its issuing CA.
        #[arg(required = true)]
        chains: Vec<PathBuf>,
    },
    /// Show what the module would decide for this name, SSID and certificate.
    Explain {
        #[arg(long)]
        trust_map: PathBuf,
        /// The name the device claims (User-Name).
        #[arg(long)]
        name: String,
        /// The SSID (from Called-Station-Id).
        #[arg(long)]
        ssid: String,
        #[arg(long = "ca")]
        cas: Vec<PathBuf>,
        /// The device's certificate (PEM, optionally followed by its issuing CA).
        chain: PathBuf,
    },
    /// Summarise a trust map file.
    Show {
        #[arg(long)]
        trust_map: PathBuf,
    },
    /// Run one DNS sync outside radiusd with the module's configuration and print, per
    /// name, what was found: records, DNSSEC status, chain, pins, or why each was skipped.
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

/// The leaf of `chain` and its verified issuer (from the same file or the CA pool).
fn leaf_and_issuer(chain: &Path, pool: &[X509]) -> Result<(X509, X509), String> {
    let mut certs = read_certs(chain)?;
    let leaf = certs.remove(0);
    certs.extend(pool.iter().cloned());
    let issuer = pki::find_issuer(&leaf, &certs).map_err(|e| format!("{}: {e}", chain.display()))?.clone();
    Ok((leaf, issuer))
}

fn load_pool(cas: &[PathBuf]) -> Result<Vec<X509>, String> {
    let mut pool = Vec::new();
    for p in cas {
        pool.extend(read_certs(p)?);
    }
    Ok(pool)
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Pin { policy: policy_path, out, cas, generation, chains } => {
            let loaded = policy::load(&policy_path)?;
            for d in &loaded.diagnostics {
                eprintln!("warning: {d}");
            }
            let allowed = loaded.policy.names().into_iter().map(str::to_owned).collect::<Vec<_>>();
            let pool = load_pool(&cas)?;
            let mut names: BTreeMap<String, NameEntry> = BTreeMap::new();
            for chain in &chains {
                let (leaf, issuer) = leaf_and_issuer(chain, &pool)?;
                let pin = Pin::new(&leaf, &issuer).map_err(|e| format!("{}: {e}", chain.display()))?;
                let mut pinned_any = false;
                for san in pki::san_dns_names(&leaf) {
                    let Ok(n) = rlm_rust::name::normalize(&san) else {
                        continue;
                    };
                    if allowed.contains(&n) {
                        names.entry(n.clone()).or_default().pins.push(pin.clone());
                        println!("pinned {n} <- {} (sha256 {})", chain.display(), hex::encode(&pin.sha256));
                        pinned_any = true;
                    }
                }
                if !pinned_any {
                    eprintln!("warning: {}: no SAN dNSName of this certificate is in the policy", chain.display());
                }
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let map = TrustMap::new(loaded.policy, names, generation, now);
            map.write_atomic(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            println!("wrote {} ({} names, {} pins)", out.display(), map.name_count(), map.pin_count());
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { trust_map, name, ssid, cas, chain } => {
            let map = TrustMap::load(&trust_map).map_err(|e| e.to_string())?;
            let pool = load_pool(&cas)?;
            let (leaf, issuer) = leaf_and_issuer(&chain, &pool)?;
            let (c, i) = (
                FreeradiusAttrs::of(&leaf).map_err(|e| e.to_string())?,
                FreeradiusAttrs::of(&issuer).map_err(|e| e.to_string())?,
            );
            let sans: Vec<&str> = c.san_dns.iter().map(String::as_str).collect();
            let station = format!("00-00-00-00-00-00:{ssid}");
            let req = Request {
                user_name: Some(&name),
                called_station_id: Some(&station),
                cert: PresentedCert {
                    serial: Some(&c.serial),
                    subject: Some(&c.subject),
                    issuer: Some(&c.issuer),
                    valid_since: Some(&c.valid_since),
                    expiration: Some(&c.expiration),
                    authority_key_id: Some(&c.authority_key_id).filter(|s| !s.is_empty()).map(|s| s.as_str()),
                    san_dns: &sans,
                    ca_serial: Some(&i.serial),
                    ca_subject: Some(&i.subject),
                    ca_issuer: Some(&i.issuer),
                    ca_valid_since: Some(&i.valid_since),
                    ca_expiration: Some(&i.expiration),
                },
            };
            println!("certificate: subject {} issuer {} serial {}", c.subject, c.issuer, c.serial);
            match check(Some(&map), &req) {
                Decision::Accept { reply } => {
                    println!("accept: {name} on SSID {ssid}");
                    for r in reply {
                        println!("  reply {} = {}", r.attribute, r.value);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Decision::Reject(reason) => {
                    println!("reject: {reason}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Sync { config, instance, raddb, overrides, write, names } => {
            sync_once(&config, instance.as_deref(), &raddb, &overrides, write, names)
        }
        Command::Show { trust_map } => {
            let map = TrustMap::load(&trust_map).map_err(|e| e.to_string())?;
            println!("generation {} written at {}", map.generation, map.generated_at);
            for (ssid, role) in &map.policy().ssids {
                println!("SSID {ssid}: {} members, {} reply attributes", role.members.len(), role.reply.len());
            }
            for (name, entry) in map.entries() {
                for pin in &entry.pins {
                    println!(
                        "{name}: serial {} issuer {} sha256 {}",
                        hex::encode(&pin.serial),
                        pin.issuer,
                        hex::encode(&pin.sha256)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
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
    let loaded = policy::load(&sync.policy)?;
    for d in &loaded.diagnostics {
        eprintln!("warning: policy {d}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut engine = rlm_rust::sync::Engine::new("rlm-rust sync".into(), sync, cfg.trust_map.clone())?;
        engine.set_policy(loaded.policy);
        let names = if only.is_empty() { engine.all_names() } else { only };
        let started = std::time::Instant::now();
        let (_, reports) = engine.round(names.clone()).await;
        for r in &reports {
            print!("{r}");
        }
        let pinned = reports.iter().filter(|r| r.records.iter().any(|x| x.result.is_ok())).count();
        println!("{} names looked up in {:.2?}: {pinned} pinned", names.len(), started.elapsed());
        if write {
            let map = engine.publish()?;
            println!(
                "wrote {} (generation {}, {} names, {} pins)",
                cfg.trust_map.display(),
                map.generation,
                map.name_count(),
                map.pin_count()
            );
        }
        Ok(if pinned == names.len() { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}
