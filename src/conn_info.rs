//! What the accept loop knows about a client connection: attached to every
//! request hyper serves as an extension, and lent to the relay and the
//! direct SSE writer, so handlers (proxy headers, rate limits, logs) can read
//! it without reaching back into the server.

use std::net::{IpAddr, SocketAddr};

use crate::real_ip::TrustedProxies;

#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The connection's peer: the address on the socket, or the source a
    /// PROXY protocol header named (`proxy_protocol.rs`).
    pub peer: SocketAddr,
    /// Who the request is from: the peer, or, when the peer is a trusted
    /// front, the client its forwarding fields name (`real_ip.rs`; set per
    /// request by [`ConnInfo::for_request`]). Limits, logs and the
    /// application's `X-Forwarded-For` use this.
    pub client: IpAddr,
    /// The fronts in force when the peer is one of them: its forwarding
    /// fields are believed and passed on, with the peer appended. `None`:
    /// a client's own forwarding fields are replaced, never appended to.
    pub front: Option<TrustedProxies>,
    /// Whether the connection arrived over TLS (drives `X-Forwarded-Proto`).
    pub tls: bool,
    /// Server name the client asked for in SNI, if any (shared: every
    /// request on the connection carries a copy of this struct).
    pub sni: Option<std::sync::Arc<str>>,
    /// A process-unique connection id, used in logs and `X-Pushgate-Connection`.
    pub id: u64,
}

/// Ringing this drops the client's whole connection at once. A streaming
/// response whose client stopped reading uses it: ending the body would leave
/// hyper waiting on a socket that never drains.
#[derive(Clone, Debug, Default)]
pub struct ConnKill(pub std::sync::Arc<crate::alarm::Alarm>);

impl ConnInfo {
    /// A connection's info before any request: the client is the peer.
    /// `trusted` are the fronts in force; the peer is a front only when it
    /// is among them.
    pub fn new(peer: SocketAddr, tls: bool, id: u64, trusted: &TrustedProxies) -> ConnInfo {
        let front = trusted.contains(peer.ip()).then(|| trusted.clone());
        ConnInfo {
            peer,
            client: peer.ip().to_canonical(),
            front,
            tls,
            sni: None,
            id,
        }
    }

    /// This connection's info for one request with `headers`: behind a
    /// trusted front, the client its `X-Forwarded-For` (or `Forwarded`)
    /// names.
    pub fn for_request(&self, headers: &http::HeaderMap) -> ConnInfo {
        let mut info = self.clone();
        if let Some(front) = &self.front {
            let text = |name| {
                headers
                    .get_all(name)
                    .into_iter()
                    .filter_map(|v| v.to_str().ok())
            };
            info.client = front.client(
                self.peer.ip(),
                text(http::header::HeaderName::from_static("x-forwarded-for")),
                text(http::header::FORWARDED),
            );
        }
        info
    }
}
