//! A message on its way in: what ingest, the admin API and clients hand to
//! the broker, with the history policy its channel rule resolved.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

/// History retention for one channel, resolved from the channel rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryPolicy {
    pub size: usize,
    pub ttl: Duration,
}

/// A message to publish.
#[derive(Debug)]
pub struct Publish {
    pub channel: Arc<str>,
    pub event: Arc<str>,
    pub data: Box<RawValue>,
    /// Publisher-supplied idempotency key: a retry with the same key while the
    /// first message is still in history returns the first message's id.
    pub key: Option<Box<str>>,
    pub history: HistoryPolicy,
    /// The client that sent it, when one did.
    pub origin: Option<Origin>,
    /// `data` is a JSON string holding bytes in base64 (a binary publish):
    /// JSON clients get it with `"encoding":"base64"`, binary WebSocket
    /// clients get the bytes (`model/message.rs`).
    pub binary: bool,
}

/// Who sent a message, when a client did (a Pusher client event) or when
/// the publisher named a connection to leave out (the Pusher API's
/// `socket_id`): Pusher never delivers a message back to that socket, and
/// names the sender's user on presence channels. It travels with the
/// message through every broker, so the exclusion holds across instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The Pusher socket id (`123.456`) not to deliver to.
    pub socket_id: Box<str>,
    /// The sender's `user_id` on a presence channel.
    pub user_id: Option<Box<str>>,
}

/// The `data` of a binary message given in base64 (`data_base64`): a JSON
/// string of the bytes re-encoded in the canonical form, and how many bytes
/// they are (what `max_message` bounds). None for text that is not base64.
pub fn base64_data(b64: &str) -> Option<(Box<RawValue>, usize)> {
    use base64::Engine;
    let bytes = base64_bytes(b64)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let data = serde_json::value::to_raw_value(&encoded).ok()?;
    Some((data, bytes.len()))
}

/// The bytes of a `data_base64` field (standard alphabet, padded; spaces
/// around it ignored), `None` when it is not base64: the one reading of
/// the field for publishes and a client's `send`.
pub fn base64_bytes(b64: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
}

/// The largest JSON body that must be read to find `max_message` bytes in
/// its `data_base64`: the base64 (4 characters per 3 bytes) twice over,
/// since JSON encoders may escape every `/` of it as `\/` (PHP's
/// `json_encode` does), and room for the other fields.
pub fn base64_body_limit(max_message: usize) -> usize {
    max_message
        .div_ceil(3)
        .saturating_mul(4)
        .saturating_mul(2)
        .saturating_add(1024)
}

/// Re-serialize JSON compactly (no raw newlines can reach an SSE data line).
pub fn compact(raw: &RawValue) -> Option<Box<RawValue>> {
    let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    serde_json::value::to_raw_value(&value).ok()
}
