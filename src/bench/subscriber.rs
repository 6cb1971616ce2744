//! Subscribers of the load generator, one task each: they connect, then
//! record every delivery (publish-to-delivery latency, order, duplicates)
//! while parsing as little as possible — the generator shares the machine
//! with the server it measures.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message as Frame;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::net::{Dialer, Io};
use super::progress::Progress;

/// How a subscriber's connection attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Connected,
    /// The server answered with this status instead (429: a limit).
    Status(u16),
    /// No answer: refused, reset, timed out, bad TLS.
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ws,
    Sse,
    Poll,
    /// Pusher protocol 7 over WebSocket (`pusher.rs`, started by the parent).
    Pusher,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
            Transport::Poll => "poll",
            Transport::Pusher => "pusher",
        }
    }
}

/// How many message numbers below the highest seen a subscriber remembers:
/// a delivery that far behind is counted, but cannot be told from a repeat.
const WINDOW: u64 = 4096;

/// The message numbers one subscriber has seen, for telling a repeat from a
/// late arrival. A server fed by concurrent publish requests (nginx+Nchan
/// gets one request per message) may deliver them out of publish order;
/// counting every out-of-order delivery as a duplicate, and not as
/// delivered, made "lost" and "dup" come out equal for such a server.
/// A ring of bits over the last [`WINDOW`] numbers: 512 B per subscriber
/// whatever the run's length.
struct Seen {
    highest: Option<u64>,
    bits: Box<[u64; (WINDOW / 64) as usize]>,
}

/// What [`Seen::note`] made of a message number.
#[derive(Debug, PartialEq, Eq)]
enum Arrival {
    /// Above every number seen so far.
    InOrder,
    /// Below the highest seen, and not seen before (or too far below to tell).
    Late,
    /// Seen before.
    Repeat,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            highest: None,
            bits: Box::new([0; (WINDOW / 64) as usize]),
        }
    }

    fn bit(n: u64) -> (usize, u64) {
        let slot = n % WINDOW;
        ((slot / 64) as usize, 1 << (slot % 64))
    }

    fn note(&mut self, n: u64) -> Arrival {
        match self.highest {
            Some(high) if n <= high => {
                if high - n >= WINDOW {
                    return Arrival::Late;
                }
                let (word, mask) = Seen::bit(n);
                if self.bits[word] & mask != 0 {
                    return Arrival::Repeat;
                }
                self.bits[word] |= mask;
                Arrival::Late
            }
            _ => {
                // The numbers between the old highest and `n` leave the
                // window's far end: their slots are reused, cleared.
                let from = self.highest.map_or(n, |high| high + 1);
                if n - from >= WINDOW {
                    self.bits.fill(0);
                } else {
                    for k in from..n {
                        let (word, mask) = Seen::bit(k);
                        self.bits[word] &= !mask;
                    }
                }
                let (word, mask) = Seen::bit(n);
                self.bits[word] |= mask;
                self.highest = Some(n);
                Arrival::InOrder
            }
        }
    }
}

/// What one subscriber saw.
pub struct Tally {
    pub latency: Histogram<u64>,
    pub received: u64,
    pub duplicates: u64,
    /// Delivered, but after a message published later.
    pub reordered: u64,
    pub last_at: Option<Instant>,
    seen: Seen,
    /// The run's live counters (deliveries, for the progress line).
    progress: Arc<Progress>,
}

impl Tally {
    pub fn new(progress: Arc<Progress>) -> Tally {
        Tally {
            // 1µs .. 60s, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("constant histogram bounds are valid"),
            received: 0,
            duplicates: 0,
            reordered: 0,
            last_at: None,
            seen: Seen::new(),
            progress,
        }
    }

    /// Record every `"n":…,"t":…` pair in `frame`.
    pub fn record(&mut self, frame: &[u8], epoch: Instant) {
        self.record_with(frame, epoch, PLAIN);
    }

    /// Record every `\"n\":…,\"t\":…` pair in `frame`: the stamps of a
    /// payload carried as a JSON string, as Pusher's `data` always is.
    pub fn record_escaped(&mut self, frame: &[u8], epoch: Instant) {
        self.record_with(frame, epoch, ESCAPED);
    }

    fn record_with(&mut self, frame: &[u8], epoch: Instant, keys: Keys) {
        let mut rest = frame;
        while let Some((n, t, after)) = next_stamp(rest, keys) {
            rest = after;
            let now = epoch.elapsed().as_micros() as u64;
            match self.seen.note(n) {
                Arrival::Repeat => {
                    self.duplicates += 1;
                    continue;
                }
                Arrival::Late => self.reordered += 1,
                Arrival::InOrder => {}
            }
            self.received += 1;
            self.progress.delivered.fetch_add(1, Relaxed);
            self.last_at = Some(Instant::now());
            let _ = self.latency.record(now.saturating_sub(t).max(1));
        }
    }
}

/// The keys of a stamp as they appear in a frame: `(n, t)`.
type Keys = (&'static [u8], &'static [u8]);
const PLAIN: Keys = (b"\"n\":", b"\"t\":");
const ESCAPED: Keys = (b"\\\"n\\\":", b"\\\"t\\\":");

/// Find the next `"n":<digits>,"t":<digits>` in `s` (keys as `keys` spells them).
fn next_stamp(s: &[u8], (n_key, t_key): Keys) -> Option<(u64, u64, &[u8])> {
    let i = find(s, n_key)?;
    let (n, rest) = digits(&s[i + n_key.len()..])?;
    let j = find(rest, t_key)?;
    let (t, rest) = digits(&rest[j + t_key.len()..])?;
    Some((n, t, rest))
}

/// SIMD substring search: every delivery scans its ~512 B payload for the
/// next stamp, and a byte-by-byte scan was the generator's hottest function.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn digits(s: &[u8]) -> Option<(u64, &[u8])> {
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let v = std::str::from_utf8(&s[..end]).ok()?.parse().ok()?;
    Some((v, &s[end..]))
}

/// The status of an HTTP/1.x status line (`HTTP/1.1 429 Too Many…`).
fn status_code(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    std::str::from_utf8(rest.get(2..5)?).ok()?.parse().ok()
}

/// Where a subscriber connects, for each target server.
pub struct Endpoint {
    pub transport: Transport,
    /// Request path with query, e.g. `/realtime/sse?channels=bench.0`.
    pub path: String,
    /// The channel, for protocols that subscribe after connecting (Pusher).
    pub channel: String,
}

/// Connect; `ready` fires once connected (or failed). Records until `stop`.
pub async fn run(
    dialer: &Dialer,
    i: usize,
    endpoint: Endpoint,
    epoch: Instant,
    ready: Ready,
    stop: tokio_util::sync::CancellationToken,
    progress: Arc<Progress>,
) -> Tally {
    let mut tally = Tally::new(progress.clone());
    let io = match dialer.dial(i).await {
        Ok(io) => {
            progress.sockets.fetch_add(1, Relaxed);
            io
        }
        Err(_) => {
            let _ = ready.send(Outcome::Failed);
            return tally;
        }
    };
    let host = dialer.host.clone();
    let result = match endpoint.transport {
        Transport::Ws => ws(io, &host, &endpoint.path, &mut tally, epoch, ready, &stop).await,
        Transport::Sse => sse(io, &host, &endpoint.path, &mut tally, epoch, ready, &stop).await,
        Transport::Poll => poll(io, &host, &endpoint.path, &mut tally, epoch, ready, &stop).await,
        // The parent starts Pusher subscribers with `pusher::run` instead.
        Transport::Pusher => {
            let _ = ready.send(Outcome::Failed);
            None
        }
    };
    let _ = result;
    tally
}

pub type Ready = tokio::sync::oneshot::Sender<Outcome>;

async fn ws(
    io: Box<dyn Io>,
    host: &str,
    path: &str,
    tally: &mut Tally,
    epoch: Instant,
    ready: Ready,
    stop: &tokio_util::sync::CancellationToken,
) -> Option<()> {
    let url = format!("ws://{host}{path}");
    let mut ws = match tokio_tungstenite::client_async_with_config(url, io, Some(ws_config())).await
    {
        Ok((ws, _)) => ws,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let _ = ready.send(Outcome::Status(resp.status().as_u16()));
            return None;
        }
        Err(_) => {
            let _ = ready.send(Outcome::Failed);
            return None;
        }
    };
    let _ = ready.send(Outcome::Connected);
    // Pinned once and polled after the read: a delivery costs no registration.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let frame = tokio::select! {
            biased;
            f = ws.next() => f?.ok()?,
            _ = &mut stopped => return Some(()),
        };
        if let Frame::Text(t) = frame {
            tally.record(t.as_bytes(), epoch);
        }
    }
}

/// Bytes a WebSocket subscriber asks of its socket per read.
const WS_READ_BUFFER: usize = 4 * 1024;

/// The WebSocket subscribers' configuration, pushgate's and Pusher's
/// (`pusher.rs`): tungstenite's default read buffer (128 KiB) is
/// zero-filled to its whole length before every read, so each delivery of
/// a 600-byte message cost the generator a 128 KiB memset (its CPU per WSS
/// delivery was twice its SSE one's, 17 against 9 µs), and 1,000
/// subscribers held 128 MiB: that time was counted in every server's
/// WebSocket latency. Larger frames still arrive whole: the buffer grows
/// for a frame that needs it.
pub(super) fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
}

async fn sse(
    mut io: Box<dyn Io>,
    host: &str,
    path: &str,
    tally: &mut Tally,
    epoch: Instant,
    ready: Ready,
    stop: &tokio_util::sync::CancellationToken,
) -> Option<()> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
    if io.write_all(head.as_bytes()).await.is_err() {
        let _ = ready.send(Outcome::Failed);
        return None;
    }
    let mut reader = BufReader::with_capacity(16 * 1024, io);
    let mut line = Vec::with_capacity(1024);
    let mut status = Outcome::Failed;
    // Response head.
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await.ok()? == 0 {
            let _ = ready.send(Outcome::Failed);
            return None;
        }
        if let Some(code) = status_code(&line) {
            status = if code == 200 {
                Outcome::Connected
            } else {
                Outcome::Status(code)
            };
        }
        if line == b"\r\n" {
            break;
        }
    }
    let _ = ready.send(status);
    if status != Outcome::Connected {
        return None;
    }
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        line.clear();
        let n = tokio::select! {
            biased;
            n = reader.read_until(b'\n', &mut line) => n.ok()?,
            _ = &mut stopped => return Some(()),
        };
        if n == 0 {
            return Some(());
        }
        // Chunked framing lines and SSE fields alike: only `data:` lines carry stamps.
        if line.starts_with(b"data:") {
            tally.record(&line, epoch);
        }
    }
}

async fn poll(
    io: Box<dyn Io>,
    host: &str,
    path: &str,
    tally: &mut Tally,
    epoch: Instant,
    ready: Ready,
    stop: &tokio_util::sync::CancellationToken,
) -> Option<()> {
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    else {
        let _ = ready.send(Outcome::Failed);
        return None;
    };
    tokio::spawn(conn);
    let mut cursor = String::new();
    let mut first = Some(ready);
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let uri = if cursor.is_empty() {
            format!("{path}{sep}timeout=5")
        } else {
            format!("{path}{sep}timeout=5&cursor={cursor}")
        };
        let req = http::Request::get(uri)
            .header("host", host)
            .body(Empty::new())
            .ok()?;
        let resp = tokio::select! {
            _ = stop.cancelled() => return Some(()),
            r = sender.send_request(req) => r.ok()?,
        };
        if let Some(r) = first.take() {
            let _ = r.send(if resp.status().is_success() {
                Outcome::Connected
            } else {
                Outcome::Status(resp.status().as_u16())
            });
        }
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        tally.record(&body, epoch);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
            if let Some(c) = v["cursor"].as_str() {
                cursor = c.to_string();
            }
        }
        if stop.is_cancelled() {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(0)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_found_in_any_framing() {
        let f = br#"data: {"type":"message","channel":"bench.0","id":"9","data":{"n":41,"t":1234,"p":"xx"},"cursor":"a~b~9"}"#;
        let (n, t, _) = next_stamp(f, PLAIN).unwrap();
        assert_eq!((n, t), (41, 1234));
        assert!(next_stamp(f, ESCAPED).is_none());
        // Pusher's double encoding: the payload is a JSON string.
        let p = br#"{"event":"bench","channel":"c","data":"{\"n\":7,\"t\":99,\"p\":\"x\"}"}"#;
        assert_eq!(
            next_stamp(p, ESCAPED).map(|(n, t, _)| (n, t)),
            Some((7, 99))
        );
        assert!(next_stamp(p, PLAIN).is_none());
        let poll = br#"{"cursor":"c","messages":[{"data":{"n":1,"t":5}},{"data":{"n":2,"t":6}}]}"#;
        let mut tally = Tally::new(Arc::new(Progress::default()));
        tally.record(poll, Instant::now());
        assert_eq!(tally.received, 2);
        tally.record(poll, Instant::now());
        assert_eq!(tally.duplicates, 2);
    }

    #[tokio::test]
    async fn a_websocket_subscriber_reads_small_and_still_gets_large_frames_whole() {
        use tokio_tungstenite::tungstenite::protocol::Role;
        let config = ws_config();
        assert!(
            config.read_buffer_size <= 8 * 1024,
            "a read buffer the size of a few messages: {}",
            config.read_buffer_size
        );
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let mut ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(client, Role::Client, Some(config))
                .await;
        // Unmasked text frames as a server sends them: a small one, then one
        // five times the read buffer.
        let small = "a".repeat(600);
        let large = "b".repeat(5 * WS_READ_BUFFER);
        for text in [&small, &large] {
            let mut frame = vec![0x81, 126];
            frame.extend_from_slice(&(text.len() as u16).to_be_bytes());
            frame.extend_from_slice(text.as_bytes());
            server.write_all(&frame).await.unwrap();
        }
        for want in [&small, &large] {
            match ws.next().await {
                Some(Ok(Frame::Text(t))) => assert_eq!(t.as_str(), want.as_str()),
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    fn stamp(n: u64) -> Vec<u8> {
        format!("data: {{\"n\":{n},\"t\":1}}\n\n").into_bytes()
    }

    #[test]
    fn late_deliveries_are_delivered_not_duplicates() {
        // Published 0..6, delivered as a server fed by concurrent publish
        // requests may deliver them: out of order, each once.
        let mut tally = Tally::new(Arc::new(Progress::default()));
        for n in [1, 0, 3, 2, 5, 4] {
            tally.record(&stamp(n), Instant::now());
        }
        assert_eq!(tally.received, 6);
        assert_eq!(tally.duplicates, 0);
        assert_eq!(tally.reordered, 3);
        // A real repeat, in order and late, is a duplicate and not delivered.
        tally.record(&stamp(5), Instant::now());
        tally.record(&stamp(2), Instant::now());
        assert_eq!(tally.received, 6);
        assert_eq!(tally.duplicates, 2);
    }

    #[test]
    fn the_window_forgets_only_what_it_has_passed() {
        let mut seen = Seen::new();
        assert_eq!(seen.note(10), Arrival::InOrder);
        // A jump clears the slots the numbers in between reuse.
        assert_eq!(seen.note(10 + WINDOW), Arrival::InOrder);
        assert_eq!(seen.note(11), Arrival::Late);
        assert_eq!(seen.note(11), Arrival::Repeat);
        // Beyond the window: counted late, not a repeat.
        assert_eq!(seen.note(10), Arrival::Late);
        assert_eq!(seen.note(3 * WINDOW), Arrival::InOrder);
        assert_eq!(seen.note(3 * WINDOW - 1), Arrival::Late);
        assert_eq!(seen.note(3 * WINDOW), Arrival::Repeat);
    }

    #[test]
    fn status_lines_are_read() {
        assert_eq!(
            status_code(b"HTTP/1.1 429 Too Many Requests\r\n"),
            Some(429)
        );
        assert_eq!(status_code(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"data: x\n"), None);
    }
}
