//! Reading an admin request's body: one bound, one set of answers, for
//! `POST /publish`, the webhook paths and `POST /disconnect`.
//!
//! A declared `Content-Length` over the bound is refused before a byte is
//! read (the sender learns at once, and nothing is buffered); a body that
//! grows past it while streaming is refused when it does. Only those two are
//! 413: a body cut short or otherwise unreadable is the sender's 400.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::reply;

/// The whole body of `req`, at most `limit` bytes; or the answer to send.
pub async fn read(
    req: Request<Incoming>,
    limit: usize,
) -> Result<(http::request::Parts, Bytes), Response<reply::Body>> {
    let too_large = || {
        reply::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("body over {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    match Limited::new(body, limit).collect().await {
        Ok(b) => Ok((parts, b.to_bytes())),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err(reply::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("reading body: {e}"),
        )),
    }
}
