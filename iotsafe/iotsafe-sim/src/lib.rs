//! Test-only IoT SAFE applet simulator on the vpcd virtual reader, and the
//! rig that runs a private pcscd for tests (`rig.rs`).
//!
//! Never link this into anything shipped: its "card" keeps private keys in
//! plain files.

pub mod card;
pub mod faults;
pub mod provision;
pub mod rig;
pub mod store;
pub mod vpcd;

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use faults::Faults;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SimError(pub String);

/// GSMA IoT SAFE AID, what the simulated applet answers to by default.
pub const GSMA_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x05, 0x59, 0x00, 0x10];

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Card memory (see `store.rs`).
    pub dir: PathBuf,
    /// vpcd port of the slot to plug into (127.0.0.1 only).
    pub port: u16,
    pub aid: Vec<u8>,
    pub faults: Faults,
    /// Control file re-read before every APDU (see `faults.rs`).
    pub control: Option<PathBuf>,
    pub trace: bool,
    /// How long to keep retrying the connection to vpcd.
    pub connect_timeout: Duration,
}

impl SimConfig {
    pub fn new(dir: impl Into<PathBuf>, port: u16) -> Self {
        SimConfig {
            dir: dir.into(),
            port,
            aid: GSMA_AID.to_vec(),
            faults: Faults::default(),
            control: None,
            trace: false,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A simulated card inserted in a vpcd slot, served by a background thread.
/// Dropping it (or [`Sim::remove`]) pulls the card.
pub struct Sim {
    stop: Arc<AtomicBool>,
    stream: Arc<Mutex<Option<TcpStream>>>,
    thread: Option<JoinHandle<Result<vpcd::End, SimError>>>,
}

impl Sim {
    /// Loads the card memory and starts connecting to vpcd.
    pub fn insert(cfg: SimConfig) -> Result<Sim, SimError> {
        let store = store::Store::open(&cfg.dir)?;
        let mut card = card::Card::new(store, cfg.aid.clone(), cfg.faults.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stream: Arc<Mutex<Option<TcpStream>>> = Arc::new(Mutex::new(None));
        let (stop2, stream2) = (stop.clone(), stream.clone());
        let thread = std::thread::Builder::new()
            .name(format!("iotsafe-sim:{}", cfg.port))
            .spawn(move || {
                let mut s = vpcd::connect(cfg.port, cfg.connect_timeout)?;
                if stop2.load(Ordering::SeqCst) {
                    return Ok(vpcd::End::ReaderClosed);
                }
                if let (Ok(mut slot), Ok(clone)) = (stream2.lock(), s.try_clone()) {
                    *slot = Some(clone);
                }
                vpcd::serve(&mut s, &mut card, cfg.control.as_deref(), cfg.trace)
            })
            .map_err(|e| SimError(format!("cannot spawn simulator thread: {e}")))?;
        Ok(Sim { stop, stream, thread: Some(thread) })
    }

    /// True once the serving thread ended (reader closed or card removed by a fault).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Pulls the card: closes the vpcd connection and waits for the thread.
    pub fn remove(mut self) -> Result<vpcd::End, SimError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<vpcd::End, SimError> {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(slot) = self.stream.lock() {
            if let Some(s) = slot.as_ref() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| SimError("simulator thread panicked".into()))?,
            None => Ok(vpcd::End::ReaderClosed),
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
