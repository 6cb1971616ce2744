//! Client frames on the WebSocket: parsing the JSON ops, and the JSON the
//! server answers with. Pure functions, so they are unit-tested and fuzzed
//! without a socket.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The largest `ref` we echo back (a client could otherwise make every error
/// frame as large as its own frame).
const MAX_REF_LEN: usize = 128;

/// One client op, flat: which fields matter depends on `op`.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub op: String,
    #[serde(rename = "ref")]
    pub reference: Option<Box<RawValue>>,
    pub channel: Option<String>,
    pub cursor: Option<String>,
    pub event: Option<String>,
    pub data: Option<Box<RawValue>>,
    pub token: Option<String>,
}

#[derive(Debug)]
pub enum Op {
    Subscribe {
        channel: String,
        cursor: Option<String>,
    },
    Unsubscribe {
        channel: String,
    },
    Publish {
        channel: String,
        event: Option<String>,
        data: Box<RawValue>,
    },
    Send {
        data: Box<RawValue>,
    },
    Auth {
        token: String,
    },
    Ping,
}

/// A frame the server could not accept, with the `ref` to answer to.
#[derive(Debug, PartialEq, Eq)]
pub struct OpError {
    pub reference: Option<String>,
    pub code: &'static str,
    pub message: String,
}

/// Parse one text frame into an op plus its `ref` (raw JSON, echoed back).
pub fn parse(text: &str) -> Result<(Op, Option<String>), OpError> {
    let env: Envelope = serde_json::from_str(text).map_err(|e| OpError {
        reference: None,
        code: "bad_request",
        message: format!("invalid JSON op: {e}"),
    })?;
    let reference = env
        .reference
        .as_ref()
        .map(|r| r.get().to_string())
        .filter(|r| r.len() <= MAX_REF_LEN);
    let fail = |code, message: &str| OpError {
        reference: reference.clone(),
        code,
        message: message.to_string(),
    };
    let need_channel = || {
        env.channel
            .clone()
            .ok_or_else(|| fail("bad_request", "missing `channel`"))
    };
    let op = match env.op.as_str() {
        "subscribe" => Op::Subscribe {
            channel: need_channel()?,
            cursor: env.cursor.clone(),
        },
        "unsubscribe" => Op::Unsubscribe {
            channel: need_channel()?,
        },
        "publish" => Op::Publish {
            channel: need_channel()?,
            event: env.event.clone(),
            data: env
                .data
                .clone()
                .ok_or_else(|| fail("bad_request", "missing `data`"))?,
        },
        "send" => Op::Send {
            data: env
                .data
                .clone()
                .ok_or_else(|| fail("bad_request", "missing `data`"))?,
        },
        "auth" => Op::Auth {
            token: env
                .token
                .clone()
                .ok_or_else(|| fail("bad_request", "missing `token`"))?,
        },
        "ping" => Op::Ping,
        _ => {
            return Err(fail(
                "unknown_op",
                "unknown op; expected subscribe, unsubscribe, publish, send, auth or ping",
            ));
        }
    };
    Ok((op, reference))
}

/// An op a client sends as a binary frame: its JSON head, `\n`, then the
/// bytes, which are the op's `data`.
#[derive(Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Publish {
        channel: String,
        event: Option<String>,
    },
    Send,
}

/// Parse one binary frame: the op, its `ref`, and the bytes after the head.
pub fn parse_binary(frame: &[u8]) -> Result<(BinaryOp, Option<String>, &[u8]), OpError> {
    let bad = |reference, message: &str| OpError {
        reference,
        code: "bad_request",
        message: message.to_string(),
    };
    let Some(at) = frame.iter().position(|&b| b == b'\n') else {
        return Err(bad(
            None,
            "a binary frame is a JSON op, a newline, then the bytes",
        ));
    };
    let head = std::str::from_utf8(&frame[..at]).map_err(|_| bad(None, "the head is not UTF-8"))?;
    let env: Envelope =
        serde_json::from_str(head).map_err(|e| bad(None, &format!("invalid JSON op: {e}")))?;
    let reference = env
        .reference
        .as_ref()
        .map(|r| r.get().to_string())
        .filter(|r| r.len() <= MAX_REF_LEN);
    if env.data.is_some() {
        return Err(bad(
            reference,
            "the bytes are the data: no `data` in the head",
        ));
    }
    let op = match (env.op.as_str(), env.channel) {
        ("publish", Some(channel)) => BinaryOp::Publish {
            channel,
            event: env.event,
        },
        ("publish", None) => return Err(bad(reference, "missing `channel`")),
        ("send", _) => BinaryOp::Send,
        _ => {
            return Err(OpError {
                reference,
                code: "unknown_op",
                message: "a binary frame carries publish or send".into(),
            });
        }
    };
    Ok((op, reference, &frame[at + 1..]))
}

/// `{"type":"ack","ref":…,…extra}`
pub fn ack(reference: Option<&str>, extra: serde_json::Value) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("type".into(), "ack".into());
    insert_ref(&mut obj, reference);
    if let serde_json::Value::Object(m) = extra {
        obj.extend(m);
    }
    serde_json::Value::Object(obj).to_string()
}

/// `{"type":"error","ref":…,"code":…,"message":…}`
pub fn error(reference: Option<&str>, code: &str, message: &str) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("type".into(), "error".into());
    insert_ref(&mut obj, reference);
    obj.insert("code".into(), code.into());
    obj.insert("message".into(), message.into());
    serde_json::Value::Object(obj).to_string()
}

fn insert_ref(obj: &mut serde_json::Map<String, serde_json::Value>, reference: Option<&str>) {
    if let Some(r) = reference.and_then(|r| serde_json::from_str(r).ok()) {
        obj.insert("ref".into(), r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ops() {
        let (op, r) =
            parse(r#"{"op":"subscribe","channel":"a","cursor":"1~a~2","ref":7}"#).unwrap();
        assert!(matches!(op, Op::Subscribe { ref channel, cursor: Some(_) } if channel == "a"));
        assert_eq!(r.as_deref(), Some("7"));
        let (op, r) = parse(r#"{"op":"ping","ref":"x"}"#).unwrap();
        assert!(matches!(op, Op::Ping));
        let v: serde_json::Value =
            serde_json::from_str(&ack(r.as_deref(), serde_json::json!({}))).unwrap();
        assert_eq!(v, serde_json::json!({"type": "ack", "ref": "x"}));
    }

    #[test]
    fn refuses_bad_frames() {
        assert_eq!(parse("nope").unwrap_err().code, "bad_request");
        assert_eq!(parse(r#"{"channel":"a"}"#).unwrap_err().code, "bad_request");
        let e = parse(r#"{"op":"dance","ref":3}"#).unwrap_err();
        assert_eq!((e.code, e.reference.as_deref()), ("unknown_op", Some("3")));
        assert_eq!(
            parse(r#"{"op":"subscribe","ref":1}"#).unwrap_err().message,
            "missing `channel`"
        );
        assert_eq!(
            parse(r#"{"op":"publish","channel":"a"}"#).unwrap_err().code,
            "bad_request"
        );
        let long_ref = format!(r#"{{"op":"x","ref":"{}"}}"#, "r".repeat(500));
        assert_eq!(parse(&long_ref).unwrap_err().reference, None);
    }

    #[test]
    fn error_json_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&error(Some("1"), "forbidden", "no \"way\"")).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["ref"], 1);
        assert_eq!(v["code"], "forbidden");
        assert_eq!(v["message"], "no \"way\"");
    }
}
