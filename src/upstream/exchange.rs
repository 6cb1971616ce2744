//! hyper's engine to one server: a request sent on a connection of the
//! server's own pool (`pool.rs`, the one the relay takes from too), and the
//! connection given back once its answer was read to the end.
//!
//! Each request drives its connection with hyper's `client::conn::http1`
//! for as long as the exchange lasts, then takes the socket back
//! (`without_shutdown`). It goes back to the pool only when everything says
//! the next answer on it will be the next request's: the body was read
//! whole (`Pooled` saw its end), both sides kept the connection alive, the
//! answer's end was stated by its framing rather than by a close, nothing
//! retired it (`reuse.rs`), and hyper holds no byte past the answer.
//! Upgraded connections (a WebSocket to the application) are never pooled.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use super::attempt::Tried;
use super::backend_conn::BackendConn;
use super::reuse::Connection;
use super::server::{InFlight, Server};
use crate::reply::Body;

/// Why a request got no answer head.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// No connection to the server was made (refused, timed out, a TLS
    /// handshake that failed verification): no byte of it left.
    #[error("{0}")]
    Connect(std::io::Error),
    #[error(transparent)]
    Http(hyper::Error),
}

impl SendError {
    pub(crate) fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

/// Send `req` to `server` and return its answer head; the body streams
/// from the connection, which is given back to the pool when it ended.
///
/// `again` makes the same request once more, for a request that may be
/// sent twice (idempotent, its body kept): a pooled connection the server
/// closed while it sat idle fails before answering, and then what `again`
/// makes goes out on a new connection. It is called only then, so the
/// usual request costs no copy for it. Without it, such a failure is the
/// request's own. `conn` is where the answer's judges (`reuse.rs`) retire
/// the connection; it follows the copy too.
pub(crate) async fn send(
    server: &Arc<Server>,
    mut req: Request<Body>,
    again: Option<&Again<'_>>,
    conn: &Connection,
) -> Result<Response<Pooled>, SendError> {
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let mut pooled = true;
    loop {
        let method = req.method().clone();
        let closes = asks_close(req.headers());
        to_origin_form(&mut req);
        let taken = if pooled { server.pool.take() } else { None };
        let reused = taken.is_some();
        let io = match taken {
            Some(io) => io,
            None => server.pool.connect().await.map_err(SendError::Connect)?,
        };
        let (mut sender, connection) = http1::Builder::new()
            .preserve_header_case(true)
            .handshake::<_, Body>(TokioIo::new(io))
            .await
            .map_err(SendError::Http)?;
        let ended = Arc::new(AtomicBool::new(false));
        drive(
            connection,
            server.clone(),
            upgrade,
            conn.clone(),
            ended.clone(),
        );
        match sender.try_send_request(req).await {
            Ok(resp) => {
                let keep = !upgrade && !closes && keeps_alive(&method, &resp);
                let lease = Lease {
                    _sender: sender,
                    ended,
                    keep,
                    _in_flight: None,
                };
                return Ok(resp.map(|body| Pooled::new(body, lease)));
            }
            Err(mut error) => {
                // Nothing of it was written, or a pooled connection failed
                // before any answer: once more, on a new one. Only once
                // (`pooled` is then false).
                let back = match error.take_message() {
                    Some(back) if reused => Some(back),
                    None if reused => again.and_then(|make| make()).map(|mut copy| {
                        conn.watch_also(&mut copy);
                        copy
                    }),
                    _ => None,
                };
                let Some(back) = back else {
                    return Err(SendError::Http(error.into_error()));
                };
                req = back;
                pooled = false;
            }
        }
    }
}

/// Which failures of a [`turn`] may go on to the next server.
#[derive(Clone, Copy)]
pub(crate) struct Retry {
    /// After a connect that failed (no byte of the request left).
    pub(crate) unreachable: bool,
    /// After a connection was made but gave no answer head.
    pub(crate) failed: bool,
}

/// [`send`] as one turn of the failover loop (`attempt.rs`): the answer
/// head with its status, or the failure and whether `retry` lets the next
/// server be asked.
pub(crate) async fn turn(
    server: &Arc<Server>,
    req: Request<Body>,
    again: Option<&Again<'_>>,
    conn: Connection,
    retry: Retry,
) -> Tried<(Response<Pooled>, Connection), SendError> {
    match send(server, req, again, &conn).await {
        Ok(resp) => Tried::Answered {
            status: resp.status().as_u16(),
            value: (resp, conn),
        },
        Err(error) if error.is_connect() => Tried::Unreachable {
            error,
            retry: retry.unreachable,
        },
        Err(error) => Tried::Failed {
            error,
            retry: retry.failed,
        },
    }
}

/// Makes a request again (see [`send`]); `None` when it cannot be.
pub(crate) type Again<'a> = dyn Fn() -> Option<Request<Body>> + Send + Sync + 'a;

/// Run the connection for one exchange, then give its socket back when
/// the answer left it reusable (see the module's doc).
fn drive(
    connection: http1::Connection<TokioIo<BackendConn>, Body>,
    server: Arc<Server>,
    upgrade: bool,
    conn: Connection,
    ended: Arc<AtomicBool>,
) {
    let tasks = server.tasks.clone();
    let task = async move {
        if upgrade {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended");
            }
            return;
        }
        match connection.without_shutdown().await {
            Ok(parts)
                if ended.load(Ordering::Acquire)
                    && !conn.is_retired()
                    && parts.read_buf.is_empty() =>
            {
                server.pool.give(parts.io.into_inner());
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "upstream connection ended"),
        }
    };
    tasks.spawn(task.in_current_span());
}

/// Whether the connection may carry another request after this answer, as
/// far as its head tells: HTTP/1.1 without `Connection: close`, and an end
/// its framing states (a length, chunked, or no body at all) rather than
/// the close of the connection.
fn keeps_alive<B>(method: &Method, resp: &Response<B>) -> bool {
    let headers = resp.headers();
    let status = resp.status();
    let framed = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || headers.contains_key(header::CONTENT_LENGTH)
        || headers.contains_key(header::TRANSFER_ENCODING);
    resp.version() == Version::HTTP_11 && !asks_close(headers) && framed
}

/// `Connection: close` among the fields.
fn asks_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"))
}

/// What HTTP/1.1 writes on the request line: the path and query (the
/// server is already chosen), with the URI's authority as `Host` when the
/// request has none (its port left out when it is the scheme's own).
fn to_origin_form<B>(req: &mut Request<B>) {
    if !req.headers().contains_key(header::HOST) {
        if let Some(host) = host_of(req.uri()) {
            req.headers_mut().insert(header::HOST, host);
        }
    }
    if req.uri().scheme().is_some() {
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(pq);
    }
}

fn host_of(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let text = match uri.port_u16() {
        Some(port) if port != default => format!("{host}:{port}"),
        _ => host.to_string(),
    };
    HeaderValue::from_str(&text).ok()
}

/// What keeps a pooled connection out of the pool while its answer is read.
struct Lease {
    /// Dropped after the verdict is written: only then does the connection
    /// task finish and look at it.
    _sender: http1::SendRequest<Body>,
    ended: Arc<AtomicBool>,
    /// The answer's head allows the next request on the connection.
    keep: bool,
    /// The request counts as in flight on its server until here
    /// (`least_conn`), not only until its head.
    _in_flight: Option<InFlight>,
}

impl Lease {
    fn end(self, whole: bool) {
        if whole && self.keep {
            self.ended.store(true, Ordering::Release);
        }
    }
}

/// An answer's body from a pooled connection: hyper's, with the lease that
/// returns the connection once the body ended.
pub(crate) struct Pooled {
    body: Incoming,
    lease: Option<Lease>,
}

impl Pooled {
    fn new(body: Incoming, lease: Lease) -> Pooled {
        let mut pooled = Pooled {
            body,
            lease: Some(lease),
        };
        if http_body::Body::is_end_stream(&pooled.body) {
            // Nothing to read (a length of 0, a bodiless answer): a reader
            // may never poll it.
            pooled.release(true);
        }
        pooled
    }

    /// Count the request in flight on its server until the body ends.
    pub(crate) fn hold(&mut self, in_flight: InFlight) {
        if let Some(lease) = &mut self.lease {
            lease._in_flight = Some(in_flight);
        }
    }

    fn release(&mut self, whole: bool) {
        if let Some(lease) = self.lease.take() {
            lease.end(whole);
        }
    }
}

impl http_body::Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            None => this.release(true),
            Some(Err(_)) => this.release(false),
            Some(Ok(_)) if http_body::Body::is_end_stream(&this.body) => this.release(true),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // Left before its end (a client that went away): the rest of the
        // answer is still on the connection, which closes.
        let whole = http_body::Body::is_end_stream(&self.body);
        self.release(whole);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_carries_the_path_and_host_the_authority() {
        let mut req = Request::get("http://10.0.0.5:8080/a/b?c=d")
            .body(())
            .unwrap();
        to_origin_form(&mut req);
        assert_eq!(req.uri().to_string(), "/a/b?c=d");
        assert_eq!(req.headers()[header::HOST], "10.0.0.5:8080");
        let mut req = Request::get("https://api.internal:443/x").body(()).unwrap();
        to_origin_form(&mut req);
        assert_eq!(req.headers()[header::HOST], "api.internal");
        let mut req = Request::get("http://a:80/")
            .header("host", "example.com")
            .body(())
            .unwrap();
        to_origin_form(&mut req);
        assert_eq!(req.headers()[header::HOST], "example.com");
    }

    #[test]
    fn only_a_framed_keep_alive_answer_keeps_its_connection() {
        let answer = |version, fields: &[(&str, &str)]| {
            let mut resp = Response::builder().version(version);
            for (k, v) in fields {
                resp = resp.header(*k, *v);
            }
            resp.body(()).unwrap()
        };
        let get = Method::GET;
        assert!(keeps_alive(
            &get,
            &answer(Version::HTTP_11, &[("content-length", "3")])
        ));
        assert!(keeps_alive(
            &get,
            &answer(Version::HTTP_11, &[("transfer-encoding", "chunked")])
        ));
        assert!(
            !keeps_alive(&get, &answer(Version::HTTP_11, &[])),
            "ends at the close"
        );
        assert!(!keeps_alive(
            &get,
            &answer(
                Version::HTTP_11,
                &[("content-length", "3"), ("connection", "keep-alive, Close")]
            )
        ));
        assert!(!keeps_alive(
            &get,
            &answer(Version::HTTP_10, &[("content-length", "3")])
        ));
        assert!(keeps_alive(&Method::HEAD, &answer(Version::HTTP_11, &[])));
    }
}
