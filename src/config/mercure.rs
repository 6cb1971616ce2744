//! The `mercure:` section: pushgate as a Mercure hub, so an application
//! that publishes to a Mercure hub (Symfony's `symfony/mercure`, API
//! Platform) and browsers that subscribe with `EventSource` change one URL.
//!
//! Only shape and defaults live here; the path, the keys and the origins
//! are checked in `validate/mercure.rs`.

use super::{lenient, units};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `mercure:`; absent, no hub exists.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mercure {
    /// The hub's URL path on the public listener.
    pub path: String,
    /// How a publisher's token is verified; without it nobody may publish.
    pub publisher_jwt: Option<MercureKey>,
    /// How a subscriber's token is verified; without it subscribers are
    /// anonymous (and `anonymous` must be on).
    pub subscriber_jwt: Option<MercureKey>,
    /// Optional `iss` check of both kinds of token.
    pub issuer: Option<String>,
    /// Optional `aud` check of both kinds of token.
    pub audience: Option<String>,
    /// Subscribers without a token receive public updates.
    #[serde(deserialize_with = "lenient::bool")]
    pub anonymous: bool,
    /// Pages that may subscribe and publish from another origin (CORS).
    #[serde(deserialize_with = "lenient::or_default")]
    pub cors_origins: Vec<String>,
    /// Origins whose pages may publish with the `mercureAuthorization`
    /// cookie (a cookie rides along with any page's request: without this
    /// list a foreign page could publish in the user's name).
    #[serde(deserialize_with = "lenient::or_default")]
    pub publish_origins: Vec<String>,
    /// Subscription events and the subscriptions API (not served yet).
    #[serde(deserialize_with = "lenient::bool")]
    pub subscriptions: bool,
    /// Proxied answers under these paths advertise the hub with
    /// `Link: <path>; rel="mercure"`.
    #[serde(deserialize_with = "lenient::or_default")]
    pub discovery: Vec<Discovery>,
    /// The longest a subscriber's stream stays open, with or without a
    /// token `exp`: tokens Symfony apps were given for years carry no
    /// `exp`, and a stream under such a token would otherwise outlive its
    /// rights forever. The browser's `EventSource` reconnects by itself
    /// with `Last-Event-ID`, so ending a stream loses no update.
    #[serde(deserialize_with = "units::duration")]
    pub max_stream_life: Duration,
    /// Topics also published on pushgate channels, for pushgate's own
    /// WebSocket, SSE and long-poll clients (under the channel rules).
    #[serde(deserialize_with = "lenient::or_default")]
    pub channels: Vec<TopicChannel>,
}

/// One entry of `mercure.channels`: updates whose topic matches `topic`
/// (`{name}` stands for one path segment) are also published on
/// `channel`, where `{name}` is replaced by what it matched.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicChannel {
    pub topic: String,
    pub channel: String,
    /// Private updates are published too, and only to a channel whose rule
    /// needs an identity (never one `anyone` may read).
    #[serde(default, deserialize_with = "lenient::bool")]
    pub private: bool,
}

impl Default for Mercure {
    fn default() -> Self {
        Mercure {
            path: "/.well-known/mercure".into(),
            publisher_jwt: None,
            subscriber_jwt: None,
            issuer: None,
            audience: None,
            anonymous: false,
            cors_origins: Vec::new(),
            publish_origins: Vec::new(),
            subscriptions: false,
            discovery: Vec::new(),
            max_stream_life: Duration::from_secs(3600),
            channels: Vec::new(),
        }
    }
}

/// The key one kind of Mercure token is signed with: exactly one of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MercureKey {
    /// An empty secret (from `${X:-}`) is treated as absent.
    pub hs256_secret: Option<String>,
    /// PEM file, resolved against the config file's directory.
    pub rs256_public_key: Option<PathBuf>,
    pub es256_public_key: Option<PathBuf>,
}

/// One entry of `mercure.discovery`: a path prefix of proxied answers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    pub path: String,
}
