//! Where a chunked body ends (RFC 9112 §7.1), found while its bytes pass
//! through unchanged.
//!
//! The relay (`relay.rs`) forwards a backend's chunked answer to the client
//! as it came, framing and all, so it never decodes the chunks. It only has
//! to know where the message ends, to reuse the backend connection and to
//! read the client's next request. This scanner follows the framing one byte
//! of metadata at a time and skips chunk data in bulk.

/// The body was not valid chunked framing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed chunked body")]
pub struct Malformed;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size; `digits` read so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// Blanks after the size (RFC 9112 §7.1.1's BWS): only `;` or the
    /// line's end may follow.
    SizeBlank {
        value: u64,
    },
    /// After the size: an extension, skipped up to the line's end.
    Extension {
        value: u64,
    },
    /// The size line's CR was seen; its LF is due.
    SizeLf {
        value: u64,
    },
    /// Chunk data still to pass.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataCr,
    DataLf,
    /// The start of a trailer line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer field's name, up to its `:`.
    TrailerName,
    /// Inside a trailer field's value, skipped up to its CR.
    Trailer,
    /// A trailer line's CR was seen; its LF is due.
    TrailerLf,
    /// The final empty line's CR was seen; its LF ends the body.
    FinalLf,
    Done,
}

/// Follows one chunked body through the bytes fed to it.
#[derive(Debug)]
pub struct ChunkedEnd {
    state: State,
}

impl Default for ChunkedEnd {
    fn default() -> Self {
        ChunkedEnd {
            state: State::Size {
                value: 0,
                digits: 0,
            },
        }
    }
}

impl ChunkedEnd {
    /// Scan the next bytes of the body. `Some(n)`: the body ends after the
    /// first `n` bytes of `buf` (whatever follows is not part of it);
    /// `None`: all of `buf` belongs to the body and more is due.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Option<usize>, Malformed> {
        match self.scan(buf, false, &mut Vec::new())? {
            Scanned::Ends(n) => Ok(Some(n)),
            Scanned::More | Scanned::Trailers(_) => Ok(None),
        }
    }

    /// [`feed`](Self::feed), writing trailer field names in lowercase as
    /// it goes, as hyper writes them: whichever engine carries an answer,
    /// a client gets its trailers alike.
    pub fn feed_lowering(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Malformed> {
        // Where the upper-case letters of names are; empty (no allocation)
        // for a body without trailers, the common case.
        let mut upper = Vec::new();
        let scanned = self.scan(buf, false, &mut upper)?;
        for i in upper {
            buf[i] = buf[i].to_ascii_lowercase();
        }
        match scanned {
            Scanned::Ends(n) => Ok(Some(n)),
            Scanned::More | Scanned::Trailers(_) => Ok(None),
        }
    }

    /// Whether the scan is inside the trailer section (after the last
    /// chunk's size line, before the body's end).
    pub fn in_trailers(&self) -> bool {
        matches!(
            self.state,
            State::TrailerStart
                | State::TrailerName
                | State::Trailer
                | State::TrailerLf
                | State::FinalLf
        )
    }

    /// [`feed`](Self::feed), telling where the trailer section starts:
    /// `Trailers(n)`: the first `n` bytes are the chunks up to and including
    /// the last chunk's size line; what follows is trailers and the final
    /// empty line (fed on with `feed`). For a client that may not get
    /// trailers, the body is then those `n` bytes and an empty line.
    pub fn feed_to_trailers(&mut self, buf: &[u8]) -> Result<Scanned, Malformed> {
        self.scan(buf, true, &mut Vec::new())
    }

    /// Follow `buf`; `upper` gets the index of every upper-case letter in
    /// a trailer field's name.
    fn scan(
        &mut self,
        buf: &[u8],
        stop_at_trailers: bool,
        upper: &mut Vec<usize>,
    ) -> Result<Scanned, Malformed> {
        let mut i = 0;
        while i < buf.len() {
            if let State::Data(left) = self.state {
                let take = left.min((buf.len() - i) as u64);
                i += take as usize;
                self.state = match left - take {
                    0 => State::DataCr,
                    left => State::Data(left),
                };
                continue;
            }
            let b = buf[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                    // 16 hex digits fill a u64; more would overflow.
                    if digits == 16 {
                        return Err(Malformed);
                    }
                    let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                    State::Size {
                        value: value << 4 | digit,
                        digits: digits + 1,
                    }
                }
                (State::Size { digits: 0, .. }, _) => return Err(Malformed),
                (State::Size { value, .. } | State::SizeBlank { value }, b' ' | b'\t') => {
                    State::SizeBlank { value }
                }
                (State::Size { value, .. } | State::SizeBlank { value }, b';') => {
                    State::Extension { value }
                }
                (
                    State::Size { value, .. }
                    | State::SizeBlank { value }
                    | State::Extension { value },
                    b'\r',
                ) => State::SizeLf { value },
                (State::SizeLf { value }, b'\n') => match value {
                    0 if stop_at_trailers => {
                        self.state = State::TrailerStart;
                        return Ok(Scanned::Trailers(i));
                    }
                    0 => State::TrailerStart,
                    n => State::Data(n),
                },
                (State::Size { .. } | State::SizeBlank { .. } | State::SizeLf { .. }, _) => {
                    return Err(Malformed);
                }
                (State::Extension { .. }, _) if is_control(b) => return Err(Malformed),
                (State::Extension { value }, _) => State::Extension { value },
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Size {
                    value: 0,
                    digits: 0,
                },
                (State::DataCr | State::DataLf, _) => return Err(Malformed),
                (State::TrailerStart, b'\r') => State::FinalLf,
                (State::FinalLf, b'\n') => {
                    self.state = State::Done;
                    return Ok(Scanned::Ends(i));
                }
                (State::FinalLf, _) => return Err(Malformed),
                (State::TrailerName | State::Trailer, b'\r') => State::TrailerLf,
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::TrailerLf, _) => return Err(Malformed),
                (State::TrailerStart | State::TrailerName | State::Trailer, _) if is_control(b) => {
                    return Err(Malformed);
                }
                (State::TrailerStart | State::TrailerName, b':') => State::Trailer,
                (State::TrailerStart | State::TrailerName, _) => {
                    if b.is_ascii_uppercase() {
                        upper.push(i - 1);
                    }
                    State::TrailerName
                }
                (State::Trailer, _) => State::Trailer,
                (State::Data(_), _) | (State::Done, _) => return Ok(Scanned::Ends(i - 1)),
            };
        }
        Ok(Scanned::More)
    }
}

/// How far a scan got through the bytes fed to it.
#[derive(Debug, PartialEq, Eq)]
pub enum Scanned {
    /// All of them belong to the body and more is due.
    More,
    /// The body ends after the first `n`.
    Ends(usize),
    /// The trailer section starts after the first `n`.
    Trailers(usize),
}

/// A byte no chunk extension or trailer field may hold (RFC 9110 §5.5:
/// field values are visible characters, blanks and obs-text). A bare CR or
/// LF among them is what lets two parsers disagree on where a body ends.
fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `body` split at every possible point, and whole.
    fn end_of(body: &[u8]) -> Result<Option<usize>, Malformed> {
        let whole = ChunkedEnd::default().feed(body);
        for split in 0..body.len() {
            let mut scan = ChunkedEnd::default();
            let got = match scan.feed(&body[..split])? {
                Some(n) => Some(n),
                None => scan.feed(&body[split..])?.map(|n| n + split),
            };
            assert_eq!(Ok(got), whole, "split at {split}");
        }
        whole
    }

    #[test]
    fn tells_where_the_trailers_start() {
        let body = b"5\r\nhello\r\n0;x=1\r\nExpires: never\r\nX-Sum: 1\r\n\r\n";
        let last = body.windows(7).position(|w| w == b"0;x=1\r\n").unwrap() + 7;
        let mut scan = ChunkedEnd::default();
        assert_eq!(scan.feed_to_trailers(body), Ok(Scanned::Trailers(last)));
        assert!(scan.in_trailers());
        assert_eq!(scan.feed(&body[last..]), Ok(Some(body.len() - last)));
        // Without trailers: only the final empty line follows.
        let mut scan = ChunkedEnd::default();
        assert_eq!(
            scan.feed_to_trailers(b"0\r\n\r\n"),
            Ok(Scanned::Trailers(3))
        );
        assert_eq!(scan.feed(b"\r\n"), Ok(Some(2)));
    }

    #[test]
    fn finds_the_end_of_a_body() {
        let body = b"5 \r\nhello\r\n1a ;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        assert_eq!(end_of(body), Ok(Some(body.len())));
        // Whatever follows (the next answer) is not part of it.
        let mut next = body.to_vec();
        next.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(end_of(&next), Ok(Some(body.len())));
    }

    #[test]
    fn trailer_names_are_lowered_across_any_split() {
        let body = b"5\r\nHELLO\r\n0\r\nX-Sum: Forty-Two\r\nETag: \"AbC\"\r\n\r\n";
        for split in 0..=body.len() {
            let mut bytes = body.to_vec();
            let (a, b) = bytes.split_at_mut(split);
            let mut scan = ChunkedEnd::default();
            let first = scan.feed_lowering(a).unwrap();
            let end = match first {
                Some(n) => n,
                None => split + scan.feed_lowering(b).unwrap().unwrap(),
            };
            assert_eq!(end, body.len(), "split at {split}");
            assert_eq!(
                &bytes[..],
                &b"5\r\nHELLO\r\n0\r\nx-sum: Forty-Two\r\netag: \"AbC\"\r\n\r\n"[..],
                "names only, values and data as sent (split at {split})"
            );
        }
    }

    #[test]
    fn trailers_are_followed() {
        let body = b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\t3\r\n\r\n";
        assert_eq!(end_of(body), Ok(Some(body.len())));
    }

    /// The relay forwards the framing as it came, so it accepts only what a
    /// strict parser downstream (hyper's, nginx's) reads the same way: a
    /// body whose end two parsers could place differently is refused.
    #[test]
    fn framing_two_parsers_could_read_differently_is_refused() {
        for bad in [
            &b"3\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabc\n0\r\n\r\n",
            b"3\r\nabc\r\n0\n\r\n",
            b"3\r\nabc\r\n0\r\n\n",
            b"3\r\nabc\r\n0\r\nX: 1\n\r\n",
            b"3\r\nabc\r\n0\r\nX: a\rb\r\n\r\n",
            b"3\r\nabc\r\n0\r\nX: a\0b\r\n\r\n",
            b"3;a=\x7f\r\nabc\r\n0\r\n\r\n",
            b"3;a\nb\r\nabc\r\n0\r\n\r\n",
            b"3\r\nabc\r\r\n0\r\n\r\n",
        ] {
            assert_eq!(ChunkedEnd::default().feed(bad), Err(Malformed), "{bad:?}");
        }
    }

    #[test]
    fn an_unfinished_body_wants_more() {
        assert_eq!(end_of(b"10\r\nonly part"), Ok(None));
        assert_eq!(end_of(b"0\r\n"), Ok(None));
        assert_eq!(end_of(b"0\r\nX-T: 1\r\n"), Ok(None));
    }

    #[test]
    fn malformed_framing_is_refused() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5x\r\n",
            b"5 6\r\n",
            b"5 junk\r\n",
            b"0\r\n\rX",
            b"11111111111111111\r\n",
        ] {
            assert_eq!(ChunkedEnd::default().feed(bad), Err(Malformed), "{bad:?}");
        }
    }

    #[test]
    fn a_large_chunk_is_skipped_in_bulk() {
        let mut body = b"100000\r\n".to_vec();
        body.resize(body.len() + 0x100000, b'x');
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        let mut scan = ChunkedEnd::default();
        let mut fed = 0;
        let mut end = None;
        for piece in body.chunks(8192) {
            if let Some(n) = scan.feed(piece).unwrap() {
                end = Some(fed + n);
            }
            fed += piece.len();
        }
        assert_eq!(end, Some(body.len()));
    }
}
