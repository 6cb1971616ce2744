//! RFC 8441's extended CONNECT: how a stream of an HTTP/2 connection asks
//! to become a WebSocket (`:method = CONNECT`, `:protocol = websocket`),
//! where HTTP/1.1 sends `GET` with `Upgrade: websocket`.
//!
//! Both roads that take WebSockets read the ask here: the realtime and
//! Pusher endpoints (`transport/ws/handshake.rs`) and the proxy, which
//! carries an application's own WebSocket to it as an HTTP/1.1 upgrade
//! (`proxy/h2_websocket.rs`). One reading, so that a `:protocol` the
//! gateway does not speak is refused the same way on each: 400 with the
//! documented JSON body, never a tunnel to something it cannot see into.
//! hyper only hands a `:protocol` to the gateway on connections that
//! advertised `SETTINGS_ENABLE_CONNECT_PROTOCOL` (`server.rs`).

use http::{Method, Request, Response, StatusCode};
use hyper::ext::Protocol;

use crate::reply::{self, Body};

/// What an extended CONNECT asks the stream to become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ask {
    /// `:protocol = websocket`.
    WebSocket,
    /// Any other protocol: refused with [`unsupported`].
    Other,
}

/// The ask of `req` when it is an extended CONNECT; `None` for every
/// other request (a plain CONNECT included).
pub(crate) fn ask<B>(req: &Request<B>) -> Option<Ask> {
    if req.method() != Method::CONNECT {
        return None;
    }
    let protocol = req.extensions().get::<Protocol>()?;
    // Upgrade tokens are case-insensitive (RFC 9110 §7.8).
    Some(match protocol.as_ref().eq_ignore_ascii_case(b"websocket") {
        true => Ask::WebSocket,
        false => Ask::Other,
    })
}

/// The answer to an extended CONNECT for a protocol other than WebSocket.
pub(crate) fn unsupported() -> Response<Body> {
    reply::error(
        StatusCode::BAD_REQUEST,
        "unsupported_protocol",
        "extended CONNECT carries only :protocol websocket here",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(protocol: Option<&'static str>) -> Request<()> {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri("https://example.com/realtime/ws")
            .body(())
            .unwrap();
        if let Some(p) = protocol {
            req.extensions_mut().insert(Protocol::from_static(p));
        }
        req
    }

    #[test]
    fn reads_the_protocol_of_an_extended_connect_only() {
        assert_eq!(ask(&connect(Some("websocket"))), Some(Ask::WebSocket));
        assert_eq!(ask(&connect(Some("WebSocket"))), Some(Ask::WebSocket));
        assert_eq!(ask(&connect(Some("webtransport"))), Some(Ask::Other));
        // A plain CONNECT (a proxy tunnel) is no extended CONNECT.
        assert_eq!(ask(&connect(None)), None);
        // Nor is a GET that carries the extension by accident.
        let mut get = Request::new(());
        get.extensions_mut()
            .insert(Protocol::from_static("websocket"));
        assert_eq!(ask(&get), None);
    }

    #[test]
    fn refuses_other_protocols_with_the_documented_body() {
        assert_eq!(unsupported().status(), StatusCode::BAD_REQUEST);
    }
}
