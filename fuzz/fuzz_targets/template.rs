#![no_main]
//! Template parsing and rendering against arbitrary bodies.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pushgate::fuzzing::template(data));
