//! The HTTP/1 wire code, pure: which engine a request head goes to
//! (`classify.rs`, the one look at it), request and response heads
//! (`request.rs`, `response.rs`), chunked framing (`chunked.rs`), the
//! body-length rules (`framing.rs`), the forwarding fields a proxy writes
//! (`forwarded.rs`) and which answers stream (`streaming.rs`).
//!
//! No I/O, no tokio, no configuration: bytes in, a verdict out, so that
//! every rule here is a unit test and a fuzz target (`fuzzing.rs`) away.
//! The driver that moves the bytes is `relay.rs`; hyper's engine
//! (`proxy.rs`) reads the length rules, the forwarding fields and the
//! streaming judgement from here too, so both engines forward alike.

use http::header::{self, HeaderName};

pub(crate) mod chunked;
pub(crate) mod classify;
pub(crate) mod forwarded;
pub(crate) mod framing;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod streaming;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
/// Names, not strings: every proxied request and answer is stripped of them,
/// and a string would be parsed into a name each time.
pub(crate) const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    // Not `Trailer`: it is end to end (RFC 9110 §6.6.2), and hyper sends
    // only the trailers it declares.
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    // Only meaningful with `Upgrade: h2c`, which is never passed on.
    HeaderName::from_static("http2-settings"),
];

/// One field line of a head: `name: value` and its CRLF.
pub(crate) fn write_field(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1); the
/// same list as the hyper path's.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_str()))
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::conn_info::ConnInfo;

    /// A plain connection from 10.0.0.7, no front before it: the client
    /// the heads' tests are about.
    pub(crate) fn info() -> ConnInfo {
        ConnInfo::new(
            "10.0.0.7:5000".parse().unwrap(),
            false,
            1,
            &Default::default(),
        )
    }
}
