//! Hub messages to a Pusher socket: each as a Pusher event on the channel's
//! name as the app knows it, its data double-encoded (`pusher::data`).
//!
//! A message whose origin is this socket (its own client event, or an API
//! trigger that named it in `socket_id`) is skipped. On presence channels,
//! the hub's `presence` join and leave announcements become
//! `pusher_internal:member_added` / `member_removed` (each member is
//! announced once, on its first connection and after its last), except
//! the socket's own member, which it already knows from
//! `subscription_succeeded`. On a cache channel, the event sent on
//! subscribing (and anything older) is not sent again when it arrives
//! live. Pusher has no resume, so resets are not sent.

use std::borrow::Cow;

use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::announcement::Announcement;
use super::socket::{Joined, PusherSocket};
use super::user::UserDelivery;
use crate::hub::Message;
use crate::pusher::ChannelKind;
use crate::pusher::frames;
use crate::transport::session::{BATCH_BYTES, Delivery};

impl PusherSocket {
    /// Write what the session drained, a batch of about [`BATCH_BYTES`] at
    /// a time.
    pub(super) async fn deliver(&mut self) -> Result<(), WsError> {
        while !self.out.is_empty() {
            let mut taken = 0;
            let mut delivered = 0u64;
            for item in &self.out {
                if self.outgoing.len() >= BATCH_BYTES {
                    break;
                }
                taken += 1;
                if !self.session.advance(item) {
                    continue;
                }
                if let Delivery::Message(m) = item {
                    match self.user_delivery(m) {
                        Some(UserDelivery::Frame(frame)) => {
                            self.outgoing.text(&frame);
                            delivered += 1;
                            continue;
                        }
                        Some(UserDelivery::Terminate) => self.terminated = true,
                        Some(UserDelivery::Skip) => continue,
                        None => {}
                    }
                    let joined = self.joined.get(&m.channel);
                    match render(m, &self.socket_id, joined) {
                        // Shared by every socket: compressed once too.
                        Some(Cow::Borrowed(frame)) => {
                            self.outgoing.shared_text(frame, &m.pusher_deflated)
                        }
                        Some(Cow::Owned(frame)) => self.outgoing.text(&frame),
                        None => continue,
                    }
                    delivered += 1;
                }
            }
            self.out.drain(..taken);
            self.state.count_delivered(delivered);
            self.sent.inc_by(delivered);
            self.write().await?;
        }
        Ok(())
    }
}

/// The Pusher frame for `m` on the channel this socket `joined` as, or None
/// when socket `socket_id` does not get it. An ordinary event is the same
/// frame for every socket here (one app owns the channel, so one name), so
/// it is rendered once per message (`Message::pusher_frame`), not once per
/// socket; presence announcements depend on who the socket is.
fn render<'m>(
    m: &'m Message,
    socket_id: &str,
    joined: Option<&Joined>,
) -> Option<std::borrow::Cow<'m, str>> {
    if m.origin
        .as_ref()
        .is_some_and(|o| &*o.socket_id == socket_id)
    {
        return None;
    }
    let joined = joined?;
    if joined
        .cached
        .is_some_and(|(epoch, seq)| m.epoch == epoch && m.seq <= seq)
        && super::cache::is_cacheable(m)
    {
        // Already sent as the cache channel's last event (`cache.rs`), or
        // older than it. Presence announcements and client events share
        // the history's numbers but are never cached: they still go out.
        return None;
    }
    if joined.kind == ChannelKind::Presence && &*m.event == "presence" {
        let data: &RawValue = serde_json::from_str(m.data_text()).ok()?;
        if let Ok(a) = serde_json::from_str::<Announcement<'_>>(data.get()) {
            if joined.user_id.as_deref() == Some(a.subject.as_str()) {
                return None;
            }
            return match a.action {
                "join" => Some(frames::member_added(&joined.name, &a.subject, a.info).into()),
                "leave" => Some(frames::member_removed(&joined.name, &a.subject).into()),
                _ => None,
            };
        }
    }
    let frame = m.pusher_frame.get_or_init(|| {
        let data: &RawValue = serde_json::from_str(m.data_text()).ok()?;
        let user_id = m
            .origin
            .as_ref()
            .and_then(|o| o.user_id.as_deref())
            .filter(|_| joined.kind == ChannelKind::Presence);
        Some(frames::channel_event(&m.event, &joined.name, data, user_id).into())
    });
    frame.as_deref().map(std::borrow::Cow::Borrowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Origin;
    use serde_json::{Value, json};

    fn message(channel: &str, event: &str, data: Value, from: Option<(&str, &str)>) -> Message {
        let raw = serde_json::value::to_raw_value(&data).unwrap();
        let mut m = Message::new(channel.into(), event.into(), &raw, 1, None, 1);
        m.origin = from.map(|(socket_id, user_id)| {
            Box::new(Origin {
                socket_id: socket_id.into(),
                user_id: Some(user_id.into()),
            })
        });
        m
    }

    fn joined(name: &str, kind: ChannelKind, user_id: Option<&str>) -> Joined {
        Joined {
            name: name.into(),
            kind,
            user_id: user_id.map(String::from),
            user_info: None,
            cached: None,
        }
    }

    fn parse(frame: Option<std::borrow::Cow<'_, str>>) -> Value {
        serde_json::from_str(&frame.expect("a frame")).unwrap()
    }

    #[test]
    fn an_event_is_rendered_once_for_every_socket() {
        let m = message("news", "e", json!({"a": 1}), None);
        let j = joined("news", ChannelKind::Public, None);
        let (a, b) = (render(&m, "1.1", Some(&j)), render(&m, "1.2", Some(&j)));
        let (Some(Cow::Borrowed(a)), Some(Cow::Borrowed(b))) = (a, b) else {
            panic!("both sockets share the message's one frame");
        };
        assert!(std::ptr::eq(a, b), "one rendering, not one per socket");
        assert_eq!(
            serde_json::from_str::<Value>(a).unwrap(),
            json!({"event": "e", "channel": "news", "data": "{\"a\":1}"})
        );
    }

    #[test]
    fn a_message_from_this_socket_never_comes_back() {
        // An API trigger naming `socket_id`, or this socket's client event.
        let m = message("b:news", "e", json!({"a": 1}), Some(("1.2", "u")));
        let j = joined("news", ChannelKind::Public, None);
        assert!(render(&m, "1.2", Some(&j)).is_none());
        let f = parse(render(&m, "1.3", Some(&j)));
        assert_eq!(
            f,
            json!({"event": "e", "channel": "news", "data": "{\"a\":1}"})
        );
        assert!(render(&m, "1.3", None).is_none(), "not joined: nothing");
    }

    #[test]
    fn a_cache_channels_event_sent_on_subscribing_is_not_sent_again_live() {
        let mut j = joined("cache-news", ChannelKind::Public, None);
        j.cached = Some((1, 5));
        let at = |seq| {
            let raw = serde_json::value::to_raw_value(&json!({"n": seq})).unwrap();
            Message::new("cache-news".into(), "e".into(), &raw, seq, None, 1)
        };
        assert!(render(&at(5), "1.1", Some(&j)).is_none(), "the cached one");
        assert!(render(&at(4), "1.1", Some(&j)).is_none(), "an older one");
        let raw = serde_json::value::to_raw_value(&json!({"n": 4})).unwrap();
        let client = Message::new("cache-news".into(), "client-e".into(), &raw, 4, None, 1);
        assert_eq!(
            parse(render(&client, "1.1", Some(&j)))["event"],
            "client-e",
            "a client event is never cached, so never sent already"
        );
        assert_eq!(parse(render(&at(6), "1.1", Some(&j)))["data"], "{\"n\":6}");
        let mut other_epoch = at(5);
        other_epoch.epoch = 2;
        assert!(
            render(&other_epoch, "1.1", Some(&j)).is_some(),
            "another epoch's numbers say nothing"
        );
    }

    #[test]
    fn presence_channels_name_the_sender_and_turn_announcements_into_members() {
        let j = joined("presence-r", ChannelKind::Presence, Some("me"));
        let m = message("presence-r", "client-x", json!("hi"), Some(("9.9", "u1")));
        let f = parse(render(&m, "1.1", Some(&j)));
        assert_eq!(
            (f["data"].as_str(), f["user_id"].as_str()),
            (Some("hi"), Some("u1"))
        );
        let join = message(
            "presence-r",
            "presence",
            json!({"action": "join", "subject": "u2", "info": {"n": 2}}),
            None,
        );
        let f = parse(render(&join, "1.1", Some(&j)));
        assert_eq!(f["event"], "pusher_internal:member_added");
        let mine = message(
            "presence-r",
            "presence",
            json!({"action": "leave", "subject": "me"}),
            None,
        );
        assert!(
            render(&mine, "1.1", Some(&j)).is_none(),
            "its own member is known"
        );
        let left = message(
            "presence-r",
            "presence",
            json!({"action": "leave", "subject": "u2"}),
            None,
        );
        assert_eq!(
            parse(render(&left, "1.1", Some(&j)))["event"],
            "pusher_internal:member_removed"
        );
    }
}
