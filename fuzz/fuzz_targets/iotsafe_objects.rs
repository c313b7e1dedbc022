#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rlm_rust_fuzz::iot::objects(data));
