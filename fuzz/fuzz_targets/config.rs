#![no_main]
//! The config loader must answer any file with a Config or errors, never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pushgate::fuzzing::config(data));
