//! The `info` attributes of a channel, as the Pusher API answers them: the
//! attributes asked for (`info=user_count,subscription_count`) and what a
//! channel has of them, counted from this instance's hub (subscriptions)
//! and from presence (members, on every instance when the broker shares
//! presence).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::pusher::ChannelKind;
use crate::state::AppState;

/// Which attributes a request asked for. Names Pusher does not define are
/// passed over, as an application written against Pusher may send them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Info {
    pub(crate) user_count: bool,
    pub(crate) subscription_count: bool,
}

impl Info {
    pub(crate) fn parse(text: Option<&str>) -> Info {
        let mut info = Info::default();
        for name in text.unwrap_or("").split(',').map(str::trim) {
            match name {
                "user_count" => info.user_count = true,
                "subscription_count" => info.subscription_count = true,
                _ => {}
            }
        }
        info
    }

    pub(crate) fn any(self) -> bool {
        self.user_count || self.subscription_count
    }
}

/// What one channel holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Connections of this instance subscribed to it.
    pub(crate) subscriptions: usize,
    /// Distinct users, for a presence channel.
    pub(crate) users: Option<usize>,
}

impl Counts {
    /// The counts of the Pusher channel `name`, which is `hub` in the hub.
    pub(crate) async fn of(state: &AppState, name: &str, hub: &Arc<str>) -> Counts {
        let users = match ChannelKind::of(name) {
            ChannelKind::Presence => Some(state.presence.list(hub).await.len()),
            _ => None,
        };
        Counts {
            subscriptions: state.hub.subscriber_count(hub),
            users,
        }
    }

    /// Someone is subscribed: here, or as a presence member anywhere.
    pub(crate) fn occupied(self) -> bool {
        self.subscriptions > 0 || self.users.is_some_and(|n| n > 0)
    }

    /// The attributes `info` asked for that this channel has: `user_count`
    /// only on a presence channel (a trigger's answer leaves it out
    /// elsewhere; a channel query refuses it first).
    pub(crate) fn attributes(self, info: Info) -> Map<String, Value> {
        let mut out = Map::new();
        if let (true, Some(users)) = (info.user_count, self.users) {
            out.insert("user_count".into(), users.into());
        }
        if info.subscription_count {
            out.insert("subscription_count".into(), self.subscriptions.into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_parsed_and_unknown_ones_passed_over() {
        let info = Info::parse(Some("user_count, subscription_count,cache"));
        assert!(info.user_count && info.subscription_count);
        assert!(!Info::parse(None).any());
        assert!(!Info::parse(Some("occupied")).any());
    }

    #[test]
    fn user_count_only_on_presence_channels() {
        let both = Info::parse(Some("user_count,subscription_count"));
        let presence = Counts {
            subscriptions: 3,
            users: Some(2),
        };
        assert_eq!(
            Value::Object(presence.attributes(both)),
            serde_json::json!({"user_count": 2, "subscription_count": 3})
        );
        let public = Counts {
            subscriptions: 0,
            users: None,
        };
        assert_eq!(
            Value::Object(public.attributes(both)),
            serde_json::json!({"subscription_count": 0})
        );
        assert!(!public.occupied());
        assert!(
            Counts {
                subscriptions: 0,
                users: Some(1)
            }
            .occupied(),
            "a member on another instance occupies it"
        );
    }
}
