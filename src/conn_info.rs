//! What the accept loop knows about a client connection: attached to every
//! request hyper serves as an extension, and lent to the relay and the
//! direct SSE writer, so handlers (proxy headers, rate limits, logs) can read
//! it without reaching back into the server.

use std::net::{IpAddr, SocketAddr};

use crate::real_ip::Fronts;

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
    /// The fronts in force when the peer is one of them: the field they
    /// name clients in is believed and passed on, with the peer appended.
    /// `None`: a client's own forwarding fields are replaced, never
    /// appended to.
    pub front: Option<Fronts>,
    /// Whether the connection arrived over TLS (drives `X-Forwarded-Proto`).
    pub tls: bool,
    /// Server name the client asked for in SNI, if any (shared: every
    /// request on the connection carries a copy of this struct).
    pub sni: Option<std::sync::Arc<str>>,
    /// A process-unique connection id, used in logs and `X-Pushgate-Connection`.
    pub id: u64,
    /// When the accept loop took the connection (`server.rs`; the time its
    /// info was made, where there is no accept loop): where a resume's
    /// stage times start (`pushgate_resume_seconds`), so that its wait for
    /// a serving loop and for its first bytes is counted.
    pub accepted: std::time::Instant,
}

/// Ringing this drops the client's whole connection at once. A streaming
/// response whose client stopped reading uses it: ending the body would leave
/// hyper waiting on a socket that never drains.
#[derive(Clone, Debug, Default)]
pub struct ConnKill(pub std::sync::Arc<crate::alarm::Alarm>);

impl ConnInfo {
    /// A connection's info before any request: the client is the peer,
    /// which is a front when it is one of `fronts`.
    pub fn new(peer: SocketAddr, tls: bool, id: u64, fronts: &Fronts) -> ConnInfo {
        let front = fronts.proxies.contains(peer.ip()).then(|| fronts.clone());
        ConnInfo {
            peer,
            client: peer.ip().to_canonical(),
            front,
            tls,
            sni: None,
            id,
            accepted: std::time::Instant::now(),
        }
    }

    /// This connection's info for one request with `headers`: behind a
    /// trusted front, the client the front's field names.
    pub fn for_request(&self, headers: &http::HeaderMap) -> ConnInfo {
        let mut info = self.clone();
        if let Some(front) = &self.front {
            let lines = headers.get_all(front.header.name()).into_iter();
            info.client = front.client(self.peer.ip(), lines.map(|v| v.as_bytes()));
        }
        info
    }
}
