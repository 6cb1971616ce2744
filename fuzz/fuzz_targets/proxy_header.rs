#![no_main]
//! The PROXY protocol header at the start of a public connection.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pushgate::fuzzing::proxy_header(data));
