//! What the accept loop knows about a client connection: attached to every
//! request hyper serves as an extension, and lent to the relay and the
//! direct SSE writer, so handlers (proxy headers, rate limits, logs) can read
//! it without reaching back into the server.

use std::net::SocketAddr;

#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address as seen on the socket.
    pub peer: SocketAddr,
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
