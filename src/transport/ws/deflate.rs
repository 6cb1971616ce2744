//! permessage-deflate (RFC 7692) for every WebSocket the gateway serves:
//! the handshake's negotiation, and the choice, per frame, between a
//! message's shared compressed form and its plain one.
//!
//! The gateway always answers `server_no_context_takeover`: every message
//! is compressed on its own from an empty window, so one compressed payload
//! (made once per message, `model/deflated.rs`) is valid for every
//! subscriber, whatever else each negotiated. `client_no_context_takeover`
//! is always answered, offered or not (RFC 7692 §7.1.1.2 lets the server
//! ask it of any client): the client's inflater is then made per message
//! and dropped (`inflate.rs`), so an idle connection holds none. A client that limits our window
//! (`server_max_window_bits=N`) gets the answer with its own N, and the
//! shared form only for messages of at most 2^N bytes: a stream that starts
//! from an empty window never refers further back than the message is long,
//! so the same bytes are valid for it; longer messages go uncompressed.
//! A client that offers `client_max_window_bits` (browsers do) is asked to
//! compress with a 1 KiB window, so the inflater of one of its messages is
//! small.
//! An offer the gateway cannot read (an unknown or repeated parameter, a
//! window outside 8–15) is declined, and the next offer tried: the
//! handshake never fails over an extension.
//!
//! pushgate's own message frames carry the connection's cursor, which no
//! two subscribers share. So, for a client that reads cursor frames
//! (`?cursor_frames=1`), a message that goes compressed is its shared
//! object without the cursor (which still holds its `id`), and the batch it
//! came in ends with the cursor: in the last message when that one goes
//! plain, else in a `{"type":"cursor"}` frame of the connection's own
//! (`serve.rs`). The cursor a client holds after a batch is the one it would
//! have held without compression, so resuming is exactly as before; one
//! that resumes from mid-batch sees again messages it had, which it drops
//! by `id`, as with cursors too long to repeat in every message.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use super::inflate::InflateParams;
use crate::config::Compression;
use crate::metrics::deflate::DeflateCounters;
use crate::model::Deflated;

pub(crate) const EXTENSION: &str = "permessage-deflate";

/// The largest window (2^10 = 1 KiB) asked of a client that lets the server
/// choose (`client_max_window_bits`, as browsers offer it): a client that
/// keeps its context costs the connection one inflater with this window
/// instead of 32 KiB, and client messages are small ops.
const CLIENT_WINDOW_BITS: u8 = 10;

/// The parameters agreed for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// The window the client allows our messages, when it limited it.
    server_max_window_bits: Option<u8>,
    /// The window the client is told to compress with, when it offered
    /// to take one.
    client_max_window_bits: Option<u8>,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` answer.
    pub(crate) fn header(&self) -> HeaderValue {
        let mut v = format!("{EXTENSION}; server_no_context_takeover; client_no_context_takeover");
        if let Some(bits) = self.server_max_window_bits {
            v.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if let Some(bits) = self.client_max_window_bits {
            v.push_str(&format!("; client_max_window_bits={bits}"));
        }
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(EXTENSION))
    }

    /// How client frames are inflated, for a socket whose messages may be
    /// `limit` bytes.
    pub(crate) fn inflate(&self, limit: usize) -> InflateParams {
        InflateParams {
            limit,
            // Always answered (see the module doc).
            no_context_takeover: true,
            window_bits: self.client_max_window_bits.unwrap_or(15),
        }
    }

    /// The longest message the shared compressed form may be sent for.
    fn max_plain(&self) -> usize {
        match self.server_max_window_bits {
            Some(bits) if bits < 15 => 1 << bits,
            _ => usize::MAX,
        }
    }
}

/// The first offer of permessage-deflate in `headers` the gateway can
/// accept, when compression is enabled.
pub(crate) fn negotiate(headers: &HeaderMap, config: &Compression) -> Option<Agreed> {
    if !config.enabled {
        return None;
    }
    headers
        .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(read_offer)
}

/// One extension of the header's list, when it is a permessage-deflate
/// offer the gateway accepts.
fn read_offer(offer: &str) -> Option<Agreed> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut seen = [false; 4];
    let mut agreed = Agreed {
        server_max_window_bits: None,
        client_max_window_bits: None,
    };
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        let slot = match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) => 0,
            ("client_no_context_takeover", None) => 1,
            ("server_max_window_bits", Some(v)) => {
                agreed.server_max_window_bits = Some(window_bits(v)?);
                2
            }
            // The client takes a limit: at most ours, at most its own.
            ("client_max_window_bits", None) => {
                agreed.client_max_window_bits = Some(CLIENT_WINDOW_BITS);
                3
            }
            ("client_max_window_bits", Some(v)) => {
                agreed.client_max_window_bits = Some(window_bits(v)?.min(CLIENT_WINDOW_BITS));
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    Some(agreed)
}

/// A window size parameter: 8 to 15, decimal, no leading zero.
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

/// What one connection compresses, decided at its handshake: a reload
/// applies to connections opened after it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deflating {
    threshold: usize,
    level: u32,
    max_plain: usize,
}

impl Deflating {
    pub(crate) fn new(agreed: &Agreed, config: &Compression) -> Self {
        Deflating {
            threshold: config.threshold,
            level: config.level,
            max_plain: agreed.max_plain(),
        }
    }

    /// The compressed form of a message whose plain payload is `plain_len`
    /// bytes, made by the first connection that asks (`render` gives the
    /// plain payload then) and shared by the rest; None when the message
    /// goes plain (under the threshold, past the client's window, or not
    /// made smaller). Counts what it sends compressed.
    ///
    /// Built with `--cfg pushgate_bench_deflate_per_connection` (by
    /// `bench/deflate.sh` only: a cfg, not a feature, so `--all-features`
    /// leaves production behaviour alone), every connection compresses the
    /// message again instead (what a gateway that keeps a compression context
    /// per connection must do): a baseline for the benchmark.
    pub(crate) fn shared(
        &self,
        deflated: &Deflated,
        plain_len: usize,
        render: impl FnOnce() -> Bytes,
        counters: &DeflateCounters,
    ) -> Option<Bytes> {
        if plain_len < self.threshold || plain_len > self.max_plain {
            return None;
        }
        let compress = || {
            counters.compressed_once();
            crate::model::deflated::deflate(&render(), self.level)
        };
        let compressed = if cfg!(pushgate_bench_deflate_per_connection) {
            compress()?
        } else {
            deflated.get_or_init(compress)?.clone()
        };
        counters.sent(plain_len, compressed.len());
        Some(compressed)
    }

    /// `plain` compressed for this connection alone, when it should be: the
    /// frames that are not shared (replies, errors, presence).
    pub(crate) fn own(&self, plain: &[u8], counters: &DeflateCounters) -> Option<Bytes> {
        if plain.len() < self.threshold || plain.len() > self.max_plain {
            return None;
        }
        counters.compressed_once();
        let compressed = crate::model::deflated::deflate(plain, self.level)?;
        counters.sent(plain.len(), compressed.len());
        Some(compressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(v: &str) -> Option<Agreed> {
        let mut h = HeaderMap::new();
        h.insert(
            "sec-websocket-extensions",
            HeaderValue::from_str(v).unwrap(),
        );
        negotiate(&h, &Compression::default())
    }

    fn answer(v: &str) -> Option<String> {
        offer(v).map(|a| a.header().to_str().unwrap().to_owned())
    }

    #[test]
    fn a_browser_offer_is_accepted_with_no_context_takeover() {
        // Asked of every client, offered or not: no inflater kept for life.
        let plain = offer("permessage-deflate").unwrap();
        assert!(plain.inflate(1024).no_context_takeover);
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits").as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"
            )
        );
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits=9").as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=9"
            )
        );
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits=15").as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=10"
            )
        );
        assert_eq!(
            answer("permessage-deflate; client_no_context_takeover").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        assert_eq!(
            answer("Permessage-Deflate").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
    }

    #[test]
    fn a_limited_server_window_is_echoed_and_honoured() {
        let a = offer("permessage-deflate; server_max_window_bits=10").unwrap();
        assert_eq!(
            a.header().to_str().unwrap(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        );
        assert_eq!(a.max_plain(), 1024);
        let q = offer("permessage-deflate; server_max_window_bits=\"9\"").unwrap();
        assert_eq!(q.max_plain(), 512);
        assert_eq!(offer("permessage-deflate").unwrap().max_plain(), usize::MAX);
    }

    #[test]
    fn malformed_offers_are_declined_and_the_next_one_tried() {
        for bad in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=x",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; foo",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(offer(bad), None, "{bad}");
        }
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=99, permessage-deflate; client_no_context_takeover").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        let mut h = HeaderMap::new();
        h.append(
            "sec-websocket-extensions",
            HeaderValue::from_static("foo, permessage-deflate; bar"),
        );
        h.append(
            "sec-websocket-extensions",
            HeaderValue::from_static("permessage-deflate"),
        );
        assert!(negotiate(&h, &Compression::default()).is_some());
    }

    #[test]
    fn no_feature_build_compresses_per_connection() {
        // The baseline is a cfg only the benchmark sets: `cargo test
        // --all-features` runs this too.
        let baseline = std::hint::black_box(cfg!(pushgate_bench_deflate_per_connection));
        assert!(!baseline);
    }

    #[test]
    fn disabled_negotiates_nothing() {
        let mut h = HeaderMap::new();
        h.insert(
            "sec-websocket-extensions",
            HeaderValue::from_static("permessage-deflate"),
        );
        let off = Compression {
            enabled: false,
            ..Compression::default()
        };
        assert_eq!(negotiate(&h, &off), None);
    }

    #[test]
    fn only_messages_at_the_threshold_and_within_the_window_are_compressed() {
        let counters = DeflateCounters::default();
        let a = offer("permessage-deflate; server_max_window_bits=10").unwrap();
        let d = Deflating::new(&a, &Compression::default());
        let big = Bytes::from("{\"k\":\"v\"}".repeat(100));
        let m = Deflated::default();
        assert!(d.shared(&m, 255, || big.clone(), &counters).is_none());
        assert!(d.shared(&m, 1025, || big.clone(), &counters).is_none());
        assert!(!m.is_made(), "nothing compressed for frames that go plain");
        let z = d
            .shared(&m, 900, || big.clone(), &counters)
            .unwrap()
            .clone();
        assert!(z.len() < 100);
        let again = d.shared(&m, 900, || unreachable!(), &counters).unwrap();
        assert_eq!(again, &z);
    }
}
