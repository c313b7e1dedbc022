//! Replays the fuzz inputs without libFuzzer: every committed seed in
//! `fuzz/corpus/<target>/` and every crashing input kept in `fuzz/regressions/<target>/`
//! goes through the same invariant functions the cargo-fuzz targets run
//! (`fuzz/src/rlm.rs`), so a bug a fuzzer found stays fixed where cargo-fuzz is not
//! installed. The IoT SAFE targets are replayed by `iotsafe/iotsafe/tests/fuzz_regressions.rs`.

// The fuzz crate is a workspace of its own (built by cargo-fuzz with a sanitizer), so the
// invariants are one source file both compile rather than a crate in two workspaces.
#[path = "../fuzz/src/rlm.rs"]
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

/// Each check seed named `<outcome>.<what>` gets that decision on the fixture trust map,
/// and the seeds reach the accept and every reject reason past the trust map: the
/// committed corpus exercises both sides of every step.
#[test]
fn check_seeds_decide_as_named() {
    let mut seen = std::collections::BTreeSet::new();
    for p in inputs("check").iter().filter(|p| p.parent().is_some_and(|d| d.ends_with("corpus/check"))) {
        let file = p.file_name().and_then(|f| f.to_str()).expect("file name");
        let Some((label, _)) = file.split_once('.') else { continue };
        let got = rlm::check_outcome(&std::fs::read(p).expect("read seed"));
        assert_eq!(got, label, "{file}");
        seen.insert(got);
    }
    for want in [
        "Accept",
        "InvalidName",
        "NoSsid",
        "UnknownSsid",
        "NameNotAllowed",
        "Capture",
        "NotPublished",
        "DiscoveryPending",
        "NoAssociationMatch",
    ] {
        assert!(seen.contains(want), "no check seed is decided {want}");
    }
}

/// The presented seeds named `ok.<what>` are accepted captures, `refused.<what>` refused
/// ones; both kinds are there.
#[test]
fn presented_seeds_decide_as_named() {
    let (mut ok, mut refused) = (0, 0);
    for p in inputs("presented").iter().filter(|p| p.parent().is_some_and(|d| d.ends_with("corpus/presented"))) {
        let file = p.file_name().and_then(|f| f.to_str()).expect("file name");
        let accepted = rlm::presented_accepts(&std::fs::read(p).expect("read seed"));
        match file.split_once('.').map(|(l, _)| l) {
            Some("ok") => {
                assert!(accepted, "{file} is refused");
                ok += 1;
            }
            Some("refused") => {
                assert!(!accepted, "{file} is accepted");
                refused += 1;
            }
            _ => {}
        }
    }
    assert!(ok > 0 && refused > 0, "presented seeds: {ok} accepted, {refused} refused");
}

/// The fixture certificates are built deterministically (Ed25519), so the digests a check
/// input can carry and the seeds that name certificates by index stay meaningful.
#[test]
fn check_fixture_is_deterministic() {
    let fx = rlm::fixture();
    assert_eq!(fx.known.len(), 12);
    let again = rlm::fixture();
    assert!(std::ptr::eq(fx, again));
    // Two independent builds of the same certificate are byte-identical.
    let der: Vec<Vec<u8>> = fx.known.iter().map(|k| k.cert.to_der().expect("DER")).collect();
    let rebuilt = rlm::build_known();
    assert_eq!(rebuilt.iter().map(|k| k.cert.to_der().expect("DER")).collect::<Vec<_>>(), der);
    for (k, label) in fx.known.iter().zip(["cars-ca", "meters-ca", "car54"]) {
        assert_eq!(k.label, label);
    }
}
