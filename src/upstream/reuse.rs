//! A backend's answer head on hyper's way of proxying: refused, repaired, or
//! passed on, and whether the connection it came on may carry another
//! client's request.
//!
//! A connection goes back to its server's pool once an answer ended where
//! its framing said (`exchange.rs`). That is only as good as the backend's
//! idea of the same end, and bytes a backend sends after it (a body after a
//! `HEAD` answer, a second answer) would be read as the next request's
//! answer, another client's. The pool drops an idle connection that holds
//! anything when it is taken, but bytes sent late can arrive after that. So
//! a connection is retired (never given back to the pool; it closes)
//! after every answer whose end the backend may misjudge: one to `HEAD`, a
//! 204, a 304, one after an interim (1xx) answer, and one with both
//! `Transfer-Encoding` and `Content-Length` (RFC 9112 §6.3: a sign of
//! response splitting). The relay keeps the same rule (`h1/response.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::header;
use http::{Method, Response, StatusCode};

use crate::h1::framing::{normalize_length, unknown_transfer_coding};

/// The backend connection a request goes out on: whether it may go back to
/// the pool once its answer ended (`exchange.rs` asks).
#[derive(Clone, Default)]
pub(crate) struct Connection(Arc<AtomicBool>);

impl Connection {
    /// Follow the connection `req` will be sent on. An interim answer
    /// retires it as it arrives, before the final answer is read.
    pub(crate) fn watch<B>(req: &mut http::Request<B>) -> Connection {
        let conn = Connection::default();
        conn.watch_also(req);
        conn
    }

    /// Follow `req` too: the same request again, sent instead of the first
    /// on another connection when that one failed (`exchange::send`).
    pub(crate) fn watch_also<B>(&self, req: &mut http::Request<B>) {
        let on_interim = self.clone();
        hyper::ext::on_informational(req, move |_| on_interim.retire());
    }

    /// Never hand this connection to another request.
    pub(crate) fn retire(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.0.load(Ordering::Acquire)
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
