//! A Mercure update as a pushgate message, and back.
//!
//! Every update is one message on the hub channel [`HUB_CHANNEL`], so
//! history, Redis scale-out, limits, metrics and the dashboard apply to it
//! as to any message. Its `data` is a JSON object
//! `{"topics":[…],"data":"…","id"?,"type"?,"retry"?,"private"?}`; the first
//! Mercure subscriber that meets the message parses that once and renders
//! the SSE event ([`TopicUpdate`], kept on the message), and every other
//! subscriber only matches topics and copies the frame.
//!
//! Ids: the publisher's id is kept. Without one, the hub's id is the
//! message's place in the hub, `#{epoch}-{seq}`, a fragment as the
//! specification allows (a publisher's id may not start with `#`, so the
//! two never collide); it resumes without a history search.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::form::UpdateForm;
use crate::model::{HistoryPolicy, Message, Publish, TopicUpdate};

/// The pushgate channel every Mercure update travels on. `#` is not a
/// character of client channel names, so no WebSocket, SSE or long-poll
/// client can subscribe to it or publish to it: private updates only ever
/// reach Mercure subscribers, through their tokens.
pub const HUB_CHANNEL: &str = "#mercure";

/// The pushgate event name of every Mercure update.
pub const EVENT: &str = "mercure";

#[derive(Serialize, Deserialize)]
struct Carried<'a> {
    #[serde(borrow)]
    topics: Vec<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    data: std::borrow::Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(
        default,
        rename = "type",
        skip_serializing_if = "Option::is_none",
        borrow
    )]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    private: bool,
}

/// The message that carries `form`; `None` only if it cannot be written
/// as JSON (it always can).
pub(crate) fn to_publish(form: &UpdateForm, history: HistoryPolicy) -> Option<Publish> {
    let carried = Carried {
        topics: form.topics.iter().map(|t| t.as_str().into()).collect(),
        data: form.data.as_str().into(),
        id: form.id.as_deref().map(Into::into),
        kind: form.kind.as_deref().map(Into::into),
        retry: form.retry,
        private: form.private,
    };
    let data: Box<RawValue> = serde_json::value::to_raw_value(&carried).ok()?;
    Some(Publish {
        channel: Arc::from(HUB_CHANNEL),
        event: Arc::from(EVENT),
        data,
        key: None,
        history,
        origin: None,
        binary: false,
    })
}

/// The hub's id of a message that came without one.
pub(crate) fn hub_id(epoch: u64, seq: u64) -> String {
    format!("#{epoch}-{seq}")
}

/// The place a hub id names: `(epoch, seq)`.
pub(crate) fn parse_hub_id(id: &str) -> Option<(u64, u64)> {
    let (epoch, seq) = id.strip_prefix('#')?.split_once('-')?;
    Some((epoch.parse().ok()?, seq.parse().ok()?))
}

/// The id `m` is delivered with.
pub(crate) fn id_of(m: &Message) -> Option<&str> {
    of(m).map(|u| &*u.id)
}

/// `m` as a Mercure update, parsed and rendered once per message; `None`
/// for a message that is not one.
pub(crate) fn of(m: &Message) -> Option<&TopicUpdate> {
    m.topic_update
        .get_or_init(|| {
            if &*m.channel != HUB_CHANNEL {
                return None;
            }
            let c: Carried = serde_json::from_str(m.data_text()).ok()?;
            let id = match &c.id {
                Some(id) => id.to_string(),
                None => hub_id(m.epoch, m.seq),
            };
            let frame = render(&id, &c);
            Some(Box::new(TopicUpdate {
                topics: c.topics.iter().map(|t| Box::from(&**t)).collect(),
                urls: c.topics.iter().map(|t| url::Url::parse(t).ok()).collect(),
                private: c.private,
                id: id.into(),
                frame: frame.into(),
            }))
        })
        .as_deref()
}

/// The SSE event: one `data:` line per line of the data (split on CR, LF
/// or CRLF); id and type were checked free of line breaks on publish.
fn render(id: &str, c: &Carried<'_>) -> String {
    let mut out = String::with_capacity(c.data.len() + id.len() + 32);
    let _ = writeln!(out, "id: {id}");
    if let Some(kind) = &c.kind {
        let _ = writeln!(out, "event: {kind}");
    }
    if let Some(retry) = c.retry {
        let _ = writeln!(out, "retry: {retry}");
    }
    let data = c.data.replace("\r\n", "\n").replace('\r', "\n");
    for line in data.split('\n') {
        let _ = writeln!(out, "data: {line}");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn message(form: &UpdateForm, seq: u64) -> Message {
        let history = HistoryPolicy {
            size: 10,
            ttl: Duration::from_secs(60),
        };
        let p = to_publish(form, history).unwrap();
        Message::new(p.channel, p.event, &p.data, seq, None, 7)
    }

    #[test]
    fn round_trip_and_frame() {
        let form = UpdateForm {
            topics: vec!["https://example.com/a".into(), "b".into()],
            data: "line1\r\nline2\rline3".into(),
            id: None,
            kind: Some("created".into()),
            retry: Some(500),
            private: true,
        };
        let m = message(&form, 42);
        let u = of(&m).unwrap();
        assert_eq!(&*u.id, "#7-42");
        assert_eq!(parse_hub_id(&u.id), Some((7, 42)));
        assert!(u.private);
        assert_eq!(u.topics.len(), 2);
        assert_eq!(
            &*u.frame,
            "id: #7-42\nevent: created\nretry: 500\ndata: line1\ndata: line2\ndata: line3\n\n"
        );
        let given = UpdateForm {
            topics: vec!["t".into()],
            id: Some("urn:uuid:1".into()),
            ..UpdateForm::default()
        };
        let m = message(&given, 1);
        assert_eq!(&*of(&m).unwrap().frame, "id: urn:uuid:1\ndata: \n\n");
        assert_eq!(id_of(&m), Some("urn:uuid:1"));
    }

    #[test]
    fn other_messages_are_not_updates() {
        let data = RawValue::from_string("{\"topics\":[\"x\"],\"data\":\"\"}".into()).unwrap();
        let m = Message::new("orders".into(), "e".into(), &data, 1, None, 1);
        assert!(of(&m).is_none());
        assert_eq!(parse_hub_id("urn:x"), None);
        assert_eq!(parse_hub_id("#1-x"), None);
    }
}
