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
//! Ordinary requests go `server.rs -> server/relay.rs` (plain HTTP/1 `GET`
//! and `HEAD`, without hyper) or `server.rs -> router.rs -> proxy.rs`
//! (everything else); both reach the application through `upstream.rs`.
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
pub mod fuzzing;
pub(crate) mod hub;
pub(crate) mod ingest;
pub(crate) mod limits;
pub mod logging;
pub(crate) mod loops;
pub(crate) mod metrics;
pub(crate) mod model;
pub(crate) mod proxy;
pub(crate) mod proxy_protocol;
pub(crate) mod real_ip;
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

/// A running gateway.
pub struct Handle {
    state: AppState,
    public: SocketAddr,
    admin: SocketAddr,
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
        let state = AppState::new(Settings::new(config)?, hub, broker);
        if let Some(memory) = memory {
            memory.spawn_sweeper(Duration::from_secs(5), state.shutdown.clone());
        }
        if let Some(redis) = redis {
            redis.spawn_link(state.broker_stop.clone());
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
                state.broker_stop.clone(),
            );
        }
        spawn_limit_eviction(&state);
        // The loops outlive the accept loop: they serve the connections
        // that drain after it stopped, until the drain is over.
        let drained = state.broker_stop.clone();
        tokio::spawn(async move {
            let _lifetime = lifetime;
            drained.cancelled().await;
        });
        tokio::spawn(server::accept_loop(
            state.clone(),
            listeners.public,
            ListenerRole::Public,
            Some(loops),
        ));
        tokio::spawn(server::accept_loop(
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
        })
    }
}

/// Keep rate-limiter state bounded: forget idle keys every minute.
fn spawn_limit_eviction(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    state.limits.evict_idle();
                    state.app_checks.evict_idle();
                }
            }
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
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.state.shutdown.cancel();
        self.state.stopping.ring();
        self.state.tasks.close();
        let clean = tokio::time::timeout(grace, self.state.tasks.wait())
            .await
            .is_ok();
        if !clean {
            tracing::warn!(
                ?grace,
                "grace period over; closing the remaining connections"
            );
        }
        self.state.broker_stop.cancel();
        clean
    }
}
