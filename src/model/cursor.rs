//! The cursor: one opaque string that records a connection's position in every
//! channel it follows, so that any transport (on any connection) can resume
//! exactly where the last one stopped.
//!
//! Format (clients must treat it as opaque): `EPOCH~channel~seq~channel~seq…`,
//! with the epoch in hex. It uses only characters that are safe unescaped in a
//! URL query, an HTTP header and an SSE `id:` line; `~` never occurs in a
//! channel name, so the split is unambiguous.

use std::fmt::Write as _;
use std::sync::Arc;

use super::message::valid_channel;

/// Parse failure for a client-supplied cursor.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed cursor")]
pub struct CursorError;

/// Positions of one connection: the broker epoch they belong to and, per
/// channel, the id of the last message the client has been given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: u64,
    positions: Vec<(Arc<str>, u64)>,
}

/// Longest cursor we accept from a client (bounds parsing work).
const MAX_CURSOR_LEN: usize = 16 * 1024;

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

    pub fn decode(text: &str) -> Result<Cursor, CursorError> {
        if text.is_empty() || text.len() > MAX_CURSOR_LEN {
            return Err(CursorError);
        }
        let mut parts = text.split('~');
        let epoch = parts
            .next()
            .and_then(|e| u64::from_str_radix(e, 16).ok())
            .ok_or(CursorError)?;
        let mut cursor = Cursor::new(epoch);
        while let Some(channel) = parts.next() {
            let seq = parts
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(CursorError)?;
            if !valid_channel(channel) {
                return Err(CursorError);
            }
            cursor.set(&Arc::from(channel), seq);
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
            assert_eq!(Cursor::decode(bad), Err(CursorError), "{bad:.20}");
        }
    }
}
