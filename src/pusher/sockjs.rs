//! The SockJS-style framing of pusher-js's HTTP transports (`xhr_streaming`,
//! `xhr_polling`): pure text, no I/O.
//!
//! pusher-js reads the response of its receive request line by line, and a
//! line's first character says what it is: `o` (the session is open), `a`
//! and a JSON array of strings (each a Pusher protocol frame), `h` (a
//! heartbeat), `c` and `[code,"reason"]` (closed). What it sends on
//! `xhr_send` is a JSON array of such strings; an empty array is its
//! heartbeat. A second `o` on an open session makes pusher-js drop it, so
//! only the request that creates a session is answered with one.

use bytes::{BufMut, BytesMut};

/// The first line a new session's receive request gets.
pub const OPEN: &[u8] = b"o\n";

/// A heartbeat line.
pub const HEARTBEAT: &[u8] = b"h\n";

/// The frames of one `a[…]` line, gathered before the line is written.
#[derive(Default)]
pub struct Frames {
    items: BytesMut,
}

impl Frames {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes gathered.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Add one Pusher frame as a JSON string.
    pub fn push(&mut self, frame: &str) {
        if !self.items.is_empty() {
            self.items.put_u8(b',');
        }
        // A `&str` always serializes; the writer is memory.
        let _ = serde_json::to_writer((&mut self.items).writer(), frame);
    }

    /// Append the `a[…]` line of what was gathered to `out`, and start over
    /// with no memory held (an idle session keeps none).
    pub fn take_line(&mut self, out: &mut BytesMut) {
        if self.items.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.items);
        out.reserve(items.len() + 4);
        out.put_slice(b"a[");
        out.put_slice(&items);
        out.put_slice(b"]\n");
    }
}

/// The `c[code,"reason"]` line.
pub fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut line = serde_json::to_vec(&(code, reason)).unwrap_or_else(|_| b"[1000,\"\"]".to_vec());
    line.insert(0, b'c');
    line.push(b'\n');
    line
}

/// Why an `xhr_send` body is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendBodyError {
    #[error("the body must be a JSON array of strings")]
    NotAnArray,
}

/// The Pusher frames of an `xhr_send` body (`["{…}", …]`).
pub fn parse_send(body: &[u8]) -> Result<Vec<String>, SendBodyError> {
    serde_json::from_slice(body).map_err(|_| SendBodyError::NotAnArray)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_make_one_array_line_of_json_strings() {
        let mut frames = Frames::default();
        let mut out = BytesMut::new();
        frames.take_line(&mut out);
        assert!(out.is_empty(), "nothing gathered, no line");
        frames.push(r#"{"event":"e","data":"\"q\""}"#);
        frames.push("ü\n");
        frames.take_line(&mut out);
        assert!(frames.is_empty());
        let line = std::str::from_utf8(&out).unwrap();
        assert!(line.starts_with("a[") && line.ends_with("]\n"), "{line}");
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        let items: Vec<String> = serde_json::from_str(&line[1..]).unwrap();
        assert_eq!(items, [r#"{"event":"e","data":"\"q\""}"#, "ü\n"]);
    }

    #[test]
    fn close_lines_carry_the_code_and_the_escaped_reason() {
        assert_eq!(
            close(4004, "Over \"quota\""),
            b"c[4004,\"Over \\\"quota\\\"\"]\n"
        );
    }

    #[test]
    fn send_bodies_are_arrays_of_strings() {
        assert_eq!(parse_send(b"[]"), Ok(vec![]));
        assert_eq!(
            parse_send(br#"["{\"event\":\"pusher:ping\"}"]"#),
            Ok(vec![r#"{"event":"pusher:ping"}"#.to_owned()])
        );
        for bad in [&b""[..], b"{}", b"[1]", b"[\"a\"", b"\"a\""] {
            assert_eq!(parse_send(bad), Err(SendBodyError::NotAnArray), "{bad:?}");
        }
    }
}
