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
}

/// Re-serialize JSON compactly (no raw newlines can reach an SSE data line).
pub fn compact(raw: &RawValue) -> Option<Box<RawValue>> {
    let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    serde_json::value::to_raw_value(&value).ok()
}
