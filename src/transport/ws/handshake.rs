//! The WebSocket opening handshake in both HTTP versions, for every
//! WebSocket endpoint of the gateway (`pushgate.v1`, Pusher).
//!
//! HTTP/1.1 (RFC 6455): `GET` with `Upgrade: websocket`, a key, answered
//! 101 with the key's accept value. HTTP/2 (RFC 8441): an extended CONNECT
//! (`extended_connect.rs`), no key, answered 200 on the stream. After the
//! answer both hand over the connection (hyper's `Upgraded`, or the
//! connection itself when the gateway answered an HTTP/1.1 handshake
//! without hyper, `ws/http1.rs`) and the same session code serves it: what
//! differs is only this opening, and the `http` label metrics tell the two
//! apart by. Subprotocol and extension fields mean the same
//! in both, so the endpoint adds them to [`Handshake::accept`]'s answer.

use http::{HeaderValue, Request, Response, StatusCode, header};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::extended_connect::{self, Ask};
use crate::reply::{self, Body};

/// An acceptable WebSocket opening, by the HTTP version that carries it.
#[derive(Clone, Debug)]
pub(crate) enum Handshake {
    /// HTTP/1.1 Upgrade with the client's `Sec-WebSocket-Key`.
    Http1 { key: HeaderValue },
    /// HTTP/2 extended CONNECT.
    Http2,
}

impl Handshake {
    /// The handshake of `req` when it is one we accept (HTTP/1.1 Upgrade
    /// or HTTP/2 extended CONNECT, version 13); else the refusal: 426 for
    /// a request that is no WebSocket opening at all, 400 for an extended
    /// CONNECT to another protocol or without version 13.
    pub(crate) fn of<B>(req: &Request<B>) -> Result<Handshake, Response<Body>> {
        let version_ok = req
            .headers()
            .get("sec-websocket-version")
            .is_some_and(|v| v == "13");
        match extended_connect::ask(req) {
            Some(Ask::Other) => return Err(extended_connect::unsupported()),
            Some(Ask::WebSocket) if version_ok => return Ok(Handshake::Http2),
            Some(Ask::WebSocket) => {
                let mut r = reply::error(
                    StatusCode::BAD_REQUEST,
                    "bad_handshake",
                    "a WebSocket over HTTP/2 needs sec-websocket-version 13",
                );
                says_version(&mut r);
                return Err(r);
            }
            None => {}
        }
        let headers = req.headers();
        let is_upgrade = headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let key = headers.get("sec-websocket-key").cloned();
        let (true, Some(key), true, http::Version::HTTP_11) =
            (is_upgrade, key, version_ok, req.version())
        else {
            let mut r = reply::error(
                StatusCode::UPGRADE_REQUIRED,
                "upgrade_required",
                "this endpoint speaks WebSocket (HTTP/1.1 Upgrade or HTTP/2 extended CONNECT, version 13)",
            );
            r.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            says_version(&mut r);
            return Err(r);
        };
        Ok(Handshake::Http1 { key })
    }

    /// The answer that opens the socket: 101 with the accept value on
    /// HTTP/1.1; 200 on HTTP/2, whose stream then carries the frames.
    pub(crate) fn accept(&self) -> Response<Body> {
        let mut resp = Response::new(reply::empty());
        match self {
            Handshake::Http1 { key } => {
                *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let h = resp.headers_mut();
                h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
                    h.insert("sec-websocket-accept", accept);
                }
            }
            Handshake::Http2 => *resp.status_mut() = StatusCode::OK,
        }
        resp
    }

    /// The `http` label of the WebSocket metrics: which HTTP version
    /// carried the socket.
    pub(crate) fn http(&self) -> &'static str {
        match self {
            Handshake::Http1 { .. } => "1.1",
            Handshake::Http2 => "2",
        }
    }
}

/// A refused opening names the version spoken here, so a client that
/// offered another may retry with it (RFC 6455 §4.2.2, §4.4).
fn says_version(resp: &mut Response<Body>) {
    resp.headers_mut()
        .insert("sec-websocket-version", HeaderValue::from_static("13"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::ext::Protocol;

    fn h1(version: &str) -> Request<()> {
        Request::builder()
            .uri("/realtime/ws")
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", version)
            .body(())
            .unwrap()
    }

    fn h2(protocol: &'static str, version: Option<&str>) -> Request<()> {
        let mut b = Request::builder()
            .method(http::Method::CONNECT)
            .version(http::Version::HTTP_2)
            .uri("https://localhost/realtime/ws");
        if let Some(v) = version {
            b = b.header("sec-websocket-version", v);
        }
        let mut req = b.body(()).unwrap();
        req.extensions_mut().insert(Protocol::from_static(protocol));
        req
    }

    #[test]
    fn http1_answers_101_with_the_accept_value() {
        let hs = Handshake::of(&h1("13")).unwrap();
        assert_eq!(hs.http(), "1.1");
        let resp = hs.accept();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        // RFC 6455 §1.3's sample key and answer.
        assert_eq!(
            resp.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let refused = Handshake::of(&h1("8")).unwrap_err();
        assert_eq!(refused.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(refused.headers()["sec-websocket-version"], "13");
    }

    #[test]
    fn http2_answers_200_without_key_or_accept() {
        let hs = Handshake::of(&h2("websocket", Some("13"))).unwrap();
        assert_eq!(hs.http(), "2");
        let resp = hs.accept();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("sec-websocket-accept").is_none());
        assert!(resp.headers().get(header::UPGRADE).is_none());
    }

    #[test]
    fn http2_refuses_other_protocols_and_versions() {
        for req in [h2("webtransport", Some("13")), h2("websocket", None)] {
            assert_eq!(Handshake::of(&req).unwrap_err().status(), 400);
        }
        let refused = Handshake::of(&h2("websocket", Some("8"))).unwrap_err();
        assert_eq!(refused.headers()["sec-websocket-version"], "13");
    }
}
