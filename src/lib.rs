#![forbid(unsafe_code)]
// Handlers return `Result<_, Response>`: the refusal *is* the error, built once where it is decided.
#![allow(clippy::result_large_err)]
//! pushgate: a TLS-terminating reverse proxy that adds realtime delivery
//! (WebSocket, Server-Sent Events, long-polling) to an existing application.
//!
//! Where to look:
//! - a message **enters** through `admin/publish.rs`, a webhook
//!   (`admin/webhook.rs`, rules in `ingest/webhook.rs`), a response tap
//!   (`router/tapped.rs`, rules in `ingest/tap.rs`), or a client publish
//!   (`transport/ws/requests.rs`, `transport/publish.rs`), and gets its id
//!   and history in `broker/`: `memory.rs`, or `redis.rs`, whose link also
//!   hands it to every other instance (`redis/link.rs`);
//! - it **fans out** in `hub.rs`, into each connection's bounded `hub/inbox.rs`;
//! - it **leaves** the process through `transport/{ws,sse,poll}.rs`, which
//!   share the resume and replay logic in `transport/session.rs` (SSE text
//!   is made in `transport/sse/stream.rs` and written either by hyper,
//!   `sse/body.rs`, or straight onto an HTTP/1 connection, `sse/http1.rs`).
//!
//! Ordinary requests go `server.rs -> relay.rs` (plain HTTP/1 `GET` and
//! `HEAD`, without hyper; the pure HTTP/1 rules are `h1/`, and
//! `h1/classify.rs` picks the engine for each head) or
//! `server.rs -> router.rs -> proxy.rs` (everything else); both reach the
//! application through `upstream.rs`.
//! The modules form one-way layers (`docs/ARCHITECTURE.md`), kept by
//! `tests/layers.rs`.

pub(crate) mod admin;
pub(crate) mod alarm;
pub mod auth;
pub mod bench;
pub(crate) mod broker;
pub mod config;
pub(crate) mod conn_info;
pub(crate) mod connections;
pub(crate) mod extended_connect;
pub mod fuzzing;
pub(crate) mod h1;
pub(crate) mod hub;
pub(crate) mod ingest;
pub(crate) mod lifecycle;
pub(crate) mod limits;
pub mod logging;
pub(crate) mod loops;
pub(crate) mod mercure;
pub(crate) mod metrics;
pub(crate) mod model;
pub(crate) mod proxy;
pub(crate) mod proxy_protocol;
pub(crate) mod pusher;
pub(crate) mod real_ip;
pub(crate) mod relay;
pub mod reload;
pub(crate) mod reply;
pub(crate) mod router;
pub(crate) mod rules;
pub(crate) mod server;
pub(crate) mod session_auth;
pub mod state;
pub mod tls;
pub(crate) mod transport;
pub(crate) mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::broker::{Broker, MemoryBroker, RedisBroker};
use crate::config::{BrokerKind, Config};
use crate::hub::Hub;
use crate::lifecycle::Lifecycle;
use crate::server::ListenerRole;
use crate::state::{AppState, Settings};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Settings(#[from] state::SettingsError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Redis(#[from] crate::broker::redis::RedisSetupError),
    #[error("starting the serving loops: {0}")]
    Loops(std::io::Error),
}

/// The two listening sockets, bound by the caller (port 0 in tests).
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Bind the addresses from `listen:` with a deep accept backlog.
    pub fn bind(config: &Config) -> Result<Listeners, StartError> {
        Ok(Listeners {
            public: bind(config.listen.public)?,
            admin: bind(config.listen.admin)?,
        })
    }
}

/// Bind a listening socket with `SO_REUSEADDR` and a 4096-deep backlog.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let make = || -> std::io::Result<TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(4096)?;
        TcpListener::from_std(socket.into())
    };
    make().map_err(|source| StartError::Bind { addr, source })
}

pub struct Gateway;

/// A running gateway. Dropped without [`Handle::shutdown`], it stops at
/// once: its background tasks end and its event loops' threads exit,
/// closing the connections they served.
pub struct Handle {
    state: AppState,
    public: SocketAddr,
    admin: SocketAddr,
    /// The event loops outlive the accept loop: they serve the connections
    /// that drain after it stopped, until the drain is over and this handle
    /// goes (`loops.rs`).
    _loops: loops::Lifetime,
}

impl Gateway {
    /// Start serving on `listeners` with `config`. Must be called inside a Tokio runtime.
    pub fn start(config: Config, listeners: Listeners) -> Result<Handle, StartError> {
        tls::install_crypto_provider();
        // First: nothing else is running yet if it fails, and the loops end
        // with `lifetime` if a later step does.
        let (loops, lifetime) = loops::Loops::start().map_err(StartError::Loops)?;
        let hub = Hub::new();
        let (broker, memory, redis): (Arc<dyn Broker>, _, _) = match config.broker.kind {
            BrokerKind::Memory => {
                let m = MemoryBroker::new(hub.clone());
                (m.clone(), Some(m), None)
            }
            BrokerKind::Redis => {
                let cfg = config.broker.redis.clone().unwrap_or_default();
                let r = RedisBroker::new(hub.clone(), &cfg)?;
                (r.clone(), None, Some(r))
            }
        };
        let public = listeners
            .public
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.listen.public,
                source,
            })?;
        let admin = listeners
            .admin
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.listen.admin,
                source,
            })?;
        let lifecycle = Lifecycle::new();
        let state = AppState::new(
            Settings::new(config, &lifecycle)?,
            hub,
            broker,
            lifecycle.clone(),
        );
        if let Some(memory) = memory {
            memory.spawn_sweeper(Duration::from_secs(5), &lifecycle);
        }
        if let Some(redis) = redis {
            redis.spawn_link(&lifecycle);
            let (a, b) = (state.clone(), state.clone());
            state.presence.spawn_refresh(
                move || a.settings().config.realtime.presence_grace,
                move |channel| {
                    let settings = b.settings();
                    match settings.rules.find(channel) {
                        Some(rule) => rule.history,
                        None => crate::broker::HistoryPolicy {
                            size: settings.config.realtime.history.size,
                            ttl: settings.config.realtime.history.ttl,
                        },
                    }
                },
            );
        }
        spawn_limit_eviction(&state);
        state.start_pusher_webhooks();
        lifecycle.spawn_until_drain(server::accept_loop(
            state.clone(),
            listeners.public,
            ListenerRole::Public,
            Some(loops),
        ));
        lifecycle.spawn_until_drain(server::accept_loop(
            state.clone(),
            listeners.admin,
            ListenerRole::Admin,
            None,
        ));
        tracing::info!(%public, %admin, "pushgate listening");
        Ok(Handle {
            state,
            public,
            admin,
            _loops: lifetime,
        })
    }
}

/// Keep rate-limiter state bounded: forget idle keys every minute.
fn spawn_limit_eviction(state: &AppState) {
    let held = state.clone();
    state.lifecycle.spawn_until_drain(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            held.limits.evict_idle();
            held.app_checks.evict_idle();
        }
    });
}

impl Handle {
    pub fn public_addr(&self) -> SocketAddr {
        self.public
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Drain: stop accepting, tell realtime clients to reconnect elsewhere,
    /// let in-flight requests finish, and give up after `grace`.
    /// Returns once every task of the gateway has ended; whether the
    /// connections ended within `grace`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.state.lifecycle.drain(grace).await
    }
}

impl Drop for Handle {
    /// After [`Handle::shutdown`] this finds every stage over; otherwise it
    /// ends them without waiting. The event loops stop with `_loops`.
    fn drop(&mut self) {
        self.state.lifecycle.stop_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The loop threads counted are this test's: the tests that start loops
    // take turns (`one_at_a_time`).
    use loops::tests::loop_threads;

    #[tokio::test]
    async fn a_gateway_dropped_without_shutdown_leaves_no_loop_threads() {
        let _turn = loops::tests::one_at_a_time().await;
        let listeners = Listeners {
            public: bind(([127, 0, 0, 1], 0).into()).unwrap(),
            admin: bind(([127, 0, 0, 1], 0).into()).unwrap(),
        };
        let handle = Gateway::start(Config::default(), listeners).unwrap();
        assert_eq!(loop_threads(), loops::count(), "one thread per loop");
        let lifecycle = handle.state().lifecycle.clone();
        drop(handle);
        loops::tests::until_no_loop_threads("loop threads outlived the gateway").await;
        // The background tasks went too: the accept loops, the sweeper.
        tokio::time::timeout(Duration::from_secs(10), async {
            while !lifecycle.has_stopped() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("every background task ended");
    }
}
