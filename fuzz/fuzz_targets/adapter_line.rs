//! cmesh_fuzz_targets::adapter_line under libFuzzer (its doc says what the input is).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cmesh_fuzz_targets::adapter_line(data));
