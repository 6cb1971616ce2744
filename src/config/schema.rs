//! The top of the configuration schema: the `Config` root and the sections about
//! where pushgate listens, what it proxies to, how realtime endpoints behave, which
//! broker carries messages and how it logs. Field names are the YAML keys; every
//! struct refuses unknown keys, and every section has defaults so that a file need
//! only write what it changes (an empty file is still an error: see `config.rs`). Channel, webhook and tap rules live in `rules.rs`;
//! authentication and limits in `access.rs`; named upstreams' routes in `routes.rs`.

use super::access::{Auth, Limits};
use super::buffering::Buffering;
use super::locate::KeyPath;
use super::queue::{ConnLimit, Queue};
use super::routes::Route;
use super::rules::{ChannelRule, ClientMessages, Tap, Webhook};
use super::upstream_tls::UpstreamTls;
use super::{lenient, units};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A whole gateway configuration, as read from `gateway.yaml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[serde(deserialize_with = "lenient::or_default")]
    pub listen: Listen,
    pub tls: Option<Tls>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub backend: Backend,
    /// More upstreams by name, each with the keys of `backend:` (`routes.rs`).
    #[serde(deserialize_with = "lenient::or_default")]
    pub upstreams: BTreeMap<String, Backend>,
    /// Which upstream a proxied request goes to; first match wins.
    #[serde(deserialize_with = "lenient::or_default")]
    pub routes: Vec<Route>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub realtime: Realtime,
    #[serde(deserialize_with = "lenient::or_default")]
    pub auth: Auth,
    #[serde(deserialize_with = "lenient::or_default")]
    pub channels: Vec<ChannelRule>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub limits: Limits,
    #[serde(deserialize_with = "lenient::or_default")]
    pub webhooks: Vec<Webhook>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub taps: Vec<Tap>,
    pub client_messages: Option<ClientMessages>,
    /// Apps that speak the Pusher Channels protocol (`pusher.rs`).
    pub pusher: Option<super::pusher::Pusher>,
    /// The Mercure hub (`mercure.rs`).
    pub mercure: Option<super::mercure::Mercure>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub broker: BrokerConfig,
    #[serde(deserialize_with = "lenient::or_default")]
    pub log: Log,
    /// The file this configuration came from (not a YAML key).
    #[serde(skip)]
    pub source: PathBuf,
}

/// The two listeners.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// Browsers and proxied traffic (TLS when `tls:` is present).
    pub public: SocketAddr,
    /// Publish, hooks, metrics, dashboard: plain HTTP, loopback by default.
    pub admin: SocketAddr,
    /// Fronts whose `X-Forwarded-For`/`Forwarded` (and PROXY headers) name
    /// the client (`real_ip.rs`); empty: nobody's are believed.
    pub trusted_proxies: crate::real_ip::TrustedProxies,
    /// The field the fronts name clients in: `x-forwarded-for` (default)
    /// or `forwarded`; only that one is read.
    pub real_ip_header: crate::real_ip::RealIpHeader,
    /// Every public connection starts with a PROXY protocol header
    /// (`proxy_protocol.rs`); one without it is refused.
    pub proxy_protocol: bool,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            public: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8443)),
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, 9090)),
            trusted_proxies: Default::default(),
            real_ip_header: Default::default(),
            proxy_protocol: false,
        }
    }
}

/// TLS on the public listener. Paths are resolved against the config file's directory.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Development only: generate a self-signed pair at `cert`/`key` when absent.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub self_signed_if_missing: bool,
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub sni: Vec<SniCert>,
}

/// An extra certificate chosen by server name.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    pub hosts: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The application pushgate fronts.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backend {
    /// The one server, when there is one: `http://host:port[/base]`,
    /// `https://host:port[/base]` or `unix:/path/to.sock`.
    #[serde(deserialize_with = "lenient::url")]
    pub url: url::Url,
    /// Several servers (instead of `url`), all of one scheme with the same
    /// base path; `balance` chooses among them.
    #[serde(deserialize_with = "lenient::urls")]
    pub urls: Vec<url::Url>,
    pub balance: Balance,
    /// Optional active checks of each server.
    pub health: Option<Health>,
    #[serde(deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    /// Whole request; streaming responses are not cut while bytes flow.
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// How `https://` servers are verified, and the client certificate.
    pub tls: Option<UpstreamTls>,
    /// Requests each server is asked at once; the rest wait in `queue`.
    /// None: no limit.
    #[serde(deserialize_with = "lenient::opt_usize")]
    pub max_connections: Option<usize>,
    /// Where requests beyond `max_connections` wait (`queue.rs`).
    pub queue: Option<Queue>,
    /// What is held of an exchange so that a slow client does not hold the
    /// application (`buffering.rs`).
    #[serde(deserialize_with = "lenient::or_default")]
    pub buffering: Buffering,
}

impl Default for Backend {
    fn default() -> Self {
        Backend {
            // A constant literal, not file input: it always parses.
            url: url::Url::parse("http://127.0.0.1:8080").expect("default backend URL parses"),
            urls: Vec::new(),
            balance: Balance::default(),
            health: None,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(60),
            tls: None,
            max_connections: None,
            queue: None,
            buffering: Buffering::default(),
        }
    }
}

impl Backend {
    /// The limit on each of its servers; `None` without `max_connections`
    /// (no limit, as before the key existed).
    pub fn conn_limit(&self) -> Option<ConnLimit> {
        Some(ConnLimit {
            max_connections: self.max_connections?,
            queue: self.queue.clone().unwrap_or_default(),
        })
    }

    /// The servers: `urls`, or `url` alone.
    pub fn servers(&self) -> &[url::Url] {
        if self.urls.is_empty() {
            std::slice::from_ref(&self.url)
        } else {
            &self.urls
        }
    }

    /// The servers with the key each is written at (`url`, or `urls[i]`).
    pub(crate) fn server_keys(&self, key: &KeyPath) -> Vec<(KeyPath, &url::Url)> {
        if self.urls.is_empty() {
            return vec![(key.key("url"), &self.url)];
        }
        let at = key.key("urls");
        self.urls
            .iter()
            .enumerate()
            .map(|(i, u)| (at.index(i), u))
            .collect()
    }
}

/// Active health checks: `GET path` on each server every `interval`; a
/// server leaves the rotation after `fails` failures in a row (not 2xx
/// within `timeout`) and comes back after `passes` good checks.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub path: String,
    #[serde(default = "Health::interval", deserialize_with = "units::duration")]
    pub interval: Duration,
    #[serde(default = "Health::timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default = "Health::fails", deserialize_with = "lenient::u32")]
    pub fails: u32,
    #[serde(default = "Health::passes", deserialize_with = "lenient::u32")]
    pub passes: u32,
}

impl Health {
    fn interval() -> Duration {
        Duration::from_secs(5)
    }
    fn timeout() -> Duration {
        Duration::from_secs(1)
    }
    fn fails() -> u32 {
        3
    }
    fn passes() -> u32 {
        2
    }
}

/// How an upstream's next server is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// The one with the fewest requests in flight from this gateway.
    LeastConn,
    /// The same client address, the same server (while it is up).
    IpHash,
}

/// The realtime endpoints: `{path}/ws`, `{path}/sse`, `{path}/poll`, `{path}/send`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Realtime {
    /// Starts with `/`, no trailing `/` (normalised on load).
    pub path: String,
    #[serde(deserialize_with = "units::duration")]
    pub heartbeat: Duration,
    #[serde(deserialize_with = "units::duration")]
    pub poll_timeout: Duration,
    #[serde(deserialize_with = "lenient::or_default")]
    pub history: History,
    #[serde(deserialize_with = "units::size")]
    pub max_message: usize,
    /// Messages buffered per connection; overflow closes it with a resume cursor.
    #[serde(deserialize_with = "lenient::usize")]
    pub client_queue: usize,
    /// Browser `Origin` check for ws/sse/poll/send: listed origins (and the
    /// gateway's own) get credentials; `"*"` lets any other page in anonymously.
    pub allowed_origins: Vec<String>,
    /// How long a presence member who lost every connection stays listed, so
    /// a reconnect does not flap leave/join.
    #[serde(deserialize_with = "units::duration")]
    pub presence_grace: Duration,
    /// On shutdown each WebSocket and SSE client is told to come back after
    /// a random delay within this window, so a restart is not a herd.
    #[serde(deserialize_with = "units::duration")]
    pub reconnect_spread: Duration,
    /// permessage-deflate on WebSockets (RFC 7692).
    #[serde(deserialize_with = "lenient::or_default")]
    pub compression: Compression,
}

impl Default for Realtime {
    fn default() -> Self {
        Realtime {
            path: "/realtime".to_owned(),
            heartbeat: Duration::from_secs(15),
            poll_timeout: Duration::from_secs(25),
            history: History::default(),
            max_message: 64 * 1024,
            client_queue: 1024,
            allowed_origins: vec!["*".to_owned()],
            presence_grace: Duration::from_secs(5),
            reconnect_spread: Duration::from_secs(1),
            compression: Compression::default(),
        }
    }
}

/// `realtime.compression`: permessage-deflate when a WebSocket client offers it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Compression {
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// Messages shorter than this go uncompressed: deflate's header and
    /// Huffman tables outweigh what a short JSON object saves.
    #[serde(deserialize_with = "units::size")]
    pub threshold: usize,
    /// The deflate level, 0 (store) to 9 (smallest, slowest).
    #[serde(deserialize_with = "lenient::u32")]
    pub level: u32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            enabled: true,
            threshold: 256,
            level: 3,
        }
    }
}

/// Per-channel history kept for resume.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct History {
    #[serde(deserialize_with = "lenient::usize")]
    pub size: usize,
    #[serde(deserialize_with = "units::duration")]
    pub ttl: Duration,
}

impl Default for History {
    fn default() -> Self {
        History {
            size: 1000,
            ttl: Duration::from_secs(600),
        }
    }
}

/// Which broker carries messages between ingest and hub.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    /// Filled with defaults on load when `kind: redis` and this is absent.
    pub redis: Option<RedisConfig>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".to_owned(),
            prefix: "pushgate".to_owned(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    pub format: LogFormat,
    /// A tracing filter: `info`, or directives like `pushgate=debug,hyper=info`.
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}
