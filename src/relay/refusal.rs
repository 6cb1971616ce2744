//! The relay's own answers, when the backend gives none it can pass on:
//! 502, 504, and 503 with `Retry-After` when no connection to a server was
//! free (`max_connections`), in the documented shape
//! (`{"error":code,"message":…}`), counted and dated as the hyper path's
//! refusals are.

use std::time::Instant;

use http::StatusCode;
use tokio::io::AsyncWrite;

use super::answer::write;
use super::{Next, http_date};
use crate::h1::request::Outbound;
use crate::state::AppState;
use crate::upstream::limit::Refused;

/// Why the relay answers in the backend's stead.
#[derive(Clone, Copy)]
pub(super) enum Refusal {
    /// 502: no usable answer (connect failed, garbage, cut off).
    Unreachable,
    /// 504: no answer head within `backend.timeout`.
    TimedOut,
    /// 503: no slot on the server (`max_connections`); the same answer as
    /// the hyper path's (`proxy/busy.rs`).
    Busy(Refused),
}

/// Answer the client with the documented refusal shape
/// (`{"error":code,"message":…}`), as the hyper path would, and count it.
pub(super) async fn refuse<I>(
    state: &AppState,
    io: &mut I,
    refusal: Refusal,
    started: Instant,
    out: &Outbound,
    close: bool,
) -> Next
where
    I: AsyncWrite + Unpin,
{
    let mut retry_after = "";
    let (status, code, message) = match refusal {
        Refusal::Unreachable => (
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            "the application is unreachable",
        ),
        Refusal::TimedOut => (
            StatusCode::GATEWAY_TIMEOUT,
            "gateway_timeout",
            "the application did not answer in time",
        ),
        Refusal::Busy(refused) => {
            let (code, message) = crate::proxy::busy::reason(refused);
            retry_after = crate::proxy::busy::RETRY_AFTER;
            (StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    };
    state.metrics.proxied(status, started.elapsed());
    let body = crate::reply::error_json(code, message);
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncache-control: no-store\r\n{}content-length: {}\r\ndate: {}\r\n{}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        if retry_after.is_empty() {
            String::new()
        } else {
            format!("retry-after: {retry_after}\r\n")
        },
        body.len(),
        String::from_utf8_lossy(&http_date()),
        if close { "connection: close\r\n" } else { "" },
    )
    .into_bytes();
    // An answer to HEAD has no body (RFC 9110 §9.3.2), only its length.
    if out.method != http::Method::HEAD {
        answer.extend_from_slice(&body);
    }
    match write(io, &answer).await {
        Ok(()) if close => Next::Close,
        Ok(()) => Next::KeepAlive,
        Err(_) => Next::Abort,
    }
}
