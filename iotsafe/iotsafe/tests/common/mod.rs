//! Shared harness: a private pcscd with the vpcd reader, simulated cards in
//! its slots, and the `iotsafe` binary run with a timeout.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iotsafe_sim::rig::{self, Pcscd};
use iotsafe_sim::{provision, Sim, SimConfig};

pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Out {
    pub ok: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs a program, killing it if it outlives `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Out {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Out { ok: status.success(), stdout: out_t.join().unwrap(), stderr: err_t.join().unwrap() }
}

/// Runs the `iotsafe` binary under test.
pub fn iotsafe(args: &[&str]) -> Out {
    run_with_timeout(Command::new(env!("CARGO_BIN_EXE_iotsafe")).args(args), CMD_TIMEOUT)
}

/// Runs `iotsafe` and insists on success.
pub fn iotsafe_ok(args: &[&str]) -> Out {
    let out = iotsafe(args);
    assert!(out.ok, "iotsafe {args:?} failed: {}", out.stderr);
    out
}

/// Runs `iotsafe`, insists on failure, returns stderr.
pub fn iotsafe_err(args: &[&str]) -> String {
    let out = iotsafe(args);
    assert!(!out.ok, "iotsafe {args:?} unexpectedly succeeded: {}", out.text());
    out.stderr
}

/// A running pcscd plus cards; everything is stopped on drop.
pub struct Env {
    // Field order is drop order: cards out before pcscd goes.
    pub sims: Vec<Option<Sim>>,
    pub pcscd: Pcscd,
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let pcscd = Pcscd::start(rig::DEFAULT_NAME, rig::DEFAULT_PORT)
            .unwrap_or_else(|e| panic!("cannot start the pcscd rig: {e}"));
        Env { sims: vec![None, None], pcscd, tmp: tempfile::tempdir().unwrap() }
    }

    pub fn card_dir(&self, slot: u8) -> PathBuf {
        self.tmp.path().join(format!("card{slot}"))
    }

    pub fn control_path(&self, slot: u8) -> PathBuf {
        self.tmp.path().join(format!("control{slot}"))
    }

    /// Provisions (once) and inserts a card in `slot`, waiting until pcscd sees it.
    pub fn insert(&mut self, slot: u8) -> PathBuf {
        let dir = self.card_dir(slot);
        if !dir.exists() {
            provision::provision(&dir, &format!("dev{slot}._device.example")).unwrap();
        }
        let mut cfg = SimConfig::new(&dir, self.pcscd.port(slot));
        cfg.control = Some(self.control_path(slot));
        self.sims[usize::from(slot)] = Some(Sim::insert(cfg).unwrap());
        rig::wait_card(&self.pcscd.reader(slot), true, Duration::from_secs(15)).unwrap();
        dir
    }

    /// Pulls the card out of `slot` and waits until pcscd notices.
    pub fn remove(&mut self, slot: u8) {
        if let Some(sim) = self.sims[usize::from(slot)].take() {
            sim.remove().unwrap();
        }
        rig::wait_card(&self.pcscd.reader(slot), false, Duration::from_secs(15)).unwrap();
    }

    /// Sets the fault directives of the card in `slot` (read before each APDU).
    pub fn faults(&self, slot: u8, text: &str) {
        std::fs::write(self.control_path(slot), text).unwrap();
    }

    pub fn reader(&self, slot: u8) -> String {
        self.pcscd.reader(slot)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
