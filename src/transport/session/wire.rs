//! What every transport writes with: the reset notice's JSON, and the limits
//! that keep a connection's rendered output small.
//!
//! Output is rendered in batches of at most [`BATCH_BYTES`], each handed to
//! the socket before the next is rendered; a long cursor is not repeated in
//! every message (it would multiply a connection's bytes by its channels).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

/// Most bytes of frames a transport renders before handing them to the
/// socket, and then waits for the socket to take them: with what the HTTP
/// engine buffers, this bounds what one connection holds however long its
/// replay or however slowly it reads.
pub const BATCH_BYTES: usize = 64 * 1024;

/// A cursor up to this long is repeated in every message's JSON; a longer
/// one (a connection following many channels) is sent only where a batch
/// ends (WebSocket) or in the `id:` line (SSE) and the poll answer.
pub const INLINE_CURSOR_MAX: usize = 512;

/// JSON for a reset notice: `{"type":"reset","reason":…,"channels":[…],"cursor":…}`.
pub fn reset_json(channels: &[Arc<str>], reason: &str, cursor: &str, out: &mut BytesMut) {
    let v = serde_json::json!({
        "type": "reset",
        "reason": reason,
        "channels": channels.iter().map(|c| &**c).collect::<Vec<_>>(),
        "cursor": cursor,
    });
    if let Ok(bytes) = serde_json::to_vec(&v) {
        out.put_slice(&bytes);
    }
}
