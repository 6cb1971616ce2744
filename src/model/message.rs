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

/// The text of `data` when it is a JSON string that needs no unescaping
/// (base64 never does).
fn quoted(data: &str) -> Option<&str> {
    let text = data.strip_prefix('"')?.strip_suffix('"')?;
    (!text.contains('\\')).then_some(text)
}

/// The base64 text of `data`, checked to decode; `None` when a binary
/// message's `data` has no bytes.
fn base64_of(data: &str) -> Option<&str> {
    use base64::Engine;
    let text = quoted(data)?;
    let mut scratch = [0u8; 3];
    // Checked four characters at a time (padding only at the end), so that
    // no buffer the size of the bytes is made for it.
    let engine = base64::engine::general_purpose::STANDARD;
    let body = text.len().saturating_sub(4);
    let valid = text.len() % 4 == 0
        && !text[..body].contains('=')
        && text
            .as_bytes()
            .chunks(4)
            .all(|group| engine.decode_slice(group, &mut scratch).is_ok());
    valid.then_some(text)
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
    /// A binary message's `data` is its bytes in base64, followed by
    /// `,"encoding":"base64"`.
    wire: Bytes,
    /// Where `,"data":` starts in `wire`: what precedes it is the head of a
    /// binary frame ([`Message::write_binary`]).
    head_len: usize,
    /// Compact JSON of `data` alone.
    data_len: usize,
    /// `data` holds bytes (a JSON string of their base64).
    binary: bool,
    /// `data` is base64 that decodes (checked once, when the message is
    /// made). The bytes themselves are not kept: each binary frame decodes
    /// them straight into its own buffer, as cheap as the copy it makes
    /// anyway, where a decoded copy would stay beside the base64 (3/4 of
    /// its size again) for as long as the message sits in history.
    decodable: bool,
    /// The client that sent it, when one did (see [`crate::model::Origin`]).
    pub origin: Option<Box<crate::model::Origin>>,
    /// The message as a Pusher event, rendered by the first Pusher socket
    /// that delivers it and shared by the rest (every socket of this
    /// instance on the channel gets the same frame); None when the message
    /// has no Pusher form.
    pub pusher_frame: std::sync::OnceLock<Option<Box<str>>>,
    /// The message as a Mercure update, parsed and rendered by the first
    /// Mercure subscriber that looks at it and shared by the rest; None
    /// when the message is not one.
    pub topic_update: std::sync::OnceLock<Option<Box<crate::model::TopicUpdate>>>,
    /// The message object without a cursor (`write_json(None)`),
    /// permessage-deflated by the first WebSocket that sends it so, and
    /// shared by the rest (`model/deflated.rs`).
    pub deflated: crate::model::Deflated,
    /// `pusher_frame`, deflated once in the same way.
    pub pusher_deflated: crate::model::Deflated,
    /// The message as one whole SSE event (`id:` line with the cursor
    /// after it, then `event:` and `data:`), rendered by the first SSE
    /// subscriber that sends it alone and shared by every other whose
    /// cursor reads the same after it: subscribers of the same channels
    /// differ in nothing else (`transport/sse/stream.rs`).
    pub sse_event: std::sync::OnceLock<Bytes>,
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
        Self::encoded(channel, event, data, seq, key, epoch, false)
    }

    /// [`Message::new`], saying whether `data` is bytes in base64 (a JSON
    /// string), as a binary publish carries them.
    pub fn encoded(
        channel: Arc<str>,
        event: Arc<str>,
        data: &RawValue,
        seq: u64,
        key: Option<Box<str>>,
        epoch: u64,
        binary: bool,
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
        wire.put_u8(b'"');
        let head_len = wire.len();
        wire.put_slice(b",\"data\":");
        wire.put_slice(data.as_bytes());
        if binary {
            wire.put_slice(b",\"encoding\":\"base64\"");
        }
        Message {
            channel,
            event,
            seq,
            epoch,
            key,
            published_at: Instant::now(),
            wire: wire.freeze(),
            head_len,
            data_len: data.len(),
            binary,
            decodable: binary && base64_of(data).is_some(),
            origin: None,
            pusher_frame: std::sync::OnceLock::new(),
            topic_update: std::sync::OnceLock::new(),
            deflated: Default::default(),
            pusher_deflated: Default::default(),
            sse_event: std::sync::OnceLock::new(),
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
        let at = self.head_len + b",\"data\":".len();
        std::str::from_utf8(&self.wire[at..at + self.data_len]).unwrap_or("null")
    }

    /// Whether `data` holds bytes (sent as base64 to JSON clients).
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// Whether the message has bytes to send as a binary frame: false for
    /// a JSON message, and for bytes that came in broken from another
    /// instance (they then travel as their JSON form).
    pub fn has_bytes(&self) -> bool {
        self.decodable
    }

    /// The bytes of a binary message, decoded afresh (not kept: see
    /// `decodable`); None when it [has none](Message::has_bytes).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        let text = quoted(self.data_text()).filter(|_| self.decodable)?;
        base64::engine::general_purpose::STANDARD.decode(text).ok()
    }

    /// Append the payload of a binary WebSocket frame to `out`: the
    /// message's JSON without `data`, with `"encoding":"binary"` and
    /// `cursor` when given, a `\n`, then the bytes. The JSON never holds a
    /// raw newline, so the first one ends it. False (and nothing written)
    /// when the message has no bytes.
    pub fn write_binary(&self, cursor: Option<&str>, out: &mut BytesMut) -> bool {
        use base64::Engine;
        let Some(text) = quoted(self.data_text()).filter(|_| self.decodable) else {
            return false;
        };
        let most = base64::decoded_len_estimate(text.len());
        let cursor_len = cursor.map_or(0, |c| c.len() + 12);
        let start = out.len();
        out.reserve(self.head_len + cursor_len + 24 + most);
        out.put_slice(&self.wire[..self.head_len]);
        out.put_slice(b",\"encoding\":\"binary\"");
        if let Some(cursor) = cursor {
            out.put_slice(b",\"cursor\":\"");
            out.put_slice(cursor.as_bytes());
            out.put_u8(b'"');
        }
        out.put_slice(b"}\n");
        let at = out.len();
        out.resize(at + most, 0);
        match base64::engine::general_purpose::STANDARD.decode_slice(text, &mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                true
            }
            // Checked when the message was made: never.
            Err(_) => {
                out.truncate(start);
                false
            }
        }
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
    fn binary_data_is_base64_to_json_clients_and_bytes_in_a_binary_frame() {
        let bytes: &[u8] = &[0, 0xff, b'\n', 0x80, b'"'];
        let b64 = serde_json::value::to_raw_value("AP8KgCI=").unwrap();
        let m = Message::encoded("bin.1".into(), "blob".into(), &b64, 9, None, 1, true);
        assert!(m.is_binary());
        let mut json = BytesMut::new();
        m.write_json(Some("c9"), &mut json);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            (v["data"].as_str(), v["encoding"].as_str()),
            (Some("AP8KgCI="), Some("base64"))
        );
        assert_eq!(
            (v["id"].as_str(), v["cursor"].as_str()),
            (Some("9"), Some("c9"))
        );
        assert_eq!(m.data_text(), "\"AP8KgCI=\"");
        let mut frame = BytesMut::new();
        assert!(m.write_binary(Some("c9"), &mut frame));
        let at = frame.iter().position(|&b| b == b'\n').unwrap();
        let head: serde_json::Value = serde_json::from_slice(&frame[..at]).unwrap();
        assert_eq!(head["encoding"], "binary");
        assert_eq!(
            (head["channel"].as_str(), head["event"].as_str()),
            (Some("bin.1"), Some("blob"))
        );
        assert_eq!(
            (head["id"].as_str(), head["cursor"].as_str()),
            (Some("9"), Some("c9"))
        );
        assert!(head.get("data").is_none());
        assert_eq!(&frame[at + 1..], bytes);
        // Nothing decoded is kept: the message is its wire form alone.
        assert_eq!(m.bytes().as_deref(), Some(bytes));
        let mut again = BytesMut::new();
        assert!(m.write_binary(Some("c9"), &mut again));
        assert_eq!(again, frame, "each frame decodes the same bytes");
        // Base64 that does not decode has no bytes: it travels as JSON.
        for broken in [
            r#""AP8K gCI=""#,
            r#""AA==AP8K""#,
            r#""AP8""#,
            r#""A\u0041==""#,
        ] {
            let data = serde_json::value::RawValue::from_string(broken.into()).unwrap();
            let m = Message::encoded("bin.1".into(), "blob".into(), &data, 9, None, 1, true);
            assert!(!m.has_bytes() && m.bytes().is_none(), "{broken}");
            assert!(!m.write_binary(None, &mut BytesMut::new()), "{broken}");
        }
        // A JSON message has no bytes and no binary frame.
        let data = serde_json::value::to_raw_value("AP8KgCI=").unwrap();
        let text = Message::new("bin.1".into(), "blob".into(), &data, 10, None, 1);
        assert!(!text.write_binary(None, &mut BytesMut::new()));
        let mut json = BytesMut::new();
        text.write_json(None, &mut json);
        assert!(!json.windows(8).any(|w| w == b"encoding"));
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
