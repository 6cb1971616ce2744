#![no_main]
//! Client-supplied cursors.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pushgate::fuzzing::cursor(data));
