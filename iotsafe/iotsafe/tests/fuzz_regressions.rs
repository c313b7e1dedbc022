//! Replays the IoT SAFE fuzz inputs without libFuzzer: every seed in
//! `fuzz/corpus/iotsafe_*/` and every crashing input kept in `fuzz/regressions/iotsafe_*/`
//! (at the repository top) goes through the invariant functions the cargo-fuzz targets
//! run (`fuzz/src/iot.rs`), so a bug a fuzzer found stays fixed without cargo-fuzz.

#[path = "../../../fuzz/src/iot.rs"]
mod iot;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
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
fn tlv() {
    replay("iotsafe_tlv", iot::tlv);
}

#[test]
fn objects() {
    replay("iotsafe_objects", iot::objects);
}
