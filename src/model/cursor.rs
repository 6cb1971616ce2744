//! The cursor: one opaque string that records a connection's position in every
//! channel it follows, so that any transport (on any connection) can resume
//! exactly where the last one stopped.
//!
//! Format (clients must treat it as opaque): `EPOCH~channel~seq~channel~seq…`,
//! with the epoch in hex. It uses only characters that are safe unescaped in a
//! URL query, an HTTP header and an SSE `id:` line; `~` never occurs in a
//! channel name, so the split is unambiguous. A client's cursor is bounded by
//! the channels one connection may follow, and parsed in one pass.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use super::message::{MAX_CHANNEL_LEN, valid_channel};

/// Why a client-supplied cursor was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    #[error("malformed cursor")]
    Malformed,
    /// Longer, or naming more channels, than one connection may follow.
    #[error("the cursor names more channels than a connection may follow")]
    TooLarge,
}

/// Positions of one connection: the broker epoch they belong to and, per
/// channel, the id of the last message the client has been given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: u64,
    positions: Vec<(Arc<str>, u64)>,
}

/// Longest cursor [`Cursor::decode`] accepts (it has no channel bound).
const MAX_CURSOR_LEN: usize = 16 * 1024;

/// Longest encoding of one position: `~`, a channel name, `~`, a u64.
const MAX_POSITION_LEN: usize = 1 + MAX_CHANNEL_LEN + 1 + 20;

/// Longest encoding of a cursor over `max_channels` channels: the hex
/// epoch and that many positions.
pub fn max_encoded_len(max_channels: usize) -> usize {
    16usize.saturating_add(max_channels.saturating_mul(MAX_POSITION_LEN))
}

impl Cursor {
    pub fn new(epoch: u64) -> Cursor {
        Cursor {
            epoch,
            positions: Vec::new(),
        }
    }

    /// Position for `channel`, if the cursor has one.
    pub fn get(&self, channel: &str) -> Option<u64> {
        self.positions
            .iter()
            .find(|(c, _)| &**c == channel)
            .map(|(_, s)| *s)
    }

    /// Set the position of `channel`, adding it when new.
    pub fn set(&mut self, channel: &Arc<str>, seq: u64) {
        match self.positions.iter_mut().find(|(c, _)| c == channel) {
            Some((_, s)) => *s = seq,
            None => self.positions.push((channel.clone(), seq)),
        }
    }

    pub fn remove(&mut self, channel: &str) {
        self.positions.retain(|(c, _)| &**c != channel);
    }

    pub fn channels(&self) -> impl Iterator<Item = &Arc<str>> {
        self.positions.iter().map(|(c, _)| c)
    }

    /// Append the encoded form to `out` (reused buffer: no allocation per delivery).
    pub fn encode_into(&self, out: &mut String) {
        let _ = write!(out, "{:x}", self.epoch);
        for (c, s) in &self.positions {
            out.push('~');
            out.push_str(c);
            let _ = write!(out, "~{s}");
        }
    }

    /// At least the length of the encoded form (to size buffers).
    pub fn encoded_len_hint(&self) -> usize {
        16 + self
            .positions
            .iter()
            .map(|(c, _)| c.len() + 22)
            .sum::<usize>()
    }

    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(24 * (self.positions.len() + 1));
        self.encode_into(&mut s);
        s
    }

    /// Parse a client's cursor of at most 16 KiB.
    pub fn decode(text: &str) -> Result<Cursor, CursorError> {
        Cursor::parse(text, MAX_CURSOR_LEN, usize::MAX)
    }

    /// Parse a client's cursor for a connection that may follow at most
    /// `max_channels` channels: a longer cursor, or one naming more, is
    /// refused before any of it is kept.
    pub fn decode_within(text: &str, max_channels: usize) -> Result<Cursor, CursorError> {
        Cursor::parse(text, max_encoded_len(max_channels), max_channels)
    }

    /// One pass over `text`; a repeated channel keeps its last position,
    /// found through a map, so the work is linear in the cursor's length.
    fn parse(text: &str, max_len: usize, max_channels: usize) -> Result<Cursor, CursorError> {
        if text.len() > max_len {
            return Err(CursorError::TooLarge);
        }
        let mut parts = text.split('~');
        let epoch = parts
            .next()
            .and_then(|e| u64::from_str_radix(e, 16).ok())
            .ok_or(CursorError::Malformed)?;
        let mut cursor = Cursor::new(epoch);
        let mut index: HashMap<&str, usize> = HashMap::new();
        while let Some(channel) = parts.next() {
            let seq = parts
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(CursorError::Malformed)?;
            if !valid_channel(channel) {
                return Err(CursorError::Malformed);
            }
            if let Some(&i) = index.get(channel) {
                cursor.positions[i].1 = seq;
                continue;
            }
            if cursor.positions.len() >= max_channels {
                return Err(CursorError::TooLarge);
            }
            index.insert(channel, cursor.positions.len());
            cursor.positions.push((Arc::from(channel), seq));
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut c = Cursor::new(0xabc);
        c.set(&"orders.1".into(), 42);
        c.set(&"user.a@b".into(), 7);
        c.set(&"orders.1".into(), 43);
        let text = c.encode();
        assert_eq!(text, "abc~orders.1~43~user.a@b~7");
        assert_eq!(Cursor::decode(&text).unwrap(), c);
        assert_eq!(Cursor::decode("ff").unwrap(), Cursor::new(255));
        let mut big = Cursor::new(u64::MAX);
        big.set(&"c".into(), u64::MAX);
        assert!(big.encoded_len_hint() >= big.encode().len());
        assert!(c.encoded_len_hint() >= text.len());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "zz",
            "1~a",
            "1~a~x",
            "1~a b~2",
            "1~~2",
            &"1".repeat(20_000),
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad:.20}");
        }
    }

    /// The largest cursor a connection of `max` channels may present (the
    /// longest names and positions) decodes to exactly what was encoded; a
    /// channel more, or a byte more, is refused as too large.
    #[test]
    fn a_max_size_cursor_decodes_and_a_larger_one_is_refused() {
        let max = 100;
        let mut c = Cursor::new(u64::MAX);
        for i in 0..max {
            let name = format!("{i:03}{}", "c".repeat(MAX_CHANNEL_LEN - 3));
            c.set(&name.into(), u64::MAX - i as u64);
        }
        let text = c.encode();
        assert_eq!(text.len(), max_encoded_len(max));
        assert_eq!(Cursor::decode_within(&text, max), Ok(c.clone()));
        assert_eq!(
            Cursor::decode_within(&text, max - 1),
            Err(CursorError::TooLarge)
        );
        let mut more = c;
        more.set(&"x".into(), 1);
        assert_eq!(
            Cursor::decode_within(&more.encode(), max),
            Err(CursorError::TooLarge)
        );
        assert_eq!(
            Cursor::decode_within(&format!("{text}0"), max),
            Err(CursorError::TooLarge)
        );
    }

    /// Thousands of short positions with repeats: a repeated channel keeps
    /// its last position.
    #[test]
    fn many_positions_decode_with_the_last_repeat_winning() {
        let mut text = String::from("1");
        for i in 0..4000 {
            text.push_str(&format!("~c{}~{i}", i % 2000));
        }
        let c = Cursor::decode_within(&text, 2000).unwrap();
        assert_eq!(c.channels().count(), 2000);
        assert_eq!(c.get("c0"), Some(2000));
        assert_eq!(c.get("c1999"), Some(3999));
        assert_eq!(
            Cursor::decode_within(&text, 1999),
            Err(CursorError::TooLarge)
        );
    }
}
