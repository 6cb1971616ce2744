//! Pusher users: what `pusher:signin` carries (`user_data`), and where a
//! user's messages and commands travel in the one hub.
//!
//! A signed-in socket follows its user's hub channel (`{prefix}pusher-user:{id}`).
//! That channel carries what the app sends to the user (`#server-to-user-{id}`
//! triggers, `sendToUser`), the gateway's own `terminate_connections`
//! command (an event name no publisher may use, `reserved_event`). Because
//! it is a hub channel, every one of those reaches every instance through
//! the broker like any message: no second road between nodes.
//!
//! A user's presence has a hub channel of its own, `{prefix}pusher-user:{id}:online`,
//! joined as a presence member by every signed-in socket of the user and
//! followed by every socket that watches it: nothing but the presence
//! layer's joins and leaves travels there, so a watcher is sent the
//! online and offline it wants and none of the user's own messages. (An
//! encoded id has no `:`, so no user's own channel is named so.)
//!
//! The hub name cannot be a Pusher channel's: a Pusher name has no `:`
//! (`App::hub_channel`), and pushgate's own transports refuse it
//! ([`super::Apps::needs_signature`]), so only a socket signed in as the
//! user (or watching it) ever follows it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::App;
use crate::model::{HistoryPolicy, valid_channel};

/// The Pusher channel name the server libraries' `sendToUser` triggers on.
pub const SERVER_TO_USER: &str = "#server-to-user-";

/// What a user's hub channel is named after its app's prefix.
const USER_HUB: &str = crate::config::USER_HUB_PREFIX;

/// What a user's presence channel is named after the user's own channel.
const ONLINE: &str = ":online";

/// The event that closes a user's signed-in sockets: reserved, so only the
/// gateway publishes it.
pub const TERMINATE_EVENT: &str = "pusher_internal:terminate_connections";

/// User hub channels keep no history: a message to a user is for the
/// sockets signed in now, as Pusher's is.
pub const NO_HISTORY: HistoryPolicy = HistoryPolicy {
    size: 0,
    ttl: Duration::from_secs(1),
};

/// Pusher's limit on a watchlist.
pub const MAX_WATCHLIST: usize = 100;

/// The longest `user_data` accepted (Pusher caps the whole frame at 10 KB).
pub const MAX_USER_DATA: usize = 10 * 1024;

/// A signed-in user, from `user_data`.
#[derive(Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub watchlist: Vec<String>,
}

/// The user a socket signed in as, and the hub channels it follows for it.
pub struct SignedIn {
    pub id: String,
    /// The user's own hub channel.
    pub hub: Arc<str>,
    /// The user's presence channel, which this socket is a member of.
    pub online: Arc<str>,
    /// The hub channels of the watched users, with their ids: looked up
    /// for every message this socket delivers, so a map, not a list.
    pub watched: HashMap<Arc<str>, String>,
}

/// Why `user_data` is refused; each is a `pusher:error` to the socket.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    #[error("user_data must be a JSON object: {0}")]
    NotJson(String),
    #[error("user_data over {MAX_USER_DATA} bytes")]
    TooLarge,
    #[error("user_data needs an `id`: a non-empty string")]
    NoId,
    #[error("user id too long")]
    IdTooLong,
    #[error("watchlist of {0} ids: at most {MAX_WATCHLIST}")]
    WatchlistTooLong(usize),
    #[error("watchlist must be a list of non-empty strings")]
    BadWatchlist,
}

#[derive(Deserialize)]
struct Fields {
    id: Option<serde_json::Value>,
    #[serde(default)]
    watchlist: Option<serde_json::Value>,
}

/// The user of `user_data`, as the app signed it: `id` a non-empty string,
/// `watchlist` (optional) at most [`MAX_WATCHLIST`] non-empty strings.
pub fn parse_user_data(text: &str) -> Result<User, UserDataError> {
    if text.len() > MAX_USER_DATA {
        return Err(UserDataError::TooLarge);
    }
    let fields: Fields =
        serde_json::from_str(text).map_err(|e| UserDataError::NotJson(e.to_string()))?;
    let id = match fields.id {
        Some(serde_json::Value::String(id)) if !id.is_empty() => id,
        _ => return Err(UserDataError::NoId),
    };
    let watchlist = match fields.watchlist {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(ids)) => {
            if ids.len() > MAX_WATCHLIST {
                return Err(UserDataError::WatchlistTooLong(ids.len()));
            }
            let mut out = Vec::with_capacity(ids.len());
            for v in ids {
                match v {
                    serde_json::Value::String(s) if !s.is_empty() => {
                        if !out.contains(&s) {
                            out.push(s);
                        }
                    }
                    _ => return Err(UserDataError::BadWatchlist),
                }
            }
            out
        }
        Some(_) => return Err(UserDataError::BadWatchlist),
    };
    Ok(User { id, watchlist })
}

/// The hub channel of a channel name an app triggers on: a user's for
/// `#server-to-user-{id}`, else the app's channel (`App::hub_channel`).
pub fn trigger_hub(app: &App, name: &str) -> Option<Arc<str>> {
    match server_to_user(name) {
        Some(id) => app.user_hub(id),
        None => app.hub_channel(name),
    }
}

/// The user id of a Pusher channel name `#server-to-user-{id}`.
pub fn server_to_user(name: &str) -> Option<&str> {
    name.strip_prefix(SERVER_TO_USER)
        .filter(|id| !id.is_empty())
}

impl App {
    /// The hub channel of user `id` of this app, or None when the id
    /// cannot make one (too long). An id of channel characters is kept as
    /// it is; any other is written `=` and its hex.
    pub fn user_hub(&self, id: &str) -> Option<Arc<str>> {
        let plain = !id.is_empty()
            && !id.starts_with('=')
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
        let encoded = if plain {
            id.to_owned()
        } else {
            format!("={}", hex::encode(id))
        };
        let full = format!("{}{USER_HUB}{encoded}", self.config.channel_prefix);
        valid_channel(&full).then(|| full.into())
    }

    /// The presence channel of user `id` (see the module doc): what a
    /// watcher follows. None when the id cannot make one.
    pub fn online_hub(&self, id: &str) -> Option<Arc<str>> {
        let full = format!("{}{ONLINE}", self.user_hub(id)?);
        valid_channel(&full).then(|| full.into())
    }

    /// The user id of one of this app's user hub channels.
    pub fn user_of_hub(&self, hub: &str) -> Option<String> {
        let encoded = hub
            .strip_prefix(self.config.channel_prefix.as_str())?
            .strip_prefix(USER_HUB)?;
        match encoded.strip_prefix('=') {
            Some(h) => String::from_utf8(hex::decode(h).ok()?).ok(),
            None => Some(encoded.to_owned()),
        }
    }
}

/// Whether `hub` is some app's user hub channel (after no prefix or one).
pub fn is_user_hub(hub: &str) -> bool {
    hub.starts_with(USER_HUB)
        || hub
            .split_once(':')
            .is_some_and(|(_, rest)| rest.starts_with(USER_HUB))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pusher::Apps;

    fn apps() -> Apps {
        let config: crate::config::Pusher = serde_yaml::from_str(
            "apps:\n  - { id: 1, key: k1, secret: s1 }\n  - { id: 2, key: k2, secret: s2, channel_prefix: 'b:' }\n",
        )
        .unwrap();
        Apps::new(Some(&config))
    }

    #[test]
    fn user_data_needs_a_string_id_and_a_short_watchlist() {
        let u = parse_user_data(r#"{"id":"42","name":"x","watchlist":["1","2","1"]}"#).unwrap();
        assert_eq!(u.id, "42");
        assert_eq!(u.watchlist, ["1", "2"], "each id once");
        assert_eq!(parse_user_data(r#"{"name":"x"}"#), Err(UserDataError::NoId));
        assert_eq!(parse_user_data(r#"{"id":42}"#), Err(UserDataError::NoId));
        assert_eq!(parse_user_data(r#"{"id":""}"#), Err(UserDataError::NoId));
        assert!(matches!(
            parse_user_data("not json"),
            Err(UserDataError::NotJson(_))
        ));
        let ids: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        let big = serde_json::json!({"id": "1", "watchlist": ids}).to_string();
        assert_eq!(parse_user_data(&big), Err(UserDataError::TooLarge));
        let ids: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        let over = serde_json::json!({"id": "1", "watchlist": ids}).to_string();
        assert_eq!(
            parse_user_data(&over),
            Err(UserDataError::WatchlistTooLong(101))
        );
        assert_eq!(
            parse_user_data(r#"{"id":"1","watchlist":[1]}"#),
            Err(UserDataError::BadWatchlist)
        );
    }

    #[test]
    fn a_user_hub_is_no_pusher_channel_and_round_trips() {
        let apps = apps();
        let (a, b) = (apps.by_id("1").unwrap(), apps.by_id("2").unwrap());
        let hub = a.user_hub("42").unwrap();
        assert_eq!(&*hub, "pusher-user:42");
        assert_eq!(a.user_of_hub(&hub).as_deref(), Some("42"));
        let odd = b.user_hub("a b/é").unwrap();
        assert!(odd.starts_with("b:pusher-user:="), "{odd}");
        assert_eq!(b.user_of_hub(&odd).as_deref(), Some("a b/é"));
        assert_eq!(a.user_of_hub(&odd), None);
        assert!(is_user_hub(&hub) && is_user_hub(&odd));
        assert!(!is_user_hub("news") && !is_user_hub("b:news"));
        assert!(apps.needs_signature(&hub) && apps.needs_signature(&odd));
        assert!(a.hub_channel("pusher-user:42").is_none());
        assert!(a.user_hub(&"x".repeat(300)).is_none());
        let online = a.online_hub("42").unwrap();
        assert_eq!(&*online, "pusher-user:42:online");
        assert!(apps.needs_signature(&online), "only signing in opens it");
        assert_ne!(b.online_hub("a b").unwrap(), b.user_hub("a b").unwrap());
        assert_eq!(server_to_user("#server-to-user-7"), Some("7"));
        assert_eq!(server_to_user("#server-to-user-"), None);
    }
}
