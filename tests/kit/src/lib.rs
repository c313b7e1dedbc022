//! Real-parts test harness: a throwaway PKI, a throwaway raddb rendered from the repo's
//! `raddb/` files, a real `freeradius -X` loading the built `rlm_rust.so`, real
//! `eapol_test` supplicants, and trust maps written by the real `rlm-rust` CLI.
//! Nothing is mocked. Every wait is bounded; every process is killed on drop.
//!
//! The root crate's tests, benches and examples use it as the dev-dependency `testkit`
//! (`use testkit::pki::...`). Each test gets its own temp dir and port, so tests run in
//! parallel. It does not link rlm_rust: the module is driven from outside (the built .so,
//! the `rlm-rust` CLI, DNS, HTTPS and RADIUS on loopback).
//!
//! Environment knobs:
//! - `RLM_RUST_SO`: the module to load (default: `target/<profile>/librlm_rust.so`, found
//!   from the test binary's path);
//! - `FR_SYSTEM_LIBDIR`: radiusd's own modules (default `/usr/lib/freeradius`);
//! - `RLM_RUST_KEEP_LAB=1`: keep each lab dir (raddb, radiusd logs, eapol logs, PKI) and
//!   print its path, for a post-mortem;
//! - `RLM_RUST_SKIP_EAP_TLS=1`: skip the radiusd tests (machines without freeradius or
//!   eapol_test; without it a missing tool fails the test).

pub mod capki;
pub mod dns;
pub mod dnsproxy;
pub mod eapol;
pub mod fleet;
pub mod https;
pub mod pki;
pub mod radiusd;
pub mod relay;
pub mod stack;
pub mod trustmap;

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// The repository's top directory (this crate lives in `tests/kit/`).
pub fn repo_root() -> PathBuf {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    kit.parent().and_then(Path::parent).expect("tests/kit has a repository above it").to_path_buf()
}

/// Whether to skip a test that needs radiusd and its tools: only when explicitly asked
/// (`RLM_RUST_SKIP_EAP_TLS`), so a missing tool never silently passes CI.
pub fn skip() -> bool {
    if std::env::var_os("RLM_RUST_SKIP_EAP_TLS").is_some() {
        eprintln!("RLM_RUST_SKIP_EAP_TLS set: skipping");
        return true;
    }
    false
}

/// Waits for `child` at most `limit`; kills it (and reaps it) when the limit is hit.
/// Returns None on timeout.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Asks `child` to stop (SIGTERM) and waits at most `limit` for it; then SIGKILLs and
/// reaps it. Returns how it ended (None: it had to be killed). A child already gone is
/// only reaped.
pub fn terminate(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: kill(2) on the pid of our own child, not yet reaped (try_wait saw it
    // running), so the pid cannot have been reused.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    wait_bounded(child, limit)
}

/// Polls `cond` every 50 ms until it holds or `limit` passes. Returns whether it held.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether an executable is on PATH (the harness needs `freeradius` and `eapol_test`).
pub fn have_program(name: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file())).unwrap_or(false)
}

/// Reads a file as (lossy) UTF-8; empty when it does not exist.
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// Resident set size in KiB of process `pid` (`"self"` for this one), from /proc; 0 if gone.
pub fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
