//! hosts.toml as `launcher hosts check` and `spawn --hosts` read it: any text gives a
//! hosts file or a bad-input error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(file) = cmesh_launcher::hosts::parse(text, "fuzz.toml") {
            assert!(!file.hosts.is_empty());
        }
    }
});
