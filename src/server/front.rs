//! Whose a public connection is, decided before anything is served on it:
//! the socket's peer, or, with `listen.proxy_protocol`, the client the
//! front's PROXY header names (`proxy_protocol.rs`); and whether that peer
//! is one of the operator's fronts (`listen.trusted_proxies`), whose
//! forwarding fields then name each request's client (`real_ip.rs`).

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::conn_info::ConnInfo;
use crate::proxy_protocol::{Header, MAX_HEADER, Source, parse};
use crate::real_ip::Fronts;

/// A connection, identified.
pub(super) struct Identified {
    pub info: ConnInfo,
    /// Bytes read past the PROXY header, for whoever reads next (the TLS
    /// handshake, or the first request).
    pub early: Bytes,
}

/// Identify a public connection from `peer` (see the module doc). With the
/// PROXY protocol on, the header must arrive by `deadline`, and when
/// fronts are listed, only from one of them; else the connection is
/// refused, with why.
pub(super) async fn identify(
    stream: &mut TcpStream,
    peer: SocketAddr,
    tls: bool,
    id: u64,
    fronts: &Fronts,
    proxy_protocol: bool,
    deadline: tokio::time::Instant,
) -> Result<Identified, &'static str> {
    if !proxy_protocol {
        return Ok(Identified {
            info: ConnInfo::new(peer, tls, id, fronts),
            early: Bytes::new(),
        });
    }
    if !fronts.proxies.is_empty() && !fronts.proxies.contains(peer.ip()) {
        return Err("peer is not one of listen.trusted_proxies");
    }
    let (len, source, early) = tokio::time::timeout_at(deadline, read_header(stream))
        .await
        .unwrap_or(Err("no PROXY protocol header within the handshake timeout"))?;
    debug_assert!(len <= MAX_HEADER);
    let info = match source {
        Source::Client(client) => ConnInfo::new(client, tls, id, fronts),
        Source::Front => ConnInfo::new(peer, tls, id, fronts),
        // The front's connection, but not the front's request: what the
        // client writes on it is no front's word.
        Source::Unnamed => {
            let mut info = ConnInfo::new(peer, tls, id, fronts);
            info.front = None;
            info
        }
    };
    Ok(Identified { info, early })
}

/// Read until a whole PROXY header: its length, whose it is, and the bytes
/// read after it. Reads, not peeks: a header cut over several segments is
/// waited for without polling, and what came behind it is handed on.
async fn read_header(stream: &mut TcpStream) -> Result<(usize, Source, Bytes), &'static str> {
    let mut buf = [0u8; MAX_HEADER];
    let mut filled = 0;
    loop {
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|_| "read failed before a PROXY protocol header")?;
        if n == 0 {
            return Err("closed before a PROXY protocol header");
        }
        filled += n;
        match parse(&buf[..filled]) {
            Header::Complete { len, source } => {
                return Ok((len, source, Bytes::copy_from_slice(&buf[len..filled])));
            }
            Header::Invalid(why) => return Err(why),
            // `parse` never asks for more than MAX_HEADER bytes.
            Header::Incomplete if filled == MAX_HEADER => return Err("PROXY header too long"),
            Header::Incomplete => {}
        }
    }
}
