//! A WebSocket client at the frame level, for what no library client sends
//! on purpose: RSV1 on a control frame, fragmented compressed messages, a
//! decompression bomb. It speaks over any stream (TCP or TLS) and inflates
//! what the gateway compresses with its own zlib, so the test checks the
//! wire, not the gateway's own code.

use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const TEXT: u8 = 0x1;
pub const CONT: u8 = 0x0;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

/// One frame as read off the wire.
#[derive(Debug)]
pub struct Frame {
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A close frame's code.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

pub struct Raw<S> {
    io: S,
    buf: Vec<u8>,
    /// The answer's `Sec-WebSocket-Extensions`, if any.
    pub extensions: Option<String>,
}

/// The opening handshake on `io` for `path`, offering `offer` (a
/// `Sec-WebSocket-Extensions` value) when given; panics unless 101.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    path: &str,
    offer: Option<&str>,
) -> Raw<S> {
    let ext = offer
        .map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: pushgate.v1\r\n{ext}\r\n"
    );
    io.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut chunk))
            .await
            .expect("handshake answer in time")
            .unwrap();
        assert!(n > 0, "closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let extensions = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| value.trim().to_owned())
    });
    Raw {
        io,
        buf: buf[end..].to_vec(),
        extensions,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    /// Send one masked frame.
    pub async fn send(&mut self, fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | (if rsv1 { 0x40 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            f.push(0x80 | len as u8);
        } else if len <= 0xffff {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.io.write_all(&f).await.unwrap();
    }

    /// The next frame, within 5 s.
    pub async fn next(&mut self) -> Frame {
        tokio::time::timeout(Duration::from_secs(5), self.read_frame())
            .await
            .expect("a frame in time")
            .expect("a frame before the end")
    }

    /// The next frame other than ping/pong.
    pub async fn next_data(&mut self) -> Frame {
        loop {
            let f = self.next().await;
            if f.opcode != PING && f.opcode != 0xA {
                return f;
            }
        }
    }

    async fn fill(&mut self, n: usize) -> Option<()> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 8192];
            let got = self.io.read(&mut chunk).await.ok()?;
            if got == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
        Some(())
    }

    async fn read_frame(&mut self) -> Option<Frame> {
        self.fill(2).await?;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        assert_eq!(b1 & 0x80, 0, "server frames are unmasked");
        let (len, at) = match b1 & 0x7f {
            126 => {
                self.fill(4).await?;
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                self.fill(10).await?;
                let mut l = [0u8; 8];
                l.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(l) as usize, 10)
            }
            n => (n as usize, 2),
        };
        self.fill(at + len).await?;
        let payload = self.buf[at..at + len].to_vec();
        self.buf.drain(..at + len);
        Some(Frame {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            opcode: b0 & 0x0f,
            payload,
        })
    }

    /// Read until a close frame; its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            let f = tokio::time::timeout(Duration::from_secs(5), self.read_frame())
                .await
                .expect("a close in time")?;
            if f.opcode == CLOSE {
                return f.close_code();
            }
        }
    }
}

/// A permessage-deflate compressor as a client uses it: one stream, kept
/// across messages unless `reset` is called.
pub struct Deflater(Compress);

impl Deflater {
    pub fn new() -> Self {
        Deflater(Compress::new(Compression::new(6), false))
    }

    /// One that keeps to a window of 2^`bits` bytes.
    pub fn with_window(bits: u8) -> Self {
        Deflater(Compress::new_with_window_bits(
            Compression::new(6),
            false,
            bits,
        ))
    }

    /// `plain` as a message payload (sync flush, tail removed).
    pub fn message(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + 1024);
        let start = self.0.total_in();
        loop {
            let taken = (self.0.total_in() - start) as usize;
            self.0
                .compress_vec(&plain[taken..], &mut out, FlushCompress::Sync)
                .unwrap();
            if (self.0.total_in() - start) as usize == plain.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        out
    }
}

/// Inflate one server message (no context kept: the server promised
/// `server_no_context_takeover`).
pub fn inflate(payload: &[u8]) -> Vec<u8> {
    inflate_with(payload, 15)
}

/// Inflate one server message with a window of 2^`bits` bytes, as a client
/// that asked for `server_max_window_bits=bits` does.
pub fn inflate_with(payload: &[u8], bits: u8) -> Vec<u8> {
    let mut z = Decompress::new_with_window_bits(false, bits);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(payload.len() * 50 + 1024);
    z.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(z.total_in() as usize, input.len(), "all input taken");
    out
}

/// A frame's payload as JSON, inflated when RSV1 says so.
pub fn json(f: &Frame) -> serde_json::Value {
    let plain = if f.rsv1 {
        inflate(&f.payload)
    } else {
        f.payload.clone()
    };
    serde_json::from_slice(&plain)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&plain)))
}
