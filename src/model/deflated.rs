//! A payload's permessage-deflate form (RFC 7692), compressed once and shared.
//!
//! The gateway answers every offer with `server_no_context_takeover`, so each
//! message is compressed on its own, from an empty window, and the same bytes
//! are valid for every subscriber that negotiated the extension: the first
//! connection to send a message compresses it, the rest copy the result.
//! The compressed form lives beside the plain one (in the [`Message`]), so it
//! lasts exactly as long as the message is queued or held in history.
//!
//! [`Message`]: crate::model::Message

use std::cell::RefCell;
use std::sync::OnceLock;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

/// The four bytes a sync flush ends with, which RFC 7692 §7.2.1 strips
/// from the frame (the receiver appends them back).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A payload's compressed form, made by the first caller that needs it.
/// `None` inside means compressing did not make it smaller.
#[derive(Debug, Default)]
pub struct Deflated(OnceLock<Option<Bytes>>);

impl Deflated {
    /// The compressed form, made by `compress` on the first call. Later
    /// callers get the same bytes whatever `compress` they pass: a level
    /// changed by a reload applies to messages published after it.
    pub fn get_or_init(&self, compress: impl FnOnce() -> Option<Bytes>) -> Option<&Bytes> {
        self.0.get_or_init(compress).as_ref()
    }

    /// Whether a compressed form (or the verdict that there is none) exists.
    pub fn is_made(&self) -> bool {
        self.0.get().is_some()
    }
}

thread_local! {
    /// One compressor per thread and level, reset between messages: making
    /// one allocates and zeroes ~256 KiB, which a frame compressed for one
    /// connection (a reply, a presence list) would otherwise pay each time.
    static COMPRESSORS: RefCell<Vec<(u32, Compress)>> = const { RefCell::new(Vec::new()) };
}

/// `plain` as one permessage-deflate message payload: a raw deflate stream
/// from an empty window at `level` (0–9), sync-flushed, without the
/// trailing `00 00 ff ff`. `None` when that is not shorter than `plain`
/// (the message then goes uncompressed, as RFC 7692 allows per message).
pub fn deflate(plain: &[u8], level: u32) -> Option<Bytes> {
    let level = level.min(9);
    COMPRESSORS.with(|cell| {
        let Ok(mut all) = cell.try_borrow_mut() else {
            // Not re-entered in practice; a fresh one is still correct.
            return deflate_with(&mut fresh(level), plain);
        };
        let at = match all.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                all.push((level, fresh(level)));
                all.len() - 1
            }
        };
        let z = &mut all[at].1;
        // From an empty window, whatever the last use left.
        z.reset();
        deflate_with(z, plain)
    })
}

fn fresh(level: u32) -> Compress {
    Compress::new(Compression::new(level), false)
}

/// How many compressors this thread made (one per level used).
#[cfg(test)]
fn compressors_made() -> usize {
    COMPRESSORS.with(|cell| cell.borrow().len())
}

fn deflate_with(z: &mut Compress, plain: &[u8]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(plain.len() / 2 + 64);
    loop {
        let consumed = usize::try_from(z.total_in()).ok()?;
        let input = plain.get(consumed..)?;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(64));
        }
        let before = (z.total_in(), out.len());
        let status = z.compress_vec(input, &mut out, FlushCompress::Sync).ok()?;
        // Finished when the input is taken and the flush left room
        // unused (a full buffer may hold back the rest of the flush).
        let taken = usize::try_from(z.total_in()).ok()? == plain.len();
        if taken && out.len() < out.capacity() {
            break;
        }
        let stalled = before == (z.total_in(), out.len());
        if stalled || matches!(status, Status::StreamEnd) {
            return None;
        }
    }
    if !out.ends_with(&SYNC_TAIL) {
        return None;
    }
    out.truncate(out.len() - SYNC_TAIL.len());
    (out.len() < plain.len()).then(|| Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(payload: &[u8]) -> Vec<u8> {
        let mut z = Decompress::new(false);
        let mut input = payload.to_vec();
        input.extend_from_slice(&SYNC_TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        z.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn a_json_payload_round_trips_smaller() {
        let plain = format!(
            "{{\"type\":\"message\",\"data\":[{}]}}",
            vec!["{\"price\":12.5,\"sku\":\"ABC-123\"}"; 40].join(",")
        );
        let z = deflate(plain.as_bytes(), 3).unwrap();
        assert!(z.len() * 4 < plain.len(), "{} of {}", z.len(), plain.len());
        assert!(!z.ends_with(&SYNC_TAIL));
        assert_eq!(inflate(&z), plain.as_bytes());
    }

    #[test]
    fn a_large_payload_round_trips_at_every_level() {
        let plain: Vec<u8> = (0..300_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 7) as u8)
            .collect();
        for level in [0, 1, 9] {
            match deflate(&plain, level) {
                Some(z) => assert_eq!(inflate(&z), plain, "level {level}"),
                None => assert_eq!(level, 0, "only storing may not shrink it"),
            }
        }
    }

    #[test]
    fn one_compressor_per_level_is_reused_and_starts_empty() {
        let plain = "{\"k\":\"a fairly repetitive value\"}".repeat(20);
        let first = deflate(plain.as_bytes(), 4).unwrap();
        let made = compressors_made();
        for _ in 0..10 {
            // Reset between uses: the same bytes, not back-references
            // into the previous message.
            assert_eq!(deflate(plain.as_bytes(), 4).unwrap(), first);
        }
        assert_eq!(compressors_made(), made, "no compressor made per call");
        assert_eq!(inflate(&first), plain.as_bytes());
    }

    #[test]
    fn what_does_not_shrink_stays_plain() {
        assert_eq!(deflate(b"{}", 3), None);
        assert_eq!(deflate(b"", 3), None);
    }

    #[test]
    fn the_first_caller_compresses_the_rest_share() {
        let d = Deflated::default();
        assert!(!d.is_made());
        let first = d.get_or_init(|| Some(Bytes::from_static(b"x"))).cloned();
        let second = d.get_or_init(|| panic!("compressed twice")).cloned();
        assert_eq!(first, second);
        assert!(d.is_made());
    }
}
