//! What a read from the client produced, and why a session ends.
//!
//! However a session stops, the reason is one [`Ending`], and the close code
//! owed to the peer and the disconnect metric's label both follow from it:
//! what the client is told and what is counted cannot disagree. A read that
//! breaks the protocol is answered with the code RFC 6455 gives it (1002,
//! 1007, 1009); one that merely stops means the peer is gone.

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as Frame, Utf8Bytes};

/// A frame read from the client, as the session sees it.
pub(crate) enum Inbound {
    Text(Utf8Bytes),
    Binary(bytes::Bytes),
    /// Ping or pong (tungstenite answers pings itself); proves the peer alive.
    Control,
    /// Reading stopped: peer closed, I/O error, or a protocol violation
    /// (with the close code to answer).
    End(Option<(CloseCode, &'static str)>),
}

impl Inbound {
    /// What a read produced.
    pub(crate) fn from_read(item: Option<Result<Frame, WsError>>) -> Inbound {
        match item {
            Some(Ok(Frame::Text(t))) => Inbound::Text(t),
            Some(Ok(Frame::Binary(b))) => Inbound::Binary(b),
            Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_))) => Inbound::Control,
            Some(Ok(Frame::Close(_))) | None => Inbound::End(None),
            Some(Err(e)) => Inbound::End(close_for(&e)),
        }
    }
}

/// Why a session ends, and what to tell the peer.
pub(super) enum Ending {
    Close(CloseCode, String),
    /// Evicted while its socket would take no more bytes.
    Stuck,
    /// Disconnected by an operator (`POST /disconnect`): closed with 1008.
    Kicked,
    Gone,
}

impl Ending {
    /// Label for the disconnect metric.
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Ending::Gone => "client",
            Ending::Stuck => "slow_client",
            Ending::Kicked => "operator",
            Ending::Close(code, _) => match code {
                CloseCode::Restart => "shutdown",
                CloseCode::Again => "slow_or_flooding",
                CloseCode::Policy => "token_expired",
                CloseCode::Away => "timeout",
                CloseCode::Size => "too_big",
                _ => "protocol",
            },
        }
    }
}

/// The close code owed to a peer whose frames broke the protocol.
fn close_for(e: &WsError) -> Option<(CloseCode, &'static str)> {
    match e {
        WsError::Capacity(_) => Some((CloseCode::Size, "message too big")),
        WsError::Utf8(_) => Some((CloseCode::Invalid, "invalid UTF-8")),
        WsError::Protocol(_) => Some((CloseCode::Protocol, "protocol error")),
        // A compressed message refused while inflating (`inflate.rs`).
        WsError::Io(io) => super::inflate::InflateError::of(io).map(|e| match e {
            super::inflate::InflateError::TooBig(_) => (CloseCode::Size, "message too big"),
            super::inflate::InflateError::Corrupt => {
                (CloseCode::Invalid, "invalid compressed data")
            }
        }),
        _ => None,
    }
}
