#![no_main]
//! Client WebSocket frames through the permessage-deflate reader.
libfuzzer_sys::fuzz_target!(|data: &[u8]| pushgate::fuzzing::ws_inflate(data));
