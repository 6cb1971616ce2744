//! Hub messages to a Pusher socket: each as a Pusher event on the channel's
//! name as the app knows it, its data double-encoded (`pusher::data`).
//!
//! A message whose origin is this socket (its own client event, or an API
//! trigger that named it in `socket_id`) is skipped. On presence channels,
//! the hub's `presence` join and leave announcements become
//! `pusher_internal:member_added` / `member_removed` (each member is
//! announced once, on its first connection and after its last), except
//! the socket's own member, which it already knows from
//! `subscription_succeeded`. Pusher has no resume, so resets are not sent.

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::socket::PusherSocket;
use crate::hub::Message;
use crate::pusher::ChannelKind;
use crate::pusher::frames;
use crate::transport::session::{BATCH_BYTES, Delivery};

/// A presence announcement's data (`broker/presence.rs`).
#[derive(Deserialize)]
struct Announcement<'a> {
    action: &'a str,
    subject: String,
    #[serde(default, borrow)]
    info: Option<&'a RawValue>,
}

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
                    if let Some(frame) = self.render(m) {
                        self.outgoing.text(&frame);
                        delivered += 1;
                    }
                }
            }
            self.out.drain(..taken);
            self.state.count_delivered(delivered);
            self.sent.inc_by(delivered);
            self.write().await?;
        }
        Ok(())
    }

    /// The Pusher frame for `m`, or None when this socket does not get it.
    fn render(&self, m: &Message) -> Option<String> {
        if m.origin
            .as_ref()
            .is_some_and(|o| *o.socket_id == *self.socket_id)
        {
            return None;
        }
        let joined = self.joined.get(&m.channel)?;
        let data: &RawValue = serde_json::from_str(m.data_text()).ok()?;
        if joined.kind == ChannelKind::Presence && &*m.event == "presence" {
            if let Ok(a) = serde_json::from_str::<Announcement<'_>>(data.get()) {
                if joined.user_id.as_deref() == Some(a.subject.as_str()) {
                    return None;
                }
                return match a.action {
                    "join" => Some(frames::member_added(&joined.name, &a.subject, a.info)),
                    "leave" => Some(frames::member_removed(&joined.name, &a.subject)),
                    _ => None,
                };
            }
        }
        let user_id = m
            .origin
            .as_ref()
            .and_then(|o| o.user_id.as_deref())
            .filter(|_| joined.kind == ChannelKind::Presence);
        Some(frames::channel_event(&m.event, &joined.name, data, user_id))
    }
}
