//! Client-to-server permessage-deflate (RFC 7692): compressed frames are
//! inflated, with a hard limit, before tungstenite reads them.
//!
//! tungstenite 0.30 has no extension support and fails any frame with RSV1
//! set. [`Inflating`] sits between the socket and tungstenite and rewrites
//! the incoming byte stream: a compressed message (RSV1 on its first frame)
//! is inflated and handed on as plain fragments (masked with a zero key, as
//! a client frame must be), everything else passes through untouched. So
//! tungstenite still validates UTF-8, reassembles fragments, answers pings
//! and runs the closing handshake, and a reserved bit where RFC 7692 gives
//! it no meaning (a control frame, a continuation) still reaches it and is
//! failed with 1002.
//!
//! The rule this file keeps: a message never inflates past the socket's
//! message limit. Output is produced in fragments of at most
//! [`FRAGMENT`] bytes and counted as it comes, so a bomb (a few KiB that
//! inflate to gigabytes) costs at most one limit of work and memory before
//! the read fails with [`InflateError::TooBig`], which the session answers
//! with 1009. A client that agreed to `client_no_context_takeover` gets a
//! fresh inflater per message, dropped when the message ends; one that keeps
//! its context keeps one inflater for the connection's life, with the window
//! agreed (1 KiB when the client offered to take a limit, else 32 KiB).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest inflated fragment handed to tungstenite at once.
const FRAGMENT: usize = 16 * 1024;

thread_local! {
    /// Where each inflate step writes before its fragment is framed: one
    /// per thread, so no connection holds it between reads.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
/// Bytes read from the socket at once.
const READ: usize = 4096;
/// What RFC 7692 §7.2.2 appends to a message before inflating it.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const RSV_ALL: u8 = 0x70;
const MASKED: u8 = 0x80;

/// Why a compressed message was refused; the session closes with 1009
/// or 1007 (`ending.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InflateError {
    #[error("compressed message inflates past {0} bytes")]
    TooBig(usize),
    #[error("invalid compressed data")]
    Corrupt,
}

impl InflateError {
    /// The inflate error inside an I/O error a read returned, if any.
    pub(crate) fn of(error: &io::Error) -> Option<&InflateError> {
        error.get_ref()?.downcast_ref::<InflateError>()
    }
}

/// What the client agreed to for its own frames.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InflateParams {
    /// The largest message, inflated: the socket's message limit.
    pub(crate) limit: usize,
    /// The client compresses each message from an empty window
    /// (`client_no_context_takeover` agreed).
    pub(crate) no_context_takeover: bool,
    /// The client's window, 8 to 15 (`client_max_window_bits` agreed, or 15).
    pub(crate) window_bits: u8,
}

/// A socket whose incoming compressed messages are inflated (see the
/// module doc). Without negotiated deflate it is the socket, nothing more.
pub(crate) struct Inflating<S> {
    io: S,
    inflate: Option<Box<Inflate>>,
}

impl<S> Inflating<S> {
    pub(crate) fn new(io: S, params: Option<InflateParams>) -> Self {
        Inflating {
            io,
            inflate: params.map(|p| Box::new(Inflate::new(p))),
        }
    }

    /// The socket beneath, for discarding what a peer still sends after
    /// the WebSocket reader gave up on it (`serve.rs`, the closing drain).
    pub(crate) fn raw_mut(&mut self) -> &mut S {
        &mut self.io
    }
}

/// Where the reader is in the client's frame stream.
enum State {
    /// Expecting a frame header.
    Head,
    /// Copying this many more bytes of a frame through unchanged.
    Pass(u64),
    /// Inflating this many more payload bytes of a compressed frame.
    Inflate {
        remaining: u64,
        mask: [u8; 4],
        /// Payload bytes of this frame already consumed (the mask's phase).
        offset: usize,
        fin: bool,
    },
    /// The message's last frame is consumed: inflate the sync tail.
    Tail,
}

/// The data message in progress, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Message {
    None,
    Plain,
    /// Compressed; `opcode` until its first fragment went out, then 0.
    Compressed {
        opcode: u8,
    },
}

struct Inflate {
    params: InflateParams,
    /// Bytes read and not yet handled.
    input: BytesMut,
    /// How many leading bytes of `input` are already unmasked.
    unmasked: usize,
    /// Frames ready for tungstenite.
    output: BytesMut,
    state: State,
    message: Message,
    /// Inflated bytes of the message in progress.
    inflated: usize,
    /// Compressed payload bytes of the message in progress.
    compressed: u64,
    /// The client's deflate stream; dropped between messages when it
    /// keeps no context.
    z: Option<Decompress>,
    /// A final deflate block ended the stream: the rest of the message is
    /// ignored and the stream starts over with the next.
    ended: bool,
    /// Bytes of the sync tail already inflated.
    tail: usize,
    /// The error every read returns once a message was refused.
    failed: Option<InflateError>,
}

impl Inflate {
    fn new(params: InflateParams) -> Self {
        Inflate {
            params,
            input: BytesMut::new(),
            unmasked: 0,
            output: BytesMut::new(),
            state: State::Head,
            message: Message::None,
            inflated: 0,
            compressed: 0,
            z: None,
            ended: false,
            tail: 0,
            failed: None,
        }
    }

    /// Handle what `input` holds; false when more input is needed.
    fn step(&mut self) -> Result<bool, InflateError> {
        match self.state {
            State::Head => self.head(),
            State::Pass(n) => {
                let take = usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(self.input.len());
                if take == 0 && n > 0 {
                    return Ok(false);
                }
                self.output.extend_from_slice(&self.input[..take]);
                self.input.advance(take);
                if self.input.is_empty() {
                    // An idle connection holds no buffer (as for `output`).
                    self.input = BytesMut::new();
                }
                self.state = match n - take as u64 {
                    0 => State::Head,
                    left => State::Pass(left),
                };
                Ok(true)
            }
            State::Inflate { .. } => self.inflate_payload(),
            State::Tail => self.inflate_tail(),
        }
    }

    /// Read a frame header and decide whether the frame passes or inflates.
    fn head(&mut self) -> Result<bool, InflateError> {
        let Some((len, at)) = frame_len(&self.input) else {
            return Ok(false);
        };
        let b0 = self.input[0];
        let masked = self.input[1] & MASKED != 0;
        let opcode = b0 & 0x0f;
        let fin = b0 & FIN != 0;
        let rsv = b0 & RSV_ALL;
        let head_len = at + if masked { 4 } else { 0 };
        if self.input.len() < head_len {
            return Ok(false);
        }
        let starts_compressed = rsv == RSV1 && masked && matches!(opcode, 1 | 2);
        let continues_compressed =
            rsv == 0 && masked && opcode == 0 && matches!(self.message, Message::Compressed { .. });
        if starts_compressed && self.message == Message::None || continues_compressed {
            let mut mask = [0u8; 4];
            mask.copy_from_slice(&self.input[at..head_len]);
            self.input.advance(head_len);
            self.unmasked = 0;
            if starts_compressed {
                self.message = Message::Compressed { opcode };
                self.inflated = 0;
                self.compressed = 0;
            }
            // The compressed bytes are bounded too (tungstenite, which
            // would cut a long frame, never sees these): a stream of empty
            // blocks inflates to nothing but must not go on forever.
            self.compressed = self.compressed.saturating_add(len);
            if self.compressed > compressed_cap(self.params.limit) {
                return Err(InflateError::TooBig(self.params.limit));
            }
            self.state = State::Inflate {
                remaining: len,
                mask,
                offset: 0,
                fin,
            };
            return Ok(true);
        }
        // Anything else is tungstenite's to judge, unchanged: control
        // frames, plain messages, and reserved bits RFC 7692 gives no
        // meaning (which it fails with 1002).
        if opcode < 8 {
            self.message = match (opcode, fin) {
                (_, true) if opcode != 0 || self.message == Message::Plain => Message::None,
                (1 | 2, false) => Message::Plain,
                _ => self.message,
            };
        }
        // A length near 2^64 is tungstenite's to refuse (1009): no overflow here.
        self.state = State::Pass(len.saturating_add(head_len as u64));
        Ok(true)
    }

    fn inflate_payload(&mut self) -> Result<bool, InflateError> {
        let State::Inflate {
            remaining,
            mask,
            offset,
            fin,
        } = self.state
        else {
            return Ok(false);
        };
        let avail = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(self.input.len());
        if remaining == 0 {
            self.state = if fin { State::Tail } else { State::Head };
            self.tail = 0;
            return Ok(true);
        }
        if avail == 0 {
            return Ok(false);
        }
        for i in self.unmasked..avail {
            self.input[i] ^= mask[(offset + i) % 4];
        }
        self.unmasked = avail;
        let (taken, produced, _) = self.inflate(avail, false)?;
        if taken == 0 && produced == 0 {
            // zlib neither took input nor gave output with room to give.
            return Err(InflateError::Corrupt);
        }
        self.input.advance(taken);
        self.unmasked -= taken;
        self.state = State::Inflate {
            remaining: remaining - taken as u64,
            mask,
            offset: offset + taken,
            fin,
        };
        Ok(taken > 0 || produced > 0)
    }

    /// Inflate the sync tail, then end the message with a final fragment.
    fn inflate_tail(&mut self) -> Result<bool, InflateError> {
        let (taken, produced, full) = self.inflate(0, true)?;
        if taken == 0 && produced == 0 && self.tail < SYNC_TAIL.len() {
            // zlib neither took the tail nor gave output with room to give.
            return Err(InflateError::Corrupt);
        }
        self.tail += taken;
        if self.tail < SYNC_TAIL.len() || full {
            // More of the tail to take, or output the full fragment held back.
            return Ok(true);
        }
        self.emit(&[], true);
        self.message = Message::None;
        self.state = State::Head;
        if self.params.no_context_takeover || self.ended {
            self.z = None;
        }
        self.ended = false;
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
        Ok(true)
    }

    /// Room left under the limit, plus one byte to see it crossed.
    fn room(&self) -> usize {
        (self.params.limit + 1).saturating_sub(self.inflated)
    }

    /// Feed the first `avail` bytes of `input` (or the rest of the sync
    /// tail) to the inflater and emit what comes out as one fragment.
    /// Returns the bytes taken, the bytes produced, and whether the
    /// fragment was full (the inflater may hold more).
    fn inflate(&mut self, avail: usize, tail: bool) -> Result<(usize, usize, bool), InflateError> {
        if self.ended {
            // After a final block nothing more belongs to the stream.
            let rest = if tail {
                SYNC_TAIL.len() - self.tail
            } else {
                avail
            };
            return Ok((rest, 0, false));
        }
        let cap = self.room().min(FRAGMENT);
        // zlib's smallest window is 2^9; a stream made with 2^8 inflates
        // with it all the same.
        let bits = self.params.window_bits.clamp(9, 15);
        let z = self
            .z
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, bits));
        let (before_in, before_out) = (z.total_in(), z.total_out());
        let input = if tail {
            &SYNC_TAIL[self.tail..]
        } else {
            &self.input[..avail]
        };
        // Zeroed once per thread, not once per step: a client sending a
        // byte at a time does not cost 16 KiB of zeroing per byte. Taken
        // out and put back; an error drops it, and the next step makes one.
        let mut scratch = SCRATCH.take();
        if scratch.len() < FRAGMENT {
            scratch.resize(FRAGMENT, 0);
        }
        let status = z
            .decompress(input, &mut scratch[..cap], FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        let taken = usize::try_from(z.total_in() - before_in).unwrap_or(usize::MAX);
        let produced = usize::try_from(z.total_out() - before_out).unwrap_or(usize::MAX);
        if matches!(status, Status::StreamEnd) {
            self.ended = true;
        }
        self.inflated += produced;
        if self.inflated > self.params.limit {
            return Err(InflateError::TooBig(self.params.limit));
        }
        if produced > 0 {
            self.emit(&scratch[..produced], false);
        }
        SCRATCH.set(scratch);
        Ok((taken, produced, produced == cap))
    }

    /// Append one inflated fragment as a client frame (masked with a zero
    /// key, RSV1 clear).
    fn emit(&mut self, payload: &[u8], fin: bool) {
        let opcode = match &mut self.message {
            Message::Compressed { opcode } => std::mem::take(opcode),
            _ => 0,
        };
        let len = payload.len();
        self.output.reserve(len + 14);
        self.output.put_u8(if fin { FIN } else { 0 } | opcode);
        if len < 126 {
            self.output.put_u8(MASKED | len as u8);
        } else if let Ok(short) = u16::try_from(len) {
            self.output.put_u8(MASKED | 126);
            self.output.put_u16(short);
        } else {
            self.output.put_u8(MASKED | 127);
            self.output.put_u64(len as u64);
        }
        self.output.put_slice(&[0; 4]);
        self.output.put_slice(payload);
    }
}

/// Run the reader's frame machine over `wire` at once, as if one read had
/// brought it all: the bytes tungstenite would get, and the error that
/// stopped them. The fuzz target's entry (`fuzzing.rs`).
pub(crate) fn rewrite(wire: &[u8], params: InflateParams) -> (Vec<u8>, Option<InflateError>) {
    let mut z = Inflate::new(params);
    z.input.extend_from_slice(wire);
    let mut out = Vec::new();
    loop {
        let step = z.step();
        out.extend_from_slice(&z.output);
        z.output.clear();
        match step {
            Ok(true) => {}
            Ok(false) => return (out, None),
            Err(error) => return (out, Some(error)),
        }
    }
}

/// The most compressed bytes a message whose inflated form is at most
/// `limit` bytes may take: deflate's stored blocks add 5 bytes per 64 KiB,
/// and a sync flush a few bytes each; anything beyond is not a message.
fn compressed_cap(limit: usize) -> u64 {
    (limit as u64)
        .saturating_add(limit as u64 / 64)
        .saturating_add(4096)
}

/// The payload length of the frame `buf` starts with, and where its mask
/// (or payload) begins; None until the header is complete.
fn frame_len(buf: &[u8]) -> Option<(u64, usize)> {
    let b1 = *buf.get(1)? & 0x7f;
    match b1 {
        126 => Some((
            u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
            4,
        )),
        127 => Some((u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10)),
        n => Some((u64::from(n), 2)),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Inflating<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(z) = this.inflate.as_deref_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        loop {
            if !z.output.is_empty() {
                let n = z.output.len().min(buf.remaining());
                buf.put_slice(&z.output[..n]);
                z.output.advance(n);
                if z.output.is_empty() {
                    // An idle connection holds no buffer.
                    z.output = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(error) = z.failed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            }
            match z.step() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => {
                    z.failed = Some(error);
                    continue;
                }
            }
            let mut bytes = [0u8; READ];
            let mut read = ReadBuf::new(&mut bytes);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // End of stream: tungstenite sees it as such.
                return Poll::Ready(Ok(()));
            }
            z.input.extend_from_slice(read.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inflating<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};
    use tokio::io::AsyncReadExt;

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first];
        let len = payload.len();
        if len < 126 {
            f.push(MASKED | len as u8);
        } else if len <= 0xffff {
            f.push(MASKED | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(MASKED | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [1, 2, 3, 4];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    fn deflate(plain: &[u8]) -> Vec<u8> {
        let mut z = Compress::new(Compression::new(6), false);
        let mut out = Vec::with_capacity(plain.len() + 1024);
        z.compress_vec(plain, &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&SYNC_TAIL));
        out.truncate(out.len() - 4);
        out
    }

    /// What tungstenite would read from `wire` through an [`Inflating`]:
    /// every byte until the end, or the error.
    async fn through(wire: Vec<u8>, limit: usize) -> (Vec<u8>, Option<InflateError>) {
        let params = InflateParams {
            limit,
            no_context_takeover: true,
            window_bits: 15,
        };
        let mut io = Inflating::new(std::io::Cursor::new(wire), Some(params));
        let mut out = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            match io.read(&mut chunk).await {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) => return (out, InflateError::of(&e).copied()),
            }
        }
    }

    /// The payloads of the (zero-masked) frames in `bytes`, with their
    /// first bytes.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (len, at) = frame_len(bytes).unwrap();
            let start = at + 4;
            let mask = &bytes[at..start];
            let payload = bytes[start..start + len as usize]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            out.push((bytes[0], payload));
            bytes = &bytes[start + len as usize..];
        }
        out
    }

    #[tokio::test]
    async fn a_compressed_message_comes_out_as_plain_fragments() {
        let plain = "{\"op\":\"ping\"}".repeat(3000);
        let z = deflate(plain.as_bytes());
        let mut wire = frame(RSV1 | 0x1, &z[..z.len() / 2]);
        wire.extend(frame(FIN | 0x9, b"p"));
        wire.extend(frame(FIN, &z[z.len() / 2..]));
        wire.extend(frame(FIN | 0x1, b"plain"));
        let (out, error) = through(wire, 1 << 20).await;
        assert_eq!(error, None);
        let frames = frames(&out);
        let ping = frames.iter().position(|f| f.0 == FIN | 0x9).unwrap();
        assert_eq!(
            frames[ping].1, b"p",
            "control frames pass between fragments"
        );
        assert_eq!(
            frames[0].0 & 0x0f,
            0x1,
            "the first fragment keeps the opcode"
        );
        let message: Vec<u8> = frames[..frames.len() - 1]
            .iter()
            .filter(|f| f.0 & 0x0f != 0x9)
            .flat_map(|f| f.1.clone())
            .collect();
        assert_eq!(message, plain.as_bytes());
        assert!(frames.iter().all(|f| f.0 & RSV_ALL == 0), "RSV1 cleared");
        assert!(frames.iter().all(|f| f.1.len() <= FRAGMENT));
        assert_eq!(frames[frames.len() - 2].0 & FIN, FIN);
        assert_eq!(frames.last().unwrap(), &(FIN | 0x1, b"plain".to_vec()));
    }

    #[tokio::test]
    async fn a_bomb_fails_at_the_limit_having_produced_no_more() {
        let z = deflate(&vec![b'a'; 8 << 20]);
        let (out, error) = through(frame(FIN | RSV1 | 0x1, &z), 64 * 1024).await;
        assert_eq!(error, Some(InflateError::TooBig(64 * 1024)));
        assert!(out.len() <= 64 * 1024 + 4 * 14, "{} bytes out", out.len());
    }

    #[tokio::test]
    async fn compressed_input_is_bounded_even_when_it_inflates_to_nothing() {
        // Empty stored blocks (`00 00 00 ff ff`), one frame after another.
        let mut wire = frame(RSV1 | 0x1, &[0, 0, 0, 0xff, 0xff]);
        for _ in 0..400 {
            wire.extend(frame(0, &[0, 0, 0, 0xff, 0xff].repeat(4)));
        }
        let (out, error) = through(wire, 1024).await;
        assert_eq!(error, Some(InflateError::TooBig(1024)));
        assert!(out.is_empty());
        // A frame claiming 2^64-1 bytes passes to tungstenite (which
        // refuses it) without overflowing here.
        let mut huge = vec![FIN | 0x1, MASKED | 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&[1, 2, 3, 4, b'x']);
        let (out, error) = through(huge.clone(), 1024).await;
        assert_eq!((out, error), (huge, None));
        let (_, error) = through(frame(FIN | RSV1 | 0x1, &vec![0; 8192]), 1024).await;
        assert_eq!(
            error,
            Some(InflateError::TooBig(1024)),
            "one long frame too"
        );
    }

    #[test]
    fn buffers_are_released_once_a_frame_passed_through() {
        let params = InflateParams {
            limit: 1 << 20,
            no_context_takeover: true,
            window_bits: 15,
        };
        let mut z = Inflate::new(params);
        // As a read leaves it: room for more than the frame.
        z.input = BytesMut::with_capacity(16 * 1024);
        z.input.extend_from_slice(&frame(FIN | 0x1, &[b'x'; 3000]));
        while z.step().unwrap() {}
        assert_eq!(z.output.len(), 3000 + 8);
        assert_eq!(z.input.capacity(), 0, "an idle connection holds no input");
        // A compressed message fed a byte at a time inflates the same.
        let plain = "{\"op\":\"ping\"}".repeat(50);
        let wire = frame(FIN | RSV1 | 0x1, &deflate(plain.as_bytes()));
        let mut z = Inflate::new(params);
        let mut out = Vec::new();
        for b in wire {
            z.input.extend_from_slice(&[b]);
            while z.step().unwrap() {}
            out.extend_from_slice(&z.output);
            z.output.clear();
        }
        let message: Vec<u8> = frames(&out).into_iter().flat_map(|f| f.1).collect();
        assert_eq!(message, plain.as_bytes());
        assert!(z.z.is_none(), "no inflater kept between messages");
        assert_eq!(z.input.capacity(), 0);
    }

    #[tokio::test]
    async fn reserved_bits_without_meaning_pass_to_tungstenite() {
        // RSV1 on a ping, and on a continuation: unchanged.
        for wire in [frame(FIN | RSV1 | 0x9, b""), frame(FIN | RSV1, b"x")] {
            let (out, error) = through(wire.clone(), 1024).await;
            assert_eq!((out, error), (wire, None));
        }
        let (_, error) = through(frame(FIN | RSV1 | 0x1, &[0xff; 16]), 1024).await;
        assert_eq!(error, Some(InflateError::Corrupt));
    }
}
