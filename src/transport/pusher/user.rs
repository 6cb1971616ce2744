//! `pusher:signin` and what a signed-in socket gets: its user's messages
//! (`#server-to-user-{id}`), the app's `terminate_connections`, and the
//! online and offline events of the users on its watchlist.
//!
//! Signing in is checked like a subscription: the app's signature over
//! `socket_id::user::user_data`, the exact text received. A signed-in
//! socket follows its user's hub channel (`pusher/users.rs`), is a
//! presence member of its user's presence channel, and follows the
//! presence channel of each user it watches; a watched presence channel's
//! joins and leaves, which the presence layer announces once across every
//! instance, are the watchlist's `online` and `offline`, and nothing else
//! travels there, so the watched users' own messages never reach (or
//! queue at) the watcher. Signing in again as the same user replaces the
//! watchlist; as another user is refused. These follows are the socket's own, not Pusher channels: they
//! do not count toward its channel limit or the app's occupancy.

use std::collections::HashMap;

use tokio_tungstenite::tungstenite::Error as WsError;

use super::announcement::Announcement;
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
    /// to send (success, then the watchlist's current state). A repeated
    /// sign-in as the same user takes its `user_data`'s watchlist in place
    /// of the one before (pusher-js takes every `signin_success` as the
    /// user's data); one as another user is refused.
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
        let mut replay = Vec::new();
        let (hub, online, before) = match self.user.take() {
            Some(current) if current.id != id => {
                self.user = Some(current);
                return Err("this connection is signed in as another user".into());
            }
            Some(current) => (current.hub, current.online, current.watched),
            None => {
                let too_long = || users::UserDataError::IdTooLong.to_string();
                let hub = self.app.user_hub(&id).ok_or_else(too_long)?;
                let online = self.app.online_hub(&id).ok_or_else(too_long)?;
                self.session.set_member(Some(id.clone()), None);
                self.session
                    .subscribe(&hub, follow_terms(false), None, &mut replay)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Err(e) = self
                    .session
                    .subscribe(&online, follow_terms(true), None, &mut replay)
                    .await
                {
                    self.session.unsubscribe(&hub);
                    return Err(e.to_string());
                }
                if self.client.identity.is_none() {
                    self.state.connections.set_subject(self.conn_id, Some(&id));
                }
                (hub, online, HashMap::new())
            }
        };
        let mut wanted = HashMap::with_capacity(watchlist.len());
        for other in watchlist {
            match self.app.online_hub(&other) {
                Some(h) if h != online => {
                    wanted.insert(h, other);
                }
                _ => {}
            }
        }
        for h in before.keys().filter(|h| !wanted.contains_key(*h)) {
            self.session.unsubscribe(h);
        }
        let mut watched = HashMap::with_capacity(wanted.len());
        let mut states = Vec::with_capacity(wanted.len());
        for (h, other) in wanted {
            // A watch that cannot follow is offline to this socket; the
            // sign-in itself stands.
            if !before.contains_key(&h)
                && self
                    .session
                    .subscribe(&h, follow_terms(false), None, &mut replay)
                    .await
                    .is_err()
            {
                continue;
            }
            let on = !self.state.presence.list(&h).await.is_empty();
            states.push((other.clone(), on));
            watched.insert(h, other);
        }
        let ids = |on: bool| -> Vec<&str> {
            let mut ids: Vec<&str> = states
                .iter()
                .filter(|(_, o)| *o == on)
                .map(|(id, _)| id.as_str())
                .collect();
            ids.sort_unstable();
            ids
        };
        let (online_ids, offline_ids) = (ids(true), ids(false));
        let mut out = vec![frames::signin_success(user_data)];
        let events: Vec<(&str, Vec<&str>)> = [("online", online_ids), ("offline", offline_ids)]
            .into_iter()
            .filter(|(_, ids)| !ids.is_empty())
            .collect();
        if !events.is_empty() {
            out.push(frames::watchlist_events(&events));
        }
        tracing::debug!(watched = watched.len(), "pusher user signed in");
        self.user = Some(SignedIn {
            id,
            hub,
            online,
            watched,
        });
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
        if m.channel == user.online {
            // Its own user's presence: known to it.
            return Some(UserDelivery::Skip);
        }
        if m.channel == user.hub {
            return Some(match &*m.event {
                TERMINATE_EVENT => UserDelivery::Terminate,
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
