//! Client events (`client-*`): what one Pusher socket sends to the others
//! on a channel, when the app allows it (`client_events`).
//!
//! Only on private- and presence- channels this socket has joined; the data
//! is forwarded unchanged (a string or any JSON), with the sender's
//! `user_id` on presence channels. The event is published into the hub
//! with its origin, so it reaches every other subscriber on every instance
//! (pushgate's own too) and never comes back to the sender. At most
//! `client_event_rate` a second per socket, and none over the app's
//! `max_message`: over either, `pusher:error` 4301 and the socket stays open.

use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::socket::PusherSocket;
use crate::model::{Origin, Publish, valid_event};
use crate::pusher::frames::{self, code};
use crate::pusher::{AppEvent, ChannelKind, data};

impl PusherSocket {
    pub(super) async fn client_event(
        &mut self,
        event: String,
        channel: String,
        raw: Box<RawValue>,
    ) -> Result<(), WsError> {
        match self.judge_client_event(&event, &channel, &raw) {
            Ok(publish) => {
                let user_id = publish.origin.as_ref().and_then(|o| o.user_id.clone());
                if let Err(error) = self.state.publish(publish).await {
                    return self
                        .send(frames::error(None, &format!("not delivered: {error}")))
                        .await;
                }
                self.report(AppEvent::ClientEvent {
                    channel,
                    event,
                    data: raw,
                    socket_id: self.socket_id.to_string(),
                    user_id: user_id.map(String::from),
                });
                Ok(())
            }
            Err((code, message)) => self.send(frames::error(code, &message)).await,
        }
    }

    /// The publish a client event becomes, or the error it is answered with.
    fn judge_client_event(
        &mut self,
        event: &str,
        channel: &str,
        raw: &RawValue,
    ) -> Result<Publish, (Option<u16>, String)> {
        if !self.app.config.client_events {
            return Err((None, "client events are not enabled for this app".into()));
        }
        let kind = ChannelKind::of(channel);
        if !matches!(kind, ChannelKind::Private | ChannelKind::Presence) {
            return Err((
                None,
                "client events are only allowed on private and presence channels".into(),
            ));
        }
        if !valid_event(event) {
            return Err((None, "invalid event name".into()));
        }
        let hub = self
            .app
            .hub_channel(channel)
            .filter(|h| self.joined.contains_key(h))
            .ok_or_else(|| (None, format!("not subscribed to `{channel}`")))?;
        let text = data::to_pusher(raw);
        if text.len() > self.app.config.max_message {
            return Err((
                Some(code::CLIENT_EVENT_REJECTED),
                format!(
                    "Client event rejected: data over {} bytes",
                    self.app.config.max_message
                ),
            ));
        }
        if !self.take_client_event() {
            return Err((
                Some(code::CLIENT_EVENT_REJECTED),
                format!(
                    "Client event rejected due to rate limit ({}/s)",
                    self.app.config.client_event_rate
                ),
            ));
        }
        let user_id = self
            .joined
            .get(&hub)
            .and_then(|j| j.user_id.as_deref())
            .map(Box::from);
        Ok(Publish {
            history: self.settings.rules.history_for(&hub),
            channel: hub,
            event: event.into(),
            data: data::to_hub(&text),
            key: None,
            origin: Some(Origin {
                socket_id: self.socket_id.clone(),
                user_id,
            }),
            binary: false,
        })
    }

    /// One more client event in this second's window, if the rate allows.
    fn take_client_event(&mut self) -> bool {
        let now = Instant::now();
        let (start, count) = &mut self.window;
        if now.duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        if *count >= self.app.config.client_event_rate {
            return false;
        }
        *count += 1;
        true
    }
}
