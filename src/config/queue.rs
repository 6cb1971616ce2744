//! An upstream's connection limit and the queue in front of it
//! (`max_connections`, `queue: { size, timeout }`): what each server of the
//! upstream may be asked at once, and how long and how many requests beyond
//! that may wait. Legacy applications have a handful of workers; a burst
//! the gateway passed on whole would queue inside the application, where
//! nobody can bound it or answer fast.

use std::time::Duration;

use serde::Deserialize;

use super::{lenient, units};

/// `queue:` of an upstream: at most `size` requests wait for a server's
/// free connection, each at most `timeout`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Queue {
    #[serde(deserialize_with = "lenient::usize")]
    pub size: usize,
    #[serde(deserialize_with = "units::duration")]
    pub timeout: Duration,
}

impl Default for Queue {
    /// HAProxy queues without bound for `timeout queue`; a bound is kept
    /// here so a flood costs a known amount of memory.
    fn default() -> Self {
        Queue {
            size: 1000,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The limit in force on each server of an upstream: `max_connections`
/// requests at once, and its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnLimit {
    pub max_connections: usize,
    pub queue: Queue,
}
