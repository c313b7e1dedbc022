//! Test rig: a private pcscd with one vpcd reader on loopback ports.
//!
//! Only one pcscd can run per host (it owns /run/pcscd/pcscd.comm), so
//! every user of the rig first takes an exclusive flock; tests in parallel
//! threads or other test binaries queue on it. Every wait is bounded.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pcsc::{Context, ReaderState, Scope, State};

use crate::SimError;

/// vpcd base port of the rig (slot 0; slot 1 is +1). 0x8CB0 = 36016, away
/// from the stock vpcd 35963/35964 so a system config cannot collide.
pub const DEFAULT_PORT: u16 = 0x8CB0;
pub const DEFAULT_NAME: &str = "IoTSAFE Sim";
pub const LOCK_PATH: &str = "/tmp/iotsafe-pcscd-rig.lock";
const PCSCD_PID: &str = "/run/pcscd/pcscd.pid";
const PCSCD_SOCKET: &str = "/run/pcscd/pcscd.comm";
const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

/// Exclusive right to run pcscd on this host, released on drop.
pub struct RigLock {
    _file: File,
}

/// Takes the rig lock, waiting at most `timeout`.
pub fn lock(timeout: Duration) -> Result<RigLock, SimError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .map_err(|e| SimError(format!("{LOCK_PATH}: {e}")))?;
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(RigLock { _file: file });
        }
        if Instant::now() >= deadline {
            return Err(SimError(format!(
                "rig lock {LOCK_PATH} still held after {timeout:?} (another pcscd test running?)"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// PID of a running pcscd, if any (from its pid file, checked in /proc).
pub fn running_pcscd() -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(PCSCD_PID).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "pcscd").then_some(pid)
}

/// A pcscd we started, with a vpcd reader `<name> 00 00` / `<name> 00 01`
/// listening on `port` / `port + 1`. Stopped on drop.
pub struct Pcscd {
    child: Option<Child>,
    _conf: tempfile::TempDir,
    log: PathBuf,
    name: String,
    port: u16,
    _lock: RigLock,
}

fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Pcscd {
    /// Starts pcscd in the foreground with only our vpcd reader and waits
    /// (bounded) until clients can see the reader.
    pub fn start(name: &str, port: u16) -> Result<Pcscd, SimError> {
        let lock = lock(Duration::from_secs(600))?;
        if let Some(pid) = running_pcscd() {
            return Err(SimError(format!(
                "another pcscd (pid {pid}) is running; the rig needs its own. Stop it first \
                 (systemctl stop pcscd.socket pcscd, or kill {pid})"
            )));
        }
        if !Path::new(VPCD_DRIVER).exists() {
            return Err(SimError(format!("{VPCD_DRIVER} missing: apt-get install vsmartcard-vpcd")));
        }
        let conf = tempfile::Builder::new()
            .prefix("iotsafe-readerconf")
            .tempdir()
            .map_err(|e| SimError(format!("temp dir: {e}")))?;
        let entry = format!(
            "FRIENDLYNAME \"{name}\"\nDEVICENAME /dev/null:0x{port:04X}\nLIBPATH {VPCD_DRIVER}\nCHANNELID 0x{port:04X}\n"
        );
        // pcscd parses every file in the config dir: keep the log out of it.
        let conf_dir = conf.path().join("reader.conf.d");
        std::fs::create_dir(&conf_dir)
            .and_then(|()| std::fs::write(conf_dir.join("vpcd-iotsafe"), entry))
            .map_err(|e| SimError(format!("reader.conf: {e}")))?;
        let log = conf.path().join("pcscd.log");
        let out = File::create(&log).map_err(|e| SimError(format!("pcscd log: {e}")))?;
        let err = out.try_clone().map_err(|e| SimError(format!("pcscd log: {e}")))?;
        let mut cmd = Command::new("pcscd");
        // SAFETY: pre_exec runs between fork and exec and only calls the
        // async-signal-safe sigprocmask. A caller that blocked SIGTERM (the
        // `rig` command waits for it with sigwait) must not pass that mask
        // on, or pcscd would ignore our SIGTERM.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let child = cmd
            .args(["--foreground", "--debug", "--apdu", "-c"])
            .arg(&conf_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| SimError(format!("cannot start pcscd: {e} (apt-get install pcscd)")))?;
        let mut rig = Pcscd { child: Some(child), _conf: conf, log, name: name.to_string(), port, _lock: lock };
        rig.wait_ready(Duration::from_secs(15))?;
        Ok(rig)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), SimError> {
        let deadline = Instant::now() + timeout;
        let want = self.reader(0);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(SimError(format!("pcscd exited early ({status}); log:\n{}", self.log_text())));
                }
            }
            if Path::new(PCSCD_SOCKET).exists() {
                if let Ok(ctx) = Context::establish(Scope::User) {
                    if let Ok(readers) = ctx.list_readers_owned() {
                        if readers.iter().any(|r| r.to_string_lossy() == want) {
                            return Ok(());
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(SimError(format!(
                    "pcscd did not show reader {want:?} within {timeout:?}; log:\n{}",
                    self.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Reader name of vpcd slot 0 or 1.
    pub fn reader(&self, slot: u8) -> String {
        format!("{} 00 {:02}", self.name, slot)
    }

    /// vpcd TCP port of a slot.
    pub fn port(&self, slot: u8) -> u16 {
        self.port + u16::from(slot)
    }

    /// The last 40 lines of pcscd's log (for error messages).
    pub fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Stops pcscd (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Waits (bounded) until `reader` reports a card present (or absent).
pub fn wait_card(reader: &str, present: bool, timeout: Duration) -> Result<(), SimError> {
    let deadline = Instant::now() + timeout;
    let ctx = Context::establish(Scope::User).map_err(|e| SimError(format!("pcscd: {e}")))?;
    let name = std::ffi::CString::new(reader).map_err(|_| SimError(format!("reader name {reader:?} contains NUL")))?;
    loop {
        let mut states = [ReaderState::new(name.clone(), State::UNAWARE)];
        let now_present = match ctx.get_status_change(Duration::ZERO, &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => states[0].event_state().contains(State::PRESENT),
            Err(e) => return Err(SimError(format!("status of {reader:?}: {e}"))),
        };
        if now_present == present {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(SimError(format!(
                "reader {reader:?} did not become {} within {timeout:?}",
                if present { "present" } else { "empty" }
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
