//! The reverse proxy: every request that is not a realtime endpoint goes to
//! the application, unchanged apart from hop-by-hop headers, the
//! `X-Forwarded-*`/`Forwarded` headers a proxy owes it, and the fields only
//! the gateway may assert (`forwarded.rs`), which a client cannot forge.
//!
//! Bodies stream both ways and are never collected, so a large upload or an
//! endless SSE response from the backend costs a few buffers, not its size
//! (a body without a length is read ahead a little first: `upload.rs`).
//! A backend connection carries another client's request only after an
//! answer whose end its framing stated (`reuse.rs`).
//! `backend.timeout` bounds the wait for response headers; once they arrive
//! the body flows as long as the backend sends. Upgrades (WebSocket to the
//! application's own paths) are tunnelled byte for byte.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::{Instrument, debug, warn};

use crate::config;
use crate::conn_info::ConnInfo;
use crate::metrics::stats::{Gauge, Stats};
use crate::reply::{self, Body};

pub(crate) mod chunked;
mod fields;
pub(crate) mod forwarded;
pub(crate) mod head;
mod idle;
pub(crate) mod pool;
mod reuse;
mod upload;

pub(crate) use fields::HOP_BY_HOP;
use fields::{
    content_length, drop_forged_fields, forwarded_headers, is_upgrade, join_cookies, request_host,
    strip_hop_by_hop,
};
use idle::IdleTimeout;

#[derive(Clone)]
pub struct Proxy {
    client: Client<HttpConnector, Body>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
    timeout: Duration,
    /// Backend connections of the HTTP/1 relay (`server/relay.rs`).
    pool: Arc<pool::BackendPool>,
}

impl Proxy {
    pub fn new(backend: &config::Backend) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(backend.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(512)
            .build(connector);
        let url = &backend.url;
        let host = url.host_str().unwrap_or("127.0.0.1");
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let authority = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        let pool = Arc::new(pool::BackendPool::new(
            authority.clone(),
            backend.connect_timeout,
        ));
        Proxy {
            client,
            pool,
            scheme: http::uri::Scheme::HTTP,
            authority: authority
                .parse()
                .unwrap_or_else(|_| http::uri::Authority::from_static("127.0.0.1:8080")),
            base_path: url.path().trim_end_matches('/').to_string(),
            timeout: backend.timeout,
        }
    }

    /// Take over `old`'s backend connections (both pools) when both point
    /// at the same backend the same way: a reload rebuilds the settings, and
    /// the application's keep-alive connections should outlive that.
    pub(crate) fn keep_connections_of(&mut self, old: &Proxy, same_backend: bool) {
        if same_backend {
            self.client = old.client.clone();
            self.pool = old.pool.clone();
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

    pub(crate) fn pool(&self) -> &pool::BackendPool {
        &self.pool
    }

    /// Forward `req` to the backend and stream its answer back. An upgraded
    /// tunnel counts in `stats.connections` while it lasts: hyper's
    /// connection task, which counted the client, ends at the upgrade.
    pub async fn forward(&self, req: Request<Body>, stats: &Arc<Stats>) -> Response<Body> {
        let span = tracing::debug_span!("proxy", method = %req.method(), path = %req.uri().path());
        self.forward_inner(req, stats).instrument(span).await
    }

    async fn forward_inner(&self, mut req: Request<Body>, stats: &Arc<Stats>) -> Response<Body> {
        let started = std::time::Instant::now();
        let upgrade = is_upgrade(req.headers()) && req.version() == Version::HTTP_11;
        let http1 = req.version() < Version::HTTP_2;
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let backend_req = match self.backend_request(req, upgrade) {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let (mut backend_req, upload) = match upload::read_ahead(backend_req).await {
            Ok(r) => r,
            Err(error) => {
                debug!(%error, "request body refused before forwarding");
                return malformed_body(http1);
            }
        };
        let method = backend_req.method().clone();
        let conn = reuse::Connection::watch(&mut backend_req);
        let result = tokio::time::timeout(self.timeout, self.client.request(backend_req)).await;
        let mut resp = match result {
            Err(_) => {
                warn!(timeout = ?self.timeout, "backend did not answer in time");
                return reply::error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway_timeout",
                    "the application did not answer in time",
                );
            }
            Ok(Err(error)) if upload.failed() => {
                debug!(%error, "request body failed while forwarding");
                return malformed_body(http1);
            }
            Ok(Err(error)) => {
                warn!(%error, connect = error.is_connect(), "backend request failed");
                return bad_gateway();
            }
            Ok(Ok(mut resp)) => {
                match reuse::check(&method, client_upgrade.is_some(), &mut resp, &conn) {
                    Ok(()) => resp,
                    Err(error) => {
                        warn!(%error, "backend answer refused");
                        return bad_gateway();
                    }
                }
            }
        };
        debug!(status = resp.status().as_u16(), elapsed = ?started.elapsed(), "proxied");
        if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
            (client_upgrade, resp.status())
        {
            let backend_upgrade = hyper::upgrade::on(&mut resp);
            let stats = stats.clone();
            tokio::spawn(
                async move {
                    match tokio::try_join!(client_upgrade, backend_upgrade) {
                        Ok((client, backend)) => {
                            // Counted from the hand-over, when hyper's
                            // connection task stops counting the client.
                            let _counted = Gauge::enter(&stats, |s| &s.connections);
                            let (mut c, mut b) = (TokioIo::new(client), TokioIo::new(backend));
                            if let Err(error) = tokio::io::copy_bidirectional(&mut c, &mut b).await
                            {
                                debug!(%error, "upgraded tunnel ended");
                            }
                        }
                        Err(error) => debug!(%error, "upgrade failed"),
                    }
                }
                .in_current_span(),
            );
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, reply::empty());
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = IdleTimeout::new(body, self.timeout);
        Response::from_parts(parts, body.boxed())
    }

    fn backend_request(
        &self,
        req: Request<Body>,
        upgrade: bool,
    ) -> Result<Request<Body>, Response<Body>> {
        let (mut parts, body) = req.into_parts();
        let host = request_host(&parts)
            .map_err(|why| reply::error(StatusCode::BAD_REQUEST, "bad_request", why))?;
        let path_and_query = match (&*self.base_path, parts.uri.path_and_query()) {
            // The usual case: the request's own target, shared, not re-parsed.
            ("", Some(pq)) => Ok(pq.clone()),
            (base, pq) => http::uri::PathAndQuery::try_from(format!(
                "{base}{}",
                pq.map_or("/", |p| p.as_str())
            )),
        };
        let uri = path_and_query
            .map_err(http::Error::from)
            .and_then(|pq| {
                Uri::builder()
                    .scheme(self.scheme.clone())
                    .authority(self.authority.clone())
                    .path_and_query(pq)
                    .build()
            })
            .map_err(|_| {
                reply::error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "unusable request target",
                )
            })?;
        let upgrade_to = parts.headers.get(header::UPGRADE).cloned();
        // The length in its plain form: `0005` would reach the application
        // as written, where a parser of its own may read it otherwise.
        if parts.headers.contains_key(header::CONTENT_LENGTH) {
            let n = content_length(&parts.headers).ok_or_else(|| {
                reply::error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "invalid Content-Length",
                )
            })?;
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        strip_hop_by_hop(&mut parts.headers);
        // hyper already answered the client's `Expect: 100-continue`.
        parts.headers.remove(header::EXPECT);
        join_cookies(&mut parts.headers);
        drop_forged_fields(&mut parts.headers);
        if upgrade {
            if let Some(u) = upgrade_to {
                parts.headers.insert(header::UPGRADE, u);
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
        }
        if let Some(info) = parts.extensions.get::<ConnInfo>() {
            forwarded_headers(&mut parts.headers, info, host.as_ref());
        }
        if let Some(h) = host {
            parts.headers.insert(header::HOST, h);
        }
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        Ok(Request::from_parts(parts, body))
    }
}

fn bad_gateway() -> Response<Body> {
    reply::error(
        StatusCode::BAD_GATEWAY,
        "bad_gateway",
        "the application is unreachable",
    )
}

/// A 400 for a client body that broke its own framing. On HTTP/1 the
/// connection closes after it: nothing past the fault can be read as the
/// next request. (HTTP/2 ends only the stream, and has no `Connection`.)
fn malformed_body(http1: bool) -> Response<Body> {
    let mut resp = reply::error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "malformed request body",
    );
    if http1 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// POST a small JSON body to a backend path (client messages); returns the
/// status and body, bounded by `limit` bytes.
impl Proxy {
    pub async fn post(
        &self,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
        limit: usize,
    ) -> Result<(StatusCode, Bytes), BackendError> {
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{}", self.base_path, path))
            .build()
            .map_err(|e| BackendError::Request(e.to_string()))?;
        let mut req = Request::post(uri)
            .body(reply::full(body))
            .map_err(|e| BackendError::Request(e.to_string()))?;
        *req.headers_mut() = headers;
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // The same rules for reusing its connection as a proxied request's.
        let conn = reuse::Connection::watch(&mut req);
        let mut resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| BackendError::Timeout)?
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        reuse::check(&http::Method::POST, false, &mut resp, &conn)
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let status = resp.status();
        let body = tokio::time::timeout(
            self.timeout,
            http_body_util::Limited::new(resp.into_body(), limit).collect(),
        )
        .await
        .map_err(|_| BackendError::Timeout)?
        .map_err(|e| BackendError::Unavailable(e.to_string()))?
        .to_bytes();
        Ok((status, body))
    }
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
