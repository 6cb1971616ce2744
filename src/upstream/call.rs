//! What the gateway itself asks of the application (client messages
//! forwarded to `client_messages.forward_to`, session and resource checks,
//! webhooks): small requests whose whole answer is read, bounded in size,
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
        let reached = self
            .servers
            .attempt(None, self.timeout, |server, _| {
                self.call_on(server, &method, &pq, &headers, &body)
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
