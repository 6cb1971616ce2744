//! Counters of WebSocket compression (permessage-deflate): connections that
//! negotiated it, messages compressed (once each, however many sockets send
//! them), frames sent compressed, and their bytes before and after. Kept
//! apart so the sockets have one small thing to count into.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Default)]
pub struct DeflateCounters {
    negotiated: Counter,
    compressed: Counter,
    frames: Counter,
    bytes_before: Counter,
    bytes_after: Counter,
}

impl DeflateCounters {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "ws_deflate_negotiated",
            "WebSocket connections that negotiated permessage-deflate",
            self.negotiated.clone(),
        );
        r.register(
            "ws_deflate_messages_compressed",
            "Payloads compressed (a message shared by many sockets counts once)",
            self.compressed.clone(),
        );
        r.register(
            "ws_deflate_frames",
            "WebSocket frames sent compressed",
            self.frames.clone(),
        );
        r.register(
            "ws_deflate_bytes_before",
            "Payload bytes of the frames sent compressed, before compression",
            self.bytes_before.clone(),
        );
        r.register(
            "ws_deflate_bytes_after",
            "Payload bytes of the frames sent compressed, after compression",
            self.bytes_after.clone(),
        );
    }

    /// A connection agreed on permessage-deflate.
    pub fn negotiated(&self) {
        self.negotiated.inc();
    }

    /// A payload was compressed.
    pub fn compressed_once(&self) {
        self.compressed.inc();
    }

    /// A frame of `before` plain bytes went out as `after` bytes.
    pub fn sent(&self, before: usize, after: usize) {
        self.frames.inc();
        self.bytes_before.inc_by(before as u64);
        self.bytes_after.inc_by(after as u64);
    }
}
