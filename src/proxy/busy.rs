//! The answer to a request that got no slot on its server
//! (`max_connections`, `upstream/limit.rs`): 503 with `Retry-After`, in the
//! documented refusal shape. Both engines answer it alike: hyper's path
//! with [`refusal`], the relay writing the same code, message and field
//! (`relay/refusal.rs`).

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::reply::{self, Body};
use crate::upstream::limit::Refused;

/// `Retry-After` of a busy refusal: the gateway answers it at once, so a
/// retry soon costs the application nothing until a slot is free.
pub(crate) const RETRY_AFTER: &str = "1";

/// The 503 hyper's path answers.
pub(crate) fn refusal(refused: Refused) -> Response<Body> {
    let (code, message) = reason(refused);
    let mut resp = reply::error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    resp
}

/// The code and message of a busy refusal, for both engines.
pub(crate) fn reason(refused: Refused) -> (&'static str, &'static str) {
    match refused {
        Refused::Full => (
            "upstream_busy",
            "the application is at max_connections and its queue is full; retry shortly",
        ),
        Refused::TimedOut => (
            "upstream_busy",
            "the application had no free connection within queue.timeout; retry shortly",
        ),
    }
}
