//! Response helpers shared by every HTTP surface: one body type for the whole
//! service and one shape for refusals (`{"error":code,"message":…}`), so that a
//! client sees the same JSON whether the proxy, a transport or the admin API said no.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Error type carried by response bodies (hyper errors from a proxied backend,
/// or our own stream errors).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one response body type used by every handler.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body holding `bytes` in one frame.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A JSON response with the given status.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    json_answer(status, bytes).map(full)
}

/// A JSON answer whose body is still bytes: the fields every JSON answer
/// carries, written here once for hyper's answers and the relay's.
fn json_answer(status: StatusCode, bytes: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(bytes);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The documented refusal shape: `{"error": code, "message": message}`.
pub fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": code, "message": message.to_string() }),
    )
}

/// The body of [`error`].
fn error_json(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": code, "message": message }))
        .unwrap_or_else(|_| b"{}".to_vec())
}

/// [`error`] with its body as bytes, for an engine that writes its answers
/// itself (the relay) and hyper's alike.
pub fn error_answer(status: StatusCode, code: &str, message: &str) -> Response<Vec<u8>> {
    json_answer(status, error_json(code, message))
}

/// `Retry-After` of a 503 the gateway answers at once (at its connection
/// limit, an upstream server at `max_connections`, request buffers full):
/// a retry soon costs nothing until room frees.
const RETRY_SOON: HeaderValue = HeaderValue::from_static("1");

/// The 503 for a refusal a retry soon may get past, with `Retry-After`.
pub fn unavailable(code: &str, message: &str) -> Response<Body> {
    unavailable_answer(code, message).map(full)
}

/// [`unavailable`] with its body as bytes (see [`error_answer`]).
pub fn unavailable_answer(code: &str, message: &str) -> Response<Vec<u8>> {
    let mut resp = error_answer(StatusCode::SERVICE_UNAVAILABLE, code, message);
    resp.headers_mut().insert(header::RETRY_AFTER, RETRY_SOON);
    resp
}

/// A 429 with `Retry-After` (whole seconds, at least 1).
pub fn rate_limited(retry_after: std::time::Duration, message: &str) -> Response<Body> {
    let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// A streaming body fed by a channel: each `Bytes` sent becomes one data frame,
/// and the body ends when the sender is dropped. The bounded channel is the
/// back-pressure between a producer task and hyper's writes.
pub fn channel_body(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    ChannelBody { rx }.boxed()
}

struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
    }
}
