//! The stored form of a message, `seq:unix_ms:{"e":event,"k":key,"d":data}`
//! (plus `"o":socket_id,"u":user_id` for a message a client sent, and
//! `"b":true` when `d` is bytes in base64, so they stay bytes on every
//! instance and in every replay):
//! one string that is both a history entry (a sorted-set member scored by
//! its id) and the pub/sub payload, so every instance decodes a live message
//! and a replayed one the same way.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

use super::unavailable;
use crate::broker::{BrokerError, Publish};
use crate::hub::Message;
use crate::model::Origin;

/// The stored form of a message: `seq:unix_ms:{"e":event,"k":key,"d":data}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    e: &'a str,
    #[serde(borrow)]
    k: Option<&'a str>,
    #[serde(borrow)]
    d: &'a RawValue,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    o: Option<&'a str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    u: Option<&'a str>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    b: bool,
}

pub(super) fn encode_body(p: &Publish) -> Result<String, BrokerError> {
    serde_json::to_string(&Body {
        e: &p.event,
        k: p.key.as_deref(),
        d: &p.data,
        o: p.origin.as_ref().map(|o| &*o.socket_id),
        u: p.origin.as_ref().and_then(|o| o.user_id.as_deref()),
        b: p.binary,
    })
    .map_err(unavailable)
}

pub(super) fn decode_member(
    channel: Arc<str>,
    epoch: u64,
    member: &str,
) -> Result<Message, BrokerError> {
    let bad = || unavailable("malformed history entry");
    let mut parts = member.splitn(3, ':');
    let seq = parts
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(bad)?;
    let ms = parts
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(bad)?;
    let body: Body<'_> = serde_json::from_str(parts.next().ok_or_else(bad)?).map_err(|_| bad())?;
    let mut msg = Message::encoded(
        channel,
        body.e.into(),
        body.d,
        seq,
        body.k.map(Into::into),
        epoch,
        body.b,
    );
    msg.origin = body.o.map(|socket_id| {
        Box::new(Origin {
            socket_id: socket_id.into(),
            user_id: body.u.map(Into::into),
        })
    });
    // Latency and age count from the publish, on whichever instance it was.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(ms);
    let age = Duration::from_millis(now_ms.saturating_sub(ms));
    msg.published_at = Instant::now().checked_sub(age).unwrap_or(msg.published_at);
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::HistoryPolicy;

    fn publish(event: &str, key: Option<&str>, data: &str) -> Publish {
        Publish {
            channel: "orders.7".into(),
            event: event.into(),
            data: RawValue::from_string(data.to_owned()).unwrap(),
            key: key.map(Into::into),
            history: HistoryPolicy {
                size: 10,
                ttl: Duration::from_secs(60),
            },
            origin: None,
            binary: false,
        }
    }

    #[test]
    fn bytes_stay_bytes_through_the_stored_form() {
        let mut p = publish("blob", None, r#""AP8KgCI=""#);
        p.binary = true;
        let member = format!("8:{}:{}", 1_700_000_000_000u64, encode_body(&p).unwrap());
        let msg = decode_member("orders.7".into(), 1, &member).unwrap();
        assert_eq!(
            msg.bytes().map(|b| b.to_vec()),
            Some(vec![0, 0xff, b'\n', 0x80, b'"'])
        );
        // A JSON message's stored form is as before: no flag.
        let text = encode_body(&publish("e", None, r#""AP8KgCI=""#)).unwrap();
        assert!(!text.contains("\"b\""), "{text}");
        let msg = decode_member("orders.7".into(), 1, &format!("9:1:{text}")).unwrap();
        assert!(!msg.is_binary());
    }

    #[test]
    fn a_senders_socket_and_user_travel_with_the_message() {
        let mut p = publish("client-typing", None, r#""hi""#);
        p.origin = Some(Origin {
            socket_id: "12.34".into(),
            user_id: Some("u-1".into()),
        });
        let member = format!("7:{}:{}", 1_700_000_000_000u64, encode_body(&p).unwrap());
        let msg = decode_member("orders.7".into(), 1, &member).unwrap();
        assert_eq!(msg.origin.as_deref(), p.origin.as_ref());
        let bare = encode_body(&publish("e", None, "1")).unwrap();
        assert!(!bare.contains("\"o\""), "no origin, no field: {bare}");
        let msg = decode_member("c".into(), 1, &format!("8:1:{bare}")).unwrap();
        assert_eq!(msg.origin, None);
    }

    #[test]
    fn a_stored_message_decodes_to_what_was_published() {
        let body = encode_body(&publish("created", Some("k-1"), r#"{"id":7,"s":"a:b"}"#)).unwrap();
        let member = format!("42:{}:{body}", 1_700_000_000_000u64);
        let msg = decode_member("orders.7".into(), 0xabc, &member).unwrap();
        assert_eq!(msg.seq, 42);
        assert_eq!(&*msg.channel, "orders.7");
        assert_eq!(&*msg.event, "created");
        assert_eq!(msg.key.as_deref(), Some("k-1"));
        let wire = std::str::from_utf8(msg.wire_prefix()).unwrap();
        assert!(wire.ends_with(r#""data":{"id":7,"s":"a:b"}"#), "{wire}");
    }

    #[test]
    fn a_malformed_entry_is_an_error_not_a_panic() {
        for member in [
            "",
            "x",
            "1",
            "1:2",
            "1:2:",
            "1:2:{}",
            "a:2:{\"e\":\"m\",\"k\":null,\"d\":1}",
            "1:b:{\"e\":\"m\",\"k\":null,\"d\":1}",
            "1:2:{\"e\":\"m\",\"d\":",
        ] {
            assert!(
                decode_member("c".into(), 1, member).is_err(),
                "{member:?} decoded"
            );
        }
    }

    #[test]
    fn age_counts_from_the_publish() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let body = encode_body(&publish("m", None, "1")).unwrap();
        let msg = decode_member("c".into(), 1, &format!("1:{}:{body}", now_ms - 5_000)).unwrap();
        let age = msg.published_at.elapsed();
        assert!(age >= Duration::from_millis(4_900), "age {age:?}");
    }
}
