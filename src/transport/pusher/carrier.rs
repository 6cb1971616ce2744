//! What carries one Pusher connection's frames: a WebSocket, or one of
//! pusher-js's HTTP sessions (`xhr_streaming`, `xhr_polling`). The protocol
//! (`socket.rs` and its neighbours) is the same code for both; it reads a
//! frame, owes frames and closes with a code, and the carrier does each the
//! way its wire does: WebSocket frames, or SockJS lines in the session's
//! buffer for whichever receive request holds it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as Frame};

use crate::pusher::http_session::{HttpSession, NotWritten, Registered};
use crate::pusher::sockjs;
use crate::transport::ws::Socket;
use crate::transport::ws::outgoing::Outgoing;

/// One connection's carrier.
pub(crate) enum Link {
    WebSocket(Box<Socket>),
    Http(HttpLink),
}

/// The socket task's end of an HTTP session.
pub(crate) struct HttpLink {
    pub(crate) session: Arc<HttpSession>,
    pub(crate) inbound: mpsc::Receiver<String>,
    /// Without a receive request this long, the client is gone.
    pub(crate) idle: Duration,
    /// Bytes the session's buffer may hold before the socket task waits.
    pub(crate) cap: usize,
    /// How long the task waits on a full buffer that a receive request
    /// holds but does not drain (HTTP/2 flow control) before it ends the
    /// session as stuck.
    pub(crate) stuck: Duration,
    /// The session's place in the registry, given up when the task ends.
    pub(crate) _registered: Registered,
}

/// Frames owed, encoded for the carrier they go out on.
pub(crate) enum Owed {
    WebSocket(Outgoing),
    Http(sockjs::Frames),
}

impl Owed {
    /// A frame was read from the link: see [`Outgoing::after_read`].
    pub(crate) fn after_read(&mut self) {
        if let Owed::WebSocket(o) = self {
            o.after_read();
        }
    }

    pub(crate) fn text(&mut self, frame: &str) {
        match self {
            Owed::WebSocket(o) => o.text(frame),
            Owed::Http(f) => f.push(frame),
        }
    }

    /// A frame every socket of the channel shares (a Pusher event): a
    /// WebSocket sends the form compressed once in `deflated` when it
    /// negotiated permessage-deflate.
    pub(crate) fn shared_text(&mut self, frame: &str, deflated: &crate::model::Deflated) {
        match self {
            Owed::WebSocket(o) => o.shared_text(frame, deflated),
            Owed::Http(f) => f.push(frame),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Owed::WebSocket(o) => o.is_empty(),
            Owed::Http(f) => f.is_empty(),
        }
    }

    /// Bytes owed.
    pub(crate) fn len(&self) -> usize {
        match self {
            Owed::WebSocket(o) => o.len(),
            Owed::Http(f) => f.len(),
        }
    }
}

impl Link {
    /// The transport label of metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Link::WebSocket(_) => "pusher",
            Link::Http(_) => "pusher_http",
        }
    }

    /// An empty owed buffer of this carrier's encoding.
    pub(crate) fn owed(&self) -> Owed {
        match self {
            Link::WebSocket(_) => Owed::WebSocket(Outgoing::default()),
            Link::Http(_) => Owed::Http(sockjs::Frames::default()),
        }
    }

    /// The next frame from the client, as a WebSocket read reports it; an
    /// HTTP session whose client stopped receiving ends like a vanished
    /// peer. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Option<Result<Frame, WsError>> {
        match self {
            Link::WebSocket(socket) => socket.next().await,
            Link::Http(link) => tokio::select! {
                frame = link.inbound.recv() => frame.map(|f| Ok(Frame::text(f))),
                _ = link.session.expired(link.idle) => None,
                _ = link.session.closed() => None,
            },
        }
    }

    /// Write what is owed (after tungstenite's own pong and close replies).
    pub(crate) async fn write_owed(&mut self, owed: &mut Owed) -> Result<(), WsError> {
        match (self, owed) {
            (Link::WebSocket(socket), Owed::WebSocket(outgoing)) => {
                outgoing.write_after_replies(socket).await
            }
            (Link::Http(link), Owed::Http(frames)) => {
                let mut line = bytes::BytesMut::new();
                frames.take_line(&mut line);
                if line.is_empty() {
                    return Ok(());
                }
                match link
                    .session
                    .write(&line, link.cap, link.idle, link.stuck)
                    .await
                {
                    Ok(()) => Ok(()),
                    // Ends the socket as a WebSocket that took nothing does.
                    Err(NotWritten::Stuck) => Err(WsError::Io(std::io::ErrorKind::TimedOut.into())),
                    Err(NotWritten::Expired) => Err(WsError::ConnectionClosed),
                }
            }
            // Made by `owed()` of the same link: never mixed.
            _ => Ok(()),
        }
    }

    /// Let a WebSocket write what it queued (the peer closed first).
    pub(crate) async fn flush(&mut self) {
        if let Link::WebSocket(socket) = self {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.flush()).await;
        }
    }

    /// One frame now, outside the owed buffer (a refusal before serving).
    pub(crate) async fn send_now(&mut self, frame: &str) {
        let mut owed = self.owed();
        owed.text(frame);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.write_owed(&mut owed)).await;
    }

    /// Hold an HTTP session's registration until its receiver took what
    /// is left (the close line) or nobody came for `idle`: a code written
    /// between two polls is the next poll's answer, not lost to a new
    /// session that pusher-js would read as a second `o` and retry.
    pub(crate) async fn linger(self) {
        if let Link::Http(link) = self {
            // Bounded even when a receiver holds it and takes nothing.
            let _ = tokio::time::timeout(link.idle, link.session.delivered(link.idle)).await;
        }
    }

    /// Close with `code`: a WebSocket close frame (and a bounded wait for
    /// the peer's), or an HTTP session's `c[code,"reason"]` line.
    pub(crate) async fn close(&mut self, code: u16, reason: &str) {
        let socket = match self {
            Link::WebSocket(socket) => socket,
            Link::Http(link) => return link.session.close(code, reason),
        };
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let sent = tokio::time::timeout(
            Duration::from_secs(2),
            socket.send(Frame::Close(Some(frame))),
        )
        .await;
        if matches!(sent, Ok(Ok(()))) {
            let drain = async {
                while let Some(Ok(frame)) = socket.next().await {
                    if matches!(frame, Frame::Close(_)) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        }
    }
}
