//! Replays the fuzz inputs without libFuzzer (issue 5 item 4): every committed seed in
//! `fuzz/corpus/<target>/` and every crashing input kept in `fuzz/regressions/<target>/`
//! goes through the same invariant functions the cargo-fuzz targets run
//! (`fuzz/src/rlm.rs`), so a bug a fuzzer found stays fixed where cargo-fuzz is not
//! installed. The IoT SAFE targets are replayed by `iotsafe/iotsafe/tests/fuzz_regressions.rs`.

#[path = "../fuzz/src/rlm.rs"]
#[allow(dead_code)]
mod rlm;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in [fuzz.join("corpus").join(target), fuzz.join("regressions").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        files.extend(entries.map(|e| e.expect("dir entry").path()).filter(|p| p.is_file()));
    }
    files.sort();
    files
}

/// Runs `f` on every input of `target`; fails naming each input that panicked.
fn replay(target: &str, f: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no seeds for {target} in fuzz/corpus/{target}");
    let failed: Vec<String> = files
        .iter()
        .filter(|p| {
            let data = std::fs::read(p).expect("read input");
            catch_unwind(AssertUnwindSafe(|| f(&data))).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: {} of {} inputs fail: {failed:#?}", failed.len(), files.len());
}

#[test]
fn policy_lines() {
    replay("policy_lines", rlm::policy_lines);
}

#[test]
fn policy_json() {
    replay("policy_json", rlm::policy_json);
}

#[test]
fn trustmap() {
    replay("trustmap", rlm::trustmap);
}

#[test]
fn tlsa() {
    replay("tlsa", rlm::tlsa);
}

#[test]
fn cafetch() {
    replay("cafetch", rlm::cafetch);
}

#[test]
fn presented() {
    replay("presented", rlm::presented);
}

#[test]
fn check() {
    replay("check", rlm::check);
}

#[test]
fn name() {
    replay("name", rlm::name);
}

#[test]
fn config() {
    replay("config", rlm::config);
}

/// The fixture trust map the check target uses admits the captured devices and refuses
/// the cross-domain certificate, so the check seeds reach both sides of the decision.
#[test]
fn check_seeds_reach_accept_and_reject() {
    use rlm_rust::check::{Decision, Reason};
    let map = rlm::fixture_trust_map();
    for (dir, attrs, _) in rlm::FIXTURES {
        let attrs = rlm::parse_attributes(attrs);
        let one = |a: &str| attrs.iter().rev().find(|(k, _)| k == a).map(|(_, v)| v.as_str());
        let sans: Vec<&str> = attrs
            .iter()
            .filter(|(k, _)| k == "TLS-Client-Cert-Subject-Alt-Name-Dns")
            .map(|(_, v)| v.as_str())
            .collect();
        let cert = rlm_rust::presented::PresentedCert::from_attributes(one, &sans);
        let req =
            rlm_rust::check::Request { user_name: one("User-Name"), called_station_id: one("Called-Station-Id"), cert };
        let d = rlm_rust::check::check(Some(map), &req);
        if dir == "car54-meters" {
            assert_eq!(d, Decision::Reject(Reason::NoPinMatch), "{dir}");
        } else {
            assert!(matches!(d, Decision::Accept { .. }), "{dir}: {d:?}");
        }
    }
}
