//! Event `data` between the two protocols. Pusher carries `data` as a string
//! (usually JSON text); pushgate's messages carry JSON. A Pusher string that
//! is JSON other than a string (an object, array, number, true/false/null)
//! travels as that JSON, so pushgate's own subscribers see an object, not a
//! quoted string; any other text travels as a JSON string of itself. Toward
//! Pusher clients the mapping is undone, so a Pusher trigger reaches Pusher
//! clients as the same value (compacted: whitespace between JSON tokens is
//! not kept, as no JSON reader sees it), and a pushgate publish reaches them
//! as its JSON text.

use std::borrow::Cow;

use serde_json::value::RawValue;

/// The JSON a pushgate message carries for a Pusher `data` string.
pub fn to_hub(data: &str) -> Box<RawValue> {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(data) {
        if !value.is_string() {
            if let Ok(raw) = serde_json::value::to_raw_value(&value) {
                return raw;
            }
        }
    }
    // A string always serialises; null only to have no panic path.
    serde_json::value::to_raw_value(data).unwrap_or_else(|_| RawValue::NULL.to_owned())
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
