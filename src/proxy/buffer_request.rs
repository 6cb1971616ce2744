//! Request buffering (`buffering.request`, nginx `proxy_request_buffering`):
//! a client's body is read whole, into a spool (`spool.rs`), before an
//! upstream connection is taken, so a client that trickles its upload
//! holds a few buffers of the gateway and never a worker of the
//! application.
//!
//! The rules it keeps: a body over `buffering.max_body` is refused with 413
//! (at once when its `Content-Length` says so, else as soon as it passes
//! the bound), a client that leaves its body without a byte for
//! `buffering.body_timeout` is answered 408 (the bound is per read, as
//! nginx's `client_body_timeout`: a client sending a byte now and then is
//! bounded by `max_body` instead), a body that would pass the gateway's
//! disk bound (`limits.buffers.disk`) 503 with `Retry-After`, a body that
//! breaks its framing 400 — and in none of these cases has the application
//! seen the request.
//! A buffered body has a known length (it goes with `Content-Length`) and
//! can be sent again: to the next server when a connect fails.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use tracing::debug;

use super::spool::{Budget, Spool};
use super::stored::Stored;
use super::upload::{self, Outcome, Replay};
use super::{content_length, malformed_body};
use crate::config::Buffering;
use crate::reply::{self, Body, BoxError};
use crate::upstream::is_idempotent;

/// The request with the body it goes out with: read whole first under
/// request buffering (a refusal is the client's answer, and the
/// application never sees the request), else read ahead a little
/// (`upload.rs`); how the body ended up, and what can be sent again.
/// An upgrade's body is the tunnel's: never buffered.
pub(super) async fn take(
    req: Request<Body>,
    buffering: Option<&(Buffering, Budget)>,
    upgrade: bool,
    http1: bool,
) -> Result<(Request<Body>, Outcome, Option<Replay>), Response<Body>> {
    let buffer = buffering.filter(|(policy, _)| policy.request && !upgrade);
    if let (Some((policy, budget)), false) = (buffer, req.body().is_end_stream()) {
        let (mut parts, body) = req.into_parts();
        let declared = content_length(&parts.headers);
        let stored = match read_whole(body, declared, policy, budget.clone()).await {
            Ok(stored) => stored,
            Err(refused) => {
                debug!(error = %refused, "request body refused before forwarding");
                return Err(refused.answer(http1));
            }
        };
        parts.headers.remove(header::TRANSFER_ENCODING);
        match stored.length() {
            Some(n) => {
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            None => {
                parts.headers.remove(header::CONTENT_LENGTH);
            }
        }
        let req = Request::from_parts(parts, stored.body());
        return Ok((req, Outcome::default(), Some(Replay::Stored(stored))));
    }
    let keep = is_idempotent(req.method()) && !upgrade;
    upload::read_ahead(req, keep).await.map_err(|error| {
        debug!(%error, "request body refused before forwarding");
        malformed_body(http1)
    })
}

/// Why a body was not taken.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    #[error("request body larger than buffering.max_body ({0} bytes)")]
    TooLarge(usize),
    #[error("no byte of the request body within buffering.body_timeout")]
    TimedOut,
    #[error("malformed request body: {0}")]
    Malformed(BoxError),
    #[error("request body could not be buffered: {0}")]
    Storage(std::io::Error),
    #[error("temporary files hold limits.buffers.disk already")]
    DiskFull,
}

impl Refused {
    /// The client's answer. On HTTP/1 the connection closes after it: the
    /// rest of the body is not read.
    fn answer(&self, http1: bool) -> Response<Body> {
        let mut resp = match self {
            Refused::Malformed(_) => return malformed_body(http1),
            Refused::TooLarge(max) => reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than {max} bytes"),
            ),
            Refused::TimedOut => reply::error(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body stalled",
            ),
            Refused::Storage(_) => reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "buffering_failed",
                "the request body could not be held",
            ),
            Refused::DiskFull => reply::unavailable(
                "buffers_full",
                "the gateway holds too many request bodies; try again",
            ),
        };
        if http1 {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// Read `body` whole under `policy`; `declared` is its `Content-Length`.
async fn read_whole(
    mut body: Body,
    declared: Option<u64>,
    policy: &Buffering,
    budget: Budget,
) -> Result<Stored, Refused> {
    let max = policy.max_body;
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Refused::TooLarge(max));
    }
    let mut spool = Spool::new(budget, policy.memory);
    let mut trailers = None;
    while !body.is_end_stream() {
        let frame = match tokio::time::timeout(policy.body_timeout, body.frame()).await {
            Err(_) => return Err(Refused::TimedOut),
            Ok(None) => break,
            Ok(Some(Err(error))) => return Err(Refused::Malformed(error)),
            Ok(Some(Ok(frame))) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                if spool.len().saturating_add(data.len() as u64) > max as u64 {
                    return Err(Refused::TooLarge(max));
                }
                if !spool.fits(data.len()) {
                    return Err(Refused::DiskFull);
                }
                spool.push(data).map_err(Refused::Storage)?;
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Ok(Stored::new(spool, trailers))
}
