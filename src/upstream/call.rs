//! What the gateway itself asks of the application (client messages
//! forwarded to `client_messages.forward_to`, session and resource checks,
//! webhooks): small requests whose whole answer is read, bounded in size
//! (or only its status line, for a sender that needs no more),
//! sent through the same failover loop as a proxied request
//! (`attempt.rs`) but with nothing of a client's added.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

use super::attempt::{Tried, Unreached};
use super::exchange::{self, Pooled};
use super::server::Server;
use super::{Upstream, is_idempotent, limit, reason, reuse};
use crate::reply;

/// What the gateway itself asks of the application (client messages
/// forwarded to `client_messages.forward_to`, session and resource checks):
/// small requests whose whole answer is read, bounded by `limit` bytes.
impl Upstream {
    /// POST a small body to a backend path (client messages): JSON unless
    /// `headers` name another type (a binary message's bytes).
    pub async fn post(
        &self,
        path: &str,
        mut headers: HeaderMap,
        body: Bytes,
        limit: usize,
    ) -> Result<(StatusCode, Bytes), BackendError> {
        headers
            .entry(header::CONTENT_TYPE)
            .or_insert(HeaderValue::from_static("application/json"));
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
        let resp = self.call_head(&method, path, headers, body).await?;
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

    /// [`Upstream::call`] for a sender that needs only the status line
    /// (webhooks): the body is never waited for. What of it has already
    /// arrived, up to `drain` bytes, is read so a short answer leaves its
    /// connection reusable; the rest goes with the connection, closed.
    pub async fn call_status(
        &self,
        method: http::Method,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
        drain: usize,
    ) -> Result<StatusCode, BackendError> {
        use futures_util::FutureExt;
        let resp = self.call_head(&method, path, headers, body).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut read = 0;
        while read <= drain {
            match body.frame().now_or_never() {
                Some(Some(Ok(frame))) => {
                    read += frame.data_ref().map_or(0, Bytes::len);
                }
                _ => break,
            }
        }
        Ok(status)
    }

    /// Sends the request and returns the answer's head with its body unread.
    async fn call_head(
        &self,
        method: &http::Method,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<Pooled>, BackendError> {
        let pq = http::uri::PathAndQuery::try_from(format!("{}{}", self.base_path, path))
            .map_err(|e| BackendError::Request(e.to_string()))?;
        // A connect that failed reached no server: the next one is asked,
        // whatever the method, as the body is still here to send again.
        let reached = self
            .servers
            .attempt(None, self.timeout, |server, _| {
                self.call_on(server, method, &pq, &headers, &body)
            })
            .await;
        let (mut resp, conn) = match reached {
            Ok(reached) => {
                let (mut resp, conn) = reached.value;
                resp.body_mut().hold(reached.in_flight);
                (resp, conn)
            }
            Err(Unreached::Exhausted) => {
                return Err(BackendError::Unavailable(
                    "no server could be reached".into(),
                ));
            }
            Err(Unreached::Busy(refused)) => return Err(BackendError::Busy(refused)),
            Err(Unreached::TimedOut) => return Err(BackendError::Timeout),
            Err(Unreached::Failed(CallFailure::Request(why))) => {
                return Err(BackendError::Request(why));
            }
            Err(Unreached::Failed(CallFailure::Send(e))) => {
                return Err(BackendError::Unavailable(reason(&e)));
            }
        };
        reuse::check(method, false, &mut resp, &conn)
            .map_err(|e| BackendError::Unavailable(e.to_string()))?;
        Ok(resp)
    }
}

impl Upstream {
    /// One turn of [`Upstream::call`] on `server`: the request built for
    /// it and sent. Only a failed connect may go on to the next server.
    async fn call_on(
        &self,
        server: &Arc<Server>,
        method: &http::Method,
        pq: &http::uri::PathAndQuery,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Tried<(Response<Pooled>, reuse::Connection), CallFailure> {
        let build = || {
            let uri = self.uri_on(server, pq.clone())?;
            let mut req = Request::builder()
                .method(method.clone())
                .uri(uri)
                .body(reply::full(body.clone()))?;
            *req.headers_mut() = headers.clone();
            self.default_host(req.headers_mut());
            Ok::<_, http::Error>(req)
        };
        let mut req = match build() {
            Ok(req) => req,
            Err(e) => {
                return Tried::Unsent {
                    error: CallFailure::Request(e.to_string()),
                };
            }
        };
        // The same rules for reusing its connection as a proxied request's.
        let conn = reuse::Connection::watch(&mut req);
        // Its body is here: a pooled connection that turns out closed
        // costs nothing but a new one (`exchange::send`), for a request
        // that may be sent twice.
        let again = || build().ok();
        let again = is_idempotent(method).then_some(&again as &exchange::Again<'_>);
        let retry = exchange::Retry {
            unreachable: true,
            failed: false,
        };
        exchange::turn(server, req, again, conn, retry)
            .await
            .map_error(CallFailure::Send)
    }
}

/// Why one turn of [`Upstream::call`] got no answer.
#[derive(Debug, thiserror::Error)]
enum CallFailure {
    #[error("{0}")]
    Request(String),
    #[error("{}", reason(.0))]
    Send(exchange::SendError),
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
    /// Every connection to the chosen server is in use (`max_connections`)
    /// and no queue place or slot was had.
    #[error("the application is busy: {0}")]
    Busy(limit::Refused),
}
