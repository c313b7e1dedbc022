//! The invariants the fuzz targets check, one function per target taking the raw input.
//!
//! Kept free of libFuzzer so the same code replays `fuzz/regressions/*` and `fuzz/corpus/*`
//! under a plain `cargo test` (root `tests/fuzz_regressions.rs`, iotsafe
//! `iotsafe/tests/fuzz_regressions.rs`), where cargo-fuzz is not available.

pub mod iot;
pub mod rlm;
