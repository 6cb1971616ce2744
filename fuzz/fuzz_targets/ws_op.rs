#![no_main]
//! WebSocket client op frames.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pushgate::fuzzing::ws_op(data));
