//! Pusher protocol 7 frames: what a client sends, parsed, and what the
//! server sends, rendered. Pure: no I/O, no state, so the socket driver
//! (`transport/pusher/`) only decides and this file only speaks the wire.
//!
//! The rule this file keeps: every server→client event carries its `data` as
//! a JSON *string* (Pusher's double encoding), except `pusher:error`, whose
//! `data` is an object as the protocol documents. A client's `channel_data`
//! and client-event `data` are kept as the exact text received: a signature
//! is checked over that text, never over a re-serialised copy.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Pusher's error codes that the socket driver sends (`pusher:error` data
/// or close frames).
pub mod code {
    /// Close: the app key is unknown (pusher-js does not retry 4000–4099).
    pub const UNKNOWN_APP: u16 = 4001;
    /// Close: `protocol` not one this server speaks (5–7).
    pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
    /// Close: no `protocol` sent.
    pub const NO_PROTOCOL: u16 = 4008;
    /// `pusher:error`: a subscription's signature is missing or wrong.
    /// Close: disconnected by the operator (pusher-js does not retry).
    pub const UNAUTHORIZED: u16 = 4009;
    /// Close: over the app's `max_connections`, Pusher's "over connection
    /// quota" (pusher-js does not retry).
    pub const OVER_QUOTA: u16 = 4004;
    /// Close: over the gateway's `max_connections` (retry after backing off).
    pub const OVER_CAPACITY: u16 = 4100;
    /// Close: reconnect at once (graceful shutdown, a slow client).
    pub const RECONNECT: u16 = 4200;
    /// Close: the server's ping got no answer within `pong_timeout`.
    pub const PONG_TIMEOUT: u16 = 4201;
    /// `pusher:error`: a client event over the rate or the size limit.
    pub const CLIENT_EVENT_REJECTED: u16 = 4301;
}

/// A frame a client sent.
#[derive(Debug)]
pub enum ClientFrame {
    Ping,
    Pong,
    Subscribe(Subscribe),
    Unsubscribe {
        channel: String,
    },
    /// `pusher:signin`: `user_data` as the exact text the app signed.
    Signin {
        auth: String,
        user_data: String,
    },
    /// A `client-*` event (not yet judged: the driver checks the channel).
    ClientEvent {
        event: String,
        channel: String,
        /// The `data` member as received: a JSON string or any JSON text.
        data: Box<RawValue>,
    },
}

/// `pusher:subscribe`'s data.
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub struct Subscribe {
    pub channel: String,
    #[serde(default)]
    pub auth: Option<String>,
    /// The presence member's JSON, as the exact text the application signed.
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// Why a frame is not one the server acts on; each is answered with a
/// `pusher:error` and the socket stays open.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is not a JSON object with an event: {0}")]
    NotJson(String),
    #[error("unsupported event `{0}`")]
    UnknownEvent(String),
    #[error("malformed data for `{0}`")]
    BadData(&'static str),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
}

/// Parse one text frame.
pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
    let envelope: Envelope<'_> =
        serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let data = envelope.data;
    match &*envelope.event {
        "pusher:ping" => Ok(ClientFrame::Ping),
        "pusher:pong" => Ok(ClientFrame::Pong),
        "pusher:subscribe" => {
            let sub: Subscribe = object_of(data.as_deref(), "pusher:subscribe")?;
            Ok(ClientFrame::Subscribe(sub))
        }
        "pusher:unsubscribe" => {
            #[derive(Deserialize)]
            struct Unsubscribe {
                channel: String,
            }
            let u: Unsubscribe = object_of(data.as_deref(), "pusher:unsubscribe")?;
            Ok(ClientFrame::Unsubscribe { channel: u.channel })
        }
        "pusher:signin" => {
            #[derive(Deserialize)]
            struct Signin {
                auth: String,
                user_data: String,
            }
            let s: Signin = object_of(data.as_deref(), "pusher:signin")?;
            Ok(ClientFrame::Signin {
                auth: s.auth,
                user_data: s.user_data,
            })
        }
        event if event.starts_with("client-") => {
            let channel = envelope
                .channel
                .ok_or(FrameError::BadData("client event"))?;
            let data = data.unwrap_or_else(|| RawValue::NULL.to_owned());
            Ok(ClientFrame::ClientEvent {
                event: event.to_owned(),
                channel,
                data,
            })
        }
        other => Err(FrameError::UnknownEvent(other.chars().take(64).collect())),
    }
}

/// The data of a `pusher:` event: an object, or (as some clients send) a
/// JSON string holding one.
fn object_of<T: serde::de::DeserializeOwned>(
    data: Option<&RawValue>,
    event: &'static str,
) -> Result<T, FrameError> {
    let text = data.map(RawValue::get).ok_or(FrameError::BadData(event))?;
    if let Ok(inner) = serde_json::from_str::<String>(text) {
        return serde_json::from_str(&inner).map_err(|_| FrameError::BadData(event));
    }
    serde_json::from_str(text).map_err(|_| FrameError::BadData(event))
}

/// A presence member from a subscription's `channel_data`.
#[derive(Debug)]
pub struct Member {
    /// `user_id`, a string or a number in the JSON, as a string.
    pub user_id: String,
    /// `user_info`, when present.
    pub user_info: Option<Box<RawValue>>,
}

/// The member a presence subscription's `channel_data` names, or None when
/// it has no usable `user_id`.
pub fn member(channel_data: &str) -> Option<Member> {
    #[derive(Deserialize)]
    struct Data {
        user_id: Value,
        #[serde(default)]
        user_info: Option<Box<RawValue>>,
    }
    let d: Data = serde_json::from_str(channel_data).ok()?;
    let user_id = match d.user_id {
        Value::String(s) if !s.is_empty() => s,
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(Member {
        user_id,
        user_info: d.user_info,
    })
}

/// An event with its data as a JSON string (Pusher's double encoding).
fn event(event: &str, channel: Option<&str>, data: &str, user_id: Option<&str>) -> String {
    let mut v = json!({ "event": event, "data": data });
    if let Some(c) = channel {
        v["channel"] = c.into();
    }
    if let Some(u) = user_id {
        v["user_id"] = u.into();
    }
    v.to_string()
}

/// `pusher:connection_established`.
pub fn connection_established(socket_id: &str, activity_timeout_secs: u64) -> String {
    let data = json!({ "socket_id": socket_id, "activity_timeout": activity_timeout_secs });
    event(
        "pusher:connection_established",
        None,
        &data.to_string(),
        None,
    )
}

/// `pusher:error`: its data an object, `code` null when Pusher has none.
pub fn error(code: Option<u16>, message: &str) -> String {
    json!({ "event": "pusher:error", "data": { "code": code, "message": message } }).to_string()
}

pub fn ping() -> String {
    event("pusher:ping", None, "{}", None)
}

pub fn pong() -> String {
    event("pusher:pong", None, "{}", None)
}

/// `pusher_internal:subscription_succeeded` on a public or private channel.
pub fn subscribed(channel: &str) -> String {
    event(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        "{}",
        None,
    )
}

/// `pusher_internal:subscription_succeeded` on a presence channel: the
/// members, each once, with their `user_info` (null when none was given).
pub fn presence_subscribed(channel: &str, members: &[(String, Option<Box<RawValue>>)]) -> String {
    let ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
    let hash: serde_json::Map<String, Value> = members
        .iter()
        .map(|(id, info)| {
            let info = info
                .as_deref()
                .and_then(|i| serde_json::from_str(i.get()).ok())
                .unwrap_or(Value::Null);
            (id.clone(), info)
        })
        .collect();
    let data = json!({ "presence": { "ids": ids, "hash": hash, "count": ids.len() } });
    event(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &data.to_string(),
        None,
    )
}

/// `pusher:subscription_error` for a refused subscription (`status` as
/// pusher-js reports an auth endpoint's: 401 unauthorized, 403 forbidden,
/// 429, 503).
pub fn subscription_error(channel: &str, status: u16, message: &str) -> String {
    let data = json!({ "type": "AuthError", "error": message, "status": status });
    event(
        "pusher:subscription_error",
        Some(channel),
        &data.to_string(),
        None,
    )
}

pub fn member_added(channel: &str, user_id: &str, user_info: Option<&RawValue>) -> String {
    let info: Value = user_info
        .and_then(|i| serde_json::from_str(i.get()).ok())
        .unwrap_or(Value::Null);
    let data = json!({ "user_id": user_id, "user_info": info });
    event(
        "pusher_internal:member_added",
        Some(channel),
        &data.to_string(),
        None,
    )
}

pub fn member_removed(channel: &str, user_id: &str) -> String {
    let data = json!({ "user_id": user_id });
    event(
        "pusher_internal:member_removed",
        Some(channel),
        &data.to_string(),
        None,
    )
}

/// `pusher:signin_success` with the `user_data` text the app signed.
pub fn signin_success(user_data: &str) -> String {
    let data = json!({ "user_data": user_data });
    event("pusher:signin_success", None, &data.to_string(), None)
}

/// `pusher_internal:watchlist_events`: each event's name (`online` or
/// `offline`) with its user ids.
pub fn watchlist_events(events: &[(&str, Vec<&str>)]) -> String {
    let events: Vec<Value> = events
        .iter()
        .map(|(name, ids)| json!({ "name": name, "user_ids": ids }))
        .collect();
    let data = json!({ "events": events });
    event(
        "pusher_internal:watchlist_events",
        None,
        &data.to_string(),
        None,
    )
}

/// `pusher_internal:subscription_count` on a channel.
pub fn subscription_count(channel: &str, count: usize) -> String {
    let data = json!({ "subscription_count": count });
    event(
        "pusher_internal:subscription_count",
        Some(channel),
        &data.to_string(),
        None,
    )
}

/// `pusher:cache_miss`: a cache channel had no event to send on subscribe.
pub fn cache_miss(channel: &str) -> String {
    event("pusher:cache_miss", Some(channel), "{}", None)
}

/// A channel event: a hub message's JSON as Pusher's data string
/// (`data::to_pusher`), with the sender's `user_id` on presence channels.
pub fn channel_event(name: &str, channel: &str, data: &RawValue, user_id: Option<&str>) -> String {
    event(name, Some(channel), &super::data::to_pusher(data), user_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn every_server_event_but_error_double_encodes_its_data() {
        let e = v(&connection_established("1.2", 120));
        let data: Value = v(e["data"].as_str().unwrap());
        assert_eq!(data, json!({"socket_id": "1.2", "activity_timeout": 120}));
        assert_eq!(v(&subscribed("c"))["data"], "{}");
        assert_eq!(v(&pong())["data"], "{}");
        let err = v(&error(Some(4301), "slow down"));
        assert_eq!(err["data"]["code"], 4301, "pusher:error data is an object");
        assert_eq!(v(&error(None, "x"))["data"]["code"], Value::Null);
        let raw = RawValue::from_string(r#"{"a":1}"#.into()).unwrap();
        let ev = v(&channel_event("e", "c", &raw, Some("u")));
        assert_eq!(
            (ev["data"].as_str(), ev["user_id"].as_str()),
            (Some(r#"{"a":1}"#), Some("u"))
        );
        assert!(ev.get("user_id").is_some());
        let ev = v(&channel_event("e", "c", &raw, None));
        assert!(ev.get("user_id").is_none());
    }

    #[test]
    fn presence_members_are_listed_once_with_their_info() {
        let info = RawValue::from_string(r#"{"name":"A"}"#.into()).unwrap();
        let members = vec![("1".to_string(), Some(info)), ("2".to_string(), None)];
        let e = v(&presence_subscribed("presence-x", &members));
        let data = v(e["data"].as_str().unwrap());
        assert_eq!(
            data,
            json!({"presence": {"ids": ["1", "2"], "hash": {"1": {"name": "A"}, "2": null}, "count": 2}})
        );
        let added = v(&member_added("presence-x", "1", None));
        assert_eq!(
            v(added["data"].as_str().unwrap()),
            json!({"user_id": "1", "user_info": null})
        );
    }

    #[test]
    fn client_frames_parse() {
        assert!(matches!(
            parse(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(ClientFrame::Ping)
        ));
        let sub = parse(
            r#"{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s","channel_data":"{\"user_id\":1}"}}"#,
        )
        .unwrap();
        let ClientFrame::Subscribe(sub) = sub else {
            panic!("{sub:?}")
        };
        assert_eq!(
            sub,
            Subscribe {
                channel: "presence-a".into(),
                auth: Some("k:s".into()),
                channel_data: Some(r#"{"user_id":1}"#.into()),
            }
        );
        // Some clients send data as a string of JSON.
        assert!(matches!(
            parse(r#"{"event":"pusher:unsubscribe","data":"{\"channel\":\"a\"}"}"#),
            Ok(ClientFrame::Unsubscribe { channel }) if channel == "a"
        ));
        match parse(r#"{"event":"client-x","channel":"private-a","data":{"b": 2}}"#).unwrap() {
            ClientFrame::ClientEvent { data, .. } => assert_eq!(data.get(), r#"{"b": 2}"#),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_frames_are_named() {
        assert!(matches!(parse("not json"), Err(FrameError::NotJson(_))));
        assert!(matches!(
            parse(r#"{"data":1}"#),
            Err(FrameError::NotJson(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"nope"}"#),
            Err(FrameError::UnknownEvent(e)) if e == "nope"
        ));
        assert!(matches!(
            parse(r#"{"event":"pusher:subscribe","data":{"auth":"x"}}"#),
            Err(FrameError::BadData("pusher:subscribe"))
        ));
        assert!(matches!(
            parse(r#"{"event":"client-x","data":{}}"#),
            Err(FrameError::BadData("client event"))
        ));
    }

    #[test]
    fn members_come_from_channel_data() {
        let m = member(r#"{"user_id":42,"user_info":{"n":1}}"#).unwrap();
        assert_eq!(m.user_id, "42");
        assert_eq!(m.user_info.unwrap().get(), r#"{"n":1}"#);
        assert!(member(r#"{"user_id":"a"}"#).unwrap().user_info.is_none());
        assert!(member(r#"{"user_id":""}"#).is_none());
        assert!(member(r#"{"user_info":{}}"#).is_none());
        assert!(member("nope").is_none());
    }

    #[test]
    fn signin_and_user_frames() {
        let f = parse(
            r#"{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\"id\":\"1\"}"}}"#,
        );
        assert!(matches!(f, Ok(ClientFrame::Signin { auth, user_data })
            if auth == "k:s" && user_data == r#"{"id":"1"}"#));
        assert!(matches!(
            parse(r#"{"event":"pusher:signin","data":{"auth":"k:s"}}"#),
            Err(FrameError::BadData("pusher:signin"))
        ));
        let ok = v(&signin_success(r#"{"id":"1"}"#));
        assert_eq!(
            v(ok["data"].as_str().unwrap()),
            json!({"user_data": "{\"id\":\"1\"}"})
        );
        let w = v(&watchlist_events(&[
            ("online", vec!["a"]),
            ("offline", vec!["b", "c"]),
        ]));
        assert_eq!(w["event"], "pusher_internal:watchlist_events");
        assert_eq!(
            v(w["data"].as_str().unwrap()),
            json!({"events": [{"name": "online", "user_ids": ["a"]}, {"name": "offline", "user_ids": ["b", "c"]}]})
        );
        let c = v(&subscription_count("news", 3));
        assert_eq!(
            (c["channel"].as_str(), v(c["data"].as_str().unwrap())),
            (Some("news"), json!({"subscription_count": 3}))
        );
        assert_eq!(v(&cache_miss("cache-x"))["event"], "pusher:cache_miss");
    }
}
