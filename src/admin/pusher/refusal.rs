//! Why a Pusher HTTP API request was refused, and how each reason is
//! answered: one status per reason and Pusher's plain-text body (the
//! official libraries put the body text in the error they raise, so an
//! application's logs read as they did against Pusher).

use http::{HeaderValue, Response, StatusCode, header};

use crate::limits::Limited;
use crate::pusher::sign::RequestError;
use crate::reply::{self, Body};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("Unknown app")]
    UnknownApp,
    #[error("Not found: the Pusher HTTP API has no such endpoint")]
    NotFound,
    #[error("Method not allowed for this endpoint")]
    Method,
    /// Signature, key, version, timestamp or body digest.
    #[error("{0}")]
    Auth(#[from] RequestError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("Rate limit exceeded for this app")]
    Limited(Limited),
    #[error("{0}")]
    Unavailable(String),
}

impl Refused {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Refused::UnknownApp | Refused::NotFound => StatusCode::NOT_FOUND,
            Refused::Method => StatusCode::METHOD_NOT_ALLOWED,
            Refused::Auth(_) => StatusCode::UNAUTHORIZED,
            Refused::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refused::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refused::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            Refused::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(crate) fn response(&self) -> Response<Body> {
        let mut resp = Response::new(reply::full(self.to_string()));
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Refused::Limited(l) = self {
            let secs = l.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// A refusal for a bad parameter, in Pusher's words.
pub(crate) fn bad(message: impl Into<String>) -> Refused {
    Refused::BadRequest(message.into())
}
