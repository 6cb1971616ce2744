//! The application's server as the gateway reaches it: where it is, the
//! connections kept to it (hyper's client pool, and the relay's own pool in
//! `pool.rs`), the timeouts, and how its answers' framing is read
//! (`framing.rs`) and whether a connection may carry the next request
//! (`reuse.rs`). The proxy (client requests passed on) and the transports'
//! own requests (client messages forwarded to `client_messages.forward_to`)
//! both go through here, so neither calls the other.
//!
//! It is live state: a reload that keeps the backend's address and connect
//! timeout keeps these connections (`keep_connections_of`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config;
use crate::reply::{self, Body};
use server::{Server, Servers};

pub(crate) mod framing;
pub(crate) mod health;
pub(crate) mod pool;
pub(crate) mod registry;
pub(crate) mod reuse;
pub(crate) mod routes;
pub(crate) mod server;
pub(crate) mod stats;

#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    scheme: http::uri::Scheme,
    /// Its servers (`url`, or `urls` with `balance`), each with the relay's
    /// idle connections to it.
    servers: Arc<Servers>,
    base_path: String,
    timeout: Duration,
    /// Active checks of each server (`health:`).
    health: Option<config::Health>,
}

impl Upstream {
    pub fn new(backend: &config::Backend) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(backend.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(512)
            .build(connector);
        let servers = backend
            .servers()
            .iter()
            .map(|url| {
                let server = Server::new(authority_of(url), backend.connect_timeout);
                server.health.set_terms(backend.health.clone());
                Arc::new(server)
            })
            .collect();
        let first = backend.servers().first().unwrap_or(&backend.url);
        Upstream {
            client,
            servers: Arc::new(Servers::new(servers, backend.balance)),
            scheme: http::uri::Scheme::HTTP,
            base_path: first.path().trim_end_matches('/').to_string(),
            timeout: backend.timeout,
            health: backend.health.clone(),
        }
    }

    /// Start the health checks of servers no task checks yet (a new
    /// upstream, a server a reload added); see `health.rs`.
    pub(crate) fn watch_health(&self, name: &str, stop: &tokio_util::sync::CancellationToken) {
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
            health::watch(
                server,
                self.client.clone(),
                uri,
                name.to_string(),
                stop.clone(),
            );
        }
    }

    /// Take over `old`'s connections (both pools) server by server, when
    /// both reach their servers the same way (`same_settings`): a reload
    /// rebuilds the settings, and the application's keep-alive connections
    /// should outlive that. A server that stays keeps its idle connections
    /// and its down mark; a new one starts empty; a removed one is dropped
    /// once the requests holding it finish.
    pub(crate) fn keep_connections_of(&mut self, old: &Upstream, same_settings: bool) {
        if !same_settings {
            return;
        }
        self.client = old.client.clone();
        let list = self
            .servers
            .list
            .iter()
            .map(|new| {
                let kept = old
                    .servers
                    .list
                    .iter()
                    .find(|was| was.authority == new.authority)
                    .unwrap_or(new)
                    .clone();
                // The new terms reach its running check task.
                kept.health.set_terms(self.health.clone());
                kept
            })
            .collect();
        self.servers = Arc::new(Servers::new(list, self.servers.balance()));
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

    /// The hyper client that carries everything the relay does not.
    pub(crate) fn client(&self) -> &Client<HttpConnector, Body> {
        &self.client
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

/// What the gateway itself asks of the application (client messages
/// forwarded to `client_messages.forward_to`, session and resource checks):
/// small requests whose whole answer is read, bounded by `limit` bytes.
impl Upstream {
    /// POST a small JSON body to a backend path (client messages).
    pub async fn post(
        &self,
        path: &str,
        mut headers: HeaderMap,
        body: Bytes,
        limit: usize,
    ) -> Result<(StatusCode, Bytes), BackendError> {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let answer = self
            .call(http::Method::POST, path, headers, body, limit)
            .await?;
        Ok((answer.status, answer.body))
    }

    /// Send one request to `path` (the upstream's base path in front) and
    /// read its whole answer: status, head and at most `limit` bytes of body.
    /// `headers` are sent as given; nothing of a client's is added here.
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
        limit: usize,
    ) -> Result<Answer, BackendError> {
        let pq = http::uri::PathAndQuery::try_from(format!("{}{}", self.base_path, path))
            .map_err(|e| BackendError::Request(e.to_string()))?;
        // A connect that failed reached no server: the next one is asked,
        // whatever the method, as the body is still here to send again.
        let mut tried = Vec::new();
        let (mut resp, conn) = loop {
            let Some(i) = self.servers.pick(None, &tried) else {
                return Err(BackendError::Unavailable(
                    "no server could be reached".into(),
                ));
            };
            tried.push(i);
            let server = &self.servers.list[i];
            let uri = self
                .uri_on(server, pq.clone())
                .map_err(|e| BackendError::Request(e.to_string()))?;
            let mut req = Request::builder()
                .method(method.clone())
                .uri(uri)
                .body(reply::full(body.clone()))
                .map_err(|e| BackendError::Request(e.to_string()))?;
            *req.headers_mut() = headers.clone();
            // The same rules for reusing its connection as a proxied request's.
            let conn = reuse::Connection::watch(&mut req);
            let mut in_flight = server.start();
            match tokio::time::timeout(self.timeout, self.client.request(req)).await {
                Err(_) => return Err(BackendError::Timeout),
                Ok(Ok(resp)) => {
                    server.mark_up();
                    in_flight.answered(resp.status().as_u16());
                    break (resp, conn);
                }
                Ok(Err(e)) if e.is_connect() => {
                    in_flight.not_connected();
                    server.mark_down();
                    tracing::warn!(server = %server.authority, error = %e, "upstream server unreachable");
                }
                Ok(Err(e)) => return Err(BackendError::Unavailable(e.to_string())),
            }
        };
        reuse::check(&method, false, &mut resp, &conn)
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(
            self.timeout,
            http_body_util::Limited::new(body, limit).collect(),
        )
        .await
        .map_err(|_| BackendError::Timeout)?
        .map_err(|e| BackendError::Unavailable(e.to_string()))?
        .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// A whole answer to [`Upstream::call`].
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the application did not answer in time")]
    Timeout,
    #[error("the application is unreachable: {0}")]
    Unavailable(String),
    #[error("bad request to the application: {0}")]
    Request(String),
}
