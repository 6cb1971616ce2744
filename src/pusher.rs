//! The Pusher Channels protocol's parts that are not a connection: the apps
//! of `pusher:` (by id for the HTTP API, by key for sockets), their
//! signatures (`sign.rs`), how event data maps between the protocols
//! (`data.rs`), socket ids, and the events an app's webhook reports
//! (`AppEvents`). The WebSocket endpoint is a transport
//! (`transport/pusher/`), the HTTP API an admin handler (`admin/pusher/`).
//!
//! One hub: a Pusher channel of an app is the pushgate channel of the same
//! name with the app's `channel_prefix` in front, so Pusher triggers and
//! pushgate publishes reach each other's subscribers.

pub mod data;
pub mod frames;
pub mod http_session;
pub mod refusal_reserve;
pub mod sign;
pub mod sockjs;
pub mod users;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::config::{Pusher as PusherConfig, PusherApp};
use crate::model::valid_channel;
pub use sign::Signer;

/// The apps of one configuration (policy: swapped whole on reload).
#[derive(Debug, Default)]
pub struct Apps {
    apps: Vec<Arc<App>>,
    by_id: HashMap<String, usize>,
    by_key: HashMap<String, usize>,
}

/// One app: its configuration and its signer.
#[derive(Debug)]
pub struct App {
    pub config: PusherApp,
    /// The id as a shared string, for metrics labels and webhook events.
    pub id: Arc<str>,
    pub signer: Signer,
}

impl Apps {
    pub fn new(config: Option<&PusherConfig>) -> Apps {
        let mut apps = Apps::default();
        for app in config.map(|p| p.apps.as_slice()).unwrap_or_default() {
            let i = apps.apps.len();
            apps.by_id.insert(app.id.clone(), i);
            apps.by_key.insert(app.key.clone(), i);
            apps.apps.push(Arc::new(App {
                id: app.id.as_str().into(),
                signer: Signer::new(&app.key, &app.secret),
                config: app.clone(),
            }));
        }
        apps
    }

    /// The app of an HTTP API path's `{id}`.
    pub fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.by_id.get(id).map(|&i| &self.apps[i])
    }

    /// The app of a socket's `{key}`.
    pub fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.by_key.get(key).map(|&i| &self.apps[i])
    }

    /// The app whose channel `hub` is, with the channel's Pusher name: the
    /// app whose prefix is `hub` up to its first `:`, or the app without a
    /// prefix for a name without one.
    pub fn owner<'h>(&self, hub: &'h str) -> Option<(&Arc<App>, &'h str)> {
        let prefix_len = hub.find(':').map_or(0, |i| i + 1);
        let (prefix, name) = hub.split_at(prefix_len);
        let app = self
            .apps
            .iter()
            .find(|a| a.config.channel_prefix == prefix)?;
        (!name.is_empty()).then_some((app, name))
    }

    /// Whether `hub` is a private-, private-encrypted- or presence- channel
    /// of an app: only the app's signature opens it, over a Pusher socket.
    /// A user's hub channel (`users.rs`) is never opened but by signing in.
    pub fn needs_signature(&self, hub: &str) -> bool {
        (!self.is_empty() && users::is_user_hub(hub))
            || self
                .owner(hub)
                .is_some_and(|(_, name)| ChannelKind::of(name).needs_auth())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.apps.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }
}

/// Pusher's limit on a channel name.
pub const MAX_CHANNEL_LEN: usize = 164;

impl App {
    /// The hub channel of this app's Pusher channel `name`, or None when the
    /// name is not one Pusher and pushgate both accept. A `:` is refused:
    /// it is not in Pusher's channel alphabet, and a prefix ends with one
    /// (`validate/pusher.rs`), so no app can name another app's channel.
    pub fn hub_channel(&self, name: &str) -> Option<Arc<str>> {
        if name.is_empty() || name.len() > MAX_CHANNEL_LEN || name.contains(':') {
            return None;
        }
        let full = format!("{}{name}", self.config.channel_prefix);
        valid_channel(&full).then(|| full.into())
    }

    /// The Pusher name of a hub channel, or None when it is not this app's.
    pub fn pusher_channel<'a>(&self, hub: &'a str) -> Option<&'a str> {
        hub.strip_prefix(self.config.channel_prefix.as_str())
            .filter(|name| !name.is_empty())
    }
}

/// What kind of channel a Pusher name is, by its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    Private,
    /// `private-encrypted-`: authorized like private; data relayed untouched.
    Encrypted,
    Presence,
}

impl ChannelKind {
    pub fn of(name: &str) -> ChannelKind {
        if name.starts_with("private-encrypted-") {
            ChannelKind::Encrypted
        } else if name.starts_with("private-") {
            ChannelKind::Private
        } else if name.starts_with("presence-") {
            ChannelKind::Presence
        } else {
            ChannelKind::Public
        }
    }

    /// Whether subscribing needs the app's signature.
    pub fn needs_auth(self) -> bool {
        self != ChannelKind::Public
    }
}

/// Socket ids, `\d+\.\d+` as pusher-js expects: this instance's random
/// prefix and a counter, so ids are unique across instances sharing a Redis
/// broker (a socket_id exclusion must never hit another instance's socket).
pub struct SocketIds {
    prefix: u32,
    next: AtomicU64,
}

impl Default for SocketIds {
    fn default() -> Self {
        SocketIds {
            prefix: rand::random::<u32>() % 1_000_000_000,
            next: AtomicU64::new(1),
        }
    }
}

impl SocketIds {
    pub fn next(&self) -> Box<str> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n}", self.prefix).into()
    }
}

/// Whether `s` has the shape of a socket id (`123.456`): the HTTP API's
/// `socket_id` is checked by it (the socket endpoint mints ids).
pub fn valid_socket_id(s: &str) -> bool {
    match s.split_once('.') {
        Some((a, b)) => {
            let digits =
                |x: &str| !x.is_empty() && x.len() <= 20 && x.bytes().all(|c| c.is_ascii_digit());
            digits(a) && digits(b)
        }
        None => false,
    }
}

/// An event an app's webhook reports (channel names as the app knows them,
/// without `channel_prefix`).
#[derive(Clone, Debug)]
pub enum AppEvent {
    ChannelOccupied {
        channel: String,
    },
    ChannelVacated {
        channel: String,
    },
    MemberAdded {
        channel: String,
        user_id: String,
    },
    MemberRemoved {
        channel: String,
        user_id: String,
    },
    ClientEvent {
        channel: String,
        event: String,
        /// As the client sent it: a JSON string or object's text.
        data: Box<serde_json::value::RawValue>,
        socket_id: String,
        user_id: Option<String>,
    },
    SubscriptionCount {
        channel: String,
        subscription_count: usize,
    },
    /// A socket subscribed to a cache channel with nothing cached.
    CacheMiss {
        channel: String,
    },
}

/// How often a changed `subscription_count` is sent to a channel's
/// subscribers and reported to the app's webhook: coalesced, so a crowd
/// joining a channel costs one frame a socket and one webhook a period.
pub const SUBSCRIPTION_COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether a Pusher channel name is a cache channel: its last event is
/// sent to each new subscriber.
pub fn is_cache_channel(name: &str) -> bool {
    [
        "cache-",
        "private-cache-",
        "private-encrypted-cache-",
        "presence-cache-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The member events of a presence join or leave announced on hub channel
/// `hub`: one per app whose presence channel it is.
pub fn member_events(
    apps: &Apps,
    hub: &str,
    user_id: &str,
    joined: bool,
) -> Vec<(Arc<str>, AppEvent)> {
    apps.iter()
        .filter_map(|app| {
            let channel = app.pusher_channel(hub)?;
            (ChannelKind::of(channel) == ChannelKind::Presence).then(|| {
                let (channel, user_id) = (channel.to_owned(), user_id.to_owned());
                let event = if joined {
                    AppEvent::MemberAdded { channel, user_id }
                } else {
                    AppEvent::MemberRemoved { channel, user_id }
                };
                (app.id.clone(), event)
            })
        })
        .collect()
}

/// The webhook sender's end: events with their app's id.
pub type AppEventReceiver = mpsc::Receiver<(Arc<str>, AppEvent)>;

/// How many app events may wait for the webhook sender before new ones are
/// dropped (and counted): delivery to sockets never waits for webhooks.
const APP_EVENT_QUEUE: usize = 10_000;

/// Where connections report app events; the webhook sender takes the other
/// end once. Live state: it outlasts reloads.
pub struct AppEvents {
    tx: mpsc::Sender<(Arc<str>, AppEvent)>,
    rx: Mutex<Option<AppEventReceiver>>,
    dropped: AtomicU64,
}

impl Default for AppEvents {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(APP_EVENT_QUEUE);
        AppEvents {
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
        }
    }
}

impl AppEvents {
    /// Reports `event` of app `app_id`; never waits.
    pub fn send(&self, app_id: &Arc<str>, event: AppEvent) {
        if self.tx.try_send((app_id.clone(), event)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The receiving end, for the one webhook sender (None after the first).
    pub fn take_receiver(&self) -> Option<AppEventReceiver> {
        self.rx.lock().take()
    }

    /// Events dropped because the sender fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> Apps {
        let config: PusherConfig = serde_yaml::from_str(
            "apps:\n  - { id: 1, key: k1, secret: s1 }\n  - { id: 2, key: k2, secret: s2, channel_prefix: 'b:' }\n",
        )
        .unwrap();
        Apps::new(Some(&config))
    }

    #[test]
    fn apps_are_found_by_id_and_by_key() {
        let apps = apps();
        assert_eq!(&*apps.by_id("2").unwrap().id, "2");
        assert_eq!(apps.by_key("k1").unwrap().signer.key(), "k1");
        assert!(apps.by_id("k1").is_none() && apps.by_key("1").is_none());
        assert!(Apps::new(None).is_empty());
    }

    #[test]
    fn a_prefix_keeps_apps_apart_in_the_hub() {
        let apps = apps();
        let (a, b) = (apps.by_id("1").unwrap(), apps.by_id("2").unwrap());
        assert_eq!(a.hub_channel("private-x").as_deref(), Some("private-x"));
        assert_eq!(b.hub_channel("private-x").as_deref(), Some("b:private-x"));
        assert_eq!(b.pusher_channel("b:private-x"), Some("private-x"));
        assert_eq!(b.pusher_channel("private-x"), None);
        assert_eq!(a.hub_channel("a b"), None);
        assert_eq!(a.hub_channel("b:private-x"), None, "no app names another's");
        assert_eq!(a.hub_channel(""), None);
        assert_eq!(a.hub_channel(&"c".repeat(MAX_CHANNEL_LEN + 1)), None);
    }

    #[test]
    fn a_hub_channel_belongs_to_the_app_of_its_prefix() {
        let apps = apps();
        let (a, b) = (apps.by_id("1").unwrap(), apps.by_id("2").unwrap());
        let owner = |hub| apps.owner(hub).map(|(app, name)| (app.id.clone(), name));
        assert_eq!(owner("private-x"), Some((a.id.clone(), "private-x")));
        assert_eq!(owner("b:private-x"), Some((b.id.clone(), "private-x")));
        assert_eq!(owner("c:private-x"), None);
        assert_eq!(owner("b:"), None);
        assert!(apps.needs_signature("presence-room") && apps.needs_signature("b:private-x"));
        assert!(!apps.needs_signature("b:news") && !apps.needs_signature("c:private-x"));
        assert!(!Apps::new(None).needs_signature("private-x"));
    }

    #[test]
    fn kinds_by_prefix() {
        assert_eq!(
            ChannelKind::of("private-encrypted-x"),
            ChannelKind::Encrypted
        );
        assert_eq!(ChannelKind::of("private-x"), ChannelKind::Private);
        assert_eq!(ChannelKind::of("presence-x"), ChannelKind::Presence);
        assert_eq!(ChannelKind::of("x-private-"), ChannelKind::Public);
        assert!(!ChannelKind::Public.needs_auth() && ChannelKind::Encrypted.needs_auth());
        assert!(is_cache_channel("cache-x") && is_cache_channel("presence-cache-x"));
        assert!(is_cache_channel("private-encrypted-cache-x"));
        assert!(!is_cache_channel("private-x") && !is_cache_channel("x-cache-"));
    }

    #[test]
    fn members_are_reported_to_the_apps_whose_presence_channel_it_is() {
        let apps = apps();
        let events = member_events(&apps, "b:presence-x", "7", true);
        assert_eq!(
            events.len(),
            1,
            "app 1 sees `b:presence-x`, not a presence name"
        );
        assert!(
            matches!(&events[0], (id, AppEvent::MemberAdded { channel, .. })
            if &**id == "2" && channel == "presence-x")
        );
        let events = member_events(&apps, "presence-x", "7", false);
        assert_eq!(events.len(), 1);
        assert!(
            matches!(&events[0], (id, AppEvent::MemberRemoved { channel, user_id })
            if &**id == "1" && channel == "presence-x" && user_id == "7")
        );
        assert!(member_events(&apps, "private-x", "7", true).is_empty());
    }

    #[test]
    fn socket_ids_have_pushers_shape_and_differ() {
        let ids = SocketIds::default();
        let (a, b) = (ids.next(), ids.next());
        assert!(valid_socket_id(&a) && valid_socket_id(&b) && a != b);
        assert!(!valid_socket_id("1.") && !valid_socket_id("a.1") && !valid_socket_id("12"));
    }

    #[test]
    fn app_events_never_wait_and_count_what_they_drop() {
        let events = AppEvents::default();
        let id: Arc<str> = "1".into();
        for _ in 0..APP_EVENT_QUEUE + 3 {
            events.send(
                &id,
                AppEvent::ChannelOccupied {
                    channel: "c".into(),
                },
            );
        }
        assert_eq!(events.dropped(), 3);
        assert!(events.take_receiver().is_some() && events.take_receiver().is_none());
    }
}
