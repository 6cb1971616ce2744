//! Server-to-client WebSocket frames, encoded here and written straight to
//! the socket.
//!
//! tungstenite copies each outgoing frame into a write buffer that it keeps,
//! at its largest size, for the connection's whole life: ~600 B on every
//! idle connection after its first delivery, and one copy per delivery. The
//! frames a server sends are simple (RFC 6455 §5.2: FIN set, no mask, the
//! shortest length encoding), so the session encodes its text and ping frames
//! into an [`Outgoing`] that holds memory only while bytes are owed.
//! tungstenite still reads, answers the client's pings and runs the closing
//! handshake; before writing here, [`Outgoing::write_after_replies`] lets it
//! flush what a read may have queued (one rule for every WebSocket kind).
//!
//! This is the one place frames are written, for every WebSocket kind: on a
//! connection that negotiated permessage-deflate (`deflate.rs`), a shared
//! payload goes out as its once-compressed form with RSV1 set
//! ([`Outgoing::shared_text`], [`Outgoing::message`]), and a frame of the
//! connection's own ([`Outgoing::text`]) is compressed for it alone when it
//! is at the threshold.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::deflate::Deflating;
use crate::metrics::deflate::DeflateCounters;
use crate::model::{Deflated, Message};

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_PING: u8 = 0x9;
const FIN: u8 = 0x80;
/// RFC 7692: the first frame of a compressed message.
const RSV1: u8 = 0x40;
/// The longest header an unmasked frame has: 2 bytes and a 64-bit length.
const MAX_HEAD: usize = 10;

/// Encoded frames not yet written to the socket.
#[derive(Default)]
pub struct Outgoing {
    bytes: BytesMut,
    /// What this connection compresses, when it negotiated deflate.
    deflate: Option<Box<(Deflating, DeflateCounters)>>,
    /// No read since tungstenite was last flushed, so it holds no reply
    /// (pong, close) of its own: only a read queues one, when it finds the
    /// socket full. Flushing it before every delivery anyway cost ~3% of
    /// the CPU per delivery. False at first: nothing is assumed.
    replies_flushed: bool,
}

impl Outgoing {
    /// Frames for a connection that negotiated permessage-deflate.
    pub(crate) fn deflating(deflate: Deflating, counters: DeflateCounters) -> Outgoing {
        Outgoing {
            bytes: BytesMut::new(),
            deflate: Some(Box::new((deflate, counters))),
            replies_flushed: false,
        }
    }

    /// Whether frames may go compressed on this connection.
    pub fn deflates(&self) -> bool {
        self.deflate.is_some()
    }

    /// Append `m`'s shared object without a cursor, compressed once for
    /// every connection, when this one deflates and the message qualifies;
    /// whether it did (else nothing is appended).
    pub fn compressed_message(&mut self, m: &Message) -> bool {
        let Some(d) = self.deflate.as_deref() else {
            return false;
        };
        let plain_len = m.wire_prefix().len() + 1;
        let render = || {
            let mut b = BytesMut::with_capacity(plain_len);
            m.write_json(None, &mut b);
            b.freeze()
        };
        let Some(z) = d.0.shared(&m.deflated, plain_len, render, &d.1) else {
            return false;
        };
        self.compressed_text(&z);
        true
    }

    /// Append a text frame whose payload every connection shares (a Pusher
    /// event): its compressed form, made once in `deflated`, when this
    /// connection deflates and the payload qualifies.
    pub fn shared_text(&mut self, payload: &str, deflated: &Deflated) {
        if let Some(d) = self.deflate.as_deref() {
            let render = || Bytes::copy_from_slice(payload.as_bytes());
            if let Some(z) = d.0.shared(deflated, payload.len(), render, &d.1) {
                self.compressed_text(&z);
                return;
            }
        }
        self.plain_text(payload);
    }

    /// Append a text frame whose payload is permessage-deflated (RSV1 set).
    fn compressed_text(&mut self, payload: &[u8]) {
        let mut head = [0u8; MAX_HEAD];
        let n = encode_head(&mut head, RSV1 | OP_TEXT, payload.len());
        self.bytes.reserve(n + payload.len());
        self.bytes.put_slice(&head[..n]);
        self.bytes.put_slice(payload);
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Bytes owed.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Room for `additional` more bytes of frames, in one allocation.
    pub fn reserve(&mut self, additional: usize) {
        self.bytes.reserve(additional);
    }

    /// Append a text frame whose payload `render` appends (valid UTF-8: the
    /// session only renders JSON).
    pub fn text_with(&mut self, render: impl FnOnce(&mut BytesMut)) {
        self.frame_with(OP_TEXT, render);
    }

    /// Append a binary frame whose payload `render` appends.
    pub fn binary_with(&mut self, render: impl FnOnce(&mut BytesMut)) {
        self.frame_with(OP_BINARY, render);
    }

    fn frame_with(&mut self, opcode: u8, render: impl FnOnce(&mut BytesMut)) {
        let start = self.bytes.len();
        // Rendered after room for the longest header; the gap left by a
        // shorter one is closed by moving the payload down.
        self.bytes.put_bytes(0, MAX_HEAD);
        render(&mut self.bytes);
        let len = self.bytes.len() - start - MAX_HEAD;
        let mut head = [0u8; MAX_HEAD];
        let n = encode_head(&mut head, opcode, len);
        let gap = MAX_HEAD - n;
        self.bytes[start + gap..start + MAX_HEAD].copy_from_slice(&head[..n]);
        if gap > 0 {
            self.bytes.copy_within(start + gap.., start);
            self.bytes.truncate(self.bytes.len() - gap);
        }
    }

    /// Append a text frame of this connection's own (a reply, an error):
    /// compressed for it alone when it deflates and the payload qualifies.
    pub fn text(&mut self, payload: &str) {
        if let Some(d) = self.deflate.as_deref() {
            if let Some(z) = d.0.own(payload.as_bytes(), &d.1) {
                self.compressed_text(&z);
                return;
            }
        }
        self.plain_text(payload);
    }

    fn plain_text(&mut self, payload: &str) {
        self.reserve(MAX_HEAD + payload.len());
        self.text_with(|b| b.extend_from_slice(payload.as_bytes()));
    }

    /// An empty ping (the heartbeat).
    pub fn ping(&mut self) {
        self.bytes.put_slice(&[FIN | OP_PING, 0]);
    }

    /// Write every owed byte and flush. Cancel-safe: what was not written
    /// stays for the next call, after which the buffer is released.
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> std::io::Result<()> {
        while !self.bytes.is_empty() {
            let n = io.write(&self.bytes).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.bytes.advance(n);
        }
        self.bytes = BytesMut::new();
        io.flush().await
    }

    /// A frame was read from `socket`: tungstenite may have queued a reply
    /// that the next write must let out first.
    pub(crate) fn after_read(&mut self) {
        self.replies_flushed = false;
    }

    /// Let tungstenite write what a read may have queued (pong and close
    /// replies), then write every owed frame straight to the socket: a
    /// reply never lands inside one of ours. Cancel-safe: the flag is set
    /// only once tungstenite's flush is done.
    pub(crate) async fn write_after_replies(
        &mut self,
        socket: &mut super::Socket,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        use futures_util::SinkExt;
        if !self.replies_flushed {
            socket.flush().await?;
            self.replies_flushed = true;
        }
        self.write_to(socket.get_mut()).await?;
        Ok(())
    }
}

/// Write the header of an unmasked final frame into `head`; its length.
/// `opcode` may carry RSV1.
fn encode_head(head: &mut [u8; MAX_HEAD], opcode: u8, len: usize) -> usize {
    head[0] = FIN | opcode;
    if len < 126 {
        head[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        head[1] = 126;
        head[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    /// Parse `bytes` back with tungstenite's own decoder.
    fn decode(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let mut cursor = std::io::Cursor::new(bytes);
            let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final);
            assert!(header.mask.is_none(), "server frames are unmasked");
            let at = cursor.position() as usize;
            let len = len as usize;
            let opcode: u8 = header.opcode.into();
            frames.push((opcode, bytes[at..at + len].to_vec()));
            bytes = &bytes[at + len..];
        }
        frames
    }

    #[test]
    fn frames_of_every_length_class_decode() {
        let mut out = Outgoing::default();
        let payloads = [
            "".to_string(),
            "x".repeat(125),
            "y".repeat(126),
            "z".repeat(65_535),
            "w".repeat(65_536),
        ];
        for p in &payloads {
            out.text(p);
        }
        out.ping();
        let frames = decode(&out.bytes);
        assert_eq!(frames.len(), payloads.len() + 1);
        for (frame, p) in frames.iter().zip(&payloads) {
            assert_eq!(frame.0, OP_TEXT);
            assert_eq!(frame.1, p.as_bytes());
        }
        assert_eq!(frames[payloads.len()], (OP_PING, Vec::new()));
    }

    #[test]
    fn binary_frames_carry_any_bytes() {
        let mut out = Outgoing::default();
        let payload: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        out.binary_with(|b| b.extend_from_slice(&payload));
        assert_eq!(decode(&out.bytes), vec![(OP_BINARY, payload)]);
    }

    #[test]
    fn a_short_header_uses_the_shortest_encoding() {
        let mut out = Outgoing::default();
        out.text_with(|b| b.extend_from_slice(b"{}"));
        assert_eq!(&out.bytes[..], b"\x81\x02{}");
    }

    #[tokio::test]
    async fn a_cancelled_write_resumes_where_it_stopped() {
        let (mut near, mut far) = tokio::io::duplex(64);
        let mut out = Outgoing::default();
        let payload = "p".repeat(1000);
        out.text(&payload);
        // The pipe holds 64 bytes: the write stalls and is abandoned.
        let stalled = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            out.write_to(&mut near),
        )
        .await;
        assert!(stalled.is_err());
        assert!(!out.is_empty());
        out.ping();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut far, &mut all)
                .await
                .unwrap();
            all
        });
        out.write_to(&mut near).await.unwrap();
        assert!(out.is_empty());
        assert_eq!(out.bytes.capacity(), 0, "the buffer is released");
        drop(near);
        let frames = decode(&reader.await.unwrap());
        assert_eq!(
            frames,
            vec![(OP_TEXT, payload.into_bytes()), (OP_PING, Vec::new())]
        );
    }
}
