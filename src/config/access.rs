//! Who may connect and how much: token verification settings (`auth:`) and the rate
//! and connection limits (`limits:`). Rates are typed (`Rate`, `NonZeroU32` burst) so
//! a zero quota cannot reach the limiter. Empty static tokens and admin keys (from
//! `${X:-}`) mean "unset" and are dropped on load, so an empty string can never
//! authenticate anyone.

use super::lenient;
use super::units::{self, RateLimit};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    pub jwt: Option<Jwt>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub static_tokens: Vec<StaticToken>,
    /// Empty list: the admin listener is open (on loopback only).
    #[serde(deserialize_with = "lenient::or_default")]
    pub admin_keys: Vec<String>,
    /// Name of a cookie carrying a token.
    pub cookie: Option<String>,
    /// Ask the application who a browser is (its own login).
    pub session: Option<super::session::SessionAuth>,
}

/// JWT verification. Key file paths are resolved against the config file's directory.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Jwt {
    /// An empty secret (from `${X:-}`) is treated as absent.
    pub hs256_secret: Option<String>,
    pub rs256_public_key: Option<PathBuf>,
    pub es256_public_key: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    #[serde(deserialize_with = "units::duration")]
    pub leeway: Duration,
}

impl Default for Jwt {
    fn default() -> Self {
        Jwt {
            hs256_secret: None,
            rs256_public_key: None,
            es256_public_key: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticToken {
    pub token: String,
    pub subject: String,
    /// Channel patterns this token may subscribe to.
    #[serde(default)]
    pub channels: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    #[serde(deserialize_with = "lenient::or_default")]
    pub per_client: PerClient,
    #[serde(deserialize_with = "lenient::or_default")]
    pub per_ip: PerIp,
    /// Admin publishes, per admin key.
    pub publish: RateLimit,
    #[serde(deserialize_with = "lenient::usize")]
    pub max_connections: usize,
    /// Channels one connection may follow.
    #[serde(deserialize_with = "lenient::usize")]
    pub max_channels_per_connection: usize,
    /// Subscribers one channel may have on this instance (unset: no cap).
    #[serde(deserialize_with = "lenient::opt_usize")]
    pub max_subscribers_per_channel: Option<usize>,
    /// Time a client gets to finish the TLS handshake.
    #[serde(deserialize_with = "super::units::duration")]
    pub handshake_timeout: Duration,
    /// Time a client gets to send a complete request head; also closes
    /// keep-alive connections idle between requests.
    #[serde(deserialize_with = "super::units::duration")]
    pub header_timeout: Duration,
    /// Largest request head accepted (HTTP/1; 431 over it).
    #[serde(deserialize_with = "super::units::size")]
    pub max_header_size: usize,
    /// What every request and answer buffer shares (`buffering.rs`).
    #[serde(deserialize_with = "super::lenient::or_default")]
    pub buffers: super::buffering::BufferLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_client: PerClient::default(),
            per_ip: PerIp::default(),
            publish: RateLimit::new(5000, Duration::from_secs(1), 10_000),
            max_connections: 100_000,
            max_channels_per_connection: 100,
            max_subscribers_per_channel: None,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_header_size: 64 * 1024,
            buffers: super::buffering::BufferLimits::default(),
        }
    }
}

/// Limits of an authenticated client (token or session subject).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerClient {
    #[serde(deserialize_with = "lenient::u32")]
    pub connections: u32,
    /// Frames or requests a client sends.
    pub messages: RateLimit,
    pub subscribes: RateLimit,
}

impl Default for PerClient {
    fn default() -> Self {
        PerClient {
            connections: 20,
            messages: RateLimit::new(20, Duration::from_secs(1), 40),
            subscribes: RateLimit::new(60, Duration::from_secs(60), 20),
        }
    }
}

/// Limits per client address: new TCP connections from anyone, and what
/// anonymous clients hold and do. Sized for an office or a carrier behind one
/// NAT address.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerIp {
    /// Anonymous realtime connections from one address.
    #[serde(deserialize_with = "lenient::u32")]
    pub connections: u32,
    /// New TCP connections.
    pub connects: RateLimit,
    /// Anonymous subscribes from one address.
    pub subscribes: RateLimit,
    /// Connections past `connects` whose request resumes with a cursor
    /// covering what it asks for: after a restart a whole office behind
    /// one address comes back at once, and its returning clients are not
    /// strangers. Fresh connections stay under `connects`.
    pub resumes: RateLimit,
}

impl Default for PerIp {
    fn default() -> Self {
        PerIp {
            connections: 5000,
            connects: RateLimit::new(500, Duration::from_secs(1), 2000),
            subscribes: RateLimit::new(1000, Duration::from_secs(1), 5000),
            // No more than `connects`: a forged cursor must not widen
            // what a stranger gets.
            resumes: RateLimit::new(500, Duration::from_secs(1), 2000),
        }
    }
}
