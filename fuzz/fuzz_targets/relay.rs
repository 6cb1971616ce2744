#![no_main]
//! Raw HTTP/1 bytes as the relay reads them (by the rules of `src/h1/`):
//! request heads from clients, classified and rewritten, answer heads and
//! chunked bodies from backends.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pushgate::fuzzing::relay(data));
