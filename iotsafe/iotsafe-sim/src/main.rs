//! `iotsafe-sim`: test-only IoT SAFE card on the vpcd virtual reader.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use iotsafe_sim::{provision, rig, vpcd, Faults, Sim, SimConfig, SimError};

#[derive(Parser)]
#[command(name = "iotsafe-sim", version, about = "Test-only IoT SAFE applet simulator (vpcd)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct CardArgs {
    /// Card memory directory (keys and files, see README).
    #[arg(long)]
    dir: PathBuf,
    /// Applet AID the card answers to (others get 6A82).
    #[arg(long, default_value = "A0000005590010")]
    aid: String,
    /// Fault directive (repeatable), e.g. "sw 2B 6985", "sig der", "t0".
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// Control file with fault directives, re-read before every APDU.
    #[arg(long)]
    control: Option<PathBuf>,
    /// Log every APDU to stderr.
    #[arg(long, short = 'v')]
    verbose: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Plug the card into a running pcscd's vpcd slot (127.0.0.1:PORT).
    Run {
        #[command(flatten)]
        card: CardArgs,
        #[arg(long, default_value_t = rig::DEFAULT_PORT)]
        port: u16,
        /// After a remove-on fault, re-insert the card after this many ms
        /// (default: stay removed and exit).
        #[arg(long)]
        reinsert_ms: Option<u64>,
    },
    /// Create key 01 and a self-signed certificate for it in file 02.
    Provision {
        #[arg(long)]
        dir: PathBuf,
        /// CN and DNS SAN of the certificate.
        #[arg(long, default_value = "iotsafe-sim._device.example")]
        name: String,
    },
    /// Start a private pcscd with a vpcd reader plus this card, print READY,
    /// and run until SIGINT/SIGTERM (then stop both). For scripts and the
    /// eapol_test rig.
    Rig {
        #[command(flatten)]
        card: CardArgs,
        #[arg(long, default_value_t = rig::DEFAULT_PORT)]
        port: u16,
        #[arg(long, default_value = rig::DEFAULT_NAME)]
        reader_name: String,
        /// Provision (key 01 + self-signed cert 02) if the directory holds no key.
        #[arg(long)]
        provision_name: Option<String>,
    },
}

fn config(card: &CardArgs, port: u16) -> Result<SimConfig, SimError> {
    let mut faults = Faults::default();
    for f in &card.faults {
        faults.apply(f)?;
    }
    let aid = hex::decode(&card.aid).map_err(|e| SimError(format!("--aid: {e}")))?;
    Ok(SimConfig {
        aid,
        faults,
        control: card.control.clone(),
        trace: card.verbose,
        ..SimConfig::new(card.dir.clone(), port)
    })
}

/// Blocks SIGINT/SIGTERM in every thread (call before spawning any) and
/// returns a waiter that sleeps until one arrives.
fn block_termination_signals() -> impl FnOnce() {
    // SAFETY: plain libc signal-mask calls on a zeroed, then filled, sigset.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    move || {
        let mut sig = 0;
        // SAFETY: waits on the set blocked above.
        unsafe {
            libc::sigwait(&set, &mut sig);
        }
    }
}

fn run(cli: Cli) -> Result<(), SimError> {
    match cli.command {
        Cmd::Provision { dir, name } => {
            provision::provision(&dir, &name)?;
            eprintln!("provisioned {}: key 01, certificate file 02 for {name}", dir.display());
            Ok(())
        }
        Cmd::Run { card, port, reinsert_ms } => {
            let cfg = config(&card, port)?;
            let store = iotsafe_sim::store::Store::open(&cfg.dir)?;
            let mut c = iotsafe_sim::card::Card::new(store, cfg.aid.clone(), cfg.faults.clone());
            loop {
                let mut s = vpcd::connect(port, cfg.connect_timeout)?;
                eprintln!("iotsafe-sim: card inserted on 127.0.0.1:{port}");
                match vpcd::serve(&mut s, &mut c, cfg.control.as_deref(), cfg.trace)? {
                    vpcd::End::Removed => match reinsert_ms {
                        Some(ms) => {
                            eprintln!("iotsafe-sim: card removed, re-inserting in {ms} ms");
                            std::thread::sleep(Duration::from_millis(ms));
                            c.reset();
                        }
                        None => {
                            eprintln!("iotsafe-sim: card removed");
                            return Ok(());
                        }
                    },
                    // pcscd went away: wait for it to come back (bounded by connect timeout).
                    vpcd::End::ReaderClosed => c.reset(),
                }
            }
        }
        Cmd::Rig { card, port, reader_name, provision_name } => {
            let wait = block_termination_signals();
            let cfg = config(&card, port)?;
            let has_key = std::fs::read_dir(&cfg.dir)
                .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("key-")))
                .unwrap_or(false);
            if let (false, Some(name)) = (has_key, provision_name.as_deref()) {
                provision::provision(&cfg.dir, name)?;
            }
            let pcscd = rig::Pcscd::start(&reader_name, port)?;
            let reader = pcscd.reader(0);
            let sim = Sim::insert(cfg)?;
            rig::wait_card(&reader, true, Duration::from_secs(15))?;
            println!("READY reader={reader:?} port={port}");
            wait();
            drop(sim);
            pcscd.stop();
            eprintln!("iotsafe-sim: rig stopped");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iotsafe-sim: error: {e}");
            ExitCode::FAILURE
        }
    }
}
