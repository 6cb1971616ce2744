//! A backend's answer head on hyper's way of proxying: refused, repaired, or
//! passed on, and whether the connection it came on may carry another
//! client's request.
//!
//! hyper's client pools a connection once an answer ended where its framing
//! said. That is only as good as the backend's idea of the same end, and
//! bytes a backend sends after it (a body after a `HEAD` answer, a second
//! answer) would be read as the next request's answer, another client's.
//! hyper drops an idle connection that receives anything, but bytes sent
//! late can arrive after the connection was taken again. So a connection is
//! retired (poisoned: the pool never hands it out again, and it closes)
//! after every answer whose end the backend may misjudge: one to `HEAD`, a
//! 204, a 304, one after an interim (1xx) answer, and one with both
//! `Transfer-Encoding` and `Content-Length` (RFC 9112 §6.3: a sign of
//! response splitting). The relay keeps the same rule (`proxy/head.rs`).

use http::header;
use http::{Method, Response, StatusCode};
use hyper_util::client::legacy::connect::{CaptureConnection, capture_connection};

use super::framing::{normalize_length, unknown_transfer_coding};

/// The backend connection a request goes out on, as hyper's pool knows it.
pub(crate) struct Connection(CaptureConnection);

impl Connection {
    /// Follow the connection `req` will be sent on. An interim answer
    /// retires it as it arrives, before the final answer is read.
    pub(crate) fn watch<B>(req: &mut http::Request<B>) -> Connection {
        let capture = capture_connection(req);
        let on_interim = capture.clone();
        hyper::ext::on_informational(req, move |_| retire(&on_interim));
        Connection(capture)
    }

    /// Never hand this connection to another request.
    pub(crate) fn retire(&self) {
        retire(&self.0);
    }
}

fn retire(capture: &CaptureConnection) {
    if let Some(connected) = &*capture.connection_metadata() {
        connected.poison();
    }
}

/// Why an answer head is not passed on (a 502).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("switched protocols unasked")]
    UnaskedUpgrade,
    #[error("a transfer coding other than chunked")]
    UnknownCoding,
}

/// Judge the answer head to a `method` request that asked to upgrade or
/// not, repairing its framing fields for the client and retiring `conn`
/// where the answer's end is the backend's guess.
pub(crate) fn check<B>(
    method: &Method,
    upgrade_asked: bool,
    resp: &mut Response<B>,
    conn: &Connection,
) -> Result<(), Refused> {
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS && !upgrade_asked {
        // hyper's client would hand the connection over as upgraded; the
        // client never asked, and the relay answers the same 502.
        conn.retire();
        return Err(Refused::UnaskedUpgrade);
    }
    if unknown_transfer_coding(resp.headers()) {
        // hyper reads such a body until the close: never reused anyway.
        conn.retire();
        return Err(Refused::UnknownCoding);
    }
    let bodiless = *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let headers = resp.headers_mut();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // hyper followed the chunked framing (RFC 9112 §6.3); the length
        // would make hyper's server cut the body short for the client.
        if headers.remove(header::CONTENT_LENGTH).is_some() {
            conn.retire();
        }
    } else {
        normalize_length(headers);
    }
    if bodiless {
        conn.retire();
    }
    Ok(())
}
