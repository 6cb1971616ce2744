//! `pusher:signin` and what a signed-in socket gets: its user's messages
//! (`#server-to-user-{id}`), the app's `terminate_connections`, and the
//! online and offline events of the users on its watchlist.
//!
//! Signing in is checked like a subscription: the app's signature over
//! `socket_id::user::user_data`, the exact text received. A signed-in
//! socket follows its user's hub channel (`pusher/users.rs`) as a presence
//! member, and the hub channel of each user it watches as a plain
//! follower; a watched channel's presence joins and leaves, which the
//! presence layer announces once across every instance, are the watchlist's
//! `online` and `offline`. Nothing else on a watched channel reaches the
//! watcher. These follows are the socket's own, not Pusher channels: they
//! do not count toward its channel limit or the app's occupancy.

use std::collections::HashMap;

use serde::Deserialize;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::socket::PusherSocket;
use crate::hub::Message;
use crate::model::SlowClient;
use crate::pusher::frames::{self, code};
use crate::pusher::users::{self, NO_HISTORY, SERVER_TO_USER, SignedIn, TERMINATE_EVENT, User};
use crate::transport::session::SubscriptionPolicy;

/// What a user hub message means to this socket.
pub(super) enum UserDelivery {
    /// A frame to write.
    Frame(String),
    /// The app terminated the user's connections: close with 4009.
    Terminate,
    /// Nothing for this socket.
    Skip,
}

/// A presence announcement's action and subject.
#[derive(Deserialize)]
struct Announcement<'a> {
    action: &'a str,
    subject: String,
}

fn follow_terms(presence: bool) -> SubscriptionPolicy {
    SubscriptionPolicy {
        slow_client: SlowClient::Disconnect,
        presence,
        history: NO_HISTORY,
        checked: 0,
    }
}

impl PusherSocket {
    /// Answer one `pusher:signin`.
    pub(super) async fn signin(&mut self, auth: &str, user_data: &str) -> Result<(), WsError> {
        match self.sign_in(auth, user_data).await {
            Ok(frames) => {
                for frame in frames {
                    self.outgoing.text(&frame);
                }
                self.write().await
            }
            Err(message) => {
                self.send(frames::error(Some(code::UNAUTHORIZED), &message))
                    .await
            }
        }
    }

    /// Check the signature and the user, follow its channels; the frames
    /// to send (success, then the watchlist's current state).
    async fn sign_in(&mut self, auth: &str, user_data: &str) -> Result<Vec<String>, String> {
        if !self
            .app
            .signer
            .user_auth_valid(&self.socket_id, user_data, auth)
        {
            self.state.metrics.auth_failed("pusher_signature");
            return Err("Invalid signature".into());
        }
        let User { id, watchlist } =
            users::parse_user_data(user_data).map_err(|e| e.to_string())?;
        if let Some(current) = &self.user {
            if current.id != id {
                return Err("this connection is signed in as another user".into());
            }
            return Ok(vec![frames::signin_success(user_data)]);
        }
        let hub = self
            .app
            .user_hub(&id)
            .ok_or_else(|| users::UserDataError::IdTooLong.to_string())?;
        let mut watched = HashMap::with_capacity(watchlist.len());
        for other in watchlist {
            match self.app.user_hub(&other) {
                Some(h) if h != hub => {
                    watched.insert(h, other);
                }
                _ => {}
            }
        }
        let mut replay = Vec::new();
        self.session.set_member(Some(id.clone()), None);
        self.session
            .subscribe(&hub, follow_terms(true), None, &mut replay)
            .await
            .map_err(|e| e.to_string())?;
        let mut online = Vec::new();
        let mut offline = Vec::new();
        for (h, other) in &watched {
            // A watch that cannot follow is offline to this socket; the
            // sign-in itself stands.
            if self
                .session
                .subscribe(h, follow_terms(false), None, &mut replay)
                .await
                .is_err()
            {
                continue;
            }
            if self.state.presence.list(h).await.is_empty() {
                offline.push(other.as_str());
            } else {
                online.push(other.as_str());
            }
        }
        if self.client.identity.is_none() {
            self.state.connections.set_subject(self.conn_id, Some(&id));
        }
        let mut out = vec![frames::signin_success(user_data)];
        let events: Vec<(&str, Vec<&str>)> = [("online", online), ("offline", offline)]
            .into_iter()
            .filter(|(_, ids)| !ids.is_empty())
            .collect();
        if !events.is_empty() {
            out.push(frames::watchlist_events(&events));
        }
        let watched_ids = watched.len();
        self.user = Some(SignedIn { id, hub, watched });
        tracing::debug!(watched = watched_ids, "pusher user signed in");
        Ok(out)
    }

    /// A `pusher:subscribe` to `#server-to-user-{id}` (pusher-js sends it
    /// after signing in): succeeds for the user this socket signed in as,
    /// whose channel it already follows; refused for anyone else.
    pub(super) async fn subscribe_server_to_user(&mut self, name: &str) -> Result<(), WsError> {
        let mine = users::server_to_user(name)
            .is_some_and(|id| self.user.as_ref().is_some_and(|u| u.id == id));
        if mine {
            return self.send(frames::subscribed(name)).await;
        }
        self.outgoing.text(&frames::error(
            Some(code::UNAUTHORIZED),
            "sign in as this user to receive its messages",
        ));
        self.send(frames::subscription_error(
            name,
            403,
            "not signed in as this user",
        ))
        .await
    }

    /// What message `m` of a user hub channel means here, or None when it
    /// is on no user channel of this socket.
    pub(super) fn user_delivery(&self, m: &Message) -> Option<UserDelivery> {
        let user = self.user.as_ref()?;
        if m.channel == user.hub {
            return Some(match &*m.event {
                TERMINATE_EVENT => UserDelivery::Terminate,
                "presence" => UserDelivery::Skip,
                event => {
                    let Ok(data) = serde_json::from_str(m.data_text()) else {
                        return Some(UserDelivery::Skip);
                    };
                    let channel = format!("{SERVER_TO_USER}{}", user.id);
                    UserDelivery::Frame(frames::channel_event(event, &channel, data, None))
                }
            });
        }
        let id = user.watched.get(&m.channel)?;
        if &*m.event != "presence" {
            return Some(UserDelivery::Skip);
        }
        let data: &serde_json::value::RawValue = serde_json::from_str(m.data_text()).ok()?;
        let a: Announcement<'_> = serde_json::from_str(data.get()).ok()?;
        let name = match a.action {
            "join" => "online",
            "leave" => "offline",
            _ => return Some(UserDelivery::Skip),
        };
        if a.subject != *id {
            return Some(UserDelivery::Skip);
        }
        Some(UserDelivery::Frame(frames::watchlist_events(&[(
            name,
            vec![id.as_str()],
        )])))
    }
}
