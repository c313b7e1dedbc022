//! The `extern "C"` entries the C shim calls (declared in include/rlm_rust.h).
//!
//! Thin on purpose: convert borrowed C strings to `&str`, call safe Rust, map the result.
//! Every entry runs inside [`guarded`], so a panic becomes an error value and a log line
//! instead of unwinding into radiusd.
#![allow(unsafe_code)] // radiusd calls in through C: raw pointers from the shim

use super::instance::Instance;
use super::logging::{self, c_text};
use crate::config;
use crate::request::check::{Decision, Request};
use crate::request::counters::Stage;
use crate::request::presented::{CaptureError, PresentedCert, RawCapture, Source};
use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::contract::{
    rlm_rust_capture_source, rlm_rust_config, rlm_rust_host, rlm_rust_instance, rlm_rust_log_level, rlm_rust_request,
    rlm_rust_sink, rlm_rust_stage, rlm_rust_str, rlm_rust_values, rlm_rust_verdict, RLM_RUST_MAX_SAN_DNS,
};

/// Runs `f`, turning a panic into `fallback` plus an error log. Nothing unwinds past here.
pub fn guarded<T>(entry: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            log::error!("internal error in {entry}: {what}");
            fallback
        }
    }
}

/// Installs the log bridge to radiusd's log; called once per process, before any instance.
/// Returns 0, or -1 when `host` or its log function is missing.
///
/// # Safety
/// `host` is NULL or points to a valid `rlm_rust_host`.
#[no_mangle]
pub unsafe extern "C" fn rlm_rust_init(host: *const rlm_rust_host) -> libc::c_int {
    guarded("rlm_rust_init", -1, || {
        // SAFETY: checked for NULL; the shim passes a static struct.
        match unsafe { host.as_ref() }.and_then(|h| h.log) {
            Some(log_fn) => {
                logging::install(log_fn);
                0
            }
            None => -1,
        }
    })
}

/// Parses one `rust { }` section and starts its instance (the sync or the file watcher,
/// and the metrics listener). Returns the handle the other entries take, or NULL after
/// logging why (bad option, start failure); the shim then fails instantiation, so
/// radiusd does not start.
///
/// # Safety
/// `config` is NULL or points to a valid `rlm_rust_config` whose strings are NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rlm_rust_instantiate(config: *const rlm_rust_config) -> *mut rlm_rust_instance {
    guarded("rlm_rust_instantiate", std::ptr::null_mut(), || {
        // SAFETY: checked for NULL; radiusd keeps the config alive during the call.
        let Some(c) = (unsafe { config.as_ref() }) else {
            return std::ptr::null_mut();
        };
        let text = |p: *const libc::c_char| {
            if p.is_null() {
                return None;
            }
            // SAFETY: not NULL; the shim passes NUL-terminated strings that live for the call.
            Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        };
        let name = text(c.instance_name).unwrap_or_else(|| "rust".into());
        let mut pairs = Vec::with_capacity(c.pair_count);
        if !c.pairs.is_null() {
            // SAFETY: the shim passes `pair_count` entries, each with NUL-terminated strings.
            for p in unsafe { std::slice::from_raw_parts(c.pairs, c.pair_count) } {
                if let (Some(k), Some(v)) = (text(p.key), text(p.value)) {
                    pairs.push((k, v));
                }
            }
        }
        let config = match config::from_pairs(&name, &pairs) {
            Ok(c) => c,
            Err(e) => {
                log::error!("{}: configuration: {e}", logging::instance_label(&name));
                return std::ptr::null_mut();
            }
        };
        match Instance::start(config) {
            Ok(inst) => Box::into_raw(Box::new(inst)).cast::<rlm_rust_instance>(),
            Err(e) => {
                log::error!("{}: cannot start: {e}", logging::instance_label(&name));
                std::ptr::null_mut()
            }
        }
    })
}

/// Stops the instance's threads, waits for them and frees it; the handle is dead after
/// this. NULL is ignored.
///
/// # Safety
/// `inst` is NULL or was returned by `rlm_rust_instantiate` and not yet detached.
#[no_mangle]
pub unsafe extern "C" fn rlm_rust_detach(inst: *mut rlm_rust_instance) {
    guarded("rlm_rust_detach", (), || {
        if !inst.is_null() {
            // SAFETY: ownership returns to Rust exactly once, at detach.
            let mut inst = unsafe { Box::from_raw(inst.cast::<Instance>()) };
            inst.stop();
        }
    })
}

/// Borrows a length-delimited C string as UTF-8; absent or not UTF-8 reads as None.
///
/// # Safety
/// `s.ptr` points to `s.len` readable bytes (or is NULL) for the borrow's lifetime.
unsafe fn borrow<'a>(s: &rlm_rust_str) -> Option<&'a str> {
    // SAFETY: guaranteed by the caller.
    unsafe { bytes(s) }.and_then(|b| std::str::from_utf8(b).ok())
}

/// Borrows a length-delimited byte string; absent (NULL or empty) reads as None.
///
/// # Safety
/// `s.ptr` points to `s.len` readable bytes (or is NULL) for the borrow's lifetime.
unsafe fn bytes<'a>(s: &rlm_rust_str) -> Option<&'a [u8]> {
    if s.ptr.is_null() || s.len == 0 {
        return None;
    }
    // SAFETY: guaranteed by the caller (the shim points into radiusd's VALUE_PAIRs).
    Some(unsafe { std::slice::from_raw_parts(s.ptr.cast::<u8>(), s.len) })
}

/// Slots of one captured attribute list (the shim fills at most this many).
const MAX_VALUES: usize = RLM_RUST_MAX_SAN_DNS as usize;

/// One captured attribute's values, borrowed into `out` (an empty value reads as empty and
/// fails the digest length check).
///
/// # Safety
/// Every filled slot of `v` points into a live VALUE_PAIR for the borrow's lifetime.
unsafe fn values<'a>(v: &rlm_rust_values, out: &'a mut [&'a [u8]; MAX_VALUES]) -> &'a [&'a [u8]] {
    // The shim counts past the slots it fills; a longer list than any valid capture holds
    // is passed on as all the slots, which no chain length matches.
    let n = v.count.min(MAX_VALUES);
    for (slot, s) in out.iter_mut().zip(&v.values[..n]) {
        // SAFETY: guaranteed by the caller.
        *slot = unsafe { bytes(s) }.unwrap_or(&[]);
    }
    &out[..n]
}

/// Decides one request: validates the captured certificate, checks the request against the
/// instance's current snapshot, and hands the side effects (reply attributes, reject reason
/// and message, the decision log line) to `sink`. Never blocks on I/O. Returns accept or
/// reject; fail for a NULL argument or a caught panic.
///
/// # Safety
/// `inst` came from `rlm_rust_instantiate`; `request` and `sink` point to valid structs
/// whose strings stay alive for the call.
#[no_mangle]
pub unsafe extern "C" fn rlm_rust_check(
    inst: *const rlm_rust_instance,
    request: *const rlm_rust_request,
    sink: *const rlm_rust_sink,
) -> rlm_rust_verdict {
    guarded("rlm_rust_check", rlm_rust_verdict::RLM_RUST_FAIL, || {
        // SAFETY: NULL-checked; the pointers are valid for the duration of the call.
        let (Some(inst), Some(r), Some(sink)) =
            (unsafe { inst.cast::<Instance>().as_ref() }, unsafe { request.as_ref() }, unsafe { sink.as_ref() })
        else {
            return rlm_rust_verdict::RLM_RUST_FAIL;
        };
        let mut slots: [[&[u8]; MAX_VALUES]; 5] = [[&[]; MAX_VALUES]; 5];
        let [s0, s1, s2, s3, s4] = &mut slots;
        // SAFETY: the capture's values point into the request's VALUE_PAIRs (or it is NULL).
        let cert = match unsafe { r.capture.as_ref() } {
            None => Err(CaptureError::Absent),
            Some(c) => {
                // A C enum crosses as its integer: anything unknown counts as no capture.
                let source = match c.source {
                    rlm_rust_capture_source::RLM_RUST_CAPTURE_HANDSHAKE => Some(Source::Handshake),
                    rlm_rust_capture_source::RLM_RUST_CAPTURE_RESUMED => Some(Source::Resumed),
                    _ => None,
                };
                // SAFETY: (all `values` calls) as above.
                let raw = unsafe {
                    RawCapture {
                        source,
                        cert_sha256: values(&c.cert_sha256, s0),
                        cert_sha512: values(&c.cert_sha512, s1),
                        spki_sha256: values(&c.spki_sha256, s2),
                        spki_sha512: values(&c.spki_sha512, s3),
                        san_dns: values(&c.san_dns, s4),
                        chain_length: (c.chain_length >= 0).then_some(c.chain_length),
                    }
                };
                PresentedCert::from_capture(&raw)
            }
        };
        // SAFETY: (both `borrow` calls) the strings point into the request's VALUE_PAIRs.
        let req = unsafe {
            Request { user_name: borrow(&r.user_name), called_station_id: borrow(&r.called_station_id), cert }
        };
        let wants_cui = r.wants_cui != 0;
        // A C enum crosses as its integer: anything unknown counts as post-auth.
        let stage = match r.stage {
            rlm_rust_stage::RLM_RUST_STAGE_TLS_CHECK => Stage::TlsCheck,
            _ => Stage::PostAuth,
        };
        inst.decide(stage, &req, |outcome| {
            let identity = match (&outcome.decision, req.user_name) {
                (Decision::Accept { .. }, Some(name)) => inst.identity_pairs(name, wants_cui),
                _ => Vec::new(),
            };
            apply(sink, &outcome.decision, &outcome.log_line, &identity, inst.reject_message())
        })
    })
}

/// Hands the User-Name of an EAP-Response/Identity to the sync before the handshake, so a
/// name the policy admits through its domain is looked up in time for the check. Never
/// blocks and decides nothing: 1 when the sync was told, 0 otherwise (e.g. no sync, a name
/// listed exactly or under no domain entry, a full queue).
///
/// # Safety
/// `inst` came from `rlm_rust_instantiate`; `user_name` points to `len` bytes (or is
/// NULL) for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn rlm_rust_discover(
    inst: *const rlm_rust_instance,
    user_name: *const rlm_rust_str,
) -> libc::c_int {
    guarded("rlm_rust_discover", 0, || {
        // SAFETY: NULL-checked; valid for the duration of the call.
        let (Some(inst), Some(name)) = (unsafe { inst.cast::<Instance>().as_ref() }, unsafe { user_name.as_ref() })
        else {
            return 0;
        };
        // SAFETY: points into the request's User-Name VALUE_PAIR.
        match unsafe { borrow(name) } {
            Some(n) => libc::c_int::from(inst.hint(n)),
            None => 0,
        }
    })
}

/// Hands the decision's side effects to the host: on accept the role's reply attributes and
/// the verified identity; on reject the precise reason for the log and Module-Failure-Message,
/// and only the generic message for the device.
fn apply(
    sink: &rlm_rust_sink,
    decision: &Decision<'_>,
    log_line: &str,
    identity: &[(&str, String)],
    reject_message: &str,
) -> rlm_rust_verdict {
    if let Some(log) = sink.log {
        let line = c_text(log_line);
        // SAFETY: host callback, copies the message.
        unsafe { log(sink.ctx, rlm_rust_log_level::RLM_RUST_LOG_INFO, line.as_ptr()) };
    }
    match decision {
        Decision::Accept { reply } => {
            if let Some(add) = sink.add_pair {
                let role = reply.iter().map(|a| (a.attribute.as_str(), a.value.as_str()));
                for (attr, value) in role.chain(identity.iter().map(|(a, v)| (*a, v.as_str()))) {
                    let (a, v) = (c_text(attr), c_text(value));
                    // SAFETY: host callback; it reports failures itself (unknown attribute).
                    unsafe { add(sink.ctx, a.as_ptr(), v.as_ptr()) };
                }
            }
            rlm_rust_verdict::RLM_RUST_ACCEPT
        }
        Decision::Reject(reason) => {
            if let Some(set) = sink.set_reason {
                let (text, message) = (c_text(&format!("rlm_rust: {reason}")), c_text(reject_message));
                // SAFETY: host callback, copies both messages.
                unsafe { set(sink.ctx, text.as_ptr(), message.as_ptr()) };
            }
            rlm_rust_verdict::RLM_RUST_REJECT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_fallback_value() {
        let v = guarded("test", 7, || -> i32 { panic!("forced") });
        assert_eq!(v, 7);
        let v = guarded("test", rlm_rust_verdict::RLM_RUST_FAIL, || -> rlm_rust_verdict {
            let v: Vec<u8> = Vec::new();
            #[allow(clippy::indexing_slicing)]
            let _ = v[3];
            rlm_rust_verdict::RLM_RUST_ACCEPT
        });
        assert_eq!(v, rlm_rust_verdict::RLM_RUST_FAIL);
    }

    #[test]
    fn null_arguments_fail_without_crashing() {
        // SAFETY: NULL is an accepted value for every pointer argument.
        unsafe {
            assert_eq!(
                rlm_rust_check(std::ptr::null(), std::ptr::null(), std::ptr::null()),
                rlm_rust_verdict::RLM_RUST_FAIL
            );
            assert!(rlm_rust_instantiate(std::ptr::null()).is_null());
            assert_eq!(rlm_rust_init(std::ptr::null()), -1);
            rlm_rust_detach(std::ptr::null_mut());
        }
    }
}
