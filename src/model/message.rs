//! A published message as it travels from the broker to every subscriber.
//!
//! The rule this file keeps: a message is serialized to JSON exactly once, when
//! it is created, and every transport shares those bytes. Only the short
//! per-connection cursor is appended per delivery, when it is short.

use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;

/// Channel names: 1–200 characters of ASCII letters, digits and `. _ - : @ =`.
pub const MAX_CHANNEL_LEN: usize = 200;

/// Whether `name` is a valid channel name.
pub fn valid_channel(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_LEN
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@' | b'=')
        })
}

/// The longest event name: Pusher's limit, so a Laravel event class name
/// (`App\Events\OrderShipped`) fits.
pub const MAX_EVENT_LEN: usize = 200;

/// Event names: 1–200 printable ASCII characters other than `"`, so they are
/// safe in an SSE `event:` line; a `\` (Laravel's class names) is escaped
/// once, where the message's JSON is written. Names the gateway itself
/// speaks with are not a publisher's to use ([`reserved_event`]).
pub fn valid_event(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_EVENT_LEN
        && name.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'"')
        && !reserved_event(name)
}

/// Event names only the gateway publishes: `presence` (its join and leave
/// announcements, which Pusher sockets turn into member events) and
/// Pusher's `pusher:` and `pusher_internal:` protocol events. A publisher
/// that could send them could add a member or fake a subscription.
pub fn reserved_event(name: &str) -> bool {
    name == "presence" || name.starts_with("pusher:") || name.starts_with("pusher_internal:")
}

/// One message on one channel.
#[derive(Debug)]
pub struct Message {
    pub channel: Arc<str>,
    pub event: Arc<str>,
    /// Position of this message, unique and increasing within the broker's epoch.
    pub seq: u64,
    /// The broker epoch `seq` belongs to.
    pub epoch: u64,
    /// Publisher-supplied idempotency key, if any.
    pub key: Option<Box<str>>,
    /// When the broker accepted it (for publish-to-delivery latency and TTL).
    pub published_at: Instant,
    /// `{"type":"message","channel":…,"event":…,"id":…,"data":…` — the shared
    /// JSON object without its closing brace; transports add `,"cursor":…}`.
    wire: Bytes,
    /// Compact JSON of `data` alone.
    data_len: usize,
    /// The client that sent it, when one did (see [`crate::model::Origin`]).
    pub origin: Option<Box<crate::model::Origin>>,
    /// The message as a Pusher event, rendered by the first Pusher socket
    /// that delivers it and shared by the rest (every socket of this
    /// instance on the channel gets the same frame); None when the message
    /// has no Pusher form.
    pub pusher_frame: std::sync::OnceLock<Option<Box<str>>>,
    /// The message object without a cursor (`write_json(None)`),
    /// permessage-deflated by the first WebSocket that sends it so, and
    /// shared by the rest (`model/deflated.rs`).
    pub deflated: crate::model::Deflated,
    /// `pusher_frame`, deflated once in the same way.
    pub pusher_deflated: crate::model::Deflated,
}

impl Message {
    pub fn new(
        channel: Arc<str>,
        event: Arc<str>,
        data: &RawValue,
        seq: u64,
        key: Option<Box<str>>,
        epoch: u64,
    ) -> Message {
        let data = data.get();
        let mut wire = BytesMut::with_capacity(64 + channel.len() + event.len() + data.len());
        wire.put_slice(b"{\"type\":\"message\",\"channel\":\"");
        wire.put_slice(channel.as_bytes());
        wire.put_slice(b"\",\"event\":\"");
        for part in event.split_inclusive('\\') {
            wire.put_slice(part.as_bytes());
            if part.ends_with('\\') {
                wire.put_u8(b'\\');
            }
        }
        wire.put_slice(b"\",\"id\":\"");
        wire.put_slice(seq.to_string().as_bytes());
        wire.put_slice(b"\",\"data\":");
        wire.put_slice(data.as_bytes());
        Message {
            channel,
            event,
            seq,
            epoch,
            key,
            published_at: Instant::now(),
            wire: wire.freeze(),
            data_len: data.len(),
            origin: None,
            pusher_frame: std::sync::OnceLock::new(),
            deflated: Default::default(),
            pusher_deflated: Default::default(),
        }
    }

    /// The message id as clients see it.
    pub fn id(&self) -> String {
        self.seq.to_string()
    }

    /// Size of the JSON `data`, for limits.
    pub fn data_len(&self) -> usize {
        self.data_len
    }

    /// The JSON `data` alone (the end of the shared JSON), for transports
    /// that speak another wire format (Pusher).
    pub fn data_text(&self) -> &str {
        let at = self.wire.len() - self.data_len;
        std::str::from_utf8(&self.wire[at..]).unwrap_or("null")
    }

    /// The shared JSON prefix (an object missing its closing brace).
    pub fn wire_prefix(&self) -> &Bytes {
        &self.wire
    }

    /// Append the complete JSON object to `out`, with `cursor` when given.
    pub fn write_json(&self, cursor: Option<&str>, out: &mut BytesMut) {
        let Some(cursor) = cursor else {
            out.reserve(self.wire.len() + 1);
            out.put_slice(&self.wire);
            out.put_u8(b'}');
            return;
        };
        out.reserve(self.wire.len() + cursor.len() + 13);
        out.put_slice(&self.wire);
        out.put_slice(b",\"cursor\":\"");
        out.put_slice(cursor.as_bytes());
        out.put_slice(b"\"}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_json_is_valid_and_shared() {
        let data = serde_json::value::to_raw_value(&serde_json::json!({"a":[1,"x\ny"]})).unwrap();
        let m = Message::new("orders.1".into(), "created".into(), &data, 42, None, 1);
        let mut out = BytesMut::new();
        m.write_json(Some("c1"), &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["channel"], "orders.1");
        assert_eq!(v["event"], "created");
        assert_eq!(v["id"], "42");
        assert_eq!(v["cursor"], "c1");
        assert_eq!(v["data"]["a"][1], "x\ny");
        assert!(
            !out.contains(&b'\n'),
            "no raw newline may reach an SSE data line"
        );
        let mut bare = BytesMut::new();
        m.write_json(None, &mut bare);
        let v: serde_json::Value = serde_json::from_slice(&bare).unwrap();
        assert_eq!((v["id"].as_str(), v.get("cursor")), (Some("42"), None));
        assert_eq!(m.data_text(), r#"{"a":[1,"x\ny"]}"#);
    }

    #[test]
    fn names() {
        assert!(valid_channel("orders.42"));
        assert!(valid_channel("user.alice@example.com"));
        assert!(!valid_channel(""));
        assert!(!valid_channel("a b"));
        assert!(!valid_channel("a~b"));
        assert!(!valid_channel(&"x".repeat(201)));
        assert!(valid_event("created"));
        assert!(!valid_event("a\nb"));
        assert!(!valid_event("a\"b"));
        assert!(valid_event(r"App\Events\OrderShipped"));
        for reserved in [
            "presence",
            "pusher:member_added",
            "pusher_internal:subscription_succeeded",
        ] {
            assert!(!valid_event(reserved), "{reserved}");
        }
        assert!(valid_event("presence.changed") && valid_event("my-pusher:x"));
        assert!(valid_event(&"e".repeat(MAX_EVENT_LEN)));
        assert!(!valid_event(&"e".repeat(MAX_EVENT_LEN + 1)));
    }

    #[test]
    fn a_backslash_in_an_event_name_is_escaped_in_the_json() {
        let data = RawValue::from_string("1".into()).unwrap();
        let m = Message::new("c".into(), r"App\Events\X".into(), &data, 1, None, 1);
        let mut out = BytesMut::new();
        m.write_json(None, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["event"], r"App\Events\X");
    }
}
