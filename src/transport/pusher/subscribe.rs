//! `pusher:subscribe` and `pusher:unsubscribe`: a Pusher subscription is a
//! hub subscription of the app's channel, judged by the admission path.
//!
//! Who may subscribe: a private-, private-encrypted- or presence- channel
//! needs the app's signature over the socket id, the channel and the exact
//! `channel_data` text received; that signature is the app's word, and
//! stands in for the token or application check a pushgate rule may ask
//! (`owner`, `token`, `check`). A public channel follows its rule's
//! `subscribe` as an anonymous client: `anyone` is allowed, anything else
//! refused. A channel no rule matches is refused, as for any client. Then
//! the limits: `per_client.subscribes` (or the address's; a repeated
//! subscribe is charged too), the connection's channel count, the
//! channel's room, and on presence channels Pusher's own: at most 100
//! members and a `user_info` of at most 1 KB. A refusal answers
//! `pusher:subscription_error` (and `pusher:error` 4009 for a missing or
//! wrong signature); the socket stays open.
//!
//! `channel_occupied` / `channel_vacated` follow this instance's count of
//! Pusher subscriptions (`state::Occupancy`), never the hub's subscriber
//! count, which pushgate's own subscribers share.

use std::sync::Arc;

use http::StatusCode;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::socket::{Joined, PusherSocket};
use crate::broker::presence::{MemberInfo, Presence};
use crate::pusher::frames::{self, Subscribe, code};
use crate::pusher::{AppEvent, ChannelKind};
use crate::rules::Refusal as RuleRefusal;
use crate::transport::admission::{self, Refusal, Wire};
use crate::transport::session::SubscriptionPolicy;

/// The longest `channel_data` accepted: Pusher's own limit on a member's
/// data is far below it.
const MAX_CHANNEL_DATA: usize = 10 * 1024;

/// The longest `user_info` a presence member may show (Pusher's limit).
const MAX_USER_INFO: usize = 1024;

/// The most members a presence channel has (Pusher's limit): a further
/// user is refused; one more connection of a member is not.
const MAX_PRESENCE_MEMBERS: usize = 100;

/// Why a subscribe is refused, as the client is told.
struct Refused {
    status: u16,
    message: String,
    /// Also a `pusher:error` 4009: the signature was missing or wrong.
    unauthorized: bool,
}

impl Refused {
    fn unauthorized(message: impl Into<String>) -> Refused {
        Refused {
            status: 401,
            message: message.into(),
            unauthorized: true,
        }
    }
}

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Refused {
        Refused {
            status: r.status.as_u16(),
            message: r.message,
            unauthorized: false,
        }
    }
}

impl PusherSocket {
    pub(super) async fn subscribe(&mut self, sub: Subscribe) -> Result<(), WsError> {
        if sub
            .channel
            .starts_with(crate::pusher::users::SERVER_TO_USER)
        {
            return self.subscribe_server_to_user(&sub.channel).await;
        }
        let name = sub.channel.clone();
        match self.admit(&sub).await {
            Ok(reply) => {
                self.outgoing.text(&reply);
                if let Some(hub) = self.app.hub_channel(&name) {
                    if let Some(count) = self.first_count_frame(&hub).await {
                        self.outgoing.text(&count);
                    }
                    if let Some(cached) = self.cache_frame(&hub).await {
                        self.outgoing.text(&cached);
                    }
                }
                self.write().await
            }
            Err(refused) => {
                if refused.unauthorized {
                    self.outgoing
                        .text(&frames::error(Some(code::UNAUTHORIZED), &refused.message));
                }
                self.send(frames::subscription_error(
                    &name,
                    refused.status,
                    &refused.message,
                ))
                .await
            }
        }
    }

    /// Judge and make the subscription; its success frame.
    async fn admit(&mut self, sub: &Subscribe) -> Result<String, Refused> {
        let name = sub.channel.as_str();
        // Charged before anything is judged or read: a repeated or refused
        // subscribe costs what a new one does (subscribes pass the frame
        // limit, so this is what bounds them), and a repeated one cannot
        // make members be read for free.
        self.state
            .limits
            .subscribe(&self.client.key, 1)
            .map_err(|l| {
                self.state.metrics.limited(l.kind.label());
                admission::subscribes_limited(l, Wire::WebSocket)
            })?;
        let hub = self.app.hub_channel(name).ok_or_else(|| Refused {
            status: 400,
            message: format!("invalid channel name `{}`", truncated(name)),
            unauthorized: false,
        })?;
        let kind = ChannelKind::of(name);
        if self.joined.contains_key(&hub) {
            let members = members_of(&self.state.presence, &hub, kind).await;
            return self.succeeded(&hub, members).ok_or_else(|| {
                Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "").into()
            });
        }
        let member = self.authorize(sub, kind)?;
        let mut terms = SubscriptionPolicy::from(self.rule_for(&hub, kind)?);
        terms.presence = kind == ChannelKind::Presence;
        let limits = &self.settings.config.limits;
        // The socket's own user follows (`user.rs`) are not counted.
        admission::admit_channel_count(self.joined.len() + 1, limits.max_channels_per_connection)?;
        admission::admit_subscriber(
            &self.state.hub,
            limits.max_subscribers_per_channel,
            &hub,
            Wire::WebSocket,
        )?;
        let members = members_of(&self.state.presence, &hub, kind).await;
        if let (Some(members), Some(member)) = (&members, &member) {
            let known = members.iter().any(|(id, _)| *id == member.user_id);
            if !known && members.len() >= MAX_PRESENCE_MEMBERS {
                return Err(Refused {
                    status: 403,
                    message: format!("presence channel full ({MAX_PRESENCE_MEMBERS} members)"),
                    unauthorized: false,
                });
            }
        }
        let user_id = member.as_ref().map(|m| m.user_id.clone());
        let info = member
            .and_then(|m| m.user_info)
            .map(|i| Arc::<str>::from(i.get()));
        self.session.set_member(user_id.clone(), info.clone());
        let mut replay = Vec::new();
        self.session
            .subscribe(&hub, terms, None, &mut replay)
            .await
            .map_err(admission::unavailable)?;
        self.joined.insert(
            hub.clone(),
            Joined {
                name: name.to_owned(),
                kind,
                user_id: user_id.clone(),
                user_info: info,
                cached: None,
            },
        );
        // Without a token of ours, the socket is its presence user's for
        // `POST /disconnect` (the user id the app signed).
        if let (None, Some(user)) = (&self.client.identity, &user_id) {
            self.state.connections.set_subject(self.conn_id, Some(user));
        }
        if self.state.pusher_occupancy.enter(&self.app.id, &hub) {
            self.report(AppEvent::ChannelOccupied {
                channel: name.to_owned(),
            });
        }
        self.count_changed(&hub, kind);
        self.succeeded(&hub, members)
            .ok_or_else(|| admission::unavailable("subscription lost").into())
    }

    /// The app's signature for a channel that needs one; the presence
    /// member it names.
    fn authorize(
        &self,
        sub: &Subscribe,
        kind: ChannelKind,
    ) -> Result<Option<frames::Member>, Refused> {
        if !kind.needs_auth() {
            return Ok(None);
        }
        let auth = sub
            .auth
            .as_deref()
            .ok_or_else(|| Refused::unauthorized("this channel needs an auth signature"))?;
        let data = sub.channel_data.as_deref();
        if data.is_some_and(|d| d.len() > MAX_CHANNEL_DATA) {
            return Err(Refused {
                status: 413,
                message: format!("channel_data over {MAX_CHANNEL_DATA} bytes"),
                unauthorized: false,
            });
        }
        let data = data.filter(|_| kind == ChannelKind::Presence);
        if !self
            .app
            .signer
            .channel_auth_valid(&self.socket_id, &sub.channel, data, auth)
        {
            self.state.metrics.auth_failed("pusher_signature");
            return Err(Refused::unauthorized("invalid signature"));
        }
        if kind != ChannelKind::Presence {
            return Ok(None);
        }
        let member = data
            .and_then(frames::member)
            .ok_or_else(|| Refused::unauthorized("channel_data needs a user_id"))?;
        if member
            .user_info
            .as_ref()
            .is_some_and(|i| i.get().len() > MAX_USER_INFO)
        {
            return Err(Refused {
                status: 413,
                message: format!("user_info over {MAX_USER_INFO} bytes"),
                unauthorized: false,
            });
        }
        Ok(Some(member))
    }

    /// The channel rule over `hub`, as the module doc says.
    fn rule_for(
        &self,
        hub: &str,
        kind: ChannelKind,
    ) -> Result<&crate::rules::ChannelRule, Refused> {
        let rules = &self.settings.rules;
        match rules.check_subscribe(hub, self.client.identity.as_ref()) {
            Ok(crate::rules::Verdict::Allowed(rule)) => Ok(rule),
            Ok(crate::rules::Verdict::Ask(rule, _)) if kind.needs_auth() => Ok(rule),
            Err(RuleRefusal::TokenRequired(_) | RuleRefusal::Forbidden(_)) if kind.needs_auth() => {
                rules
                    .find(hub)
                    .ok_or_else(|| admission_refusal(RuleRefusal::NoRule(hub.into())))
            }
            Ok(crate::rules::Verdict::Ask(..)) => Err(Refused {
                status: 403,
                message: "this channel is not public".into(),
                unauthorized: false,
            }),
            Err(r) => Err(admission_refusal(r)),
        }
    }

    /// `pusher_internal:subscription_succeeded` for a joined channel, a
    /// presence channel's from `members` as read; None when it is not
    /// joined.
    fn succeeded(&self, hub: &Arc<str>, members: Option<Vec<MemberInfo>>) -> Option<String> {
        let joined = self.joined.get(hub)?;
        if joined.kind != ChannelKind::Presence {
            return Some(frames::subscribed(&joined.name));
        }
        let mut members = members.unwrap_or_default();
        // The list read may not show this join yet; it is a member.
        if let Some(me) = &joined.user_id {
            if !members.iter().any(|(id, _)| id == me) {
                let info = joined.user_info.as_deref().map(str::to_owned);
                members.push((me.clone(), info));
                members.sort();
            }
        }
        let members: Vec<_> = members
            .into_iter()
            .map(|(id, info)| {
                let info = info.and_then(|i| serde_json::value::RawValue::from_string(i).ok());
                (id, info)
            })
            .collect();
        Some(frames::presence_subscribed(&joined.name, &members))
    }

    pub(super) fn unsubscribe(&mut self, name: &str) {
        if let Some(hub) = self.app.hub_channel(name) {
            self.unsubscribe_hub(&hub);
        }
    }

    /// Leave `hub`; the app hears when that left it empty here.
    pub(super) fn unsubscribe_hub(&mut self, hub: &Arc<str>) {
        let Some(joined) = self.joined.remove(hub) else {
            return;
        };
        self.session.unsubscribe(hub);
        let vacated = self.state.pusher_occupancy.leave(&self.app.id, hub);
        self.count_changed(hub, joined.kind);
        if vacated {
            self.report(AppEvent::ChannelVacated {
                channel: joined.name,
            });
        }
    }
}

/// The members of a presence channel (on every instance when shared),
/// read once per subscribe; None on other channels.
async fn members_of(presence: &Presence, hub: &str, kind: ChannelKind) -> Option<Vec<MemberInfo>> {
    match kind {
        ChannelKind::Presence => Some(presence.members(hub).await),
        _ => None,
    }
}

fn admission_refusal(r: RuleRefusal) -> Refused {
    Refused {
        status: r.status().as_u16(),
        message: r.to_string(),
        unauthorized: false,
    }
}

/// At most 64 characters of a name the client sent, for messages.
fn truncated(name: &str) -> String {
    name.chars().take(64).collect()
}
