//! The failover loop: how one request reaches one of an upstream's
//! servers, whichever road it came by (a proxied request through hyper or
//! the relay, or the gateway's own request to the application, `call`).
//!
//! Each turn picks a server not tried yet under the `balance` policy and
//! the servers' slots (`Servers::pick`), takes a slot on it
//! (`max_connections`, waiting in its queue if need be, with nothing held
//! meanwhile), and gives the caller `backend.timeout` to get an answer
//! head from it. A connect that failed marks the server down; a failure
//! the caller says may be retried asks the next server, until every one
//! was tried. The slot and the in-flight count are a guard ([`InFlight`]):
//! whatever way a turn ends, a dropped future included, they are given
//! back, and an answer keeps them for as long as its body runs.
//!
//! It lives here, once, so that what a retry may do and how a server is
//! marked is decided in one place; the callers only say how a request is
//! sent and which of their failures may go to the next server.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use super::limit::Refused;
use super::server::{InFlight, Server, Servers};

/// What a caller learns of its turn before it tries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Turn {
    /// Servers not tried yet remain after this one: a failure may go on.
    pub(crate) more: bool,
}

/// How one try on one server ended, as the caller judges it.
pub(crate) enum Tried<T, E> {
    /// An answer head came, with its status.
    Answered { value: T, status: u16 },
    /// No connection was made: the server is marked down. `retry`: the
    /// next server may be asked.
    Unreachable { error: E, retry: bool },
    /// A connection was made but gave no answer head. `retry`: nothing
    /// reached the client, and the request may be sent again.
    Failed { error: E, retry: bool },
    /// The request could not be made for this server (a URI or header it
    /// cannot carry): nothing was sent, nothing is the server's fault, and
    /// no other server is asked.
    Unsent { error: E },
}

impl<T, E> Tried<T, E> {
    /// The same outcome with its error as `wrap` makes it.
    pub(crate) fn map_error<F>(self, wrap: impl FnOnce(E) -> F) -> Tried<T, F> {
        match self {
            Tried::Answered { value, status } => Tried::Answered { value, status },
            Tried::Unreachable { error, retry } => Tried::Unreachable {
                error: wrap(error),
                retry,
            },
            Tried::Failed { error, retry } => Tried::Failed {
                error: wrap(error),
                retry,
            },
            Tried::Unsent { error } => Tried::Unsent { error: wrap(error) },
        }
    }
}

/// A server that answered, and the guard of its slot: it is to be held
/// until the answer's body ends.
pub(crate) struct Reached<'s, T> {
    pub(crate) server: &'s Arc<Server>,
    pub(crate) in_flight: InFlight,
    pub(crate) value: T,
}

/// Why no server answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unreached<E> {
    /// Every server was tried and none could be reached.
    #[error("no server of the upstream could be reached")]
    Exhausted,
    /// The chosen server's connections were all in use and no slot was had.
    #[error("{0}")]
    Busy(Refused),
    /// No answer head within `backend.timeout` of taking a slot.
    #[error("no answer in time")]
    TimedOut,
    /// A failure the caller would not send on to the next server.
    #[error("{0}")]
    Failed(E),
}

impl Servers {
    /// Try `on` against the servers, one turn per server at most, until one
    /// answers (see the module's doc). `timeout` bounds each turn from its
    /// slot on, not the wait in a queue. A refused slot ends the loop:
    /// a request that was queued for its timeout does not queue again.
    pub(crate) async fn attempt<'s, T, E, F, Fut>(
        &'s self,
        client: Option<IpAddr>,
        timeout: Duration,
        mut on: F,
    ) -> Result<Reached<'s, T>, Unreached<E>>
    where
        F: FnMut(&'s Arc<Server>, Turn) -> Fut,
        Fut: Future<Output = Tried<T, E>>,
        E: std::fmt::Display,
    {
        let mut tried = Vec::new();
        loop {
            let Some(i) = self.pick(client, &tried) else {
                return Err(Unreached::Exhausted);
            };
            tried.push(i);
            let server = &self.list[i];
            let turn = Turn {
                more: tried.len() < self.list.len(),
            };
            let mut in_flight = server.admit().await.map_err(|refused| {
                // Counted per server (`upstream_queue_refused_total`); a
                // flood of them is no news for the log.
                debug!(server = %server.name, %refused, "upstream server busy");
                Unreached::Busy(refused)
            })?;
            let Ok(tried_on) = tokio::time::timeout(timeout, on(server, turn)).await else {
                return Err(Unreached::TimedOut);
            };
            match tried_on {
                Tried::Answered { value, status } => {
                    server.mark_up();
                    in_flight.answered(status);
                    return Ok(Reached {
                        server,
                        in_flight,
                        value,
                    });
                }
                Tried::Unreachable { error, retry } => {
                    warn!(server = %server.name, %error, "upstream server unreachable");
                    in_flight.not_connected();
                    server.mark_down();
                    if !retry {
                        return Err(Unreached::Failed(error));
                    }
                }
                Tried::Unsent { error } => {
                    in_flight.unsent();
                    return Err(Unreached::Failed(error));
                }
                // Failed without an answer on a connection that was made
                // (a server killed mid-request).
                Tried::Failed { error, retry } => {
                    if !retry {
                        return Err(Unreached::Failed(error));
                    }
                    warn!(server = %server.name, %error, "upstream server failed before answering; trying the next");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
