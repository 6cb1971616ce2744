#![no_main]
//! Raw HTTP/1 bytes as the proxy's relay reads them: request heads from
//! clients, answer heads and chunked bodies from backends.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pushgate::fuzzing::relay(data));
