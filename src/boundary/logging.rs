//! Bridges the `log` crate to FreeRADIUS' log, so `radiusd -X` shows what the core says.
//!
//! The host function is stored once per process; records before it is set (unit tests,
//! the CLI) go nowhere unless the embedding program installs its own logger.
#![allow(unsafe_code)] // the host log function is a C function pointer

use std::ffi::CString;

use once_cell::sync::OnceCell;

use crate::contract::{rlm_rust_log_level, rlm_rust_log_level::Type as LevelType};

type HostLogFn = unsafe extern "C" fn(level: LevelType, msg: *const libc::c_char);

static HOST_LOG: OnceCell<HostLogFn> = OnceCell::new();

struct HostLogger;

static LOGGER: HostLogger = HostLogger;

/// The host's level for a `log` level; trace folds into debug, the finest the header defines.
pub fn level_code(level: log::Level) -> LevelType {
    match level {
        log::Level::Error => rlm_rust_log_level::RLM_RUST_LOG_ERROR,
        log::Level::Warn => rlm_rust_log_level::RLM_RUST_LOG_WARN,
        log::Level::Info => rlm_rust_log_level::RLM_RUST_LOG_INFO,
        log::Level::Debug | log::Level::Trace => rlm_rust_log_level::RLM_RUST_LOG_DEBUG,
    }
}

/// The prefix of every line about one instance: `rlm_rust[<instance name>]`, as radiusd
/// names module instances in its own log.
pub fn instance_label(name: &str) -> String {
    format!("rlm_rust[{name}]")
}

/// A C string for the host: interior NULs (attacker-controlled text) become U+FFFD.
pub fn c_text(s: &str) -> CString {
    CString::new(s.replace('\0', "\u{fffd}")).unwrap_or_default()
}

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Debug
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Some(f) = HOST_LOG.get() {
            let msg = c_text(&format!("rlm_rust: {}", record.args()));
            // SAFETY: the host function was handed to us by radiusd for the process
            // lifetime; it copies the NUL-terminated message before returning.
            unsafe { f(level_code(record.level()), msg.as_ptr()) };
        }
    }

    fn flush(&self) {}
}

/// Installs the bridge. Idempotent: later instances (and HUP) reuse the first one.
pub fn install(host_log: HostLogFn) {
    if HOST_LOG.set(host_log).is_ok() && log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}
