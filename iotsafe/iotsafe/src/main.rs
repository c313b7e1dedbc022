//! `iotsafe`: command-line helper for IoT SAFE applets behind PC/SC, for
//! supplicant test rigs (reader listing, applet info, certificates, keys,
//! on-card signatures, CSRs and TLSA records).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use openssl::x509::{X509Req, X509};

use iotsafe::applet::{AppletConfig, ChannelMode};
use iotsafe::error::{Error, Result};
use iotsafe::reader::{self, Target};
use iotsafe::{csr, signature, tlsa};

#[derive(Parser)]
#[command(name = "iotsafe", version, about = "IoT SAFE applet helper over PC/SC")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args)]
struct Global {
    /// Reader name or case-insensitive substring (vpcd exposes two readers).
    /// Default: the single reader whose card answers SELECT for the applet.
    #[arg(long, short = 'r', global = true)]
    reader: Option<String>,
    /// Applet AID in hex (GSMA default; Thales applet: A00000003053F12401770101495341).
    #[arg(long, global = true, default_value = "A0000005590010")]
    aid: String,
    /// Class byte style for IoT SAFE commands: 00, 80 or 81 (channel bits are OR'ed in).
    #[arg(long, global = true, default_value = "80", value_parser = ["00", "80", "81"])]
    cla: String,
    /// Logical channel: "open" (MANAGE CHANNEL) or a fixed number 0..3.
    #[arg(long, global = true, default_value = "open")]
    channel: String,
    /// READ FILE chunk size in bytes.
    #[arg(long, global = true, default_value_t = 240, value_parser = clap::value_parser!(u8).range(1..))]
    chunk: u8,
    /// Trace APDUs on stderr.
    #[arg(long, short = 'v', global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// List readers, card presence and ATR.
    Readers,
    /// Select the applet and print its information and every object.
    Info,
    /// Certificate files.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Key pairs.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Sign a SHA-256 digest with an on-card key (ECDSA P-256).
    Sign {
        /// Private key id (hex).
        #[arg(long, default_value = "01")]
        key: String,
        /// The 32-byte digest in hex.
        #[arg(long, conflicts_with = "data")]
        digest: Option<String>,
        /// A file to hash with SHA-256 on the host.
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = SigFormat::Der)]
        format: SigFormat,
        /// Output file (default: stdout as hex).
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
    /// Build a PKCS#10 CSR for a DNS identity, signed on the card.
    Csr {
        #[arg(long, default_value = "01")]
        key: String,
        /// DNS identity, e.g. car54._device.cars.example (CN and SAN dNSName).
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value_t = CertFormat::Pem)]
        format: CertFormat,
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
    /// Print a TLSA zone-file line for the device certificate.
    Tlsa {
        /// Owner name; default: the certificate's first DNS SAN, else its CN.
        #[arg(long)]
        name: Option<String>,
        /// Certificate file id on the card.
        #[arg(long, default_value = "02", conflicts_with = "cert")]
        id: String,
        /// Use a certificate file (PEM or DER) instead of the card.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// 4 = PKIX-CD (default), 3 = DANE-EE.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(0..=4))]
        usage: u8,
        /// 0 = full certificate, 1 = SubjectPublicKeyInfo.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
        selector: u8,
        /// 0 = exact data, 1 = SHA-256, 2 = SHA-512.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
        matching: u8,
    },
}

#[derive(Subcommand)]
enum CertCmd {
    /// Read a certificate file (chunked READ FILE).
    Read {
        #[arg(long, default_value = "02")]
        id: String,
        #[arg(long, value_enum, default_value_t = CertFormat::Pem)]
        format: CertFormat,
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
    /// Write a certificate file with the OTA-style UPDATE (INS D6). Only the
    /// test simulator implements it; real SIMs are provisioned over the air.
    Write {
        #[arg(long, default_value = "02")]
        id: String,
        /// PEM or DER certificate.
        #[arg(long = "in", short = 'i')]
        input: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Generate a P-256 key pair in a slot and print the public key.
    Generate {
        #[arg(long, default_value = "01")]
        id: String,
        #[arg(long, value_enum, default_value_t = KeyFormat::Pem)]
        format: KeyFormat,
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
    /// Read a public key.
    Public {
        #[arg(long, default_value = "01")]
        id: String,
        #[arg(long, value_enum, default_value_t = KeyFormat::Pem)]
        format: KeyFormat,
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum CertFormat {
    Pem,
    Der,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyFormat {
    /// SubjectPublicKeyInfo PEM.
    Pem,
    /// SubjectPublicKeyInfo DER.
    Der,
    /// Uncompressed point 04||X||Y in hex.
    Hex,
}

#[derive(Clone, Copy, ValueEnum)]
enum SigFormat {
    /// DER ECDSA-Sig-Value (what `openssl dgst -verify` takes).
    Der,
    /// 64-byte r||s.
    Raw,
}

fn parse_hex(what: &str, s: &str) -> Result<Vec<u8>> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
    let bytes = hex::decode(&clean).map_err(|e| Error::Invalid(format!("{what} {s:?} is not hex: {e}")))?;
    if bytes.is_empty() {
        return Err(Error::Invalid(format!("{what} is empty")));
    }
    Ok(bytes)
}

fn target(g: &Global) -> Result<Target> {
    let aid = parse_hex("AID", &g.aid)?;
    if !(5..=16).contains(&aid.len()) {
        return Err(Error::Invalid(format!("AID must be 5..16 bytes, got {}", aid.len())));
    }
    let cla = parse_hex("CLA", &g.cla)?[0];
    let channel = match g.channel.as_str() {
        "open" => ChannelMode::Open,
        n => match n.parse::<u8>() {
            Ok(c @ 0..=3) => ChannelMode::Fixed(c),
            _ => return Err(Error::Invalid(format!("--channel {n:?}: expected \"open\" or 0..3"))),
        },
    };
    Ok(Target {
        reader: g.reader.clone(),
        applet: AppletConfig { aid, cla, channel, read_chunk: g.chunk },
        trace: g.verbose,
    })
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

/// Writes to `out` or stdout.
fn emit(out: Option<&Path>, bytes: &[u8]) -> Result<()> {
    match out {
        Some(p) => std::fs::write(p, bytes).map_err(|source| Error::Io { path: p.display().to_string(), source }),
        None => std::io::stdout().write_all(bytes).map_err(|source| Error::Io { path: "stdout".into(), source }),
    }
}

/// Accepts PEM or DER and returns DER.
fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>> {
    let cert = if bytes.starts_with(b"-----") { X509::from_pem(bytes) } else { X509::from_der(bytes) }
        .map_err(|e| Error::Invalid(format!("not a PEM or DER certificate: {e}")))?;
    Ok(cert.to_der()?)
}

fn key_output(point: &[u8], format: KeyFormat) -> Result<Vec<u8>> {
    let key = csr::public_key(point)?;
    Ok(match format {
        KeyFormat::Pem => key.public_key_to_pem()?,
        KeyFormat::Der => key.public_key_to_der()?,
        KeyFormat::Hex => format!("{}\n", hex::encode(point)).into_bytes(),
    })
}

fn run(cli: Cli) -> Result<()> {
    let t = target(&cli.global)?;
    match cli.command {
        Cmd::Readers => {
            let ctx = reader::establish()?;
            let readers = reader::list(&ctx)?;
            if readers.is_empty() {
                return Err(Error::NoReaders);
            }
            for r in readers {
                if r.card_present {
                    println!("{}\tcard\tATR {}", r.name, hex::encode_upper(&r.atr));
                } else {
                    println!("{}\tempty", r.name);
                }
            }
        }
        Cmd::Info => {
            let (reader_name, info, objects) = {
                let ctx = reader::establish()?;
                let name = reader::resolve(&ctx, &t)?;
                let (info, objects) =
                    reader::with_applet_on(&ctx, &name, &t, |a| Ok((a.application_info()?, a.object_list()?)))?;
                (name, info, objects)
            };
            println!("reader: {reader_name}");
            println!("applet: {}", hex::encode_upper(&t.applet.aid));
            print!("{info}");
            println!("objects: {}", objects.len());
            for o in objects {
                println!("  {o}");
            }
        }
        Cmd::Cert(CertCmd::Read { id, format, out }) => {
            let id = parse_hex("file id", &id)?;
            let der = reader::with_applet(&t, |a| a.read_file(&id))?;
            let cert = X509::from_der(&der).map_err(|e| {
                Error::Malformed(format!(
                    "file {} ({} bytes) is not a DER certificate: {e}",
                    hex::encode_upper(&id),
                    der.len()
                ))
            })?;
            let bytes = match format {
                CertFormat::Pem => cert.to_pem()?,
                CertFormat::Der => der,
            };
            emit(out.as_deref(), &bytes)?;
        }
        Cmd::Cert(CertCmd::Write { id, input }) => {
            let id = parse_hex("file id", &id)?;
            let der = certificate_der(&read_input(&input)?)?;
            reader::with_applet(&t, |a| a.update_file(&id, &der))?;
            eprintln!("wrote {} bytes to file {}", der.len(), hex::encode_upper(&id));
        }
        Cmd::Key(KeyCmd::Generate { id, format, out }) => {
            let id = parse_hex("key id", &id)?;
            let point = reader::with_applet(&t, |a| a.generate_key(&id))?;
            emit(out.as_deref(), &key_output(&point, format)?)?;
        }
        Cmd::Key(KeyCmd::Public { id, format, out }) => {
            let id = parse_hex("key id", &id)?;
            let point = reader::with_applet(&t, |a| a.public_key(&id))?;
            emit(out.as_deref(), &key_output(&point, format)?)?;
        }
        Cmd::Sign { key, digest, data, format, out } => {
            let key = parse_hex("key id", &key)?;
            let digest: [u8; 32] = match (digest, data) {
                (Some(d), None) => parse_hex("digest", &d)?.try_into().map_err(|v: Vec<u8>| {
                    Error::Invalid(format!("digest must be 32 bytes (SHA-256), got {}", v.len()))
                })?,
                (None, Some(path)) => openssl::sha::sha256(&read_input(&path)?),
                _ => return Err(Error::Invalid("give --digest or --data".into())),
            };
            let raw = reader::with_applet(&t, |a| a.sign_digest(&key, &digest))?;
            let bytes = match format {
                SigFormat::Raw => raw.to_vec(),
                SigFormat::Der => signature::raw_to_der(&raw)?,
            };
            match out {
                Some(p) => emit(Some(&p), &bytes)?,
                None => println!("{}", hex::encode(bytes)),
            }
        }
        Cmd::Csr { key, name, format, out } => {
            let key = parse_hex("key id", &key)?;
            let der = reader::with_applet(&t, |a| {
                let point = a.public_key(&key)?;
                csr::build_csr(&name, &point, |digest| a.sign_digest(&key, digest))
            })?;
            let bytes = match format {
                CertFormat::Der => der,
                CertFormat::Pem => X509Req::from_der(&der)?.to_pem()?,
            };
            emit(out.as_deref(), &bytes)?;
        }
        Cmd::Tlsa { name, id, cert, usage, selector, matching } => {
            let der = match cert {
                Some(path) => certificate_der(&read_input(&path)?)?,
                None => {
                    let id = parse_hex("file id", &id)?;
                    reader::with_applet(&t, |a| a.read_file(&id))?
                }
            };
            let name = match name {
                Some(n) => n,
                None => tlsa::certificate_dns_name(&der)?,
            };
            let line = tlsa::record(&name, usage, selector.try_into()?, matching.try_into()?, &der)?;
            println!("{line}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iotsafe: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotsafe::applet::GSMA_AID;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn default_target_is_gsma_aid_with_channel() {
        let cli = Cli::parse_from(["iotsafe", "info"]);
        let t = target(&cli.global).unwrap();
        assert_eq!(t.applet.aid, GSMA_AID.to_vec());
        assert_eq!(t.applet.cla, 0x80);
        assert_eq!(t.applet.channel, ChannelMode::Open);
        let cli = Cli::parse_from(["iotsafe", "--cla", "00", "--channel", "0", "info"]);
        let t = target(&cli.global).unwrap();
        assert_eq!((t.applet.cla, t.applet.channel), (0, ChannelMode::Fixed(0)));
    }

    #[test]
    fn bad_arguments_are_reported() {
        let cli = Cli::parse_from(["iotsafe", "--aid", "A0XX", "info"]);
        assert!(target(&cli.global).unwrap_err().to_string().contains("not hex"));
        let cli = Cli::parse_from(["iotsafe", "--channel", "7", "info"]);
        assert!(target(&cli.global).is_err());
        assert!(Cli::try_parse_from(["iotsafe", "--cla", "40", "info"]).is_err());
        assert!(parse_hex("id", "").is_err());
        assert_eq!(parse_hex("id", "0a:0B").unwrap(), vec![0x0A, 0x0B]);
    }
}
