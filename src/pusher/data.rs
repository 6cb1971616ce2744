//! Event `data` between the two protocols. Pusher carries `data` as a string
//! (usually JSON text); pushgate's messages carry JSON. A Pusher string that
//! is JSON other than a string (an object, array, number, true/false/null)
//! travels as that JSON, so pushgate's own subscribers see an object, not a
//! quoted string; any other text travels as a JSON string of itself. Toward
//! Pusher clients the mapping is undone, so a Pusher trigger reaches Pusher
//! clients as the same text, byte for byte but for the whitespace between
//! JSON tokens (dropped: a raw line break must not reach an SSE data line,
//! and no JSON reader sees it); key order, number spelling and escapes are
//! kept (an encrypted channel's payload, a big integer). A pushgate publish
//! reaches them as its JSON text.

use std::borrow::Cow;

use serde_json::value::RawValue;

/// The JSON a pushgate message carries for a Pusher `data` string.
pub fn to_hub(data: &str) -> Box<RawValue> {
    let text = data.trim_start();
    if !text.starts_with('"') && serde_json::from_str::<&RawValue>(data).is_ok() {
        if let Ok(raw) = RawValue::from_string(compact(data)) {
            return raw;
        }
    }
    // A string always serialises; null only to have no panic path.
    serde_json::value::to_raw_value(data).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// Valid JSON text without the whitespace between its tokens; everything
/// inside strings (escapes included) as it was.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// The `data` string Pusher clients receive for a message's JSON.
pub fn to_pusher(data: &RawValue) -> Cow<'_, str> {
    let text = data.get();
    if text.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(text) {
            return Cow::Owned(s);
        }
    }
    Cow::Borrowed(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(data: &str) -> String {
        to_pusher(&to_hub(data)).into_owned()
    }

    #[test]
    fn json_objects_travel_as_json_and_come_back_compact() {
        assert_eq!(to_hub(r#"{"a": 1}"#).get(), r#"{"a":1}"#);
        assert_eq!(
            round_trip(r#"{"a":1,"b":[true,null]}"#),
            r#"{"a":1,"b":[true,null]}"#
        );
        assert_eq!(round_trip("42"), "42");
    }

    #[test]
    fn json_keeps_its_key_order_numbers_and_escapes() {
        let sent =
            "{ \"z\": 1.50,\n \"a\": 123456789012345678901234567890, \"s\": \"a \\\" b\\n\" }";
        let kept = r#"{"z":1.50,"a":123456789012345678901234567890,"s":"a \" b\n"}"#;
        assert_eq!(to_hub(sent).get(), kept);
        assert_eq!(round_trip(sent), kept);
        let encrypted = r#"{"nonce":"q+/=","ciphertext":"AbC/+=="}"#;
        assert_eq!(round_trip(encrypted), encrypted, "relayed untouched");
        assert!(
            !to_hub("[1,\n2]").get().contains('\n'),
            "no raw line break reaches SSE"
        );
    }

    #[test]
    fn other_text_travels_as_a_string_of_itself() {
        assert_eq!(to_hub("hello").get(), r#""hello""#);
        assert_eq!(round_trip("hello"), "hello");
        assert_eq!(
            round_trip(r#""quoted""#),
            r#""quoted""#,
            "a JSON string stays quoted"
        );
        assert_eq!(round_trip(""), "");
        assert_eq!(round_trip("{not json"), "{not json");
    }

    #[test]
    fn a_pushgate_publish_reaches_pusher_as_its_json_text() {
        let raw = RawValue::from_string(r#"{"x":[1,2]}"#.into()).unwrap();
        assert_eq!(to_pusher(&raw), r#"{"x":[1,2]}"#);
        let s = RawValue::from_string(r#""a\"b""#.into()).unwrap();
        assert_eq!(to_pusher(&s), r#"a"b"#);
    }
}
