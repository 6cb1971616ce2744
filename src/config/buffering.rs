//! What the gateway holds of a proxied exchange so that the application's
//! worker is not held by a slow client: `buffering:` of an upstream
//! (`backend:` and each of `upstreams:`), a route's switches over it, and the
//! gateway-wide bound on the memory all buffers take (`limits.buffers`).
//!
//! The switches read `on`/`off` as nginx's configuration writes them: a YAML
//! 1.2 parser reads those as strings, so both they and `true`/`false` are
//! accepted, and anything else is an error naming the key.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::error::Report;
use super::locate::KeyPath;
use super::units;

/// `buffering:` of an upstream. The defaults are nginx's: both ways on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Buffering {
    /// Read a request body whole before an upstream connection is taken
    /// (nginx `proxy_request_buffering`).
    #[serde(deserialize_with = "on_off")]
    pub request: bool,
    /// Take an answer off the upstream as fast as it comes, then feed the
    /// client at its own pace (nginx `proxy_buffering`).
    #[serde(deserialize_with = "on_off")]
    pub response: bool,
    /// Per request and per answer, held in memory before the rest goes to
    /// a temporary file.
    #[serde(deserialize_with = "units::size")]
    pub memory: usize,
    /// A request body larger than this is refused with 413 (nginx
    /// `client_max_body_size`); an answer is held up to this much, the rest
    /// passed at the client's pace (nginx `proxy_max_temp_file_size`).
    #[serde(deserialize_with = "units::size")]
    pub max_body: usize,
    /// The longest a client may leave a buffered request body without a
    /// byte before it is answered 408 (nginx `client_body_timeout`), and
    /// an HTTP/2 stream may take nothing of a buffered answer while bytes
    /// wait for it before that answer is cut off and its buffer let go (a
    /// stream whose window is never opened blocks no socket, so the send
    /// timeout on the socket never sees it). Per read, as nginx's: not a
    /// bound on the whole transfer.
    #[serde(deserialize_with = "units::duration")]
    pub body_timeout: Duration,
}

impl Default for Buffering {
    fn default() -> Self {
        Buffering {
            request: true,
            response: true,
            memory: 1024 * 1024,
            max_body: 100 * 1024 * 1024,
            body_timeout: Duration::from_secs(60),
        }
    }
}

impl Buffering {
    /// This policy with a route's switches applied.
    pub fn with(mut self, route: RouteBuffering) -> Buffering {
        self.request = route.request.unwrap_or(self.request);
        self.response = route.response.unwrap_or(self.response);
        self
    }
}

/// `buffering:` of a route: either switch left out keeps the upstream's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteBuffering {
    #[serde(deserialize_with = "opt_on_off")]
    pub request: Option<bool>,
    #[serde(deserialize_with = "opt_on_off")]
    pub response: Option<bool>,
}

/// `limits.buffers`: what every buffer of the gateway shares.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferLimits {
    /// Memory all request and answer buffers may hold together; past it a
    /// buffer spills to its temporary file at once.
    #[serde(deserialize_with = "units::size")]
    pub memory: usize,
    /// Bytes all temporary files may hold together (nginx has no such
    /// bound; its `proxy_max_temp_file_size` is per answer). Past it an
    /// answer is passed at the client's pace, as past `max_body`, and an
    /// upload that would need the disk is refused with 503 and
    /// `Retry-After`: a flood of large bodies fills neither the disk nor
    /// the file table.
    #[serde(deserialize_with = "units::size")]
    pub disk: usize,
    /// Where temporary files are made (unset or empty: the system's,
    /// `$TMPDIR` or `/tmp`; relative to the config file's directory). Each
    /// is unlinked as it is made, so none outlives its request, whatever
    /// ends it.
    pub temp_dir: Option<PathBuf>,
}

impl Default for BufferLimits {
    fn default() -> Self {
        BufferLimits {
            memory: 256 * 1024 * 1024,
            disk: 10 * 1024 * 1024 * 1024,
            temp_dir: None,
        }
    }
}

/// The problems of an upstream's `buffering:` at `key`.
pub(crate) fn check(b: &Buffering, key: &KeyPath, r: &mut Report) {
    if b.max_body == 0 {
        r.add(key.key("max_body"), "must be at least 1 byte");
    }
    if b.body_timeout.is_zero() {
        r.add(key.key("body_timeout"), "must be greater than 0");
    }
}

struct OnOff;

impl Visitor<'_> for OnOff {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("on, off, true or false")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match v.trim().to_ascii_lowercase().as_str() {
            "on" | "true" => Ok(true),
            "off" | "false" => Ok(false),
            _ => Err(E::custom(format!(
                "expected on, off, true or false, found {v:?}"
            ))),
        }
    }
}

/// `deserialize_with` for a switch written `on`/`off` or `true`/`false`.
pub(crate) fn on_off<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(OnOff)
}

fn opt_on_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct Wrapped(bool);
    impl<'de> Deserialize<'de> for Wrapped {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            on_off(d).map(Wrapped)
        }
    }
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}
