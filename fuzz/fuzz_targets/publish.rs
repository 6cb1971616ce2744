#![no_main]
//! The admin publish body parser.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pushgate::fuzzing::publish(data));
