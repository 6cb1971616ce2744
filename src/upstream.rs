//! The application's server as the gateway reaches it: where it is, the
//! connections kept to it (one pool per server, `pool.rs`, which hyper's
//! engine, `exchange.rs`, and the relay both use), the timeouts, and how
//! its answers' framing is read (`h1/framing.rs`) and whether a connection may
//! carry the next request (`reuse.rs`). The proxy (client requests passed
//! on) and the gateway's own requests (client messages forwarded to
//! `client_messages.forward_to`, session checks, webhooks: `call.rs`) both
//! go through here, so neither calls the other, and both reach a server by
//! one failover loop (`attempt.rs`).
//!
//! Servers are `http://`, `https://` (TLS to the application, `tls.rs`) or
//! `unix:` sockets; a connection is TCP, TLS over it, or a unix socket
//! (`backend_conn.rs`). `http://` and `https://` upstreams also go through
//! the relay (`relayable`); unix sockets take hyper's path.
//!
//! It is live state: a reload that keeps the backend's address, connect
//! timeout and TLS settings keeps these connections (`keep_connections_of`).

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use http::header::{self, HeaderMap, HeaderValue};

use crate::config;
use crate::lifecycle::Lifecycle;
pub use call::BackendError;
use server::{Server, Servers};
use tls::{TlsClient, UpstreamTlsError};

pub(crate) mod attempt;
pub(crate) mod backend_conn;
mod call;
pub(crate) mod exchange;
mod exposition;
pub(crate) mod health;
mod health_check;
pub(crate) mod limit;
pub(crate) mod pool;
pub(crate) mod registry;
pub(crate) mod reuse;
pub(crate) mod routes;
pub(crate) mod server;
pub(crate) mod stats;
pub(crate) mod tls;

/// How an upstream's servers are reached: what a reload must keep for the
/// old connections to still be the right ones.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reach {
    /// `http`, `https` or `unix`.
    scheme: String,
    /// What the TLS settings were built from (`TlsClient::fingerprint`).
    tls: Option<u64>,
    /// The socket of each `unix:` server, by its made-up authority's index.
    sockets: Vec<std::path::PathBuf>,
}

#[derive(Clone)]
pub struct Upstream {
    reach: Reach,
    scheme: http::uri::Scheme,
    /// Its servers (`url`, or `urls` with `balance`), each with its pool of
    /// idle connections.
    servers: Arc<Servers>,
    base_path: String,
    timeout: Duration,
    /// Active checks of each server (`health:`).
    health: Option<config::Health>,
    /// `max_connections` and `queue:` of each server.
    limit: Option<config::ConnLimit>,
}

impl Upstream {
    /// Fails when its `tls:` files cannot be used (they were checked at
    /// load, but may have changed since).
    /// Its servers' connection tasks belong to `lifecycle`.
    pub fn new(
        backend: &config::Backend,
        lifecycle: &Lifecycle,
    ) -> Result<Upstream, UpstreamTlsError> {
        let first = backend.servers().first().unwrap_or(&backend.url);
        let scheme = first.scheme().to_owned();
        let tls = match (&backend.tls, scheme.as_str()) {
            (Some(tls), "https") => Some(TlsClient::new(tls)?),
            (None, "https") => Some(TlsClient::new(&config::UpstreamTls::default())?),
            _ => None,
        };
        let mut sockets = Vec::new();
        let servers = backend
            .servers()
            .iter()
            .map(|url| {
                let authority = if url.scheme() == "unix" {
                    sockets.push(std::path::PathBuf::from(url.path()));
                    unix_authority(sockets.len() - 1)
                } else {
                    authority_of(url)
                };
                let mut server = Server::new(authority, backend.connect_timeout)
                    .with_name(name_of(url))
                    .with_tasks(lifecycle.tasks().clone());
                if url.scheme() == "unix" {
                    server = server.with_unix(std::path::PathBuf::from(url.path()));
                }
                if let Some(tls) = &tls {
                    // Never plain TCP to an `https://` server.
                    let Some(server_tls) = server_tls(tls, url) else {
                        return Err(UpstreamTlsError::Name(name_of(url)));
                    };
                    server = server.with_tls(server_tls);
                }
                server.health.set_terms(backend.health.clone());
                server.limit.set_terms(backend.conn_limit());
                Ok(Arc::new(server))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Upstream {
            servers: Arc::new(Servers::new(servers, backend.balance)),
            scheme: if scheme == "https" {
                http::uri::Scheme::HTTPS
            } else {
                http::uri::Scheme::HTTP
            },
            base_path: match scheme.as_str() {
                // The path of a unix: URL is the socket's.
                "unix" => String::new(),
                _ => first.path().trim_end_matches('/').to_string(),
            },
            timeout: backend.timeout,
            health: backend.health.clone(),
            limit: backend.conn_limit(),
            reach: Reach {
                scheme,
                tls: tls.map(|t| t.fingerprint),
                sockets,
            },
        })
    }

    /// Start the health checks of servers no task checks yet (a new
    /// upstream, a server a reload added); see `health_check.rs`.
    pub(crate) fn watch_health(&self, name: &str, lifecycle: &Lifecycle) {
        if self.health.is_none() {
            return;
        }
        for server in &self.servers.list {
            let (scheme, authority, base) = (
                self.scheme.clone(),
                server.authority.clone(),
                self.base_path.clone(),
            );
            let uri = move |path: &str| {
                Uri::builder()
                    .scheme(scheme.clone())
                    .authority(authority.clone())
                    .path_and_query(format!("{base}{path}"))
                    .build()
                    .ok()
            };
            let host = self
                .is_unix()
                .then(|| HeaderValue::from_static("localhost"));
            health_check::watch(server, uri, host, name.to_string(), lifecycle);
        }
    }

    /// Whether the HTTP/1 relay may carry its requests: `http://` and
    /// `https://` servers (TCP, or TLS over it); unix sockets go by hyper.
    pub(crate) fn relayable(&self) -> bool {
        self.reach.scheme == "http" || self.reach.scheme == "https"
    }

    /// Whether its servers are unix sockets (whose made-up authority must
    /// never become a request's `Host`).
    pub(crate) fn is_unix(&self) -> bool {
        self.reach.scheme == "unix"
    }

    /// Take over `old`'s connections server by server, when
    /// both reach their servers the same way (`same_settings`): a reload
    /// rebuilds the settings, and the application's keep-alive connections
    /// should outlive that. A server that stays keeps its idle connections
    /// and its down mark, the slots its requests hold and its queue; a new
    /// one starts empty; a removed one is dropped
    /// once the requests holding it finish. Nothing is kept when the way
    /// servers are reached changed (scheme, TLS settings or their files'
    /// contents, sockets: `Reach`).
    ///
    /// Servers are matched by what they are (`Server::name`), not by
    /// authority: `unix-0.localhost` may be another socket after a reload.
    pub(crate) fn keep_connections_of(&mut self, old: &Upstream, same_settings: bool) {
        if !same_settings || self.reach != old.reach {
            return;
        }
        let list = self
            .servers
            .list
            .iter()
            .map(|new| {
                let kept = old
                    .servers
                    .list
                    .iter()
                    .find(|was| was.authority == new.authority && was.name == new.name)
                    .unwrap_or(new)
                    .clone();
                // The new terms reach its running check task, and its
                // slots and queue (held and waiting requests stay).
                kept.health.set_terms(self.health.clone());
                kept.limit.set_terms(self.limit.clone());
                kept
            })
            .collect();
        self.servers = Arc::new(Servers::new(list, self.servers.balance()));
    }

    /// Give a request without `Host` the one the application should see:
    /// for a unix socket `localhost`, not the made-up authority hyper would
    /// take from the URI. Elsewhere hyper's (the server's authority) stands.
    pub(crate) fn default_host(&self, headers: &mut HeaderMap) {
        if self.is_unix() {
            headers
                .entry(header::HOST)
                .or_insert(HeaderValue::from_static("localhost"));
        }
    }

    /// The backend URL's path, in front of every forwarded request's.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// `backend.timeout`: for the answer head, and for each wait within its body.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn servers(&self) -> &Servers {
        &self.servers
    }

    /// The absolute URI of `path_and_query` on the first server: where a
    /// request is written before [`Servers::pick`] chooses its server.
    pub(crate) fn uri(&self, path_and_query: http::uri::PathAndQuery) -> Result<Uri, http::Error> {
        match self.servers.list.first() {
            Some(server) => self.uri_on(server, path_and_query),
            // Never: an upstream has at least its `url`.
            None => Uri::builder().path_and_query(path_and_query).build(),
        }
    }

    /// The absolute URI of `path_and_query` on `server`.
    pub(crate) fn uri_on(
        &self,
        server: &Server,
        path_and_query: http::uri::PathAndQuery,
    ) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(server.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }
}

/// An error with its causes, `outer: inner: …`: hyper's client errors say
/// only their kind ("client error (Connect)") and keep the why as source.
pub(crate) fn reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Methods that may be sent twice with the same effect (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ]
    .contains(method)
}

/// A unix server's made-up authority, `unix-N.localhost`: a unix server has
/// no host to put in a URI or in the metrics, and the `Host` an
/// application sees is the one the proxy rules set, never this name.
pub fn unix_authority(index: usize) -> http::uri::Authority {
    format!("unix-{index}.localhost")
        .parse()
        .unwrap_or_else(|_| http::uri::Authority::from_static("unix.localhost"))
}

/// How an `https://` server is reached: the upstream's TLS settings,
/// and the name sent and verified (`tls.server_name`, else the URL's host).
/// `None` when the host is no valid name (refused at load).
fn server_tls(tls: &TlsClient, url: &url::Url) -> Option<backend_conn::ServerTls> {
    let name = match &tls.server_name {
        Some(name) => name.clone(),
        None => {
            let host = url
                .host_str()?
                .trim_start_matches('[')
                .trim_end_matches(']');
            rustls_pki_types::ServerName::try_from(host.to_string()).ok()?
        }
    };
    Some(backend_conn::ServerTls {
        config: tls.config.clone(),
        name,
        shown: name_of(url),
    })
}

/// A server as logs name it: `https://host:port`, `unix:/path`.
fn name_of(url: &url::Url) -> String {
    match url.scheme() {
        "unix" => format!("unix:{}", url.path()),
        scheme => format!("{scheme}://{}", authority_of(url)),
    }
}

/// `host:port` of a server URL, IPv6 hosts in brackets.
fn authority_of(url: &url::Url) -> http::uri::Authority {
    let host = url.host_str().unwrap_or("127.0.0.1");
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let text = match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    text.parse()
        .unwrap_or_else(|_| http::uri::Authority::from_static("127.0.0.1:8080"))
}
