//! The `pusher:` section: apps that speak the Pusher Channels protocol.
//!
//! An app is what a Pusher server library or pusher-js is configured with:
//! an id (the HTTP API's `/apps/{id}/…`), a key (the WebSocket's
//! `{path}/{key}` and the `auth_key` of signed requests) and a secret (every
//! signature). Only shape and defaults live here; uniqueness of ids and keys,
//! path shapes and webhook event names are checked in `validate/pusher.rs`.

use super::{RateLimit, lenient, units};
use serde::Deserialize;
use std::time::Duration;

/// `pusher:`; absent, no Pusher endpoint exists.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pusher {
    /// Where the WebSocket lives on the public listener: `{path}/{key}`.
    pub path: String,
    /// What `pusher:connection_established` tells clients: how long they may
    /// stay silent before they ping. A socket silent for this plus
    /// `pong_timeout` is closed with 4201.
    #[serde(deserialize_with = "units::duration")]
    pub activity_timeout: Duration,
    /// How long a `pusher:ping` the server sent may go unanswered.
    #[serde(deserialize_with = "units::duration")]
    pub pong_timeout: Duration,
    /// On shutdown, Pusher sockets are closed with 4200 (reconnect) spread
    /// over this window, so a restart is not a thundering herd.
    #[serde(deserialize_with = "units::duration")]
    pub reconnect_spread: Duration,
    /// Where pusher-js's HTTP fallback lives on the public listener:
    /// `{http_path}/app/{key}/{server}/{session}/xhr_streaming|xhr|xhr_send`
    /// (pusher-js's `httpPath`, `/pusher` unless the page sets another).
    pub http_path: String,
    /// An HTTP fallback session with no receive request open this long has
    /// lost its client and ends (its channels left).
    #[serde(deserialize_with = "units::duration")]
    pub http_session_timeout: Duration,
    #[serde(deserialize_with = "lenient::or_default")]
    pub apps: Vec<PusherApp>,
}

impl Default for Pusher {
    fn default() -> Self {
        Pusher {
            path: "/app".into(),
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            reconnect_spread: Duration::from_secs(5),
            http_path: "/pusher".into(),
            http_session_timeout: Duration::from_secs(10),
            apps: Vec::new(),
        }
    }
}

/// One entry of `pusher.apps`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PusherApp {
    /// The app id of the HTTP API (`/apps/{id}/events`); `1001` or `"1001"`.
    #[serde(deserialize_with = "string_or_int")]
    pub id: String,
    pub key: String,
    pub secret: String,
    /// `client-*` events on private- and presence- channels.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub client_events: bool,
    /// Events to the application, signed as Pusher signs them.
    #[serde(default)]
    pub webhook: Option<PusherWebhook>,
    /// Put in front of every channel name of this app in pushgate's hub
    /// (and taken off toward its clients), to keep several apps apart.
    #[serde(default)]
    pub channel_prefix: String,
    /// `pusher_internal:subscription_count` events to the subscribers of
    /// public and private channels when their count changes (coalesced),
    /// and the `subscription_count` webhook.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub subscription_count: bool,
    /// When set, a socket must sign in (`pusher:signin`) within this time
    /// or it is closed with 4009; absent, signing in is optional.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub user_authentication_timeout: Option<Duration>,
    /// The largest event `data` the HTTP API and client events accept
    /// (Pusher's limit is 10 KB); over it: 413 / `pusher:error` 4301.
    #[serde(default = "default_max_message", deserialize_with = "units::size")]
    pub max_message: usize,
    /// Open connections (WebSocket and HTTP fallback) of this app on this
    /// instance; over it a new one is closed with 4004 (over connection
    /// quota). None: no cap.
    #[serde(default, deserialize_with = "lenient::opt_usize")]
    pub max_connections: Option<usize>,
    /// Client events a socket may send per second; over it `pusher:error`
    /// 4301 and the event is dropped (the socket stays open).
    #[serde(
        default = "default_client_event_rate",
        deserialize_with = "lenient::u32"
    )]
    pub client_event_rate: u32,
    /// Messages (and queries) this app's HTTP API takes, on this instance:
    /// over it 429 with Pusher's body. None: the shared `limits.publish`.
    #[serde(default)]
    pub api_rate: Option<RateLimit>,
}

fn default_max_message() -> usize {
    10 * 1024
}

fn default_client_event_rate() -> u32 {
    10
}

/// `webhook:` of an app: where its events go and which ones.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PusherWebhook {
    /// A path on the application (`/pusher/webhook`), sent through the
    /// upstream layer like any request to it.
    pub url: String,
    /// A named upstream (`upstreams:`) instead of the default backend.
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default = "all_webhook_events")]
    pub events: Vec<String>,
}

/// The webhook events pushgate sends, by Pusher's names.
/// What a user's hub channel is named after its app's `channel_prefix`
/// (`{prefix}pusher-user:{id}`): the gateway's own name space, so no app
/// may take it as its prefix (its public channel `42` would be another
/// app's user `42`, its sendToUser messages and its presence).
pub const USER_HUB_PREFIX: &str = "pusher-user:";

pub const WEBHOOK_EVENTS: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "subscription_count",
    "cache_miss",
];

fn all_webhook_events() -> Vec<String> {
    WEBHOOK_EVENTS[..5]
        .iter()
        .map(|e| (*e).to_owned())
        .collect()
}

fn string_or_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    lenient::opt_string_or_int(d)?
        .ok_or_else(|| serde::de::Error::custom("expected a string or an integer"))
}
